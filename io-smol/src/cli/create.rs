//! `hive-smol create`: write a new torrent file.

use std::path::PathBuf;

use super::CliError;

/// Arguments of `hive-smol create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The file or directory to describe.
    pub path: PathBuf,
    /// Where to write the .torrent file.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// Runs `hive-smol create`.
pub fn run(_args: &CreateArgs) -> Result<(), CliError> {
    Err(CliError::Usage("`create` is not implemented yet".into()))
}
