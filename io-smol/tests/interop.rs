//! Interop with real clients from Debian on loopback: Transmission (`transmission-cli`) and
//! aria2 (`aria2c`). Hive downloads from each, and each downloads from Hive. DHT, LSD, PEX and
//! port mapping are off in every client so that the test is about Hive; each client gets a
//! fresh config folder and its own port; each case its own tracker.
//!
//! Loopback quirks handled here: Transmission never dials 127.0.0.0/8 peers it learns from a
//! tracker, so Hive dials it (`--peer`); aria2 uses UDP trackers only with its DHT on, so it
//! gets an HTTP tracker.

mod support;

use std::path::Path;
use std::process::Command;

use support::tracker::Tracker;
use support::*;

const LEN: usize = 3_000_000;

/// A fresh Transmission config folder with DHT, LSD, PEX, uTP, port mapping and encryption off.
fn transmission_config(dir: &Path, port: u16, download: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let settings = format!(
        r#"{{
  "dht-enabled": false,
  "lpd-enabled": false,
  "pex-enabled": false,
  "utp-enabled": false,
  "port-forwarding-enabled": false,
  "encryption": 0,
  "peer-port": {port},
  "bind-address-ipv4": "127.0.0.1",
  "bind-address-ipv6": "::1",
  "peer-port-random-on-start": false,
  "rename-partial-files": false,
  "download-dir": "{}",
  "speed-limit-up-enabled": false,
  "speed-limit-down-enabled": false
}}"#,
        download.display()
    );
    std::fs::write(dir.join("settings.json"), settings).unwrap();
}

fn transmission(torrent: &Path, root: &Path, name: &str, dl: &Path, port: u16) -> Guard {
    let conf = p(root, &format!("{name}-config"));
    transmission_config(&conf, port, dl);
    let marker = p(root, &format!("{name}-done"));
    let script = p(root, &format!("{name}-done.sh"));
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntouch '{}'\n", marker.display()),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).unwrap();
    let mut cmd = Command::new("transmission-cli");
    cmd.arg("-g")
        .arg(&conf)
        .arg("-w")
        .arg(dl)
        .args(["-p", &port.to_string(), "-M", "-et", "-D", "-U", "-f"])
        .arg(&script)
        .arg(torrent);
    Guard::spawn(cmd, &p(root, &format!("{name}.log")))
}

/// Transmission refuses peers until it has verified its data: wait for its status line, so
/// that Hive's first dial is not refused (Hive would then retry only after its backoff).
fn wait_transmission_running(root: &Path, name: &str) {
    wait_until("transmission verified its data", || {
        let l = log(root, name);
        l.contains("Progress:") || l.contains("Seeding")
    });
}

fn aria2(torrent: &Path, root: &Path, name: &str, dir: &Path, port: u16, seed: bool) -> Guard {
    let mut cmd = Command::new("aria2c");
    cmd.arg(format!("--dir={}", dir.display()))
        .arg(format!("--listen-port={port}"))
        .args([
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--disable-ipv6=true",
            "--file-allocation=none",
            "--check-integrity=true",
            "--console-log-level=warn",
            "--summary-interval=0",
            "--no-conf=true",
            "--interface=127.0.0.1",
            "--log-level=info",
        ])
        .arg(format!(
            "--dht-file-path={}",
            p(root, &format!("{name}-dht.dat")).display()
        ));
    cmd.arg(format!(
        "--log={}",
        p(root, &format!("{name}-debug.log")).display()
    ));
    if seed {
        cmd.args([
            "--seed-ratio=0.0",
            "--seed-time=60",
            "--bt-seed-unverified=false",
        ]);
    } else {
        cmd.arg("--seed-time=0");
    }
    cmd.arg(torrent);
    Guard::spawn(cmd, &p(root, &format!("{name}.log")))
}

fn setup(trackers: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let t = tempdir();
    let src = p(t.path(), "src");
    write_files(&src, &[("payload.bin", &data(LEN, 77))]);
    let torrent = p(t.path(), "i.torrent");
    create_torrent(&p(&src, "payload.bin"), &torrent, "32K", trackers);
    (t, torrent)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn log(root: &Path, name: &str) -> String {
    std::fs::read_to_string(p(root, &format!("{name}.log"))).unwrap_or_default()
}

#[test]
fn transmission_downloads_from_hive() {
    if !have_program("transmission-cli", "Debian package transmission-cli") {
        return;
    }
    let tracker = Tracker::start();
    let (t, torrent) = setup(&[&tracker.http_url]);
    let root = t.path();
    let dl = p(root, "tr-dl");
    std::fs::create_dir_all(&dl).unwrap();
    let port = free_port();
    let _tr = transmission(&torrent, root, "tr", &dl, port);
    wait_transmission_running(root, "tr");
    // Transmission does not dial loopback peers from a tracker: the seeder dials it.
    let peer = format!("127.0.0.1:{port}");
    let mut seed = Hive::start(&torrent, &p(root, "src"), &["--peer", &peer]);
    seed.wait_event("on_disk");
    let got = p(&dl, "payload.bin");
    let want = std::fs::read(p(root, "src/payload.bin")).unwrap();
    wait_until("transmission has the file", || {
        p(root, "tr-done").exists() && std::fs::read(&got).is_ok_and(|b| b == want)
    });
    let joined = seed.wait_event("peer_joined");
    assert!(
        joined["client"]
            .as_str()
            .unwrap_or("")
            .contains("Transmission"),
        "{joined}; log:\n{}",
        log(root, "tr")
    );
}

#[test]
fn hive_downloads_from_transmission() {
    if !have_program("transmission-cli", "Debian package transmission-cli") {
        return;
    }
    let (t, torrent) = setup(&[]);
    let root = t.path();
    let src = p(root, "src");
    let port = free_port();
    // Transmission seeds the data in src (it verifies it first).
    let _tr = transmission(&torrent, root, "tr", &src, port);
    wait_transmission_running(root, "tr");
    let peer = format!("127.0.0.1:{port}");
    let dst = p(root, "dst");
    let mut leech = Hive::start(&torrent, &dst, &["--no-seed", "--peer", &peer]);
    let code = leech.wait_exit();
    assert_eq!(code, 0, "{}\nlog:\n{}", leech.stderr(), log(root, "tr"));
    assert_same_tree(&p(&src, "payload.bin"), &p(&dst, "payload.bin"));
    let joined = leech.wait_event("peer_joined");
    assert!(
        joined["client"]
            .as_str()
            .unwrap_or("")
            .contains("Transmission"),
        "{joined}"
    );
}

#[test]
fn aria2_downloads_from_hive() {
    if !have_program("aria2c", "Debian package aria2") {
        return;
    }
    let tracker = Tracker::start();
    let (t, torrent) = setup(&[&tracker.http_url]);
    let root = t.path();
    let mut seed = Hive::start(&torrent, &p(root, "src"), &[]);
    seed.wait_event("on_disk");
    seed.addr();
    let dl = p(root, "aria-dl");
    let mut aria = aria2(&torrent, root, "aria", &dl, free_port(), false);
    let code = aria.wait_exit(LIMIT);
    assert_eq!(
        code,
        Some(0),
        "aria2c log:\n{}\nend of its debug log:\n{}",
        log(root, "aria"),
        tail(&log(root, "aria-debug"), 40)
    );
    assert_same_tree(&p(root, "src/payload.bin"), &p(&dl, "payload.bin"));
    let joined = seed.wait_event("peer_joined");
    assert!(
        joined["client"].as_str().unwrap_or("").contains("aria2"),
        "{joined}"
    );
}

#[test]
fn hive_downloads_from_aria2() {
    if !have_program("aria2c", "Debian package aria2") {
        return;
    }
    let (t, torrent) = setup(&[]);
    let root = t.path();
    let src = p(root, "src");
    let port = free_port();
    let _aria = aria2(&torrent, root, "aria", &src, port, true);
    wait_listening(port);
    let peer = format!("127.0.0.1:{port}");
    let dst = p(root, "dst");
    let mut leech = Hive::start(&torrent, &dst, &["--no-seed", "--peer", &peer]);
    let code = leech.wait_exit();
    assert_eq!(
        code,
        0,
        "{}\naria2c log:\n{}",
        leech.stderr(),
        log(root, "aria")
    );
    assert_same_tree(&p(&src, "payload.bin"), &p(&dst, "payload.bin"));
}
