//! The view's HTTP and WebSocket server: one port, two routes, read-only.
//!
//! `GET /` answers the embedded page; `GET /ws` upgrades to a WebSocket (RFC 6455) whose server
//! side sends text frames, one JSON message each. The HTTP head is read here (two routes, one
//! port, no web framework); the WebSocket framing after the upgrade is async-tungstenite's: it
//! reads what a hostile client may send (masking, fragments, control frames, oversized
//! messages) and answers pings and closes as the RFC says, which a hand-written reader would
//! have to get right on its own. Client messages are small: a replay page's seek and speed
//! requests.
//!
//! Nothing here can change a torrent: the only input is a page's own messages, which a live
//! download ignores and a replay applies to that page's view alone. With a token (required on
//! a non-loopback address) the WebSocket demands it as `?token=`; a browser's `Origin`, when
//! sent, must match `Host`, so another web site cannot read the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_net::{TcpListener, TcpStream};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{self, Message};
use futures_util::StreamExt;
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
const MAX_CLIENT_FRAME: usize = 64 * 1024;
/// Largest message from a page; a longer one closes that page's WebSocket (a page never sends
/// one: its requests are a few dozen bytes).
const MAX_CLIENT_TEXT: usize = 4 * 1024;
/// Messages from one page not yet read by the program; beyond this new ones are dropped.
pub const INBOX: usize = 16;

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
            let accept = derive_accept_key(key.trim().as_bytes());
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

/// Sends the program's messages until the client leaves or the program stops; passes the
/// client's text messages on (dropped if the inbox is full or gone).
async fn websocket(
    stream: TcpStream,
    rx: Receiver<Arc<str>>,
    inbox: Sender<String>,
) -> std::io::Result<()> {
    let config = WebSocketConfig::default()
        .max_frame_size(Some(MAX_CLIENT_FRAME))
        .max_message_size(Some(MAX_CLIENT_TEXT));
    let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await;
    let (mut sink, mut incoming) = ws.split();
    let send = async {
        while let Ok(msg) = rx.recv().await {
            sink.send(Message::text(&*msg)).await.map_err(io_error)?;
        }
        // The program stopped: a clean close.
        let bye = CloseFrame {
            code: CloseCode::Away,
            reason: "the program stopped".into(),
        };
        sink.send(Message::Close(Some(bye))).await.map_err(io_error)
    };
    let receive = async {
        while let Some(msg) = incoming.next().await {
            match msg.map_err(io_error)? {
                Message::Text(text) => {
                    let _ = inbox.try_send(text.as_str().to_owned());
                }
                Message::Close(_) => return Ok(()),
                // Pings are answered by tungstenite; binary messages mean nothing here.
                _ => {}
            }
        }
        Ok(())
    };
    smol::future::or(send, receive).await
}

fn io_error(e: tungstenite::Error) -> std::io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => std::io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        // RFC 6455 §1.3, with the whitespace a header value may carry.
        assert_eq!(
            derive_accept_key(" dGhlIHNhbXBsZSBub25jZQ== ".trim().as_bytes()),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
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

    /// A masked client frame (RFC 6455 §5.3) with the given opcode and payload.
    fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut out = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Connects and upgrades; returns the stream after the 101 answer.
    async fn upgraded(addr: std::net::SocketAddr) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        s
    }

    /// Reads until the server closes the TCP connection; whether it did within 5 s.
    async fn closed_by_server(s: &mut TcpStream) -> bool {
        let drain = async {
            let mut buf = [0u8; 4096];
            while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
            true
        };
        let timeout = async {
            smol::Timer::after(Duration::from_secs(5)).await;
            false
        };
        smol::future::or(drain, timeout).await
    }

    #[test]
    fn hostile_frames_close_only_that_page() {
        smol::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = smol::channel::bounded(8);
            let server = smol::spawn(serve(listener, None, tx));

            // A page's request arrives in its inbox.
            let mut good = upgraded(addr).await;
            let page = rx.recv().await.unwrap();
            good.write_all(&client_frame(0x1, br#"{"seek":1}"#))
                .await
                .unwrap();
            assert_eq!(page.inbox.recv().await.unwrap(), r#"{"seek":1}"#);

            // Oversized, unmasked, and invalid UTF-8: each closes its own connection.
            let mut big = upgraded(addr).await;
            let _big_page = rx.recv().await.unwrap();
            big.write_all(&client_frame(0x1, &vec![b'x'; MAX_CLIENT_FRAME + 1]))
                .await
                .unwrap();
            assert!(closed_by_server(&mut big).await, "oversized frame");

            let mut unmasked = upgraded(addr).await;
            let _unmasked_page = rx.recv().await.unwrap();
            unmasked.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
            assert!(closed_by_server(&mut unmasked).await, "unmasked frame");

            let mut bad_utf8 = upgraded(addr).await;
            let _bad_page = rx.recv().await.unwrap();
            bad_utf8
                .write_all(&client_frame(0x1, &[0xff, 0xfe]))
                .await
                .unwrap();
            assert!(closed_by_server(&mut bad_utf8).await, "invalid UTF-8");

            // The first page is unaffected: it still gets messages.
            page.out.force_send("{\"still\":true}".into()).unwrap();
            let mut frame = [0u8; 2 + 14];
            good.read_exact(&mut frame).await.unwrap();
            assert_eq!(&frame[..2], &[0x81, 14]);
            assert_eq!(&frame[2..], b"{\"still\":true}");
            drop(server);
        });
    }
}
