//! Shared helpers for Hive's workspace integration tests.

use std::path::PathBuf;

/// The project's `shared/` folder (holds `vectors/` and `specs/`).
///
/// CI clones the repository next to `shared/`; a local clone elsewhere can point at it with
/// `HIVE_SHARED`. Falls back to `/work/shared`, where the development machines keep it.
pub fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HIVE_SHARED") {
        return PathBuf::from(dir);
    }
    let beside_repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    if beside_repo.join("vectors").is_dir() {
        return beside_repo;
    }
    PathBuf::from("/work/shared")
}
pub mod fuzz_checks;
