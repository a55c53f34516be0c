//! `hive-sim`: whole swarms of Hive cores on a virtual clock.
#![forbid(unsafe_code)]

fn main() {
    eprintln!(
        "hive-sim: the simulator is not built yet (it needs the core's Session); see the README's status section"
    );
    std::process::exit(2);
}
