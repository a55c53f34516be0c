//! End to end in a real browser: a real loopback download with `--ui`, its page loaded in
//! headless chromium (WebDriver), peers drawn in the SVG, and a screenshot saved to
//! `target/screenshots/live.png`. Skipped (with a message) where chromium or chromedriver is
//! missing, except under CI.

mod support;
#[path = "../../live/tests/webdriver/mod.rs"]
mod webdriver;

use support::*;
use webdriver::{Browser, screenshot_path};

#[test]
fn live_view_in_a_real_browser() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let t = tempdir();
    let src = p(t.path(), "src");
    write_files(&src, &[("movie.bin", &data(6_000_000, 9))]);
    let torrent = p(t.path(), "movie.torrent");
    create_torrent(&p(&src, "movie.bin"), &torrent, "64K", &[]);
    // Two seeds, the watched leecher (slowed down so that the page sees it downloading) and
    // a second leecher.
    let mut seeds: Vec<Hive> = (0..2)
        .map(|_| Hive::start(&torrent, &src, &["--upload-limit", "400K"]))
        .collect();
    let addrs: Vec<String> = seeds.iter_mut().map(|s| s.addr().to_string()).collect();
    let mut args = vec!["--download-limit", "500K", "--ui", "127.0.0.1:0"];
    for a in &addrs {
        args.extend(["--peer", a.as_str()]);
    }
    let mut leech = Hive::start(&torrent, &p(t.path(), "dst"), &args);
    let ui = leech.wait_event("live_view")["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let leech_addr = leech.addr().to_string();
    let mut other_args = vec!["--download-limit", "300K", "--peer", leech_addr.as_str()];
    for a in &addrs {
        other_args.extend(["--peer", a.as_str()]);
    }
    let _other = Hive::start(&torrent, &p(t.path(), "dst2"), &other_args);

    browser.goto(&ui);
    let n = browser.wait_for(
        "three peers in the SVG",
        "return document.querySelectorAll('#peers g.peer').length >= 3 \
         && document.getElementById('conn').textContent === 'live' \
         ? document.querySelectorAll('#peers g.peer').length : 0",
    );
    assert_eq!(n, 3, "two seeds and a leecher");
    // Data is moving: the page shows a download rate and a partial piece map.
    browser.wait_for(
        "a download rate on the page",
        "return lastSnap && lastSnap.torrent.download_rate > 0 \
         && lastSnap.torrent.progress > 0.1 && lastSnap.torrent.progress < 0.9",
    );
    // The page is not a replay: no replay controls.
    assert_eq!(
        browser.exec("return document.getElementById('replay').offsetHeight"),
        0
    );
    // A few seconds of the rate graph, then a picture.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let png = screenshot_path("live.png");
    browser.screenshot(&png);
    eprintln!("screenshot: {}", png.display());
}
