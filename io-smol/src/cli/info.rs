//! `hive-smol info`: describe a torrent file or magnet URI.

use std::path::PathBuf;

use super::CliError;

/// Arguments of `hive-smol info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// A .torrent file, or a magnet URI.
    pub torrent: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `hive-smol info`.
pub fn run(_args: &InfoArgs) -> Result<(), CliError> {
    Err(CliError::Usage("`info` is not implemented yet".into()))
}
