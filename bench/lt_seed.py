#!/usr/bin/python3
"""A libtorrent seeder plus a one-torrent HTTP tracker, for bench/loopback.sh.

Usage: lt_seed.py TORRENT DATA_DIR PEER_PORT TRACKER_PORT [CONNECT_PORT]

Seeds TORRENT from DATA_DIR on 127.0.0.1:PEER_PORT (seed mode: the data is trusted, not
hashed), with DHT, LSD, UPnP, NAT-PMP and uTP off. The tracker on 127.0.0.1:TRACKER_PORT
answers every announce with the seeder's address. With CONNECT_PORT the seeder also dials
127.0.0.1:CONNECT_PORT (Transmission never dials loopback peers it learns from a tracker).
Runs until killed.
"""
import http.server
import socketserver
import struct
import sys
import threading
import time

import libtorrent as lt

torrent, data_dir, peer_port, tracker_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
connect_port = int(sys.argv[5]) if len(sys.argv) > 5 else None


class Tracker(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        peers = struct.pack(">4sH", bytes([127, 0, 0, 1]), peer_port)
        body = b"d8:intervali1800e5:peers6:" + peers + b"e"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


srv = Server(("127.0.0.1", tracker_port), Tracker)
threading.Thread(target=srv.serve_forever, daemon=True).start()

s = lt.session({
    "listen_interfaces": f"127.0.0.1:{peer_port}",
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "allow_multiple_connections_per_ip": True,
    "alert_mask": 0,
    # Room for a fast loopback download.
    "send_buffer_watermark": 4 * 1024 * 1024,
    "cache_size": 2048,
})
info = lt.torrent_info(torrent)
params = lt.add_torrent_params()
params.ti = info
params.save_path = data_dir
params.flags |= lt.torrent_flags.seed_mode
h = s.add_torrent(params)
# Ready means answering a BitTorrent handshake for this torrent: libtorrent accepts TCP
# connections a while before it answers them, and a client whose first dial goes unanswered
# waits for its handshake timeout and backoff, which would be measured as slowness.
import socket
ih = bytes(info.info_hash().to_bytes())
hello = b"\x13BitTorrent protocol" + bytes(8) + ih + b"-XX0000-readinessprb"
while True:
    try:
        with socket.create_connection(("127.0.0.1", peer_port), timeout=1) as c:
            c.sendall(hello)
            got = b""
            while len(got) < 68:
                chunk = c.recv(68 - len(got))
                if not chunk:
                    break
                got += chunk
            if len(got) == 68 and got[28:48] == ih:
                break
    except OSError:
        pass
    time.sleep(0.1)
if connect_port:
    time.sleep(0.5)
    h.connect_peer(("127.0.0.1", connect_port))
print("seeding", flush=True)
while True:
    time.sleep(3600)
