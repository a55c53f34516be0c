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
        },
    )
    .unwrap();
    let f = std::fs::File::create(&rec).unwrap();
    e.record(Recorder::new(Box::new(std::io::BufWriter::new(f)), 500_000));
    let r = e.run().unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);

    let mut view = View(
        Command::new(env!("CARGO_BIN_EXE_hive-sim"))
            .arg("view")
            .arg(&rec)
            .args(["--ui", "127.0.0.1:0", "--node", "3", "--speed", "2"])
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
