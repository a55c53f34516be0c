//! Disk behaviour end to end: resume after `kill -9`, a resume file trusted on restart, and
//! clear errors when the output cannot be written (not a folder, read-only, full).

mod support;

use std::process::Command;

use support::*;

#[test]
fn kill_9_then_restart_finishes_without_refetching_verified_pieces() {
    let t = tempdir();
    let (src, dst) = (p(t.path(), "src"), p(t.path(), "dst"));
    let len = 2_000_000u64;
    write_files(&src, &[("r.bin", &data(len as usize, 21))]);
    let torrent = p(t.path(), "r.torrent");
    create_torrent(&p(&src, "r.bin"), &torrent, "16K", &[]);
    // A slow seeder, so that the leecher is caught in the middle.
    let mut seed = Hive::start(&torrent, &src, &["--upload-limit", "1M"]);
    let addr = seed.addr().to_string();
    let mut leech = Hive::start(&torrent, &dst, &["--peer", &addr]);
    let total = leech.wait_event("on_disk")["total"].as_u64().unwrap();
    leech.wait_for("a third of the pieces", |v| {
        v["event"] == "progress" && v["pieces"].as_u64().unwrap() * 3 >= total
    });
    leech.kill9();

    let mut again = Hive::start(&torrent, &dst, &["--no-seed", "--peer", &addr]);
    let on_disk = again.wait_event("on_disk");
    let have = on_disk["have"].as_u64().unwrap();
    assert!(have * 3 >= total, "verified pieces recognised: {on_disk}");
    assert_eq!(again.wait_exit(), 0, "{}", again.stderr());
    assert_same_tree(&p(&src, "r.bin"), &p(&dst, "r.bin"));
    // This run fetched only what was missing.
    let last = again
        .seen
        .iter()
        .rev()
        .find(|v| v["event"] == "progress")
        .unwrap();
    let downloaded = last["downloaded"].as_u64().unwrap();
    assert!(
        downloaded <= len - have * 16_384 + 16_384,
        "downloaded {downloaded} of {len} with {have} pieces on disk"
    );

    // Complete now, with a resume file written at exit: the next start trusts it.
    let mut third = Hive::start(&torrent, &dst, &["--no-seed"]);
    let v = third.wait_event("on_disk");
    assert_eq!(v["source"], "resume file", "{v}");
    assert_eq!(v["have"], v["total"]);
    assert_eq!(third.wait_exit(), 0);
    seed.interrupt();
    assert_eq!(seed.wait_exit(), 0);
}

#[test]
fn output_that_is_not_a_folder_is_a_clear_error() {
    let t = tempdir();
    let src = p(t.path(), "src");
    write_files(&src, &[("x.bin", &data(50_000, 3))]);
    let torrent = p(t.path(), "x.torrent");
    create_torrent(&p(&src, "x.bin"), &torrent, "16K", &[]);
    let out = Command::new(hive_bin())
        .arg(&torrent)
        .arg("-o")
        .arg(p(&src, "x.bin"))
        .args(["--no-seed", "--port", "0", "-q"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("is not a directory") && err.contains("-o"),
        "{err}"
    );
}

#[test]
fn read_only_output_is_a_clear_error() {
    let t = tempdir();
    let src = p(t.path(), "src");
    write_files(&src, &[("x.bin", &data(50_000, 3))]);
    let torrent = p(t.path(), "x.torrent");
    create_torrent(&p(&src, "x.bin"), &torrent, "16K", &[]);
    let ro = p(t.path(), "ro");
    std::fs::create_dir(&ro).unwrap();
    let mut perms = std::fs::metadata(&ro).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
    std::fs::set_permissions(&ro, perms).unwrap();
    if std::fs::write(p(&ro, "probe"), b"").is_ok() {
        // Root ignores permissions; the not-a-folder and file-size tests cover the path.
        eprintln!("skipped: running as root, a read-only folder is writable");
        return;
    }
    let out = Command::new(hive_bin())
        .arg(&torrent)
        .arg("-o")
        .arg(&ro)
        .args(["--no-seed", "--port", "0", "-q"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("ermission denied") && err.contains("writable"),
        "{err}"
    );
}

#[test]
fn full_disk_stops_with_a_clear_error_and_keeps_verified_data() {
    if !have_program("bash", "bash") {
        return;
    }
    let t = tempdir();
    let (src, dst) = (p(t.path(), "src"), p(t.path(), "dst"));
    write_files(&src, &[("big.bin", &data(1_000_000, 31))]);
    let torrent = p(t.path(), "big.torrent");
    create_torrent(&p(&src, "big.bin"), &torrent, "16K", &[]);
    let mut seed = Hive::start(&torrent, &src, &[]);
    let addr = seed.addr().to_string();
    // A file-size limit of 256 KiB (ulimit -f, in KiB in bash) stands in for a full disk: a
    // write past it fails with EFBIG, as one on a full disk fails with ENOSPC. (An unprivileged
    // test cannot mount a tiny tmpfs.)
    let mut cmd = Command::new("bash");
    cmd.args(["-c", "ulimit -f 256; exec \"$0\" \"$@\"", hive_bin()]);
    let mut leech = Hive::start_cmd(cmd, &torrent, &dst, &["--no-seed", "--peer", &addr]);
    let code = leech.wait_exit();
    let err = leech.stderr();
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("writing block") && err.contains("File too large"),
        "{err}"
    );
    assert!(err.contains("verified data is kept"), "{err}");
    assert!(leech.seen.iter().any(|v| v["event"] == "torrent_error"));

    let verified = leech.seen.iter().filter(|v| v["event"] == "piece").count() as u64;

    // Without the limit the same command resumes (every piece verified before the error is
    // still known) and finishes.
    let mut again = Hive::start(&torrent, &dst, &["--no-seed", "--peer", &addr]);
    let v = again.wait_event("on_disk");
    assert_eq!(v["have"].as_u64().unwrap(), verified, "{v}");
    assert_eq!(again.wait_exit(), 0, "{}", again.stderr());
    assert_same_tree(&p(&src, "big.bin"), &p(&dst, "big.bin"));
    seed.interrupt();
    assert_eq!(seed.wait_exit(), 0);
}

#[test]
fn a_torrent_of_more_files_than_descriptors_downloads() {
    let t = tempdir();
    let (src, dst) = (p(t.path(), "src"), p(t.path(), "dst"));
    // 600 files under a descriptor limit of 200 (`ulimit -n`, for both seed and leecher): with
    // every file held open, both would fail at start with "Too many open files".
    let files: Vec<(String, Vec<u8>)> = (0..600)
        .map(|i| {
            (
                format!("many/d{}/f{i:03}.bin", i % 7),
                data(1_000 + i * 37, i as u64),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    write_files(&src, &refs);
    let torrent = p(t.path(), "many.torrent");
    create_torrent(&p(&src, "many"), &torrent, "16K", &[]);
    let limited = || {
        let mut cmd = Command::new("bash");
        cmd.args(["-c", "ulimit -n 200; exec \"$0\" \"$@\"", hive_bin()]);
        cmd
    };
    let mut seed = Hive::start_cmd(limited(), &torrent, &src, &[]);
    let addr = seed.addr().to_string();
    let mut leech = Hive::start_cmd(limited(), &torrent, &dst, &["--no-seed", "--peer", &addr]);
    assert_eq!(leech.wait_exit(), 0, "{}", leech.stderr());
    assert_same_tree(&p(&src, "many"), &p(&dst, "many"));
    seed.interrupt();
    assert_eq!(seed.wait_exit(), 0, "{}", seed.stderr());
}
