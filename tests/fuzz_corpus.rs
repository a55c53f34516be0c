//! Replays every committed fuzz input through its target's check, without cargo-fuzz: the seed
//! corpora (`fuzz/corpus/<target>/`) and the inputs that once found a bug
//! (`fuzz/regressions/<target>/`, each fixed in hive-core since). See `fuzz/README.md`.
//!
//! `HIVE_WRITE_SEEDS=1 cargo test -p hive-tests --test fuzz_corpus` rewrites the generated
//! seeds (`hive_tests::fuzz_checks::seeds`); without it the test checks they are up to date.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use hive_tests::fuzz_checks::{TARGETS, check_for, seeds};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("readable corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Runs every file of `kind` (`corpus` or `regressions`) through its check; returns the
/// number replayed and the failures (`path: message`).
fn replay(kind: &str) -> (usize, Vec<String>) {
    let mut failures = Vec::new();
    let mut count = 0;
    for (target, check) in TARGETS {
        for path in files(&fuzz_dir().join(kind).join(target)) {
            let bytes = fs::read(&path).expect("readable corpus file");
            count += 1;
            if let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| check(&bytes))) {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push(format!("{}: {msg}", path.display()));
            }
        }
    }
    (count, failures)
}

#[test]
fn corpus_inputs_pass_their_checks() {
    let (count, failures) = replay("corpus");
    assert!(
        failures.is_empty(),
        "failing corpus inputs:\n{}",
        failures.join("\n")
    );
    assert!(
        count >= TARGETS.len(),
        "corpora are missing ({count} files)"
    );
    for (target, _) in TARGETS {
        let n = files(&fuzz_dir().join("corpus").join(target)).len();
        assert!(n > 0, "fuzz/corpus/{target}/ is empty");
    }
}

#[test]
fn regressions_stay_fixed() {
    let (_, failures) = replay("regressions");
    assert!(
        failures.is_empty(),
        "regressions are back:\n{}",
        failures.join("\n")
    );
    // Every regression folder names a real target.
    for dir in fs::read_dir(fuzz_dir().join("regressions"))
        .into_iter()
        .flatten()
    {
        let name = dir.expect("readable").file_name();
        let name = name.to_string_lossy();
        assert!(
            check_for(&name).is_some(),
            "fuzz/regressions/{name} is not a target"
        );
    }
}

#[test]
fn generated_seeds_are_committed() {
    let write = std::env::var_os("HIVE_WRITE_SEEDS").is_some();
    let mut stale = Vec::new();
    for s in seeds::all() {
        let dir = fuzz_dir().join("corpus").join(s.target);
        let path = dir.join(&s.name);
        if write {
            fs::create_dir_all(&dir).expect("corpus folder");
            fs::write(&path, &s.bytes).expect("seed written");
        } else if fs::read(&path).ok().as_deref() != Some(&s.bytes[..]) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "seeds missing or out of date (regenerate with HIVE_WRITE_SEEDS=1):\n{}",
        stale.join("\n")
    );
}

#[test]
fn corpora_stay_small() {
    let total: u64 = TARGETS
        .iter()
        .flat_map(|(t, _)| files(&fuzz_dir().join("corpus").join(t)))
        .map(|p| fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    assert!(
        total < 2_000_000,
        "committed corpora are {total} bytes, keep them under 2 MB"
    );
}
