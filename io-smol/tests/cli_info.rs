//! `hive-smol info` run as a real process: snapshots of the text output for real torrents,
//! JSON validity, exit codes and error messages.

use std::path::PathBuf;
use std::process::{Command, Output};

/// `shared/vectors`, found like `hive_tests::shared_dir` does.
fn vectors() -> PathBuf {
    if let Some(dir) = std::env::var_os("HIVE_SHARED") {
        return PathBuf::from(dir).join("vectors");
    }
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors");
    if beside.is_dir() {
        return beside;
    }
    PathBuf::from("/work/shared/vectors")
}

fn info(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hive-smol"))
        .arg("info")
        .args(args)
        .output()
        .expect("run hive-smol")
}

fn vector(rel: &str) -> String {
    vectors().join(rel).to_str().expect("utf-8 path").to_owned()
}

fn stdout_of(args: &[&str]) -> String {
    let out = info(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[test]
fn text_ubuntu() {
    insta::assert_snapshot!(stdout_of(&[&vector(
        "transmission/ubuntu-20.04.4-desktop-amd64.iso.torrent"
    )]));
}

#[test]
fn text_librivox_multi_file() {
    insta::assert_snapshot!(stdout_of(&[&vector(
        "transmission/alice_in_wonderland_librivox_archive.torrent"
    )]));
}

#[test]
fn text_android_hybrid() {
    insta::assert_snapshot!(stdout_of(&[&vector(
        "transmission/Android-x86_8.1_r6_iso.torrent"
    )]));
}

#[test]
fn json_is_valid_and_complete() {
    let text = stdout_of(&[
        "--json",
        &vector("transmission/alice_in_wonderland_librivox_archive.torrent"),
    ]);
    assert_eq!(text.lines().count(), 1, "one object on one line");
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["name"], "alice_in_wonderland_librivox");
    assert_eq!(v["info_hash"], "55e5f8c36e7cb3208b164f31d3e0b28b0e687d04");
    assert_eq!(v["total_size"], 458_775_682u64);
    assert_eq!(v["piece_count"], 876);
    assert_eq!(v["private"], false);
    assert_eq!(v["creation_date"], "2022-03-02T21:41:04Z");
    assert_eq!(v["files"].as_array().unwrap().len(), 106);
    assert_eq!(v["trackers"][1][0], "http://bt2.archive.org:6969/announce");
    assert_eq!(v["web_seeds"].as_array().unwrap().len(), 2);
    // The comment has newlines and quotes; it must survive escaping.
    assert!(v["comment"].as_str().unwrap().contains('\n'));

    // Control characters and odd names in paths and fields.
    let v: serde_json::Value = serde_json::from_str(&stdout_of(&[
        "--json",
        &vector("transmission/bad-utf8-path.torrent"),
    ]))
    .expect("valid JSON");
    assert_eq!(v["files"][1]["path"][1], "file_.foo");
    insta::assert_snapshot!(stdout_of(&["--json", &vector("libtorrent/sample.torrent")]));
}

fn assert_clean_failure(out: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn errors_name_the_problem() {
    assert_clean_failure(
        &info(&[&vector("libtorrent/missing_piece_len.torrent")]),
        3,
        "not a usable torrent: info.piece length is missing",
    );
    assert_clean_failure(
        &info(&[&vector("libtorrent/unaligned_pieces.torrent")]),
        3,
        "info.pieces length 24 is not a multiple of 20",
    );
    assert_clean_failure(
        &info(&[&vector("transmission/dup-pieces-key.torrent")]),
        3,
        "invalid bencode at byte",
    );
    assert_clean_failure(&info(&[&vector("libtorrent/v2_only.torrent")]), 3, "BEP 52");
    assert_clean_failure(
        &info(&[&vector("transmission/gimp-2.10.32-1-arm64.dmg.torrent")]),
        3,
        "c047b87598f0f4c2bae51dadf4c9fa0269d2cb19",
    );
    assert_clean_failure(
        &info(&["/nonexistent/x.torrent"]),
        3,
        "cannot read /nonexistent/x.torrent",
    );
    assert_clean_failure(&info(&[&vector("")]), 3, "cannot read");
    assert_clean_failure(
        &info(&["magnet:?xt=urn:btih:2e34989b1c60df82"]),
        3,
        "not a usable magnet URI",
    );
}

#[test]
fn text_magnet() {
    let uri = std::fs::read_to_string(vector(
        "transmission/archlinux-2025.05.01-x86_64.iso.magnet",
    ))
    .expect("read the magnet vector");
    insta::assert_snapshot!(stdout_of(&[uri.trim()]));
}

#[test]
fn json_magnet() {
    let out = stdout_of(&[
        "--json",
        "magnet:?xt=urn:btih:2e34989b1c60df821b2d046c884d8f4d1858b97a&dn=x%22y&tr=udp%3A%2F%2Ft.example%3A80",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["info_hash"], "2e34989b1c60df821b2d046c884d8f4d1858b97a");
    assert_eq!(v["name"], "x\"y");
    assert_eq!(v["trackers"][0][0], "udp://t.example:80");
}
