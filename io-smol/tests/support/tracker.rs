//! A minimal BitTorrent tracker for the tests: HTTP (BEP 3/23, compact peers) and UDP
//! (BEP 15) on 127.0.0.1, one swarm per info hash, `stopped` removes a peer. It can be told
//! to answer every HTTP announce with a status (503) to test failover. It runs on threads
//! that end with the test process; each test case starts its own.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use hive_core::tracker::udp::{
    AnnounceRequest as UdpAnnounce, AnnounceResponse, ConnectRequest, ConnectResponse,
};
use hive_core::tracker::{AddressFamily, CompactPeers, Event};

type Swarms = Arc<Mutex<BTreeMap<[u8; 20], Vec<SocketAddrV4>>>>;

/// A running test tracker.
pub struct Tracker {
    /// `http://127.0.0.1:P/announce`.
    pub http_url: String,
    /// `udp://127.0.0.1:P/announce`.
    pub udp_url: String,
    /// Announces received (HTTP and UDP).
    pub announces: Arc<AtomicU32>,
}

impl Tracker {
    /// Starts a working tracker.
    pub fn start() -> Tracker {
        Self::start_with_status(200)
    }

    /// Starts a tracker whose HTTP side answers every request with `status` (and no body
    /// unless 200).
    pub fn start_with_status(status: u16) -> Tracker {
        let swarms: Swarms = Arc::default();
        let announces = Arc::new(AtomicU32::new(0));
        let http = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let http_port = http.local_addr().unwrap().port();
        {
            let (swarms, announces) = (swarms.clone(), announces.clone());
            std::thread::spawn(move || {
                for stream in http.incoming() {
                    let Ok(stream) = stream else { continue };
                    let (swarms, announces) = (swarms.clone(), announces.clone());
                    std::thread::spawn(move || {
                        let _ = serve_http(stream, &swarms, &announces, status);
                    });
                }
            });
        }
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let udp_port = udp.local_addr().unwrap().port();
        {
            let (swarms, announces) = (swarms.clone(), announces.clone());
            std::thread::spawn(move || serve_udp(udp, &swarms, &announces));
        }
        Tracker {
            http_url: format!("http://127.0.0.1:{http_port}/announce"),
            udp_url: format!("udp://127.0.0.1:{udp_port}/announce"),
            announces,
        }
    }

    /// Announces so far.
    pub fn announce_count(&self) -> u32 {
        self.announces.load(Ordering::SeqCst)
    }
}

/// A tracker URL where nothing listens (a dead tracker).
pub fn dead_http_url() -> String {
    format!("http://127.0.0.1:{}/announce", super::free_port())
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
            out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
            i += 3;
        } else if b[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Records the announce; the other peers of the swarm.
fn record(swarms: &Swarms, info_hash: [u8; 20], peer: SocketAddrV4, stopped: bool) -> Vec<u8> {
    let mut s = swarms.lock().unwrap();
    let list = s.entry(info_hash).or_default();
    list.retain(|p| *p != peer);
    let mut compact = Vec::new();
    for p in list.iter() {
        compact.extend_from_slice(&p.ip().octets());
        compact.extend_from_slice(&p.port().to_be_bytes());
    }
    if !stopped {
        list.push(peer);
    }
    compact
}

fn serve_http(
    stream: std::net::TcpStream,
    swarms: &Swarms,
    announces: &AtomicU32,
    status: u16,
) -> std::io::Result<()> {
    let from = stream.peer_addr()?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let mut stream = stream;
    if status != 200 {
        let body = "tracker is overloaded";
        write!(
            stream,
            "HTTP/1.1 {status} Unavailable\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return Ok(());
    }
    let target = line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut params = BTreeMap::new();
    for kv in query.split('&') {
        if let Some((k, v)) = kv.split_once('=') {
            params.insert(k.to_owned(), percent_decode(v));
        }
    }
    let info_hash: Option<[u8; 20]> = params
        .get("info_hash")
        .and_then(|v| v.as_slice().try_into().ok());
    let port: Option<u16> = params
        .get("port")
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
    let body = match (info_hash, port) {
        (Some(ih), Some(port)) => {
            announces.fetch_add(1, Ordering::SeqCst);
            let ip = match from.ip().to_canonical() {
                std::net::IpAddr::V4(v4) => v4,
                _ => Ipv4Addr::LOCALHOST,
            };
            let stopped = params.get("event").is_some_and(|e| e == b"stopped");
            let peers = record(swarms, ih, SocketAddrV4::new(ip, port), stopped);
            let mut b = b"d8:intervali60e12:min intervali1e5:peers".to_vec();
            b.extend_from_slice(format!("{}:", peers.len()).as_bytes());
            b.extend_from_slice(&peers);
            b.push(b'e');
            b
        }
        _ => b"d14:failure reason25:missing info_hash or porte".to_vec(),
    };
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body)?;
    Ok(())
}

fn serve_udp(socket: UdpSocket, swarms: &Swarms, announces: &AtomicU32) {
    let mut buf = [0u8; 2048];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            return;
        };
        let pkt = &buf[..n];
        let mut out = Vec::new();
        if let Ok(req) = ConnectRequest::decode(pkt) {
            ConnectResponse {
                transaction_id: req.transaction_id,
                connection_id: 0x1234_5678_9abc_def0,
            }
            .encode(&mut out);
        } else if let Ok(req) = UdpAnnounce::decode(pkt) {
            announces.fetch_add(1, Ordering::SeqCst);
            let ip = match from {
                SocketAddr::V4(a) => *a.ip(),
                SocketAddr::V6(_) => Ipv4Addr::LOCALHOST,
            };
            let peers = record(
                swarms,
                req.info_hash,
                SocketAddrV4::new(ip, req.port),
                req.event == Event::Stopped,
            );
            AnnounceResponse {
                transaction_id: req.transaction_id,
                interval: 60,
                leechers: 0,
                seeders: 0,
                peers: CompactPeers::new(&peers, AddressFamily::V4),
            }
            .encode(&mut out);
        } else {
            continue;
        }
        let _ = socket.send_to(&out, from);
    }
}
