//! `hive-sim`: whole swarms of Hive cores on a virtual clock.
//!
//! ```text
//! hive-sim run SCENARIO.toml|BUILT-IN [--seed N] [--out DIR] [--json] [--record FILE] [knobs]
//! hive-sim view FILE [--ui ADDR] [--ui-token TOKEN] [--node N]
//! hive-sim list
//! hive-sim bench [--huge] [--repeat N] [--threads N]
//! ```
#![forbid(unsafe_code)]

/// mimalloc instead of the system allocator: a simulation allocates and frees segments and
/// blocks all the time, often on another thread than the one that allocated them (about
/// 10 % faster on the scale benchmark, for about a third more peak memory).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use hive_sim::record::Recorder;
use hive_sim::report::{Summary, bytes, svg};
use hive_sim::scenario::{self, BUILTINS, Knobs, Scenario, TrackerKind};
use hive_sim::{RunOptions, RunResult};

const USAGE: &str = "\
usage:
  hive-sim run SCENARIO.toml [--seed N] [--out DIR] [--json] [--max-time DUR] [--tracker http|udp]
                             [--have-batch DUR]
  hive-sim run BUILT-IN [--peers N] [--pieces N] [--piece-length SIZE] [same options]
  hive-sim view FILE [--ui ADDR] [--ui-token TOKEN] [--node N] [--at DUR] [--speed X] [--paused]
                                     replay a record in the swarm view (default 127.0.0.1:8080)
  hive-sim list                      the built-in scenarios
  hive-sim bench [--huge] [--repeat N] [--threads N] [--have-batch DUR]
                                     the scale benchmark (flash crowds; --huge adds 10,000 leechers x 100 pieces)

  --seed N     the run's seed (default: the scenario's, else 1); same seed, same trace hash
  --out DIR    also write DIR/summary.txt, DIR/summary.json and DIR/chart.svg
  --json       print the summary as JSON (its first key is the seed, its last the trace hash)
  --quiet      no progress line on stderr
  --threads N  worker threads (default: one per core); the results are the same with any number
  --have-batch DUR     every node holds its haves up to DUR to send them together
                       (run.have_batch; default 0: each goes at once)
  --record FILE        write the per-node event stream (JSON lines, README \"hive-sim view\")
  --record-every DUR   its sampling cadence in virtual time (default 1s)
";

struct Args {
    target: String,
    seed: Option<u64>,
    out: Option<PathBuf>,
    json: bool,
    quiet: bool,
    knobs: Knobs,
    knobs_given: bool,
    max_time: Option<u64>,
    have_batch: Option<u64>,
    tracker: Option<TrackerKind>,
    real_hash: bool,
    record: Option<PathBuf>,
    record_every: u64,
    threads: usize,
}

fn value<'a>(it: &mut impl Iterator<Item = &'a String>, flag: &str) -> Result<&'a String, String> {
    it.next().ok_or_else(|| format!("{flag} needs a value"))
}

/// `--threads N`: at least 1; more than the machine's cores is no use, so it is capped there.
fn parse_threads(v: &str) -> Result<usize, String> {
    let n: usize = v
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("--threads {v}: give a number of threads, at least 1"))?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    Ok(n.min(cores))
}

fn parse_run(args: &[String]) -> Result<Args, String> {
    let mut it = args.iter();
    let mut a = Args {
        target: String::new(),
        seed: None,
        out: None,
        json: false,
        quiet: false,
        knobs: Knobs::default(),
        knobs_given: false,
        max_time: None,
        have_batch: None,
        tracker: None,
        real_hash: false,
        record: None,
        record_every: 1_000_000,
        threads: 0,
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seed" => {
                let v = value(&mut it, arg)?;
                a.seed = Some(v.parse().map_err(|_| format!("--seed {v}: not a number"))?);
            }
            "--out" => a.out = Some(PathBuf::from(value(&mut it, arg)?)),
            "--json" => a.json = true,
            "--record" => a.record = Some(PathBuf::from(value(&mut it, arg)?)),
            "--record-every" => {
                a.record_every = scenario::parse_duration(value(&mut it, arg)?)?;
                if a.record_every == 0 {
                    return Err("--record-every must be positive".into());
                }
            }
            "--quiet" => a.quiet = true,
            "--threads" => a.threads = parse_threads(value(&mut it, arg)?)?,
            "--real-hash" => a.real_hash = true,
            "--peers" => {
                let v = value(&mut it, arg)?;
                a.knobs.peers = v
                    .parse()
                    .map_err(|_| format!("--peers {v}: not a number"))?;
                a.knobs_given = true;
            }
            "--pieces" => {
                let v = value(&mut it, arg)?;
                a.knobs.pieces = v
                    .parse()
                    .map_err(|_| format!("--pieces {v}: not a number"))?;
                a.knobs_given = true;
            }
            "--piece-length" => {
                a.knobs.piece_length = scenario::parse_size(value(&mut it, arg)?)?;
                a.knobs_given = true;
            }
            "--max-time" => a.max_time = Some(scenario::parse_duration(value(&mut it, arg)?)?),
            "--have-batch" => {
                a.have_batch = Some(scenario::parse_duration(value(&mut it, arg)?)?);
            }
            "--tracker" => {
                a.tracker = Some(match value(&mut it, arg)?.as_str() {
                    "http" => TrackerKind::Http,
                    "udp" => TrackerKind::Udp,
                    other => return Err(format!("--tracker {other}: use http or udp")),
                })
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s if a.target.is_empty() => a.target = s.to_owned(),
            s => return Err(format!("unexpected argument '{s}'")),
        }
    }
    if a.target.is_empty() {
        return Err("run: name a scenario file or a built-in (hive-sim list)".into());
    }
    Ok(a)
}

fn load(a: &Args) -> Result<Scenario, String> {
    let mut sc = if a.target.ends_with(".toml") || std::path::Path::new(&a.target).is_file() {
        if a.knobs_given {
            return Err(
                "--peers, --pieces and --piece-length are for built-ins; edit the file".into(),
            );
        }
        let text = std::fs::read_to_string(&a.target)
            .map_err(|e| format!("cannot read {}: {e}", a.target))?;
        Scenario::from_toml(&text).map_err(|e| format!("{}: {e}", a.target))?
    } else {
        scenario::builtin(&a.target, &a.knobs)?
    };
    if let Some(t) = a.max_time {
        sc.run.max_time = scenario::Dur(t);
    }
    if let Some(d) = a.have_batch {
        sc.run.have_batch = Some(scenario::Dur(d));
    }
    if let Some(k) = a.tracker {
        sc.tracker.kind = k;
    }
    if a.real_hash {
        sc.torrent.real_hash = true;
    }
    sc.validate()?;
    Ok(sc)
}

/// `hive-sim view FILE [--ui ADDR] [--ui-token TOKEN] [--node N] [--at SECS] [--speed X]
/// [--paused]`.
fn cmd_view(args: &[String]) -> Result<ExitCode, String> {
    let mut it = args.iter();
    let mut file = None;
    let mut addr: std::net::SocketAddr = ([127, 0, 0, 1], 8080).into();
    let mut token = None;
    let mut node = None;
    let mut start = hive_sim::view::Start {
        node: 0,
        at: 0,
        speed: 1.0,
        playing: true,
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--ui" => addr = hive_live::parse_addr(value(&mut it, arg)?)?,
            "--ui-token" => token = Some(value(&mut it, arg)?.clone()),
            "--node" => {
                let v = value(&mut it, arg)?;
                node = Some(
                    v.parse()
                        .map_err(|_| format!("--node {v}: not a node index"))?,
                );
            }
            "--at" => start.at = scenario::parse_duration(value(&mut it, arg)?)?,
            "--speed" => {
                let v = value(&mut it, arg)?;
                start.speed = v
                    .parse()
                    .ok()
                    .filter(|x: &f64| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| format!("--speed {v}: give a positive number, e.g. 8"))?;
            }
            "--paused" => start.playing = false,
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s if file.is_none() => file = Some(PathBuf::from(s)),
            s => return Err(format!("unexpected argument '{s}'")),
        }
    }
    let file = file.ok_or("view: name a record (write one with hive-sim run ... --record FILE)")?;
    hive_live::check_access(addr, token.as_deref()).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let replay =
        hive_sim::replay::Replay::parse(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    start.node = match node {
        Some(n) if n < replay.nodes => n,
        Some(n) => {
            return Err(format!(
                "--node {n}: the run has nodes 0 to {}",
                replay.nodes.saturating_sub(1)
            ));
        }
        None => replay.default_node(),
    };
    let replay = std::sync::Arc::new(replay);
    smol::block_on(async {
        let listener = async_net::TcpListener::bind(addr).await.map_err(|e| {
            format!("cannot serve the view on {addr}: {e}; choose another with --ui ADDR:PORT")
        })?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        println!(
            "replay view: http://{local}/  ({} nodes, {:.1} s of {}, seed {}; node {} in the centre; Ctrl-C to stop)",
            replay.nodes,
            replay.end as f64 / 1e6,
            replay.scenario,
            replay.seed,
            start.node
        );
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        hive_sim::view::serve(replay, listener, token, start).await;
        Ok::<_, String>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Peak resident memory of this process (Linux), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn execute(a: &Args) -> Result<(RunResult, f64), String> {
    let sc = load(a)?;
    let seed = a.seed.or(sc.seed).unwrap_or(1);
    if !a.json {
        println!("seed: {seed}");
    }
    let wall = std::time::Instant::now();
    let mut engine = hive_sim::Engine::new(
        sc,
        RunOptions {
            seed,
            progress: !a.quiet,
            threads: a.threads,
        },
    )?;
    if let Some(path) = &a.record {
        let f = std::fs::File::create(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let w = std::io::BufWriter::with_capacity(1 << 20, f);
        engine.record(Recorder::new(Box::new(w), a.record_every));
    }
    let r = engine.run()?;
    if let Some(path) = &a.record {
        if let Some(e) = &r.record_error {
            return Err(format!("cannot write the record {}: {e}", path.display()));
        }
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        eprintln!(
            "wrote the record {} ({}); view it with: hive-sim view {}",
            path.display(),
            bytes(size),
            path.display()
        );
    }
    Ok((r, wall.elapsed().as_secs_f64()))
}

fn cmd_run(args: &[String]) -> Result<ExitCode, String> {
    let a = parse_run(args)?;
    let (r, wall) = execute(&a)?;
    let summary = Summary::of(&r);
    let json = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
    let table = summary.table();
    if a.json {
        println!("{json}");
    } else {
        print!("{table}");
    }
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
        };
        write(
            "summary.txt",
            &format!("seed: {}\n{table}trace hash: {}\n", r.seed, r.trace_hash),
        )?;
        write("summary.json", &format!("{json}\n"))?;
        write("chart.svg", &svg(&r, &summary))?;
        eprintln!(
            "wrote {}/summary.txt, summary.json, chart.svg",
            dir.display()
        );
    }
    eprintln!(
        "wall {wall:.2} s, {:.0} events/s, peak RSS {}",
        r.events as f64 / wall.max(1e-9),
        peak_rss().map_or("?".into(), bytes)
    );
    if !a.json {
        println!("trace hash: {}", r.trace_hash);
    }
    Ok(if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("hive-sim: {} check(s) failed", summary.failures.len());
        ExitCode::from(1)
    })
}

/// One benchmark configuration, run in this process: prints one result line.
fn bench_one(args: &[String]) -> Result<ExitCode, String> {
    // `--ref SECONDS`: the reference run of the calling `bench`, for the ratio column.
    let mut reference = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--ref" {
            let v = value(&mut it, arg)?;
            reference = Some(
                v.parse::<f64>()
                    .map_err(|_| format!("--ref {v}: not a number of seconds"))?,
            );
        } else {
            rest.push(arg.clone());
        }
    }
    let mut a = parse_run(&rest)?;
    a.quiet = true;
    a.json = true;
    let (r, wall) = execute(&a)?;
    let s = Summary::of(&r);
    let p50 = s
        .groups
        .iter()
        .find(|g| !g.seed)
        .and_then(|g| g.completion_s.as_ref())
        .map_or(f64::NAN, |d| d.max);
    let threads = match a.threads {
        0 => std::thread::available_parallelism().map_or(1, |c| c.get()),
        n => n,
    };
    let (ref_s, ratio) = reference.map_or(("-".to_owned(), "-".to_owned()), |r| {
        (format!("{r:.2}"), format!("{:.1}", wall / r.max(1e-9)))
    });
    println!(
        "{:>8} {:>6} {:>9} {:>7} {:>9.1} {:>7} {:>6} {:>10} {:>11.0} {:>10} {:>9.1} {:>6}",
        a.knobs.peers,
        a.knobs.pieces,
        bytes(a.knobs.piece_length),
        threads,
        wall,
        ref_s,
        ratio,
        r.events,
        r.events as f64 / wall.max(1e-9),
        peak_rss().map_or("?".into(), bytes),
        p50,
        if s.failures.is_empty() { "ok" } else { "FAIL" }
    );
    Ok(if s.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in &s.failures {
            eprintln!("  FAIL {f}");
        }
        ExitCode::from(1)
    })
}

/// Slots of the reference run's cycle (64 MiB of `u32`, beyond any cache).
const REFERENCE_SLOTS: usize = 16 << 20;

/// Reads the reference run chases through the cycle.
const REFERENCE_STEPS: usize = 4 << 20;

/// A fixed workload that does not depend on Hive's code, timed: a walk of dependent reads
/// through a random cycle over 64 MiB, as cache-bound as a large swarm. This virtual machine's
/// speed drifts by 10 % or more between runs (the reference itself by as much within a
/// minute); a row's wall time over the reference taken just before it compares across runs
/// and sessions better than the wall time alone.
fn reference_run() -> f64 {
    let started = std::time::Instant::now();
    // Sattolo's algorithm: a random permutation with a single cycle.
    let mut next: Vec<u32> = (0..REFERENCE_SLOTS as u32).collect();
    let mut rng = hive_core::rng::Rng::new(0x7265_6665_7265_6e63);
    for i in (1..next.len()).rev() {
        let j = rng.index(i);
        next.swap(i, j);
    }
    let mut at = 0u32;
    let mut sum = 0u64;
    for _ in 0..REFERENCE_STEPS {
        at = next.get(at as usize).copied().unwrap_or(0);
        sum = sum.wrapping_mul(31).wrapping_add(u64::from(at));
    }
    std::hint::black_box(sum);
    started.elapsed().as_secs_f64()
}

/// The scale benchmark: each configuration in a child process, so that each peak RSS is its
/// own.
fn cmd_bench(args: &[String]) -> Result<ExitCode, String> {
    let mut huge = false;
    let mut repeat = 1usize;
    let mut threads = None;
    let mut have_batch = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--huge" => huge = true,
            "--repeat" => {
                let v = value(&mut it, arg)?;
                repeat = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| format!("--repeat {v}: a count of runs from 1 to 100"))?;
            }
            "--threads" => threads = Some(parse_threads(value(&mut it, arg)?)?.to_string()),
            "--have-batch" => {
                let v = value(&mut it, arg)?;
                scenario::parse_duration(v)?;
                have_batch = Some(v.clone());
            }
            other => return Err(format!("bench: unknown option {other}")),
        }
    }
    let mut configs = vec![("1000", "1000", "16K"), ("100", "1000", "256K")];
    if huge {
        configs.push(("10000", "100", "16K"));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    println!("flash crowd (1 seed), to completion; release build recommended");
    if let Some(d) = &have_batch {
        println!(
            "every node holds its haves up to {d} (--have-batch; the default sends each at once)"
        );
    }
    println!(
        "x ref: wall time over a reference run just before the row, which measures the \
         machine, not Hive ({REFERENCE_STEPS} dependent reads over {} MiB, one thread)",
        REFERENCE_SLOTS * 4 / (1024 * 1024)
    );
    println!(
        "{:>8} {:>6} {:>9} {:>7} {:>9} {:>7} {:>6} {:>10} {:>11} {:>10} {:>9} {:>6}",
        "leechers",
        "pieces",
        "piece",
        "threads",
        "wall s",
        "ref s",
        "x ref",
        "events",
        "events/s",
        "peak RSS",
        "last done",
        "checks"
    );
    let mut ok = true;
    let mut spreads = Vec::new();
    for (peers, pieces, pl) in configs {
        let mut walls = Vec::new();
        for _ in 0..repeat {
            let row = (peers, pieces, pl);
            let (success, wall) = bench_row(&exe, row, threads.as_deref(), have_batch.as_deref())?;
            ok &= success;
            walls.extend(wall);
        }
        walls.sort_by(f64::total_cmp);
        if let (Some(min), Some(max)) = (walls.first(), walls.last()) {
            let median = walls.get(walls.len() / 2).copied().unwrap_or(*min);
            spreads.push(format!(
                "{peers} x {pieces} x {pl}: wall min {min:.1} s, median {median:.1} s, max {max:.1} s over {} runs",
                walls.len()
            ));
        }
    }
    println!("(last done: virtual seconds until the last leecher completed)");
    if repeat > 1 {
        for line in spreads {
            println!("{line}");
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Runs one benchmark row in a child process (so that its peak RSS is its own), after its own
/// reference run; prints the child's line and returns whether its checks passed and its wall
/// time.
fn bench_row(
    exe: &std::path::Path,
    (peers, pieces, piece_length): (&str, &str, &str),
    threads: Option<&str>,
    have_batch: Option<&str>,
) -> Result<(bool, Option<f64>), String> {
    let reference = reference_run();
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["bench-one", "--ref", &reference.to_string()]);
    if let Some(n) = threads {
        cmd.args(["--threads", n]);
    }
    if let Some(d) = have_batch {
        cmd.args(["--have-batch", d]);
    }
    let child = cmd
        .args(["flash-crowd", "--peers", peers, "--pieces", pieces])
        .args(["--piece-length", piece_length, "--seed", "1"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&child.stdout);
    print!("{line}");
    Ok((child.status.success(), row_wall(&line)))
}

/// The wall time of a `bench-one` line: its sixth word (the piece size takes two).
fn row_wall(line: &str) -> Option<f64> {
    line.split_whitespace().nth(5)?.parse().ok()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => cmd_run(&args[1..]),
        Some("bench") => cmd_bench(&args[1..]),
        Some("view") => cmd_view(&args[1..]),
        Some("bench-one") => bench_one(&args[1..]),
        Some("list") => {
            for (name, what) in BUILTINS {
                println!("{name:<14} {what}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(format!("no command given\n{USAGE}")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hive-sim: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::row_wall;

    /// `bench --repeat` reads each row's wall time back from the line `bench-one` printed.
    #[test]
    fn the_wall_time_is_read_from_a_row() {
        let row = "    1000   1000  16.0 KiB       2      31.4    1.45   21.6   14780264      470954    536 MiB      44.4     ok";
        assert_eq!(row_wall(row), Some(31.4));
        assert_eq!(row_wall("  FAIL something"), None);
        assert_eq!(row_wall(""), None);
    }
}
