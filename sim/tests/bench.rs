//! The benchmark's row: its wall time over the reference run `bench` passes in.

use std::process::Command;

fn bench_one(extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hive-sim"))
        .arg("bench-one")
        .args(extra)
        .args([
            "flash-crowd",
            "--peers",
            "4",
            "--pieces",
            "4",
            "--seed",
            "1",
        ])
        .output()
        .unwrap()
}

/// A row carries the reference and the ratio of its wall time to it; without `--ref` both
/// columns say `-`.
#[test]
fn a_row_reports_its_ratio_to_the_reference() {
    let out = bench_one(&["--ref", "0.5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = String::from_utf8_lossy(&out.stdout).to_string();
    let cols: Vec<&str> = row.split_whitespace().collect();
    // leechers pieces piece(2 words) threads wall ref ratio ...
    let wall: f64 = cols[5].parse().unwrap();
    assert_eq!(cols[6], "0.50", "{row}");
    let ratio: f64 = cols[7].parse().unwrap();
    assert!((ratio - wall / 0.5).abs() <= 0.2, "{row}");
    assert_eq!(cols.last(), Some(&"ok"), "{row}");

    let out = bench_one(&[]);
    let row = String::from_utf8_lossy(&out.stdout).to_string();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!((cols[6], cols[7]), ("-", "-"), "{row}");
}

/// A reference that is not a number is refused with a message saying so.
#[test]
fn a_bad_reference_is_refused() {
    let out = bench_one(&["--ref", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ref soon: not a number"));
}
