//! `hive-sim`: whole swarms of Hive cores on a virtual clock.
#![forbid(unsafe_code)]

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let peers: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let k = hive_sim::Knobs {
        peers,
        pieces: 64,
        piece_length: 16384,
    };
    let sc =
        hive_sim::scenario::builtin(args.get(2).map_or("flash-crowd", |s| s.as_str()), &k).unwrap();
    let t = std::time::Instant::now();
    let r = hive_sim::run(
        sc,
        hive_sim::RunOptions {
            seed: 1,
            progress: true,
        },
    )
    .unwrap();
    println!(
        "finished {} end {:.2}s events {} conns {} failures {:?}",
        r.finished,
        r.end_time as f64 / 1e6,
        r.events,
        r.connections,
        r.failures
    );
    for (i, n) in r.nodes.iter().enumerate().take(12) {
        println!(
            "{i}: arr {:?} done {:?} up {} down {} bans {} banned_by {}",
            n.arrived, n.completed, n.uploaded, n.downloaded, n.bans_issued, n.banned_by
        );
    }
    println!("wall {:?} trace hash: {}", t.elapsed(), r.trace_hash);
}
