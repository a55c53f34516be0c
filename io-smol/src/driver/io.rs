//! The tasks around the driver: connection readers and writers, the listener, outgoing
//! connects, the disk pool, tracker requests. Each one only moves bytes and reports back to
//! the driver through its [`Msg`] channel; none of them makes a protocol decision.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_net::{TcpListener, TcpStream, UdpSocket};
use hive_core::announce::{FailureKind, RequestId, TrackerId};
use hive_core::session::{ConnId, TorrentId};
use hive_core::wire::BlockRequest;
use smol::channel::{Receiver, Sender};
use smol::io::{AsyncReadExt, AsyncWriteExt};

use crate::storage::Storage;

/// Bytes read from a socket at most at once.
pub const READ_CHUNK: usize = 128 * 1024;

/// Closed by the driver while too many received blocks wait for the disk: every reader waits
/// at it before each read, so a slow disk slows the peers (TCP flow control) instead of
/// filling memory.
pub type Gate = Arc<smol::lock::Mutex<()>>;

/// A datagram for a UDP tracker: host, port, bytes.
pub type UdpPacket = (String, u16, Vec<u8>);

/// Everything the driver is told.
#[derive(Debug)]
pub enum Msg {
    /// A peer connected to us.
    Accepted(TcpStream, SocketAddr),
    /// An outgoing connection attempt ended.
    ConnectDone(ConnId, io::Result<TcpStream>),
    /// Bytes arrived.
    Received(ConnId, Vec<u8>),
    /// The peer closed the connection, or reading failed.
    ReadClosed(ConnId),
    /// The writer sent a buffer; here it is back, empty, for reuse.
    Wrote(ConnId, Vec<u8>),
    /// Writing failed: the connection is gone.
    WriteFailed(ConnId),
    /// Disk jobs finished.
    Disk(Vec<DiskDone>),
    /// An HTTP announce ended.
    Http {
        /// The torrent.
        torrent: TorrentId,
        /// The request.
        request: RequestId,
        /// The body of a 200 reply, or what failed.
        result: Result<Vec<u8>, FailureKind>,
    },
    /// A datagram from a UDP tracker.
    Udp {
        /// The torrent.
        torrent: TorrentId,
        /// The tracker.
        tracker: TrackerId,
        /// Its address.
        from: SocketAddr,
        /// The datagram.
        data: Vec<u8>,
    },
    /// Something for the verbose log.
    Note(String),
    /// SIGINT or SIGTERM.
    Signal(i32),
    /// The resume file was written (or not).
    ResumeSaved(Result<(), String>),
    /// A live-view page connected: its message queue.
    UiClient(smol::channel::Sender<std::sync::Arc<str>>),
}

/// Work for the disk pool.
#[derive(Debug)]
pub enum DiskJob {
    /// Read a block to send to a peer.
    Read {
        /// For the answer.
        conn: ConnId,
        /// For the answer.
        torrent: TorrentId,
        /// Which block.
        block: BlockRequest,
    },
    /// Write a received block.
    Write {
        /// For the answer.
        torrent: TorrentId,
        /// Where.
        block: BlockRequest,
        /// What.
        data: bytes::Bytes,
    },
    /// Hash a piece.
    Verify {
        /// For the answer.
        torrent: TorrentId,
        /// Which piece.
        piece: u32,
    },
}

/// A finished disk job.
#[derive(Debug)]
pub enum DiskDone {
    /// See [`DiskJob::Read`].
    Read {
        /// The connection that asked.
        conn: ConnId,
        /// The torrent.
        torrent: TorrentId,
        /// The block.
        block: BlockRequest,
        /// Its bytes or the error.
        data: Result<Vec<u8>, String>,
    },
    /// See [`DiskJob::Write`].
    Written {
        /// The torrent.
        torrent: TorrentId,
        /// The block.
        block: BlockRequest,
        /// Whether it is on disk.
        result: Result<(), String>,
    },
    /// See [`DiskJob::Verify`].
    Verified {
        /// The torrent.
        torrent: TorrentId,
        /// The piece.
        piece: u32,
        /// Whether it matched (a read error counts as a mismatch, with its message).
        result: Result<bool, String>,
    },
}

impl DiskJob {
    /// Runs the job (blocking).
    fn run(self, storage: &Storage, scratch: &mut Vec<u8>) -> DiskDone {
        match self {
            DiskJob::Read {
                conn,
                torrent,
                block,
            } => {
                let mut data = vec![0; block.length as usize];
                let result = storage
                    .read(block.index, block.begin, &mut data)
                    .map(|()| data)
                    .map_err(|e| e.to_string());
                DiskDone::Read {
                    conn,
                    torrent,
                    block,
                    data: result,
                }
            }
            DiskJob::Write {
                torrent,
                block,
                data,
            } => DiskDone::Written {
                torrent,
                block,
                result: storage
                    .write(block.index, block.begin, &data)
                    .map_err(|e| e.to_string()),
            },
            DiskJob::Verify { torrent, piece } => DiskDone::Verified {
                torrent,
                piece,
                result: storage.verify(piece, scratch).map_err(|e| e.to_string()),
            },
        }
    }
}

/// Jobs one worker takes at once.
const DISK_BATCH: usize = 64;

/// One worker of the disk pool: takes the jobs waiting (up to [`DISK_BATCH`]) and runs them
/// in one trip to the blocking pool, so `workers` bounds the threads doing disk I/O and hashing
/// at once, and a busy download costs one thread hop per batch rather than per block.
pub async fn disk_worker(storage: Arc<Storage>, jobs: Receiver<DiskJob>, out: Sender<Msg>) {
    let mut scratch = Vec::new();
    while let Ok(job) = jobs.recv().await {
        let mut batch = vec![job];
        while batch.len() < DISK_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let st = storage.clone();
        let (done, buf) = smol::unblock(move || {
            let mut scratch = scratch;
            let done: Vec<DiskDone> = batch
                .into_iter()
                .map(|job| job.run(&st, &mut scratch))
                .collect();
            (done, scratch)
        })
        .await;
        scratch = buf;
        if out.send(Msg::Disk(done)).await.is_err() {
            return;
        }
    }
}

/// Accepts connections until the driver goes away.
pub async fn listener(listener: TcpListener, out: Sender<Msg>) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                if out.send(Msg::Accepted(stream, addr)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                let _ = out.send(Msg::Note(format!("accept failed: {e}"))).await;
                smol::Timer::after(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Opens an outgoing connection (10 s at most).
pub async fn connect(conn: ConnId, addr: SocketAddr, out: Sender<Msg>) {
    let attempt = async { TcpStream::connect(addr).await };
    let timeout = async {
        smol::Timer::after(Duration::from_secs(10)).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
    };
    let result = smol::future::or(attempt, timeout).await;
    let _ = out.send(Msg::ConnectDone(conn, result)).await;
}

/// Reads from the socket and hands the bytes to the driver. The channel is bounded, so a
/// driver that falls behind stops the reads, and TCP flow control slows the peer; so does a
/// closed [`Gate`].
pub async fn reader(
    conn: ConnId,
    mut stream: TcpStream,
    out: Sender<Msg>,
    gate: Gate,
    recycled: Receiver<Vec<u8>>,
) {
    loop {
        drop(gate.lock().await);
        // Buffers come back from the driver once their bytes are consumed: no copy and no
        // fresh allocation per read.
        let mut buf = recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(READ_CHUNK));
        buf.resize(READ_CHUNK, 0);
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = out.send(Msg::ReadClosed(conn)).await;
                return;
            }
            Ok(n) => {
                buf.truncate(n);
                if out.send(Msg::Received(conn, buf)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Writes each buffer the driver hands over, then gives it back ([`Msg::Wrote`]): the driver
/// takes more from the Session only then, which is the back-pressure.
pub async fn writer(
    conn: ConnId,
    mut stream: TcpStream,
    bufs: Receiver<Vec<u8>>,
    out: Sender<Msg>,
) {
    while let Ok(mut buf) = bufs.recv().await {
        if stream.write_all(&buf).await.is_err() {
            let _ = out.send(Msg::WriteFailed(conn)).await;
            return;
        }
        buf.clear();
        if out.send(Msg::Wrote(conn, buf)).await.is_err() {
            return;
        }
    }
    // The driver closed the connection: let the peer know.
    let _ = stream.flush().await;
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// An HTTP(S) announce with ureq on the blocking pool, bounded by timeouts so that a dead
/// tracker never holds a thread for long (the announcer also times out on its own).
pub async fn http_announce(
    agent: ureq::Agent,
    torrent: TorrentId,
    request: RequestId,
    url: String,
    out: Sender<Msg>,
) {
    let result = smol::unblock(move || http_get(&agent, &url)).await;
    let _ = out
        .send(Msg::Http {
            torrent,
            request,
            result,
        })
        .await;
}

/// The ureq agent for tracker requests.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_global(Some(Duration::from_secs(25)))
        .http_status_as_error(false)
        .max_redirects(3)
        .user_agent(concat!("Hive/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn http_get(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>, FailureKind> {
    let mut resp = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Timeout(_) => FailureKind::Timeout,
        other => FailureKind::Network(other.to_string()),
    })?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(FailureKind::HttpStatus(status));
    }
    resp.body_mut()
        .with_config()
        .limit(2 << 20)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => FailureKind::Timeout,
            other => FailureKind::Network(other.to_string()),
        })
}

/// One UDP tracker of one torrent: resolves its host, binds a socket of the same family,
/// sends what the announcer asks and reports every datagram that comes back.
pub async fn udp_tracker(
    torrent: TorrentId,
    tracker: TrackerId,
    packets: Receiver<UdpPacket>,
    out: Sender<Msg>,
) {
    let mut current: Option<(String, u16, SocketAddr, UdpSocket, smol::Task<()>)> = None;
    while let Ok((host, port, packet)) = packets.recv().await {
        let same = current
            .as_ref()
            .is_some_and(|(h, p, ..)| *h == host && *p == port);
        if !same {
            current = None;
            let addr = match async_net::resolve((host.as_str(), port)).await {
                Ok(addrs) => match addrs.into_iter().next() {
                    Some(a) => a,
                    None => {
                        let _ = out
                            .send(Msg::Note(format!("udp tracker {host}: no address")))
                            .await;
                        continue;
                    }
                },
                Err(e) => {
                    let _ = out
                        .send(Msg::Note(format!("udp tracker {host}: {e}")))
                        .await;
                    continue;
                }
            };
            let bind: SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0u16; 8], 0).into()
            };
            let socket = match UdpSocket::bind(bind).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = out
                        .send(Msg::Note(format!("udp tracker {host}: bind: {e}")))
                        .await;
                    continue;
                }
            };
            let recv = smol::spawn(udp_receiver(torrent, tracker, socket.clone(), out.clone()));
            current = Some((host, port, addr, socket, recv));
        }
        if let Some((host, _, addr, socket, _)) = &current {
            if let Err(e) = socket.send_to(&packet, *addr).await {
                let _ = out
                    .send(Msg::Note(format!("udp tracker {host}: send: {e}")))
                    .await;
            }
        }
    }
}

async fn udp_receiver(torrent: TorrentId, tracker: TrackerId, socket: UdpSocket, out: Sender<Msg>) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        let msg = Msg::Udp {
            torrent,
            tracker,
            from,
            data: buf[..n].to_vec(),
        };
        if out.send(msg).await.is_err() {
            return;
        }
    }
}
