//! End to end in a real browser: a recorded simulation played back by `hive-sim view`, loaded
//! in headless chromium (WebDriver), peers drawn around the node, the time slider used, and a
//! screenshot saved to `target/screenshots/replay.png`. Skipped (with a message) where
//! chromium or chromedriver is missing, except under CI.

#[path = "../../live/tests/webdriver/mod.rs"]
mod webdriver;

use std::process::{Child, Command, Stdio};

use hive_sim::record::Recorder;
use hive_sim::scenario::{Knobs, builtin};
use hive_sim::{Engine, RunOptions};
use webdriver::{Browser, read_line_with, screenshot_path};

/// A `hive-sim view` process, killed when dropped.
struct View(Child);

impl Drop for View {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn replay_in_a_real_browser() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("swarm.rec");
    let knobs = Knobs {
        peers: 24,
        pieces: 96,
        piece_length: 64 * 1024,
    };
    let mut e = Engine::new(
        builtin("flash-crowd", &knobs).unwrap(),
        RunOptions {
            seed: 11,
            progress: false,
            threads: 0,
        },
    )
    .unwrap();
    let f = std::fs::File::create(&rec).unwrap();
    e.record(Recorder::new(Box::new(std::io::BufWriter::new(f)), 500_000));
    let r = e.run().unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);

    let (_view, url) = serve_record(&rec, &["--node", "3", "--speed", "2"]);

    browser.goto(&url);
    // The replay bar is shown and the node's peers are drawn around it.
    browser.wait_for(
        "the replay controls",
        "return document.getElementById('replay').offsetHeight > 0",
    );
    let n = browser.wait_for(
        "peers in the SVG",
        "return document.querySelectorAll('#peers g.peer').length",
    );
    assert!(n.as_u64().unwrap() >= 1, "{n}");
    assert_eq!(
        browser.exec("return document.getElementById('mename').textContent"),
        "node 3"
    );

    // Pause, then click the middle of the time slider: the page jumps to about half the run.
    browser.click(&browser.find("#play"));
    browser.wait_for(
        "the pause",
        "return document.getElementById('play').textContent === '▶'",
    );
    browser.click(&browser.find("#slider"));
    let end = r.end_time as f64 / 1e6;
    let t = browser.wait_for(
        "a seek to the middle",
        &format!(
            "const m = /^([0-9.]+) s/.exec(document.getElementById('rtime').textContent); \
             const t = m ? Number(m[1]) : 0; \
             return t > {lo} && t < {hi} && document.querySelectorAll('#peers g.peer').length > 0 ? t : 0",
            lo = end * 0.3,
            hi = end * 0.7
        ),
    );
    // The snapshot the page shows is the one for that moment (the server's, not the page's
    // guess): its piece map is partly downloaded.
    let shown = browser.wait_for(
        "the snapshot at the seek",
        "return lastSnap && Math.abs(lastSnap.t - Number(document.getElementById('slider').value)) < 0.01 \
         ? lastSnap.pieces.state : ''",
    );
    let state = shown.as_str().unwrap();
    assert_eq!(state.len(), 96);
    assert!(state.contains('h'), "{state} at t={t}");
    // Let the edges glide into place, then keep a picture.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let png = screenshot_path("replay.png");
    browser.screenshot(&png);
    eprintln!("screenshot: {}", png.display());
}

/// A synthetic record (format version 1, see README "Records") of a seed, node 0, with
/// `peers` connections whose rates and choke flags change every second for 60 s: the page's
/// worst case, every peer's edge and label updated at each sample. (The simulator's own swarms
/// give a node at most about 125 connections: a client asks the tracker for 50 peers.)
fn synthetic_record(path: &std::path::Path, peers: u32) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let header = serde_json::json!({
        "format": "hive-sim-record", "version": 1, "scenario": "page-bench", "seed": 1,
        "nodes": peers + 1, "sample_every_us": 1_000_000,
        "groups": [
            {"name": "seed", "count": 1, "first": 0, "seed": true},
            {"name": "leechers", "count": peers, "first": 1, "seed": false}
        ],
        "torrent": {"name": "payload.bin", "info_hash": "00".repeat(20), "size": 33_554_432u64,
                    "piece_length": 65_536, "pieces": 512, "files": 1, "private": false}
    });
    writeln!(out, "{header}").unwrap();
    writeln!(out, r#"{{"t":0,"n":0,"k":"arrive","seed":true}}"#).unwrap();
    for i in 1..=peers {
        let t = u64::from(i) * 1000;
        writeln!(out, r#"{{"t":{t},"n":{i},"k":"arrive","seed":false}}"#).unwrap();
        let addr = format!("10.0.{}.{}:49153", i / 250, i % 250 + 1);
        let c = i - 1;
        writeln!(
            out,
            r#"{{"t":{},"n":0,"k":"join","c":{c},"peer":{i},"addr":"{addr}"}}"#,
            t + 500
        )
        .unwrap();
    }
    let mut uploaded = 0u64;
    for sec in 1..=60u64 {
        let conns: Vec<serde_json::Value> = (0..peers)
            .map(|c| {
                let c64 = u64::from(c);
                // Flags: 8 it chokes us, 16 it is interested, 2 we choke it (4 in 5 peers).
                let choked = (c64 + sec) % 5 != 0;
                let flags = 8 + 16 + if choked { 2 } else { 0 };
                let up = if choked {
                    0
                } else {
                    (c64 * 7919 + sec * 104_729) % 300_000
                };
                serde_json::json!([c, flags, 0, up])
            })
            .collect();
        let rate: u64 = conns.iter().map(|c| c[3].as_u64().unwrap()).sum();
        uploaded += rate;
        let line = serde_json::json!({
            "t": sec * 1_000_000, "n": 0, "k": "s",
            "tot": [0, uploaded, 0, 0, rate, peers, 0], "c": conns
        });
        writeln!(out, "{line}").unwrap();
    }
    writeln!(out, r#"{{"t":61000000,"k":"end","finished":false}}"#).unwrap();
}

/// Serves `record` with `hive-sim view` on a free loopback port, with `args` (node, speed,
/// start); returns the process (killed when dropped) and the page's URL.
fn serve_record(record: &std::path::Path, args: &[&str]) -> (View, String) {
    let mut view = View(
        Command::new(env!("CARGO_BIN_EXE_hive-sim"))
            .arg("view")
            .arg(record)
            .args(["--ui", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let line = read_line_with(&mut view.0, "replay view: http://");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    (view, url)
}

/// Frames the page drew over `secs` while playing: (frames per second, longest frame in ms).
fn frame_rate(browser: &Browser, secs: u64) -> (f64, f64) {
    browser.exec(
        "window.__gaps = []; let last = performance.now(); \
         const tick = (t) => { window.__gaps.push(t - last); last = t; \
         if (window.__gaps.length < 100000) requestAnimationFrame(tick); }; \
         requestAnimationFrame(tick); return 0",
    );
    std::thread::sleep(std::time::Duration::from_secs(secs));
    let v = browser.exec(
        "const g = window.__gaps.slice(1); \
         return [g.length, g.reduce((a, b) => a + b, 0), Math.max(...g)]",
    );
    let (n, total, worst) = (
        v[0].as_f64().unwrap(),
        v[1].as_f64().unwrap(),
        v[2].as_f64().unwrap(),
    );
    (n * 1000.0 / total.max(1.0), worst)
}

/// The page's frame rate with 200+ peers around the node, against the same page with 10 peers
/// in the same run (the reference). A benchmark, not a check: run it with
/// `cargo test --release -p hive-sim --test browser -- --ignored --nocapture page_frame_rate`.
#[test]
#[ignore = "benchmark: prints frame rates, takes about a minute"]
fn page_frame_rate_with_200_peers() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let mut rows = Vec::new();
    for peers in [10, 200] {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("synthetic.rec");
        synthetic_record(&record, peers);
        let (_view, url) = serve_record(&record, &["--node", "0", "--speed", "1", "--at", "5s"]);
        browser.goto(&url);
        let peers = browser.wait_for(
            "peers in the SVG",
            &format!(
                "const n = document.querySelectorAll('#peers g.peer').length; \
                 return n >= {peers} ? n : 0"
            ),
        );
        // Let the layout settle, then count frames while the replay plays.
        std::thread::sleep(std::time::Duration::from_secs(2));
        let (fps, worst) = frame_rate(&browser, 8);
        let png = screenshot_path(&format!("replay-{}-peers.png", peers));
        browser.screenshot(&png);
        rows.push((peers.as_u64().unwrap(), fps, worst));
    }
    eprintln!("\npeers drawn   frames/s   worst frame");
    for (peers, fps, worst) in &rows {
        eprintln!("{peers:>11} {fps:>10.1} {worst:>10.1} ms");
    }
    let (reference, crowded) = (rows[0].1, rows[1].1);
    eprintln!(
        "frame rate with {} peers = {:.2} x the rate with {} (same browser, same run)",
        rows[1].0,
        crowded / reference,
        rows[0].0
    );
}
