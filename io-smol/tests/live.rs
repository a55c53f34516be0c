//! `--ui`: the live view's page and WebSocket on loopback, read by a minimal hand-written
//! WebSocket client; the refusal of a non-loopback address without a token.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use support::*;

/// A seeder with `--ui 127.0.0.1:0 ARGS...`; returns it and the live view's address.
fn seeder_with_ui(t: &std::path::Path, extra: &[&str]) -> (Hive, std::path::PathBuf, SocketAddr) {
    let src = p(t, "src");
    write_files(&src, &[("file.bin", &data(1_000_000, 3))]);
    let torrent = p(t, "f.torrent");
    create_torrent(&p(&src, "file.bin"), &torrent, "16K", &[]);
    let mut args = vec!["--ui", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut seed = Hive::start(&torrent, &src, &args);
    let ui: SocketAddr = seed.wait_event("live_view")["addr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (seed, torrent, ui)
}

/// One HTTP/1.1 request; the status line and the rest (headers and body) of the answer.
fn http_get(addr: SocketAddr, target: &str, extra: &str) -> (String, TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {target} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the answer's head");
        buf.extend_from_slice(&chunk[..n]);
    }
    let status = String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap()
        .to_owned();
    (status, s, buf)
}

/// The WebSocket handshake; the stream and bytes already read after the head.
fn ws_connect(addr: SocketAddr, target: &str) -> (String, TcpStream, Vec<u8>) {
    let (status, s, buf) = http_get(
        addr,
        target,
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    let at = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&buf[..at]).into_owned();
    if status.contains("101") {
        // RFC 6455 §1.3's example key.
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{head}"
        );
    }
    (status, s, buf[at..].to_vec())
}

/// Reads one unmasked text frame as JSON.
fn read_msg(s: &mut TcpStream, pending: &mut Vec<u8>) -> Value {
    let mut need = |n: usize, pending: &mut Vec<u8>| -> Vec<u8> {
        while pending.len() < n {
            let mut chunk = [0u8; 65536];
            let k = s.read(&mut chunk).unwrap();
            assert!(k > 0, "WebSocket closed");
            pending.extend_from_slice(&chunk[..k]);
        }
        pending.drain(..n).collect()
    };
    let h = need(2, pending);
    assert_eq!(h[0], 0x81, "a final text frame");
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7f {
        126 => u16::from_be_bytes(need(2, pending).try_into().unwrap()) as usize,
        127 => u64::from_be_bytes(need(8, pending).try_into().unwrap()) as usize,
        n => n as usize,
    };
    serde_json::from_slice(&need(len, pending)).unwrap()
}

fn assert_u64(v: &Value, key: &str) {
    assert!(v[key].is_u64(), "{key} is not a count in {v}");
}

#[test]
fn page_and_websocket_stream_hello_and_snapshots() {
    let t = tempdir();
    let (mut seed, torrent, ui) = seeder_with_ui(t.path(), &[]);

    // The page: self-contained (no CDN, no external font or script).
    let (status, mut s, mut body) = http_get(ui, "/", "");
    assert!(status.contains("200"), "{status}");
    s.read_to_end(&mut body).unwrap();
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("<svg") && page.contains("new WebSocket"));
    // The SVG namespace is a name, not a fetch.
    let stripped = page.replace("http://www.w3.org/2000/svg", "");
    assert!(
        !stripped.contains("http://")
            && !stripped.contains("https://")
            && !stripped.contains("//fonts"),
        "the page refers to something outside the binary"
    );
    assert!(http_get(ui, "/nothing", "").0.contains("404"));

    // A leecher, slowed down so that it stays in the swarm while we watch.
    let dst = p(t.path(), "dst");
    let addr = seed.addr().to_string();
    let _leech = Hive::start(
        &torrent,
        &dst,
        &["--peer", &addr, "--download-limit", "64K"],
    );

    let (status, mut ws, mut pending) = ws_connect(ui, "/ws");
    assert!(status.contains("101"), "{status}");
    let hello = read_msg(&mut ws, &mut pending);
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["schema"], 1);
    assert_eq!(hello["source"], "live");
    assert_eq!(hello["torrent"]["name"], "file.bin");
    assert_eq!(hello["torrent"]["size"], 1_000_000);
    assert_eq!(hello["torrent"]["pieces"], 62);
    assert_eq!(hello["torrent"]["info_hash"].as_str().unwrap().len(), 40);

    // Snapshots (and events) until one shows the leecher.
    let mut snap = Value::Null;
    for _ in 0..2000 {
        let m = read_msg(&mut ws, &mut pending);
        match m["type"].as_str().unwrap() {
            "snapshot" => {
                let joined = m["peers"].as_array().unwrap().len();
                snap = m;
                if joined > 0 {
                    break;
                }
            }
            "event" => assert!(m["event"].is_string() && m["t"].is_f64(), "{m}"),
            other => panic!("unexpected message type {other}: {m}"),
        }
    }
    assert!(snap["t"].is_f64(), "{snap}");
    let tt = &snap["torrent"];
    assert_eq!(tt["state"], "seeding");
    assert_eq!(tt["progress"], 1.0);
    for k in [
        "pieces_have",
        "pieces_total",
        "left",
        "downloaded",
        "uploaded",
        "download_rate",
        "upload_rate",
        "peers_connected",
        "peers_known",
    ] {
        assert_u64(tt, k);
    }
    assert!(tt["eta"].is_null() && tt["ratio"].is_f64(), "{tt}");
    let peer = &snap["peers"][0];
    assert!(
        peer["addr"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{peer}"
    );
    assert!(
        peer["client"].is_string() || peer["client"].is_null(),
        "{peer}"
    );
    for k in [
        "am_choking",
        "am_interested",
        "peer_choking",
        "peer_interested",
        "snubbed",
        "outgoing",
    ] {
        assert!(peer[k].is_boolean(), "{k} in {peer}");
    }
    assert_u64(peer, "id");
    assert_u64(peer, "download_rate");
    assert_u64(peer, "upload_rate");
    assert!(peer["progress"].is_number(), "{peer}");
    let pieces = &snap["pieces"];
    assert_eq!(pieces["state"], "h".repeat(62));
    let avail = pieces["availability"].as_array().unwrap();
    assert_eq!(avail.len(), 62);
    assert!(avail.iter().all(Value::is_u64));
    assert!(snap["tracker"].is_null(), "no tracker: {snap}");
}

#[test]
fn token_guards_the_websocket() {
    let t = tempdir();
    let (_seed, _, ui) = seeder_with_ui(t.path(), &["--ui-token", "s3cret/+"]);
    let (status, _, _) = ws_connect(ui, "/ws");
    assert!(status.contains("401"), "{status}");
    let (status, _, _) = ws_connect(ui, "/ws?token=wrong");
    assert!(status.contains("401"), "{status}");
    let (status, mut ws, mut pending) = ws_connect(ui, "/ws?token=s3cret%2F%2B");
    assert!(status.contains("101"), "{status}");
    assert_eq!(read_msg(&mut ws, &mut pending)["type"], "hello");
    // Another web site's page may not read the stream.
    let (status, _, _) = http_get(
        ui,
        "/ws?token=s3cret%2F%2B",
        "Origin: http://evil.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    assert!(status.contains("403"), "{status}");
    // Read-only: nothing but GET.
    let mut s = TcpStream::connect(ui).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {ui}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
}

#[test]
fn non_loopback_ui_needs_a_token() {
    let t = tempdir();
    let src = p(t.path(), "src");
    write_files(&src, &[("a.bin", &data(20_000, 1))]);
    let torrent = p(t.path(), "a.torrent");
    create_torrent(&p(&src, "a.bin"), &torrent, "16K", &[]);
    let out = std::process::Command::new(hive_bin())
        .arg(&torrent)
        .args(["-o"])
        .arg(&src)
        .args(["--ui", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("--ui-token"),
        "{err}"
    );
}

#[test]
fn ui_address_errors_say_what_to_write() {
    let out = std::process::Command::new(hive_bin())
        .args(["--ui", "f.torrent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ADDR:PORT") && err.contains("after FILE.torrent"),
        "{err}"
    );
}
