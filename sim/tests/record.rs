//! `hive-sim run --record`: the record changes nothing in the run, is byte-for-byte
//! reproducible, and its format (version 1) is pinned by snapshots.

use std::path::Path;

use hive_sim::record::Recorder;
use hive_sim::scenario::{Knobs, builtin};
use hive_sim::{Engine, RunOptions, RunResult};

fn small() -> hive_sim::Scenario {
    let knobs = Knobs {
        peers: 6,
        pieces: 24,
        piece_length: 16 * 1024,
    };
    builtin("flash-crowd", &knobs).unwrap()
}

fn run(record: Option<&Path>) -> RunResult {
    let mut e = Engine::new(
        small(),
        RunOptions {
            seed: 5,
            progress: false,
            threads: 0,
        },
    )
    .unwrap();
    if let Some(p) = record {
        let f = std::fs::File::create(p).unwrap();
        e.record(Recorder::new(
            Box::new(std::io::BufWriter::new(f)),
            1_000_000,
        ));
    }
    let r = e.run().unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(r.record_error, None);
    r
}

#[test]
fn recording_does_not_change_the_run_and_repeats_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.rec"), dir.path().join("b.rec"));
    let plain = run(None);
    let ra = run(Some(&a));
    let rb = run(Some(&b));
    assert_eq!(plain.trace_hash, ra.trace_hash, "--record changed the run");
    assert_eq!(plain.events, ra.events);
    assert_eq!(ra.trace_hash, rb.trace_hash);
    let (x, y) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(x.len() > 1000, "a record of {} bytes", x.len());
    assert!(x == y, "the same scenario and seed gave different records");
}

#[test]
fn record_format_version_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.rec");
    let r = run(Some(&path));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let header = &lines[0];
    assert_eq!(header["format"], "hive-sim-record");
    assert_eq!(header["version"], 1);
    insta::assert_snapshot!(
        "record_header",
        serde_json::to_string_pretty(header).unwrap()
    );
    // Every line after the header: t, n (but for `end`), k; times never go back.
    let mut last = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for l in &lines[1..] {
        let t = l["t"].as_u64().unwrap();
        assert!(t >= last, "time went back at {l}");
        last = t;
        let k = l["k"].as_str().unwrap();
        assert!(k == "end" || l["n"].is_u64(), "{l}");
        kinds.insert(k.to_owned());
    }
    let end = lines.last().unwrap();
    assert_eq!(end["k"], "end");
    assert_eq!(end["t"], r.end_time);
    assert_eq!(end["finished"], true);
    for k in ["arrive", "join", "s", "complete", "end"] {
        assert!(kinds.contains(k), "no {k} line in {kinds:?}");
    }
    // Each leecher's `got` lists name every piece exactly once.
    for n in 1..=6 {
        let mut got: Vec<u64> = lines
            .iter()
            .filter(|l| l["n"] == n && l["k"] == "s")
            .flat_map(|l| l["got"].as_array().cloned().unwrap_or_default())
            .map(|p| p.as_u64().unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..24).collect::<Vec<u64>>(), "node {n}");
    }
    // The first line of each kind as written: the layout of each kind, pinned.
    let mut first = std::collections::BTreeMap::new();
    for (raw, l) in text.lines().zip(&lines).skip(1) {
        first.entry(l["k"].as_str().unwrap()).or_insert(raw);
    }
    let first: Vec<&str> = first.into_values().collect();
    insta::assert_snapshot!("record_first_line_of_each_kind", first.join("\n"));
}
