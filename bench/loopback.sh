#!/usr/bin/env bash
# Loopback download benchmark: a 1 GiB single-file torrent (1 MiB pieces) from one real
# seeder (libtorrent, via python3-libtorrent) on 127.0.0.1, downloaded in turn by hive-smol,
# aria2c and transmission-cli, each with a fresh folder and config, DHT/LSD/PEX/UPnP off.
# Prints wall time, MB/s, CPU seconds (user+sys), peak RSS, and each one's ratio to the best.
#
#   bench/loopback.sh            # needs: python3-libtorrent, aria2, transmission-cli (Debian)
#   SIZE_MB=256 bench/loopback.sh  # a smaller run
#   CLIENTS="hive aria2c" bench/loopback.sh  # some clients only (default: all three)
#
# Not a test: it measures this machine. A client that is not installed is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MB=${SIZE_MB:-1024}
CLIENTS=${CLIENTS:-hive aria2c transmission}
want() { [[ " $CLIENTS " == *" $1 "* ]]; }
PY=/usr/bin/python3
WORK=$(mktemp -d /tmp/hive-bench.XXXXXX)
SEED_PID=""
CLIENT_PID=""
cleanup() {
  [ -n "$CLIENT_PID" ] && kill "$CLIENT_PID" 2>/dev/null || true
  [ -n "$SEED_PID" ] && kill "$SEED_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! $PY -c 'import libtorrent' 2>/dev/null; then
  echo "skipped: libtorrent (the seeder) not found (install python3-libtorrent)"; exit 0
fi
[ -x /usr/bin/time ] || { echo "skipped: /usr/bin/time not found (install time)"; exit 0; }

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "building hive-smol (release)..."
cargo build --release -q -p hive-smol
HIVE=$PWD/target/release/hive-smol

echo "making ${SIZE_MB} MiB of data..."
mkdir -p "$WORK/src"
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$WORK/src/big.bin"
TRACKER_PORT=$(free_port)
"$HIVE" create "$WORK/src/big.bin" -o "$WORK/big.torrent" -s 1M \
  -t "http://127.0.0.1:$TRACKER_PORT/announce" -f >/dev/null

# Starts a fresh seeder (and its tracker); $1: a port for it to dial, optional. Dirty pages of
# the previous step are flushed first, so that no client pays for another one's writes.
start_seeder() {
  sync
  SEED_PORT=$(free_port)
  $PY bench/lt_seed.py "$WORK/big.torrent" "$WORK/src" "$SEED_PORT" "$TRACKER_PORT" ${1:-} \
    > "$WORK/seed.log" 2>&1 &
  SEED_PID=$!
  for _ in $(seq 100); do grep -q seeding "$WORK/seed.log" 2>/dev/null && return; sleep 0.1; done
  echo "the seeder did not start:"; cat "$WORK/seed.log"; exit 1
}
stop_seeder() { kill "$SEED_PID" 2>/dev/null || true; wait "$SEED_PID" 2>/dev/null || true; SEED_PID=""; }

RESULTS=()
# record NAME DIR: checks the result and keeps "name wall user sys rss_kib".
record() {
  if ! cmp -s "$WORK/src/big.bin" "$2/big.bin"; then
    echo "$1: the downloaded file differs or is missing"; exit 1
  fi
  read -r wall user sys rss < "$WORK/$1.time"
  RESULTS+=("$1 $wall $user $sys $rss")
  rm -rf "$2"
}

if want hive; then
  echo "hive-smol..."
  start_seeder
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/hive.time" \
    "$HIVE" "$WORK/big.torrent" -o "$WORK/hive" --port "$(free_port)" --bind 127.0.0.1 --no-seed -q 2> "$WORK/hive.log"
  stop_seeder
  record hive "$WORK/hive"
fi

if ! want aria2c; then
  :
elif need aria2c; then
  echo "aria2c..."
  start_seeder
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/aria2c.time" \
    aria2c --dir="$WORK/aria2c" --listen-port="$(free_port)" --seed-time=0 --no-conf=true \
      --interface=127.0.0.1 --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false \
      --console-log-level=warn --summary-interval=0 "$WORK/big.torrent" > "$WORK/aria2c.log" 2>&1
  stop_seeder
  record aria2c "$WORK/aria2c"
else
  echo "skipped: aria2c not found (install aria2)"
fi

if ! want transmission; then
  :
elif need transmission-cli; then
  echo "transmission-cli..."
  TPORT=$(free_port)
  mkdir -p "$WORK/tconf" "$WORK/transmission"
  cat > "$WORK/tconf/settings.json" <<EOF
{"dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "utp-enabled": false,
 "port-forwarding-enabled": false, "encryption": 0, "peer-port": $TPORT,
 "bind-address-ipv4": "127.0.0.1", "bind-address-ipv6": "::1",
 "peer-port-random-on-start": false, "rename-partial-files": false,
 "speed-limit-up-enabled": false, "speed-limit-down-enabled": false}
EOF
  # transmission-cli seeds forever: the finish script (run when every piece is verified)
  # interrupts it, and it exits.
  printf '#!/bin/sh\nkill -INT $PPID\n' > "$WORK/tdone.sh"; chmod +x "$WORK/tdone.sh"
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/transmission.time" \
    transmission-cli -g "$WORK/tconf" -w "$WORK/transmission" -p "$TPORT" -M -et -D -U \
      -f "$WORK/tdone.sh" "$WORK/big.torrent" > "$WORK/transmission.log" 2>&1 &
  CLIENT_PID=$!
  # Transmission never dials loopback peers it learns from a tracker: the seeder dials it,
  # once Transmission is up (its start-up is part of its time, as for the others).
  for _ in $(seq 100); do grep -q Progress "$WORK/transmission.log" 2>/dev/null && break; sleep 0.1; done
  start_seeder "$TPORT"
  wait "$CLIENT_PID" || true
  CLIENT_PID=""
  stop_seeder
  record transmission "$WORK/transmission"
else
  echo "skipped: transmission-cli not found (install transmission-cli)"
fi

echo
printf '%s\n' "${RESULTS[@]}" | awk -v mb="$SIZE_MB" '
  { name[NR]=$1; wall[NR]=$2; cpu[NR]=$3+$4; rss[NR]=$5/1024; if (NR==1 || $2<best) best=$2 }
  END {
    printf "%-14s %8s %9s %7s %10s %9s\n", "client", "wall s", "MB/s", "CPU s", "peak RSS", "vs best"
    for (i=1; i<=NR; i++)
      printf "%-14s %8.2f %9.1f %7.2f %6.1f MiB %8.2fx\n", name[i], wall[i], mb*1.048576/wall[i], cpu[i], rss[i], wall[i]/best
    for (i=1; i<=NR; i++) if (name[i]=="hive")
      printf "\nhive wall time / best: %.2f (1.00: hive is the fastest)\n", wall[i]/best
  }'
