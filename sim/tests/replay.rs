//! `hive-sim view`'s messages: a record read back into schema-1 messages (`source:
//! "replay"`), pinned by insta snapshots; consistency with the run; the CLI's access rule.

use hive_sim::record::Recorder;
use hive_sim::replay::Replay;
use hive_sim::scenario::{Knobs, builtin};
use hive_sim::{Engine, RunOptions, RunResult};
use serde_json::Value;

fn recorded() -> (RunResult, String) {
    let knobs = Knobs {
        peers: 4,
        pieces: 24,
        piece_length: 64 * 1024,
    };
    let mut e = Engine::new(
        builtin("flash-crowd", &knobs).unwrap(),
        RunOptions {
            seed: 2,
            progress: false,
            threads: 0,
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.rec");
    let f = std::fs::File::create(&path).unwrap();
    e.record(Recorder::new(Box::new(std::io::BufWriter::new(f)), 250_000));
    let r = e.run().unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    (r, std::fs::read_to_string(&path).unwrap())
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

#[test]
fn replay_messages_schema_1() {
    let (r, text) = recorded();
    let replay = Replay::parse(&text).unwrap();
    assert_eq!(replay.nodes, 5);
    assert_eq!(replay.end, r.end_time);
    assert!(replay.finished);
    assert_eq!(replay.default_node(), 1, "the first leecher");
    let hello = replay.hello();
    assert_eq!(hello["source"], "replay");
    assert_eq!(hello["schema"], 1);
    insta::assert_snapshot!("replay_hello", pretty(&hello));

    // Node 1 half-way: the live view's snapshot fields, plus `replay` and `history`.
    let mid = r.end_time / 2;
    let s = replay.snapshot(1, mid);
    assert_eq!(s["type"], "snapshot");
    // One point per 250 ms of the last minute (fewer at the start of a run).
    let points = (mid / 250_000 + 1).min(240) as usize;
    assert_eq!(s["history"].as_array().unwrap().len(), points);
    let mut pinned = s.clone();
    // The rate graph is long and dull; its shape is checked above.
    pinned["history"] = Value::from(format!("({points} points)"));
    insta::assert_snapshot!("replay_snapshot_node_1_mid", pretty(&pinned));

    // Events of the whole run for node 1, at most 8 (the latest).
    let ev = replay.events(1, 0, r.end_time);
    assert!(!ev.is_empty() && ev.len() <= 8);
    assert!(ev.iter().all(|e| e["type"] == "event"));
    insta::assert_snapshot!("replay_events_node_1", pretty(&Value::Array(ev)));
}

#[test]
fn replay_agrees_with_the_run() {
    let (r, text) = recorded();
    let replay = Replay::parse(&text).unwrap();
    for n in 0..replay.nodes {
        let rec = &r.nodes[n as usize];
        let end = replay.snapshot(n, r.end_time);
        let done = rec.completed.is_some_and(|c| c <= r.end_time);
        assert_eq!(
            end["torrent"]["progress"] == 1.0,
            done,
            "node {n}: {}",
            end["torrent"]
        );
        if done {
            assert_eq!(end["torrent"]["left"], 0);
            assert_eq!(end["pieces"]["state"], "h".repeat(24));
            assert_eq!(
                end["replay"]["completed"],
                rec.completed.unwrap() as f64 / 1e6
            );
        }
        // At t = 0 nobody is connected and leechers have nothing.
        let start = replay.snapshot(n, 0);
        assert_eq!(start["peers"].as_array().unwrap().len(), 0);
        assert_eq!(start["torrent"]["progress"] == 1.0, rec.seed);
    }
    // Somewhere in the run node 1 has peers, each named by its node, with flags.
    let busy = (0..r.end_time)
        .step_by(100_000)
        .map(|t| replay.snapshot(1, t))
        .find(|s| s["peers"].as_array().unwrap().len() >= 2)
        .expect("node 1 never had two peers");
    for p in busy["peers"].as_array().unwrap() {
        let j = p["node"].as_u64().unwrap();
        assert!(j < 5 && j != 1, "{p}");
        assert!(
            p["am_choking"].is_boolean() && p["progress"].is_f64(),
            "{p}"
        );
    }
}

#[test]
fn bad_records_are_refused_with_a_reason() {
    let e = Replay::parse("hello\n").err().unwrap().to_string();
    assert!(e.contains("not a hive-sim record"), "{e}");
    let e = Replay::parse(r#"{"format":"hive-sim-record","version":99}"#)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("version 99") && e.contains("reads version 1"),
        "{e}"
    );
    let (_, text) = recorded();
    let broken = format!("{text}{{\"t\":1,\"n\":999,\"k\":\"s\"}}\n");
    let e = Replay::parse(&broken).err().unwrap().to_string();
    assert!(e.starts_with("line ") && e.contains("node 999"), "{e}");
}

#[test]
fn view_refuses_a_non_loopback_address_without_a_token() {
    let (_, text) = recorded();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.rec");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hive-sim"))
        .arg("view")
        .arg(&path)
        .args(["--ui", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("--ui-token"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hive-sim"))
        .arg("view")
        .arg(&path)
        .args(["--node", "77"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nodes 0 to 4"));
}
