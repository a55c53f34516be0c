//! `hive-sim`: whole swarms of Hive cores on a virtual clock.
//!
//! Every node is a plain [`hive_core::session::Session`]; the simulator only carries bytes
//! between them ([`engine`]: links with rates, latency and bounded buffers), answers their disk
//! and tracker requests, watches the wire, and measures. See the README's hive-sim section.
#![forbid(unsafe_code)]

mod chunked;
pub mod engine;
mod link;
mod queue;
pub mod record;
pub mod replay;
pub mod report;
pub mod scenario;
mod shard;
mod trace;
mod tracker;
pub mod view;

pub use engine::{Engine, RunOptions, RunResult};
pub use scenario::{Knobs, Scenario};

/// Runs a scenario to the end.
pub fn run(sc: Scenario, opts: RunOptions) -> Result<RunResult, String> {
    Engine::new(sc, opts)?.run()
}
