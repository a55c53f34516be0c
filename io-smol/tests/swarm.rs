//! hive-smol seeds, hive-smol leeches, on loopback: by `--peer` and through HTTP and UDP
//! trackers, single- and multi-file, several leechers at once, tracker failover, a corrupt
//! seeder beside a good one. Every result is compared byte for byte.

mod support;

use std::path::Path;

use support::tracker::{Tracker, dead_http_url};
use support::*;

/// A multi-file tree: a zero-length file, a file inside a subfolder, sizes that make a short
/// last piece and pieces spanning files.
fn multi_tree(root: &Path) {
    let a = data(100_000, 1);
    let b = data(70_001, 2);
    let c = data(33_333, 3);
    write_files(
        root,
        &[
            ("album/a.bin", &a),
            ("album/empty.txt", b""),
            ("album/sub/b.bin", &b),
            ("album/z.bin", &c),
        ],
    );
}

/// Starts a seeder on complete data and waits until it listens.
fn seeder(torrent: &Path, dir: &Path, extra: &[&str]) -> Hive {
    let mut s = Hive::start(torrent, dir, extra);
    let v = s.wait_event("on_disk");
    assert_eq!(v["have"], v["total"], "the seeder has everything: {v}");
    s
}

#[test]
fn single_file_by_peer_address() {
    let t = tempdir();
    let (src, dst) = (p(t.path(), "src"), p(t.path(), "dst"));
    write_files(&src, &[("file.bin", &data(1_000_000, 7))]);
    let torrent = p(t.path(), "f.torrent");
    create_torrent(&p(&src, "file.bin"), &torrent, "32K", &[]);
    let mut seed = seeder(&torrent, &src, &[]);
    let addr = seed.addr().to_string();
    let mut leech = Hive::start(&torrent, &dst, &["--no-seed", "--peer", &addr]);
    leech.wait_event("complete");
    assert_eq!(leech.wait_exit(), 0, "{}", leech.stderr());
    assert_same_tree(&p(&src, "file.bin"), &p(&dst, "file.bin"));
    // Ctrl-C: the seeder stops cleanly with 0.
    seed.interrupt();
    assert_eq!(seed.wait_exit(), 0, "{}", seed.stderr());
    assert!(seed.seen.iter().any(|v| v["event"] == "stopping"));
}

#[test]
fn ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    let t = tempdir();
    let (src, dst) = (p(t.path(), "src"), p(t.path(), "dst"));
    write_files(&src, &[("six.bin", &data(300_000, 6))]);
    let torrent = p(t.path(), "six.torrent");
    create_torrent(&p(&src, "six.bin"), &torrent, "16K", &[]);
    let mut seed = Hive::start(&torrent, &src, &["--bind", "::1"]);
    let port = seed.wait_event("listening")["port"].as_u64().unwrap();
    let peer = format!("[::1]:{port}");
    let mut leech = Hive::start(
        &torrent,
        &dst,
        &["--bind", "::1", "--no-seed", "--peer", &peer],
    );
    assert_eq!(leech.wait_exit(), 0, "{}", leech.stderr());
    assert_same_tree(&p(&src, "six.bin"), &p(&dst, "six.bin"));
    assert_eq!(leech.wait_event("peer_joined")["addr"], peer);
}

#[test]
fn multi_file_three_leechers_through_http_tracker() {
    let t = tempdir();
    let tracker = Tracker::start();
    let src = p(t.path(), "src");
    multi_tree(&src);
    let torrent = p(t.path(), "m.torrent");
    create_torrent(&p(&src, "album"), &torrent, "16K", &[&tracker.http_url]);
    let _seed = seeder(&torrent, &src, &[]);
    // One leecher batches its haves (`--have-batch`): they reach the others later, together.
    let mut leechers: Vec<_> = (0..3)
        .map(|i| {
            let dir = p(t.path(), &format!("leech{i}"));
            let args: &[&str] = if i == 1 {
                &["--no-seed", "--have-batch", "250ms"]
            } else {
                &["--no-seed"]
            };
            (Hive::start(&torrent, &dir, args), dir)
        })
        .collect();
    for (l, dir) in &mut leechers {
        assert_eq!(l.wait_exit(), 0, "{}", l.stderr());
        assert_same_tree(&p(&src, "album"), &p(dir, "album"));
        assert!(
            p(dir, "album/empty.txt").is_file(),
            "zero-length file created"
        );
    }
    assert!(tracker.announce_count() >= 4);
}

#[test]
fn udp_tracker() {
    let t = tempdir();
    let tracker = Tracker::start();
    let src = p(t.path(), "src");
    write_files(&src, &[("u.bin", &data(300_000, 9))]);
    let torrent = p(t.path(), "u.torrent");
    create_torrent(&p(&src, "u.bin"), &torrent, "16K", &[&tracker.udp_url]);
    let _seed = seeder(&torrent, &src, &[]);
    let dst = p(t.path(), "dst");
    let mut leech = Hive::start(&torrent, &dst, &["--no-seed"]);
    assert_eq!(leech.wait_exit(), 0, "{}", leech.stderr());
    assert_same_tree(&p(&src, "u.bin"), &p(&dst, "u.bin"));
}

#[test]
fn tracker_failover_dead_and_503_then_second_tier() {
    let t = tempdir();
    let busy = Tracker::start_with_status(503);
    let good = Tracker::start();
    let src = p(t.path(), "src");
    write_files(&src, &[("f.bin", &data(200_000, 11))]);
    let torrent = p(t.path(), "f.torrent");
    // hive-smol create puts each -t URL in its own tier: dead, 503, then the good one.
    let dead = dead_http_url();
    create_torrent(
        &p(&src, "f.bin"),
        &torrent,
        "16K",
        &[&dead, &busy.http_url, &good.http_url],
    );
    let _seed = seeder(&torrent, &src, &[]);
    let dst = p(t.path(), "dst");
    let mut leech = Hive::start(&torrent, &dst, &["--no-seed"]);
    assert_eq!(leech.wait_exit(), 0, "{}", leech.stderr());
    assert_same_tree(&p(&src, "f.bin"), &p(&dst, "f.bin"));
    assert!(good.announce_count() >= 2);
    let errors: Vec<_> = leech
        .seen
        .iter()
        .filter(|v| v["event"] == "tracker_error")
        .collect();
    assert!(
        errors
            .iter()
            .any(|v| v["message"].as_str().unwrap().contains("503")),
        "{errors:?}"
    );
}

#[test]
fn corrupt_seeder_beside_a_good_one() {
    let t = tempdir();
    let payload = data(400_000, 5);
    let (good, bad) = (p(t.path(), "good"), p(t.path(), "bad"));
    write_files(&good, &[("c.bin", &payload)]);
    write_files(&bad, &[("c.bin", &payload)]);
    let torrent = p(t.path(), "c.torrent");
    create_torrent(&p(&good, "c.bin"), &torrent, "16K", &[]);
    // The bad seeder records a resume file on good data, then a byte flips behind its back
    // (the modification time is put back), so it trusts the file and serves a corrupt piece.
    let mut once = Hive::start(&torrent, &bad, &["--no-seed"]);
    assert_eq!(once.wait_exit(), 0, "{}", once.stderr());
    let f = p(&bad, "c.bin");
    let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[100_000] ^= 0xff;
    std::fs::write(&f, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let mut bad_seed = Hive::start(&torrent, &bad, &[]);
    let v = bad_seed.wait_event("on_disk");
    assert_eq!(v["source"], "resume file", "{v}");
    let bad_addr = bad_seed.addr().to_string();
    let mut good_seed = seeder(&torrent, &good, &[]);
    let good_addr = good_seed.addr().to_string();
    let dst = p(t.path(), "dst");
    let mut leech = Hive::start(
        &torrent,
        &dst,
        &["--no-seed", "--peer", &bad_addr, "--peer", &good_addr],
    );
    assert_eq!(leech.wait_exit(), 0, "{}", leech.stderr());
    assert_same_tree(&p(&good, "c.bin"), &p(&dst, "c.bin"));
}

#[test]
fn taken_port_moves_to_the_next_free_one() {
    let t = tempdir();
    let src = p(t.path(), "src");
    write_files(&src, &[("p.bin", &data(20_000, 4))]);
    let torrent = p(t.path(), "p.torrent");
    create_torrent(&p(&src, "p.bin"), &torrent, "16K", &[]);
    // Hold a port (and find one whose successor is free to keep the test deterministic).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut h = Hive::start(&torrent, &src, &["--port", &port.to_string(), "--no-seed"]);
    let got = h.wait_event("listening")["port"].as_u64().unwrap() as u16;
    assert!(
        got > port && got <= port.saturating_add(9),
        "{port} -> {got}"
    );
    assert_eq!(h.wait_exit(), 0, "{}", h.stderr());
}

#[test]
fn seed_time_and_seed_ratio_end_seeding() {
    let t = tempdir();
    let src = p(t.path(), "src");
    write_files(&src, &[("s.bin", &data(100_000, 8))]);
    let torrent = p(t.path(), "s.torrent");
    create_torrent(&p(&src, "s.bin"), &torrent, "16K", &[]);
    // Complete at start: seeding begins at once and ends by policy, with exit code 0.
    for (args, why) in [
        (["--seed-time", "1s"], "--seed-time"),
        (["--seed-ratio", "0"], "--seed-ratio"),
    ] {
        let mut h = Hive::start(&torrent, &src, &args);
        assert_eq!(h.wait_exit(), 0, "{}", h.stderr());
        let stop = h.wait_event("stopping");
        assert!(stop["reason"].as_str().unwrap().contains(why), "{stop}");
    }
}
