//! The live view's HTTP and WebSocket server: one port, two routes, read-only.
//!
//! `GET /` answers the embedded page; `GET /ws` upgrades to a WebSocket (RFC 6455) that only
//! sends text frames, one JSON message each. The handshake and framing are written here (about
//! a hundred lines) rather than taken from a crate: the server never needs to read a message,
//! only to notice the client leaving, and the SHA-1 it needs is already a dependency.
//!
//! Nothing here can change the torrent: there is no endpoint that takes input. With a token
//! (required on a non-loopback address) the WebSocket demands it as `?token=`; a browser's
//! `Origin`, when sent, must match `Host`, so another web site cannot read the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_net::{TcpListener, TcpStream};
use sha1::{Digest, Sha1};
use smol::channel::{Receiver, Sender};
use smol::io::{AsyncReadExt, AsyncWriteExt};

use crate::driver::io::Msg;

/// The page: HTML, CSS and JS in one file, built into the binary (works offline).
const PAGE: &str = include_str!("page.html");
/// Request heads larger than this are refused.
const MAX_HEAD: usize = 8 * 1024;
/// HTTP connections served at once; more are closed at once.
const MAX_CONNS: usize = 32;
/// A request head must arrive within this.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued for one WebSocket client; beyond this the oldest are dropped.
pub const CLIENT_QUEUE: usize = 16;
/// Largest frame a client may send us (we only expect close and ping frames).
const MAX_CLIENT_FRAME: u64 = 64 * 1024;
/// RFC 6455 §1.3.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Accepts connections forever; each WebSocket client is handed to the driver as
/// [`Msg::UiClient`] with the receiving end kept here.
pub async fn serve(listener: TcpListener, token: Option<String>, tx: Sender<Msg>) {
    let page: Arc<str> = PAGE
        .replace(
            "__HIVE_TOKEN_REQUIRED__",
            if token.is_some() { "true" } else { "false" },
        )
        .into();
    let token: Arc<Option<String>> = Arc::new(token);
    let live = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: wait a little rather than spin.
            smol::Timer::after(Duration::from_millis(100)).await;
            continue;
        };
        if live.load(Ordering::Relaxed) >= MAX_CONNS {
            continue; // dropped: closed
        }
        live.fetch_add(1, Ordering::Relaxed);
        let (page, token, tx, live) = (page.clone(), token.clone(), tx.clone(), live.clone());
        smol::spawn(async move {
            let _ = handle(stream, &page, token.as_deref(), tx).await;
            live.fetch_sub(1, Ordering::Relaxed);
        })
        .detach();
    }
}

/// A parsed request head: method, target and the headers we look at.
#[derive(Debug, Default)]
struct Head {
    method: String,
    target: String,
    host: Option<String>,
    origin: Option<String>,
    upgrade: bool,
    ws_key: Option<String>,
}

async fn handle(
    mut stream: TcpStream,
    page: &str,
    token: Option<&str>,
    tx: Sender<Msg>,
) -> std::io::Result<()> {
    let head = smol::future::or(read_head(&mut stream), async {
        smol::Timer::after(HEAD_TIMEOUT).await;
        Err(std::io::ErrorKind::TimedOut.into())
    })
    .await?;
    let Some(head) = head else {
        return respond(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            b"bad request\n",
        )
        .await;
    };
    if head.method != "GET" {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"read-only: only GET\n",
        )
        .await;
    }
    let (path, query) = head
        .target
        .split_once('?')
        .unwrap_or((head.target.as_str(), ""));
    match path {
        "/" => {
            respond(
                &mut stream,
                "200 OK",
                "text/html; charset=utf-8",
                page.as_bytes(),
            )
            .await
        }
        "/ws" => {
            if !origin_ok(&head) {
                return respond(
                    &mut stream,
                    "403 Forbidden",
                    "text/plain",
                    b"cross-origin WebSocket refused\n",
                )
                .await;
            }
            if let Some(want) = token {
                let given = query_param(query, "token").unwrap_or_default();
                if !same(given.as_bytes(), want.as_bytes()) {
                    return respond(
                        &mut stream,
                        "401 Unauthorized",
                        "text/plain",
                        b"this live view needs its token: /ws?token=...\n",
                    )
                    .await;
                }
            }
            let (true, Some(key)) = (head.upgrade, head.ws_key.as_deref()) else {
                return respond(
                    &mut stream,
                    "426 Upgrade Required",
                    "text/plain",
                    b"/ws is a WebSocket\n",
                )
                .await;
            };
            let accept = accept_key(key);
            let reply = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            stream.write_all(reply.as_bytes()).await?;
            let (ctx, crx) = smol::channel::bounded(CLIENT_QUEUE);
            if tx.send(Msg::UiClient(ctx)).await.is_err() {
                return Ok(()); // the driver is gone
            }
            websocket(stream, crx).await
        }
        _ => respond(&mut stream, "404 Not Found", "text/plain", b"not found\n").await,
    }
}

/// Reads up to the blank line; `None` if it is not a request we understand.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Head>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
    }
    Ok(parse_head(&String::from_utf8_lossy(&buf)))
}

fn parse_head(text: &str) -> Option<Head> {
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let mut head = Head {
        method: first.next()?.to_owned(),
        target: first.next()?.to_owned(),
        ..Head::default()
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "host" => head.host = Some(value.to_owned()),
            "origin" => head.origin = Some(value.to_owned()),
            "upgrade" => head.upgrade = value.eq_ignore_ascii_case("websocket"),
            "sec-websocket-key" => head.ws_key = Some(value.to_owned()),
            _ => {}
        }
    }
    Some(head)
}

/// No `Origin` (not a browser) or one naming the same host and port as `Host`.
fn origin_ok(head: &Head) -> bool {
    let Some(origin) = &head.origin else {
        return true;
    };
    let origin = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or(origin);
    head.host
        .as_deref()
        .is_some_and(|h| h.eq_ignore_ascii_case(origin))
}

/// The value of `name` in a query string, percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        });
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
         Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:; img-src data:\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(WS_GUID.as_bytes());
    base64(&h.finalize())
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(c.get(2).copied().unwrap_or(0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A server frame header: FIN set, unmasked (RFC 6455 §5.2).
fn frame_header(opcode: u8, len: usize, out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= 0xffff {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Sends the driver's messages until the client leaves or the driver stops.
async fn websocket(stream: TcpStream, rx: Receiver<Arc<str>>) -> std::io::Result<()> {
    let mut w = stream.clone();
    let send = async {
        let mut buf = Vec::new();
        while let Ok(msg) = rx.recv().await {
            buf.clear();
            frame_header(0x1, msg.len(), &mut buf);
            buf.extend_from_slice(msg.as_bytes());
            w.write_all(&buf).await?;
        }
        // The driver stopped: a clean close (status 1001, going away).
        buf.clear();
        frame_header(0x8, 2, &mut buf);
        buf.extend_from_slice(&1001u16.to_be_bytes());
        w.write_all(&buf).await
    };
    smol::future::or(send, until_close(stream)).await
}

/// Reads (and discards) client frames until a close frame, EOF or an oversized frame.
async fn until_close(mut r: TcpStream) -> std::io::Result<()> {
    let mut skip = vec![0u8; 4096];
    loop {
        let mut h = [0u8; 2];
        r.read_exact(&mut h).await?;
        let opcode = h[0] & 0x0f;
        let masked = h[1] & 0x80 != 0;
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).await?;
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).await?;
            len = u64::from_be_bytes(b);
        }
        if opcode == 0x8 || len > MAX_CLIENT_FRAME {
            return Ok(());
        }
        let mut left = len + if masked { 4 } else { 0 };
        while left > 0 {
            let n = left.min(skip.len() as u64) as usize;
            r.read_exact(&mut skip[..n]).await?;
            left -= n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
    }

    #[test]
    fn head_origin_and_query() {
        let h = parse_head(
            "GET /ws?x=1&token=a%2Bb HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nOrigin: http://127.0.0.1:8080\r\nUpgrade: websocket\r\n\r\n",
        )
        .unwrap();
        assert_eq!((h.method.as_str(), h.upgrade), ("GET", true));
        assert!(origin_ok(&h));
        let q = h.target.split_once('?').unwrap().1;
        assert_eq!(query_param(q, "token").as_deref(), Some("a+b"));
        let evil = Head {
            origin: Some("http://evil.example".into()),
            ..h
        };
        assert!(!origin_ok(&evil));
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
    }
}
