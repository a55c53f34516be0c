//! Shared helpers for the loopback tests: `hive-smol` processes that report JSON lines, test
//! data and torrents, a minimal HTTP + UDP tracker, and the skip rule for missing programs.
//!
//! Every process a test starts is killed and reaped when its handle drops (also when the test
//! fails), every address is 127.0.0.1, and every client gets its own folder and port.
#![allow(dead_code)]

pub mod tracker;

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub fn hive_bin() -> &'static str {
    env!("CARGO_BIN_EXE_hive-smol")
}

/// How long any one wait may take before the test fails (a bound, not a measurement).
pub const LIMIT: Duration = Duration::from_secs(60);

/// Deterministic pseudo-random bytes (xorshift), so a failure is reproducible.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Whether `program` is on PATH. If not: under CI the test fails, else it prints the skip line
/// and the caller returns (passes).
pub fn have_program(program: &str, install: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()));
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{program} not found (install {install}); CI must have it");
        }
        eprintln!("skipped: {program} not found (install {install})");
    }
    found
}

/// A port nobody listens on right now (for clients that need one given).
pub fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// Writes `files` (relative path, contents) under `dir`.
pub fn write_files(dir: &Path, files: &[(&str, &[u8])]) {
    for (rel, bytes) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

/// `hive-smol create PATH -o OUT -s PIECE [-t URL]...` (a tier per URL, or `tiers` joined).
pub fn create_torrent(path: &Path, out: &Path, piece: &str, trackers: &[&str]) {
    let mut cmd = Command::new(hive_bin());
    cmd.arg("create")
        .arg(path)
        .arg("-o")
        .arg(out)
        .args(["-s", piece, "-f"]);
    for t in trackers {
        cmd.args(["-t", t]);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "create failed: {o:?}");
}

/// Asserts that two folders (or files) hold the same files with the same bytes.
pub fn assert_same_tree(a: &Path, b: &Path) {
    if a.is_file() {
        let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        assert!(x == y, "{} and {} differ", a.display(), b.display());
        return;
    }
    let mut names: Vec<_> = std::fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != ".hive")
        .collect();
    names.sort();
    for n in names {
        let (pa, pb) = (a.join(&n), b.join(&n));
        assert!(pb.exists(), "{} is missing", pb.display());
        assert_same_tree(&pa, &pb);
    }
}

/// A running `hive-smol FILE.torrent --json ...`, killed when dropped.
pub struct Hive {
    child: Child,
    lines: Receiver<Value>,
    /// Every JSON line so far.
    pub seen: Vec<Value>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Hive {
    /// Starts `hive-smol TORRENT -o DIR --json [--port 0] [--bind 127.0.0.1] ARGS...`.
    pub fn start(torrent: &Path, dir: &Path, args: &[&str]) -> Hive {
        Self::start_cmd(Command::new(hive_bin()), torrent, dir, args)
    }

    /// Like [`Hive::start`] with a prepared command (e.g. `bash -c 'ulimit ...; exec "$0" "$@"'`).
    pub fn start_cmd(mut cmd: Command, torrent: &Path, dir: &Path, args: &[&str]) -> Hive {
        cmd.arg(torrent).arg("-o").arg(dir).arg("--json");
        if !args.contains(&"--port") {
            cmd.args(["--port", "0"]);
        }
        if !args.contains(&"--bind") {
            cmd.args(["--bind", "127.0.0.1"]);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start hive-smol");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let err = child.stderr.take().unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(err);
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    return;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Hive {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
        }
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for a JSON line for which `pred` holds; returns it.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let end = Instant::now() + LIMIT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no {what} within {LIMIT:?}; stderr:\n{}", self.stderr())
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "hive-smol ended before {what}; stderr:\n{}\nlines: {:?}",
                    self.stderr(),
                    self.seen
                ),
            }
        }
    }

    /// Waits for the event named `name`.
    pub fn wait_event(&mut self, name: &str) -> Value {
        self.wait_for(name, |v| v["event"] == name)
    }

    /// The address it listens on (127.0.0.1:port).
    pub fn addr(&mut self) -> SocketAddr {
        let v = self.wait_event("listening");
        SocketAddr::from((Ipv4Addr::LOCALHOST, v["port"].as_u64().unwrap() as u16))
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self) -> i32 {
        let end = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Collect the remaining lines.
                while let Ok(v) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(v);
                }
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < end,
                "hive-smol did not exit within {LIMIT:?}; stderr:\n{}",
                self.stderr()
            );
            // Poll the child: waiting on a pipe and a child at once is not in std.
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }

    /// Sends SIGINT (Ctrl-C).
    pub fn interrupt(&self) {
        signal(self.child.id(), "INT");
    }

    /// Sends SIGKILL (`kill -9`) and reaps.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Hive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -SIG pid` (only for processes the test started).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// A child process that is killed when dropped (real clients).
pub struct Guard(pub Child);

impl Guard {
    /// Starts `cmd` with output going to `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> Guard {
        let f = std::fs::File::create(log).unwrap();
        let f2 = f.try_clone().unwrap();
        cmd.stdin(Stdio::null()).stdout(f).stderr(f2);
        Guard(cmd.spawn().unwrap_or_else(|e| panic!("start {cmd:?}: {e}")))
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(s) = self.0.try_wait().unwrap() {
                return Some(s.code().unwrap_or(-1));
            }
            std::thread::park_timeout(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `cond` holds, polling; fails the test after [`LIMIT`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < end, "not done within {LIMIT:?}: {what}");
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port` (a real client that
/// hashes its data before it listens), so that Hive's first dial does not fail and back off.
pub fn wait_listening(port: u16) {
    wait_until(&format!("a client listening on port {port}"), || {
        std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
    });
}

/// A fresh temporary folder.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `dir/name`.
pub fn p(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
