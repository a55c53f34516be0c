//! Scenario tests of the simulator (`hive-sim`): small swarms of real Sessions, fast enough
//! for CI in a debug build. Summary snapshots pin the behaviour of whole swarms for fixed
//! seeds; a change to the core that alters it shows up as a snapshot diff to review (accept
//! with `INSTA_UPDATE=always cargo test -p hive-tests --test sim_scenarios`).

use hive_sim::report::Summary;
use hive_sim::scenario::{Knobs, Scenario, TrackerKind, builtin};
use hive_sim::{RunOptions, RunResult};

fn small(name: &str, peers: u32) -> Scenario {
    let knobs = Knobs {
        peers,
        pieces: 32,
        piece_length: 16 * 1024,
    };
    builtin(name, &knobs).unwrap()
}

fn run(sc: Scenario, seed: u64) -> RunResult {
    run_on(sc, seed, 0)
}

fn run_on(sc: Scenario, seed: u64, threads: usize) -> RunResult {
    hive_sim::run(
        sc,
        RunOptions {
            seed,
            progress: false,
            threads,
        },
    )
    .unwrap()
}

/// What the CLI prints: the seed, the table, the trace hash.
fn printed(r: &RunResult) -> String {
    let s = Summary::of(r);
    format!(
        "seed: {}\n{}trace hash: {}\n",
        r.seed,
        s.table(),
        r.trace_hash
    )
}

fn group<'a>(s: &'a Summary, name: &str) -> &'a hive_sim::report::GroupSummary {
    s.groups.iter().find(|g| g.name == name).unwrap()
}

#[test]
fn flash_crowd_summary() {
    let r = run(small("flash-crowd", 8), 7);
    let s = Summary::of(&r);
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    assert!(s.finished);
    assert_eq!(group(&s, "leechers").completed, 8);
    // Every piece came from the seed at least once: at least one copy.
    assert!(s.original_seed.copies >= 1.0);
    insta::assert_snapshot!(printed(&r));
}

#[test]
fn corrupt_peer_is_banned() {
    let r = run(small("corrupt-peer", 8), 3);
    let s = Summary::of(&r);
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    assert_eq!(
        group(&s, "leechers").completed,
        8,
        "the swarm completes anyway"
    );
    let liar = r.nodes.iter().position(|n| n.group == 1).unwrap();
    assert!(
        r.nodes[liar].banned_by >= 1,
        "nobody banned the liar: {:?}",
        r.nodes[liar]
    );
    // Only the liar is banned, and its data really failed the leechers' checks.
    assert_eq!(s.banned_nodes, 1);
    assert!(s.hash_failures >= 1);
    assert!(s.waste.hash_failed_bytes > 0);
    insta::assert_snapshot!(printed(&r));
}

#[test]
fn free_riders_get_less_than_contributors() {
    // Long enough (16 MiB at 512 KiB/s uploads) for several 10 s choke rounds.
    let knobs = Knobs {
        peers: 16,
        pieces: 64,
        piece_length: 256 * 1024,
    };
    let r = run(builtin("free-riders", &knobs).unwrap(), 5);
    let s = Summary::of(&r);
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    let riders = group(&s, "free-riders");
    let normal = group(&s, "leechers");
    assert_eq!(riders.uploaded_bytes, 0, "free-riders never upload");
    assert_eq!(
        riders.completed + normal.completed,
        riders.nodes + normal.nodes
    );
    // Tit-for-tat: contributors are served first; free-riders live on the seed and
    // optimistic unchokes. With 4 free-riders one run's medians are noisy (either group can
    // win by a second on an unlucky seed), so the claims are on five seeds together.
    let rate = |g: &hive_sim::report::GroupSummary| {
        g.downloaded_bytes as f64 / f64::from(g.nodes) / g.completion_s.as_ref().unwrap().p50
    };
    let (mut gaps, mut rates) = (Vec::new(), (0.0, 0.0));
    for seed in 1..=5 {
        let s = Summary::of(&run(builtin("free-riders", &knobs).unwrap(), seed));
        let (riders, normal) = (group(&s, "free-riders"), group(&s, "leechers"));
        let p50 = |g: &hive_sim::report::GroupSummary| g.completion_s.as_ref().unwrap().p50;
        gaps.push(p50(riders) - p50(normal));
        rates.0 += rate(riders);
        rates.1 += rate(normal);
    }
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    assert!(
        mean > 0.0,
        "free-riders' medians are not slower than contributors' on average: {gaps:?}"
    );
    assert!(
        rates.0 < rates.1,
        "free-riders download faster than contributors: {rates:?}"
    );
    insta::assert_snapshot!(printed(&r));
}

/// The mixed-links crowd behind a UDP tracker that loses, duplicates and delays datagrams.
fn lossy_mixed_links(peers: u32) -> Scenario {
    let mut sc = small("mixed-links", peers);
    sc.tracker.kind = TrackerKind::Udp;
    sc.tracker.loss = 0.2;
    sc.tracker.duplicate = 0.1;
    sc.tracker.jitter = hive_sim::scenario::Dur::millis(30);
    sc
}

#[test]
fn same_seed_same_trace_different_seed_different_trace() {
    // UDP with loss, duplication and jitter, and link jitter: every random draw matters.
    let sc = lossy_mixed_links(10);
    let a = run(sc.clone(), 11);
    let b = run(sc.clone(), 11);
    let c = run(sc, 12);
    assert!(a.failures.is_empty(), "{:?}", a.failures);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.events, b.events);
    assert_eq!(printed(&a), printed(&b));
    assert_ne!(a.trace_hash, c.trace_hash);
}

#[test]
fn any_number_of_threads_gives_the_same_run() {
    // Random draws everywhere (UDP loss, duplication and jitter, link jitter), arrivals and
    // departures (churn), and more nodes than one shard holds... at every thread count.
    let lossy = lossy_mixed_links(70);
    let mut churn = small("churn", 24);
    churn.run.max_time = hive_sim::scenario::Dur::secs(300);
    for (sc, seed) in [(lossy, 4), (churn, 6)] {
        let one = run_on(sc.clone(), seed, 1);
        let json = |r: &RunResult| serde_json::to_string(&Summary::of(r)).unwrap();
        for threads in [2, 3] {
            let many = run_on(sc.clone(), seed, threads);
            assert_eq!(
                one.trace_hash, many.trace_hash,
                "{} on {threads} threads",
                sc.name
            );
            assert_eq!(one.events, many.events);
            assert_eq!(json(&one), json(&many));
        }
    }
}

#[test]
fn zero_latency_links_run_and_stay_deterministic() {
    // A zero lookahead: every window is one instant (the engine then uses one node shard).
    let mut sc = small("flash-crowd", 20);
    for g in &mut sc.groups {
        g.latency = hive_sim::scenario::Dur::millis(0);
        g.jitter = hive_sim::scenario::Dur::millis(0);
    }
    let one = run_on(sc.clone(), 5, 1);
    assert!(one.failures.is_empty(), "{:?}", one.failures);
    let s = Summary::of(&one);
    assert!(s.finished);
    assert_eq!(group(&s, "leechers").completed, 20);
    let two = run_on(sc, 5, 2);
    assert_eq!(one.trace_hash, two.trace_hash);
    assert_eq!(one.events, two.events);
}

#[test]
fn batched_haves_pass_the_checks_in_fewer_events() {
    // `run.have_batch`: every node holds its haves up to 250 ms (Transmission and Vuze batch
    // them too). The swarm still completes with every check passing (no block is requested
    // from a peer before its have arrived), in fewer events: haves travel together.
    let sc = small("flash-crowd", 30);
    let at_once = run(sc.clone(), 3);
    let mut batched_sc = sc;
    batched_sc.run.have_batch = Some(hive_sim::scenario::Dur::millis(250));
    let batched = run_on(batched_sc.clone(), 3, 1);
    assert!(batched.failures.is_empty(), "{:?}", batched.failures);
    let s = Summary::of(&batched);
    assert!(s.finished);
    assert_eq!(group(&s, "leechers").completed, 30);
    assert!(
        batched.events < at_once.events,
        "{} events batched, {} at once",
        batched.events,
        at_once.events
    );
    assert_ne!(batched.trace_hash, at_once.trace_hash);
    assert_eq!(batched.trace_hash, run_on(batched_sc, 3, 2).trace_hash);
}

#[test]
fn every_built_in_passes_its_checks_when_small() {
    for (name, _) in hive_sim::scenario::BUILTINS {
        let r = run(small(name, 6), 1);
        let s = Summary::of(&r);
        assert!(s.failures.is_empty(), "{name}: {:?}", s.failures);
        assert!(s.trace_hash.len() == 16, "{name}");
    }
}

#[test]
fn seed_leaving_after_one_copy_leaves_after_one_copy() {
    let r = run(small("seed-leaves", 6), 2);
    let s = Summary::of(&r);
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    assert!(s.original_seed.departed_s.is_some());
    // It left at the first transmit past one copy: at most a send buffer's worth more.
    assert!(s.original_seed.copies >= 1.0 && s.original_seed.copies < 1.2);
    // One copy's worth of bytes is not every piece: if data was lost the run says so and
    // stops soon after instead of running to the time limit.
    match &s.stopped {
        None => assert!(s.finished && s.pieces_available_at_end == s.pieces),
        Some(why) => {
            assert!(why.contains("data lost"), "{why}");
            assert!(s.pieces_available_at_end < s.pieces);
            assert!(s.sim_time_s < 600.0, "{}", s.sim_time_s);
        }
    }
}

#[test]
fn json_has_the_seed_first_and_the_trace_hash_last() {
    let r = run(small("flash-crowd", 3), 9);
    let json = serde_json::to_string(&Summary::of(&r)).unwrap();
    assert!(json.starts_with("{\"seed\":9,"), "{}", &json[..40]);
    assert!(
        json.ends_with(&format!("\"trace_hash\":\"{}\"}}", r.trace_hash)),
        "{}",
        &json[json.len() - 60..]
    );
}

#[test]
fn example_scenario_files_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sim/scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 3);
}

#[test]
fn bad_scenarios_are_refused_with_a_reason() {
    let cases = [
        (
            "name = 'x'\n[torrent]\npiece_length = '10K'\npieces = 4\n[[group]]\nname='s'\ncount=1\nseed=true\nupload=0\ndownload=0\n",
            "power of two",
        ),
        (
            "name = 'x'\n[torrent]\npiece_length = '16K'\npieces = 4\n[[group]]\nname='l'\ncount=1\nupload=0\ndownload=0\n",
            "seed = true",
        ),
        (
            "name = 'x'\n[torrent]\npiece_length = '16K'\npieces = 4\n[[group]]\nname='s'\ncount=1\nseed=true\nupload='fast'\ndownload=0\n",
            "unknown size unit",
        ),
        (
            "name = 'x'\n[torrent]\npiece_length = '16K'\npieces = 4\nbogus = 1\n",
            "bogus",
        ),
    ];
    for (text, needle) in cases {
        let err = Scenario::from_toml(text).unwrap_err();
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    }
}

#[test]
fn the_step_limit_fails_the_run_clearly() {
    let mut sc = small("flash-crowd", 4);
    sc.run.max_steps = 200;
    let err = hive_sim::run(
        sc,
        RunOptions {
            seed: 1,
            progress: false,
            threads: 0,
        },
    )
    .err()
    .unwrap();
    assert!(err.contains("step limit"), "{err}");
}
