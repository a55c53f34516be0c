//! The driver: one smol task that owns the [`Session`], feeds it inputs, carries out its
//! outputs and re-arms one timer at its next deadline. It is the only place that reads the
//! clock. It makes no protocol decision: connections, requests, choking, announces and their
//! timing are the Session's; the driver moves bytes between it and sockets, files and trackers.
//!
//! Shape: every socket, disk job and tracker request runs in its own task (see [`io`]) and
//! reports to the driver through one bounded channel. The driver handles one message, drains
//! [`Session::poll_output`] until [`Output::Timeout`], and waits for the next message or the
//! deadline. Back-pressure: a connection's bytes are taken from the Session only when its
//! writer has finished the previous buffer; readers block on the bounded channel when the
//! driver falls behind; disk work goes through a fixed number of workers.

pub mod io;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_net::{TcpListener, TcpStream};
use bytes::Bytes;
use hive_core::announce::TrackerId;
use hive_core::bitfield::Bitfield;
use hive_core::metainfo::Metainfo;
use hive_core::session::{
    ConnId, Event, Input, Output, Session, SessionConfig, TorrentId, TorrentStats,
};
use hive_core::time::Instant;
use smol::channel::{Receiver, Sender};

use crate::resume::{self, Rejected, Resume};
use crate::storage::Storage;
use io::{DiskDone, DiskJob, Msg};

/// Messages queued to the driver at most; readers wait beyond this (back-pressure).
const CHANNEL_BOUND: usize = 64;
/// Received bytes waiting for the disk above which sockets are no longer read...
const WRITE_HIGH: usize = 16 << 20;
/// ...until they are below this again.
const WRITE_LOW: usize = 8 << 20;
/// Disk and hashing jobs running at once (more only adds contention on the file's lock on a
/// 2-core machine; measured with bench/loopback.sh).
const DISK_WORKERS: usize = 2;
/// The resume file is rewritten at most this often while pieces complete.
const RESUME_EVERY: Duration = Duration::from_secs(5);
/// After a stop was asked for, give up waiting for announces and disk after this long.
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// When to stop seeding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeedPolicy {
    /// Until interrupted (the default, like transmission-cli).
    Forever,
    /// Exit as soon as every piece is verified and on disk.
    No,
    /// Until uploaded / size reaches this ratio.
    Ratio(f64),
    /// This long after completion.
    Time(Duration),
}

/// What to download and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The torrent.
    pub meta: Metainfo,
    /// The folder that holds (or will hold) the torrent's file or top folder.
    pub root: PathBuf,
    /// Address to listen on; `None`: every address (IPv6 and IPv4).
    pub bind: Option<IpAddr>,
    /// Port to listen on; if taken, the next free one of the next 10 (0: any).
    pub port: u16,
    /// Peers to connect to, besides the trackers'.
    pub peers: Vec<SocketAddr>,
    /// When to stop after completion.
    pub seed: SeedPolicy,
    /// Connections at most.
    pub max_peers: Option<usize>,
    /// Upload limit, bytes per second.
    pub upload_limit: Option<u64>,
    /// Download limit, bytes per second.
    pub download_limit: Option<u64>,
    /// Hold each `have` up to this long to send it with others (`PeerConfig::have_batch`);
    /// `None`: the core's default (each goes at once).
    pub have_batch: Option<Duration>,
    /// Serve the live view on this address, with this token if any (`--ui`).
    pub live: Option<(SocketAddr, Option<String>)>,
}

/// What the driver tells the user interface.
#[derive(Debug)]
pub enum Report<'a> {
    /// Listening for peers.
    Listening(SocketAddr),
    /// Serving the live view (`--ui`) here.
    LiveView(SocketAddr),
    /// Existing data is being hashed (why).
    Checking(&'a str),
    /// Data found on disk at start: verified pieces of all, and how it was known.
    OnDisk {
        /// Verified pieces.
        have: u32,
        /// Pieces in the torrent.
        total: u32,
        /// "resume file" or "hash check".
        source: &'a str,
    },
    /// Periodic progress.
    Stats(&'a TorrentStats),
    /// Something the Session reported.
    Event(&'a Event),
    /// A detail for the verbose log.
    Note(&'a str),
    /// Stopping, and why.
    Stopping(&'a str),
}

/// The user interface (progress bar, log lines or JSON).
pub trait Ui {
    /// Shows a report.
    fn report(&mut self, report: Report<'_>);
}

/// How a run ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Complete, and seeding ended by policy (`--no-seed`, ratio, time).
    Done,
    /// Stopped by Ctrl-C or SIGTERM.
    Interrupted,
}

/// Why a run failed; each message says what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Files could not be created, written or read.
    #[error("{0}")]
    Disk(String),
    /// No port to listen on.
    #[error("{0}")]
    Network(String),
    /// A bug: the Session refused the driver's input.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Downloads (and seeds) one torrent until it is done or interrupted.
pub fn run(opts: Options, ui: &mut dyn Ui) -> Result<Finish, RunError> {
    smol::block_on(run_async(opts, ui))
}

/// The clock: `Instant`s are microseconds since the driver started.
struct Clock {
    origin: std::time::Instant,
}

impl Clock {
    fn now(&self) -> Instant {
        Instant::from_micros(self.origin.elapsed().as_micros() as u64)
    }

    fn to_std(&self, t: Instant) -> Option<std::time::Instant> {
        if t == Instant::MAX {
            return None;
        }
        self.origin
            .checked_add(Duration::from_micros(t.as_micros()))
    }
}

/// A connection as the driver sees it.
struct ConnIo {
    /// Buffers for the writer; `None` while connecting.
    writer: Option<Sender<Vec<u8>>>,
    /// Read buffers going back to the reader (bounded: extra ones are dropped).
    recycle: Sender<Vec<u8>>,
    /// The writer has a buffer and has not given it back.
    writing: bool,
    /// An empty buffer to fill next.
    spare: Vec<u8>,
    /// The connect, reader and writer tasks; dropping them cancels them and closes the socket.
    _tasks: Vec<smol::Task<()>>,
}

struct Driver<'u> {
    session: Session,
    torrent: Option<TorrentId>,
    meta: Metainfo,
    clock: Clock,
    deadline: Instant,
    tx: Sender<Msg>,
    conns: HashMap<ConnId, ConnIo>,
    disk: Sender<DiskJob>,
    disk_pending: usize,
    /// Bytes of blocks handed to the disk and not yet written.
    write_bytes: usize,
    gate: io::Gate,
    /// Held while the gate is closed.
    gate_closed: Option<smol::lock::MutexGuardArc<()>>,
    udp: HashMap<(TorrentId, TrackerId), Sender<io::UdpPacket>>,
    _udp_tasks: Vec<smol::Task<()>>,
    http: ureq::Agent,
    storage: Arc<Storage>,
    resume_path: PathBuf,
    /// The verified pieces as last reported (PieceDone events).
    have_snapshot: Bitfield,
    resume_dirty: bool,
    resume_saving: bool,
    resume_next: Instant,
    policy: SeedPolicy,
    completed_at: Option<Instant>,
    /// A stop decided while draining, carried out after the drain.
    stop_pending: Option<&'static str>,
    stopping_since: Option<Instant>,
    interrupted: bool,
    shutdown_done: bool,
    error: Option<String>,
    ui: &'u mut dyn Ui,
    /// The live view's pages (`--ui`); `None` without `--ui`.
    live: Option<crate::live::Live>,
}

async fn run_async(opts: Options, ui: &mut dyn Ui) -> Result<Finish, RunError> {
    let clock = Clock {
        origin: std::time::Instant::now(),
    };
    let meta = opts.meta.clone();
    let root = opts.root.clone();
    let storage = {
        let (root, meta) = (root.clone(), meta.clone());
        smol::unblock(move || Storage::open(&root, &meta))
            .await
            .map_err(|e| {
                RunError::Disk(format!(
                    "{e}; check that the output directory (-o) is writable and has space"
                ))
            })?
    };
    let storage = Arc::new(storage);
    let resume_path = resume::path_for(&root, &meta.info_hash());
    let have = initial_pieces(&storage, &resume_path, &meta, ui).await?;
    ui.report(Report::OnDisk {
        have: have.0.count_ones(),
        total: meta.piece_count(),
        source: have.1,
    });
    let have = have.0;

    // The live view first: a taken --ui port is an error before anything is announced.
    let live_listener = match &opts.live {
        Some((addr, _)) => {
            let l = TcpListener::bind(*addr).await.map_err(|e| {
                RunError::Network(format!(
                    "cannot serve the live view on {addr}: {e}; choose another with --ui ADDR:PORT"
                ))
            })?;
            if let Ok(a) = l.local_addr() {
                ui.report(Report::LiveView(a));
            }
            Some(l)
        }
        None => None,
    };
    let listener = bind(opts.bind, opts.port).await?;
    let local = listener
        .local_addr()
        .map_err(|e| RunError::Network(format!("cannot read the listening address: {e}")))?;
    ui.report(Report::Listening(local));

    let mut config = SessionConfig {
        listen_port: local.port(),
        upload_limit: opts.upload_limit,
        download_limit: opts.download_limit,
        ..SessionConfig::default()
    };
    if let Some(n) = opts.max_peers {
        config.max_connections = n.max(1);
        config.max_connections_per_torrent = n.max(1);
    }
    if let Some(d) = opts.have_batch {
        config.peer.have_batch = d;
    }
    // The Session's randomness (peer id, tie breaks) comes from this one seed.
    let seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let now = clock.now();
    let session = Session::new(config, seed, now);
    let (tx, rx) = smol::channel::bounded(CHANNEL_BOUND);
    let (disk_tx, disk_rx) = smol::channel::unbounded();
    let mut tasks = Vec::new();
    tasks.push(smol::spawn(io::listener(listener, tx.clone())));
    for _ in 0..DISK_WORKERS {
        tasks.push(smol::spawn(io::disk_worker(
            storage.clone(),
            disk_rx.clone(),
            tx.clone(),
        )));
    }
    spawn_signal_thread(tx.clone());
    if let Some(l) = live_listener {
        let token = opts.live.as_ref().and_then(|(_, t)| t.clone());
        // Pages arrive on their own small channel and are passed on as driver messages; a
        // live download ignores what a page sends (its inbox is dropped).
        let (ctx, crx) = smol::channel::bounded::<hive_live::server::Client>(4);
        tasks.push(smol::spawn(hive_live::server::serve(l, token, ctx)));
        let to_driver = tx.clone();
        tasks.push(smol::spawn(async move {
            while let Ok(client) = crx.recv().await {
                if to_driver.send(Msg::UiClient(client.out)).await.is_err() {
                    return;
                }
            }
        }));
    }

    let complete = have.all();
    let mut d = Driver {
        session,
        torrent: None,
        meta: meta.clone(),
        clock,
        deadline: Instant::ZERO,
        tx,
        conns: HashMap::new(),
        disk: disk_tx,
        disk_pending: 0,
        write_bytes: 0,
        gate: Arc::new(smol::lock::Mutex::new(())),
        gate_closed: None,
        udp: HashMap::new(),
        _udp_tasks: Vec::new(),
        http: io::http_agent(),
        storage,
        resume_path,
        have_snapshot: have.clone(),
        resume_dirty: false,
        resume_saving: false,
        resume_next: now + RESUME_EVERY,
        policy: opts.seed,
        completed_at: complete.then_some(now),
        stop_pending: None,
        stopping_since: None,
        interrupted: false,
        shutdown_done: false,
        error: None,
        ui,
        live: opts.live.is_some().then(|| crate::live::Live::new(&meta)),
    };
    let torrent = d
        .session
        .add_torrent(now, meta, Some(&have))
        .map_err(|e| RunError::Internal(format!("cannot add the torrent: {e}")))?;
    d.torrent = Some(torrent);
    d.drain();
    for peer in &opts.peers {
        d.session
            .add_peer(now, torrent, *peer)
            .map_err(|e| RunError::Internal(e.to_string()))?;
        d.drain();
    }
    if complete && d.policy == SeedPolicy::No {
        d.stop_pending = Some("every piece is already on disk and verified (--no-seed)");
    }
    d.policies(now)?;
    d.run(rx).await?;
    drop(tasks);
    if let Some(e) = d.error.take() {
        return Err(RunError::Disk(e));
    }
    Ok(if d.interrupted {
        Finish::Interrupted
    } else {
        Finish::Done
    })
}

/// The pieces already on disk: from a valid resume file, else by hashing what is there.
async fn initial_pieces(
    storage: &Arc<Storage>,
    resume_path: &Path,
    meta: &Metainfo,
    ui: &mut dyn Ui,
) -> Result<(Bitfield, &'static str), RunError> {
    let stamps = storage.stamps();
    let why = match Resume::load(resume_path, &meta.info_hash(), meta.piece_count(), &stamps) {
        Ok(bits) => return Ok((bits, "resume file")),
        Err(Rejected::Missing) => "no resume file".to_owned(),
        Err(Rejected::Stale(s)) => format!("resume file is stale: {s}"),
        Err(Rejected::Damaged(s)) => format!("resume file is unusable: {s}"),
    };
    if stamps.iter().all(|s| s.len == 0) {
        return Ok((Bitfield::new(meta.piece_count()), "nothing on disk"));
    }
    ui.report(Report::Checking(&format!("{why}; checking existing data")));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let st = storage.clone();
    let bits = smol::unblock(move || st.check_all(threads))
        .await
        .map_err(|e| {
            RunError::Disk(format!(
                "cannot read existing data: {e}; check the files' permissions"
            ))
        })?;
    Ok((bits, "hash check"))
}

/// Binds the listening socket: `port` or the next free one of the next 9 (any if 0), on
/// `bind` or on every address (IPv6 with IPv4 mapped, else IPv4).
async fn bind(bind: Option<IpAddr>, port: u16) -> Result<TcpListener, RunError> {
    let ips: Vec<IpAddr> = match bind {
        Some(ip) => vec![ip],
        None => vec![
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ],
    };
    let ports: Vec<u16> = if port == 0 {
        vec![0]
    } else {
        (port..=port.saturating_add(9)).collect()
    };
    let mut last = None;
    for ip in &ips {
        for p in &ports {
            match TcpListener::bind(SocketAddr::new(*ip, *p)).await {
                Ok(l) => return Ok(l),
                Err(e) => last = Some(e),
            }
        }
    }
    let what = bind.map_or("any address".to_owned(), |ip| ip.to_string());
    Err(RunError::Network(format!(
        "cannot listen on {what} port {port} (nor the next 9): {}; choose another with --port or --bind",
        last.map_or("no address".to_owned(), |e| e.to_string())
    )))
}

/// SIGINT/SIGTERM become [`Msg::Signal`]; SIGXFSZ is ignored so that a file-size limit makes a
/// write fail with an error (reported like a full disk) instead of killing the process.
fn spawn_signal_thread(tx: Sender<Msg>) {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGXFSZ};
    let _ =
        signal_hook::flag::register(SIGXFSZ, Arc::new(std::sync::atomic::AtomicBool::new(false)));
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        std::thread::spawn(move || {
            for sig in signals.forever() {
                if tx.send_blocking(Msg::Signal(sig)).is_err() {
                    return;
                }
            }
        });
    }
}

impl Driver<'_> {
    async fn run(&mut self, rx: Receiver<Msg>) -> Result<(), RunError> {
        // One timer, moved only when the deadline changes (re-arming costs syscalls).
        let mut timer = smol::Timer::never();
        let mut armed: Option<Instant> = None;
        loop {
            if self.finished() {
                break;
            }
            let wake = self.wake_at();
            if armed != Some(wake) {
                match self.clock.to_std(wake) {
                    Some(at) => timer.set_at(at),
                    None => timer = smol::Timer::never(),
                }
                armed = Some(wake);
            }
            let msg = smol::future::or(async { rx.recv().await.ok() }, async {
                (&mut timer).await;
                None
            })
            .await;
            let now = self.clock.now();
            match msg {
                Some(m) => self.on_msg(now, m)?,
                None => {
                    armed = None;
                    self.input(now, Input::Timeout)?
                }
            }
            // Whatever else is queued, before deciding when to wake next.
            for _ in 0..CHANNEL_BOUND {
                match rx.try_recv() {
                    Ok(m) => self.on_msg(now, m)?,
                    Err(_) => break,
                }
            }
            self.policies(now)?;
            if let (Some(live), Some(t)) = (&mut self.live, self.torrent) {
                live.tick(now, &self.session, t, &self.meta);
            }
        }
        // A background save still running would race the final one for the same file.
        if self.resume_saving {
            let timer = async {
                smol::Timer::after(Duration::from_secs(5)).await;
            };
            let wait = async {
                while let Ok(m) = rx.recv().await {
                    if matches!(m, Msg::ResumeSaved(_)) {
                        return;
                    }
                }
            };
            smol::future::or(wait, timer).await;
        }
        self.save_resume_final().await;
        if let Some(s) = self.torrent.and_then(|t| self.session.stats(t)) {
            self.ui.report(Report::Stats(&s));
        }
        Ok(())
    }

    /// The earliest of the Session's deadline and the driver's own (seed time, resume save).
    fn wake_at(&self) -> Instant {
        let mut t = self.deadline;
        if let (SeedPolicy::Time(d), Some(c)) = (self.policy, self.completed_at) {
            t = t.min(c + d);
        }
        if self.resume_dirty {
            t = t.min(self.resume_next);
        }
        if let Some(s) = self.stopping_since {
            t = t.min(s + STOP_LIMIT);
        }
        if let Some(l) = self.live.as_ref().and_then(|l| l.wake_at()) {
            t = t.min(l);
        }
        t
    }

    fn finished(&self) -> bool {
        let Some(since) = self.stopping_since else {
            return false;
        };
        (self.shutdown_done && self.disk_pending == 0) || self.clock.now() >= since + STOP_LIMIT
    }

    fn policies(&mut self, now: Instant) -> Result<(), RunError> {
        if self.write_bytes > WRITE_HIGH && self.gate_closed.is_none() {
            // Fails only while a reader holds the gate for an instant: retried next message.
            self.gate_closed = self.gate.try_lock_arc();
        } else if self.write_bytes < WRITE_LOW {
            self.gate_closed = None;
        }
        if let Some(why) = self.stop_pending.take() {
            self.stop(now, why);
        }
        if let (SeedPolicy::Time(d), Some(c)) = (self.policy, self.completed_at) {
            if now >= c + d && self.stopping_since.is_none() {
                self.stop(now, "seeding time reached (--seed-time)");
            }
        }
        if self.resume_dirty && !self.resume_saving && now >= self.resume_next {
            self.save_resume_background(now);
        }
        Ok(())
    }

    /// Asks the Session to stop (announce `stopped`, close connections).
    fn stop(&mut self, now: Instant, why: &str) {
        if self.stopping_since.is_some() {
            return;
        }
        self.stopping_since = Some(now);
        self.ui.report(Report::Stopping(why));
        if let Err(e) = self.session.shutdown(now) {
            self.ui.report(Report::Note(&format!("shutdown: {e}")));
        }
        self.drain();
    }

    /// Feeds one input and drains.
    fn input(&mut self, now: Instant, input: Input<'_>) -> Result<(), RunError> {
        self.session
            .handle_input(now, input)
            .map_err(|e| RunError::Internal(e.to_string()))?;
        self.drain();
        Ok(())
    }

    fn on_msg(&mut self, now: Instant, msg: Msg) -> Result<(), RunError> {
        match msg {
            Msg::Accepted(stream, addr) => {
                // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
                let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
                self.accept(now, stream, addr);
            }

            Msg::ConnectDone(id, result) => {
                if !self.conns.contains_key(&id) {
                    return Ok(()); // closed by the Session meanwhile
                }
                match result {
                    Ok(stream) => {
                        let tasks = self.conns.remove(&id).map(|c| c._tasks).unwrap_or_default();
                        self.attach(id, stream, Some(tasks));
                        self.input(now, Input::Connected(id))?;
                    }
                    Err(e) => {
                        self.conns.remove(&id);
                        self.ui
                            .report(Report::Note(&format!("connect {id:?} failed: {e}")));
                        self.input(now, Input::ConnectFailed(id))?;
                    }
                }
            }
            Msg::Received(id, data) => {
                if self.conns.contains_key(&id) {
                    self.input(now, Input::Received(id, &data))?;
                    if let Some(c) = self.conns.get(&id) {
                        let _ = c.recycle.try_send(data);
                    }
                }
            }
            Msg::ReadClosed(id) | Msg::WriteFailed(id) => {
                if self.conns.remove(&id).is_some() {
                    self.input(now, Input::Closed(id))?;
                }
            }
            Msg::Wrote(id, buf) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.writing = false;
                    c.spare = buf;
                    self.pump(id);
                    self.drain();
                }
            }
            Msg::Disk(batch) => {
                for done in batch {
                    self.disk_done(now, done)?;
                }
            }
            Msg::Http {
                torrent,
                request,
                result,
            } => match result {
                Ok(body) => self.input(
                    now,
                    Input::TrackerResponse {
                        torrent,
                        request,
                        body: &body,
                    },
                )?,
                Err(kind) => self.input(
                    now,
                    Input::TrackerFailed {
                        torrent,
                        request,
                        kind,
                    },
                )?,
            },
            Msg::Udp {
                torrent,
                tracker,
                from,
                data,
            } => self.input(
                now,
                Input::TrackerPacket {
                    torrent,
                    tracker,
                    from,
                    data: &data,
                },
            )?,
            Msg::Note(s) => self.ui.report(Report::Note(&s)),
            Msg::Signal(sig) => {
                self.ui.report(Report::Note(&format!("signal {sig}")));
                if self.stopping_since.is_some() && self.interrupted {
                    // A second Ctrl-C: stop waiting for trackers.
                    self.stopping_since = Some(Instant::ZERO);
                } else {
                    self.interrupted = true;
                    self.stop(now, "interrupted");
                }
            }
            Msg::UiClient(client) => {
                if let Some(live) = &mut self.live {
                    live.add(client, now);
                }
            }
            Msg::ResumeSaved(r) => {
                self.resume_saving = false;
                if let Err(e) = r {
                    self.ui.report(Report::Note(&format!(
                        "could not save the resume file: {e}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn accept(&mut self, now: Instant, stream: TcpStream, addr: SocketAddr) {
        match self.session.accept(now, addr) {
            Ok(id) => {
                self.attach(id, stream, None);
                self.drain();
            }
            Err(e) => {
                self.ui
                    .report(Report::Note(&format!("refused {addr}: {e}")));
                self.drain();
            }
        }
    }

    fn disk_done(&mut self, now: Instant, done: DiskDone) -> Result<(), RunError> {
        self.disk_pending = self.disk_pending.saturating_sub(1);
        match done {
            DiskDone::Read {
                conn,
                torrent,
                block,
                data,
            } => self.input(
                now,
                Input::BlockRead {
                    conn,
                    torrent,
                    block,
                    // The read's own Vec becomes the block's buffer: no copy.
                    data: data.map(Bytes::from),
                },
            )?,
            DiskDone::Written {
                torrent,
                block,
                result,
            } => {
                self.write_bytes = self.write_bytes.saturating_sub(block.length as usize);
                self.input(
                    now,
                    Input::BlockWritten {
                        torrent,
                        block,
                        result,
                    },
                )?
            }
            DiskDone::Verified {
                torrent,
                piece,
                result,
            } => {
                let ok = match result {
                    Ok(ok) => ok,
                    Err(e) => {
                        self.ui.report(Report::Note(&format!(
                            "reading piece {piece} back failed: {e}"
                        )));
                        false
                    }
                };
                self.input(now, Input::PieceVerified { torrent, piece, ok })?
            }
        }
        Ok(())
    }

    /// Starts the reader and writer of an established connection.
    fn attach(&mut self, id: ConnId, stream: TcpStream, tasks: Option<Vec<smol::Task<()>>>) {
        let _ = stream.set_nodelay(true);
        let (wtx, wrx) = smol::channel::bounded(1);
        let (rtx, rrx) = smol::channel::bounded(4);
        let mut tasks = tasks.unwrap_or_default();
        // The connect task has finished; keep nothing of it.
        tasks.clear();
        tasks.push(smol::spawn(io::reader(
            id,
            stream.clone(),
            self.tx.clone(),
            self.gate.clone(),
            rrx,
        )));
        tasks.push(smol::spawn(io::writer(id, stream, wrx, self.tx.clone())));
        self.conns.insert(
            id,
            ConnIo {
                writer: Some(wtx),
                recycle: rtx,
                writing: false,
                spare: Vec::new(),
                _tasks: tasks,
            },
        );
    }

    /// Hands the connection's pending bytes to its writer if it is idle.
    fn pump(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(writer) = &c.writer else {
            return;
        };
        if c.writing {
            return;
        }
        let mut buf = std::mem::take(&mut c.spare);
        buf.clear();
        if self.session.poll_transmit(id, &mut buf) == 0 {
            c.spare = buf;
            return;
        }
        c.writing = writer.try_send(buf).is_ok();
    }

    /// Carries out the Session's outputs until it says when to wake it next.
    fn drain(&mut self) {
        loop {
            match self.session.poll_output() {
                Output::Timeout(t) => {
                    self.deadline = t;
                    return;
                }
                Output::Connect { conn, addr } => {
                    self.ui
                        .report(Report::Note(&format!("connecting {conn:?} to {addr}")));
                    let task = smol::spawn(io::connect(conn, addr, self.tx.clone()));
                    self.conns.insert(
                        conn,
                        ConnIo {
                            writer: None,
                            recycle: smol::channel::bounded(1).0,
                            writing: false,
                            spare: Vec::new(),
                            _tasks: vec![task],
                        },
                    );
                }
                Output::Transmit(conn) => self.pump(conn),
                Output::Close { conn, reason } => {
                    self.conns.remove(&conn);
                    self.ui
                        .report(Report::Note(&format!("closed {conn:?}: {reason}")));
                }
                Output::HttpAnnounce {
                    torrent,
                    request,
                    url,
                } => {
                    self.ui.report(Report::Note(&format!("announce {url}")));
                    smol::spawn(io::http_announce(
                        self.http.clone(),
                        torrent,
                        request,
                        url,
                        self.tx.clone(),
                    ))
                    .detach();
                }
                Output::UdpSend {
                    torrent,
                    tracker,
                    host,
                    port,
                    packet,
                } => {
                    let key = (torrent, tracker);
                    if !self.udp.contains_key(&key) {
                        let (ptx, prx) = smol::channel::bounded(16);
                        self._udp_tasks.push(smol::spawn(io::udp_tracker(
                            torrent,
                            tracker,
                            prx,
                            self.tx.clone(),
                        )));
                        self.udp.insert(key, ptx);
                    }
                    if let Some(ch) = self.udp.get(&key) {
                        // Full only if the tracker task is stuck resolving: the announcer
                        // retransmits on its own schedule, so dropping a datagram is fine.
                        let _ = ch.try_send((host, port, packet));
                    }
                }
                Output::ReadBlock {
                    conn,
                    torrent,
                    block,
                } => self.disk_job(DiskJob::Read {
                    conn,
                    torrent,
                    block,
                }),
                Output::WriteBlock {
                    torrent,
                    block,
                    data,
                } => {
                    self.write_bytes += data.len();
                    self.disk_job(DiskJob::Write {
                        torrent,
                        block,
                        data,
                    })
                }
                Output::VerifyPiece { torrent, piece } => {
                    self.disk_job(DiskJob::Verify { torrent, piece })
                }
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    /// Writes the resume file on the blocking pool, after syncing the files written since the
    /// last save: a resume file must never claim pieces whose bytes a power cut could still
    /// lose (the page cache survives a crash of the process, not of the machine).
    fn save_resume_background(&mut self, now: Instant) {
        self.resume_dirty = false;
        self.resume_saving = true;
        self.resume_next = now + RESUME_EVERY;
        let storage = self.storage.clone();
        let path = self.resume_path.clone();
        let resume = Resume {
            info_hash: *self.meta.info_hash().as_bytes(),
            pieces: self.have_snapshot.clone(),
            files: Vec::new(),
        };
        let tx = self.tx.clone();
        smol::spawn(async move {
            let r = smol::unblock(move || {
                storage.sync().map_err(|e| e.to_string())?;
                let resume = Resume {
                    files: storage.stamps(),
                    ..resume
                };
                resume.save(&path).map_err(|e| e.to_string())
            })
            .await;
            let _ = tx.send(Msg::ResumeSaved(r)).await;
        })
        .detach();
    }

    /// At exit: sync the data, then record the verified pieces.
    async fn save_resume_final(&mut self) {
        let storage = self.storage.clone();
        let path = self.resume_path.clone();
        let mut resume = Resume {
            info_hash: *self.meta.info_hash().as_bytes(),
            pieces: self.have_snapshot.clone(),
            files: Vec::new(),
        };
        let r = smol::unblock(move || {
            storage.sync()?;
            resume.files = storage.stamps();
            resume.save(&path)
        })
        .await;
        if let Err(e) = r {
            self.ui.report(Report::Note(&format!(
                "could not save the resume file: {e}; the next start re-checks the data"
            )));
        }
    }

    fn disk_job(&mut self, job: DiskJob) {
        if self.disk.try_send(job).is_ok() {
            self.disk_pending += 1;
        }
    }

    fn on_event(&mut self, e: Event) {
        let now = self.clock.now();
        match &e {
            Event::PieceDone { piece, .. } => {
                self.have_snapshot.set(*piece);
                self.resume_dirty = true;
            }
            Event::TorrentComplete { .. } => {
                self.completed_at = Some(now);
                self.resume_dirty = true;
                self.resume_next = now;
                if self.policy == SeedPolicy::No {
                    self.stop_pending = Some("download complete (--no-seed)");
                }
            }
            Event::TorrentError { message, .. } => {
                self.error = Some(format!(
                    "{message}; verified data is kept: free space or fix permissions in the output directory, then run the same command again to resume"
                ));
                self.stop_pending = Some("disk error");
            }
            Event::ShutdownComplete => self.shutdown_done = true,
            Event::Stats(s) => {
                if let (SeedPolicy::Ratio(r), Some(_)) = (self.policy, self.completed_at) {
                    let size = self.meta.total_length().max(1) as f64;
                    if s.uploaded as f64 >= r * size {
                        self.stop_pending = Some("seed ratio reached (--seed-ratio)");
                    }
                }
            }
            _ => {}
        }
        if let Some(live) = &mut self.live {
            live.event(now, &e);
        }
        if let Event::Stats(s) = &e {
            self.ui.report(Report::Stats(s));
        } else {
            self.ui.report(Report::Event(&e));
        }
    }
}
