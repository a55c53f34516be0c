//! The view's HTTP and WebSocket server: one port, two routes, read-only.
//!
//! `GET /` answers the embedded page; `GET /ws` upgrades to a WebSocket (RFC 6455) whose server
//! side sends text frames, one JSON message each. The handshake and framing are written here
//! (about a hundred lines) rather than taken from a crate: the server reads only small text
//! frames (a replay page's seek and speed requests) and close frames, and the SHA-1 it needs is
//! already a dependency.
//!
//! Nothing here can change a torrent: the only input is a page's own messages, which a live
//! download ignores and a replay applies to that page's view alone. With a token (required on
//! a non-loopback address) the WebSocket demands it as `?token=`; a browser's `Origin`, when
//! sent, must match `Host`, so another web site cannot read the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_net::{TcpListener, TcpStream};
use sha1::{Digest, Sha1};
use smol::channel::{Receiver, Sender};
use smol::io::{AsyncReadExt, AsyncWriteExt};

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
/// Largest frame a client may send us (close frames and short JSON requests).
const MAX_CLIENT_FRAME: u64 = 64 * 1024;
/// Largest text message from a page that is passed on; longer ones are dropped.
const MAX_CLIENT_TEXT: u64 = 4 * 1024;
/// Messages from one page not yet read by the program; beyond this new ones are dropped.
pub const INBOX: usize = 16;
/// RFC 6455 §1.3.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// One connected page, as the program sees it.
pub struct Client {
    /// Messages to the page (JSON text); bounded by [`CLIENT_QUEUE`]. Send with `force_send`
    /// so a slow page loses its oldest messages instead of slowing the program. Dropping it
    /// closes the page's WebSocket.
    pub out: Sender<Arc<str>>,
    /// Text messages from the page, at most [`INBOX`] unread (a program that does not read
    /// them may drop this).
    pub inbox: Receiver<String>,
}

/// Accepts connections forever; each WebSocket client is handed to the program on `tx`.
pub async fn serve(listener: TcpListener, token: Option<String>, tx: Sender<Client>) {
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
    tx: Sender<Client>,
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
            let (itx, irx) = smol::channel::bounded(INBOX);
            let client = Client {
                out: ctx,
                inbox: irx,
            };
            if tx.send(client).await.is_err() {
                return Ok(()); // the program is gone
            }
            websocket(stream, crx, itx).await
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

/// Sends the program's messages until the client leaves or the program stops; passes the
/// client's text messages on.
async fn websocket(
    stream: TcpStream,
    rx: Receiver<Arc<str>>,
    inbox: Sender<String>,
) -> std::io::Result<()> {
    let mut w = stream.clone();
    let send = async {
        let mut buf = Vec::new();
        while let Ok(msg) = rx.recv().await {
            buf.clear();
            frame_header(0x1, msg.len(), &mut buf);
            buf.extend_from_slice(msg.as_bytes());
            w.write_all(&buf).await?;
        }
        // The program stopped: a clean close (status 1001, going away).
        buf.clear();
        frame_header(0x8, 2, &mut buf);
        buf.extend_from_slice(&1001u16.to_be_bytes());
        w.write_all(&buf).await
    };
    smol::future::or(send, until_close(stream, inbox)).await
}

/// Reads client frames until a close frame, EOF or an oversized frame; small unfragmented text
/// frames are unmasked and passed to `inbox` (dropped if it is full or gone), others skipped.
async fn until_close(mut r: TcpStream, inbox: Sender<String>) -> std::io::Result<()> {
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
        let fin = h[0] & 0x80 != 0;
        if opcode == 0x1 && fin && masked && len <= MAX_CLIENT_TEXT {
            let mut mask = [0u8; 4];
            r.read_exact(&mut mask).await?;
            let mut text = vec![0u8; len as usize];
            r.read_exact(&mut text).await?;
            unmask(&mut text, mask);
            if let Ok(text) = String::from_utf8(text) {
                let _ = inbox.try_send(text);
            }
            continue;
        }
        let mut left = len + if masked { 4 } else { 0 };
        while left > 0 {
            let n = left.min(skip.len() as u64) as usize;
            r.read_exact(&mut skip[..n]).await?;
            left -= n as u64;
        }
    }
}

/// RFC 6455 §5.3: a client's payload is XORed with its 4-byte key.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[i % 4];
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

    #[test]
    fn unmask_rfc_6455_example() {
        // RFC 6455 §5.7: a masked "Hello".
        let mut d = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        unmask(&mut d, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(&d, b"Hello");
    }
}
