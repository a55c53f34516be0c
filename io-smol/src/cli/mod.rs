//! The subcommands of `hive-smol` and the error type they share.

pub mod create;
pub mod info;

use std::process::ExitCode;

/// A failure that ends the command; its message is printed after `hive-smol: `.
#[derive(Debug, thiserror::Error)]
#[allow(dead_code, reason = "Input and Output are used as info/create land")]
pub enum CliError {
    /// The command line asks for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    /// An input file could not be used (unreadable or not a valid torrent).
    #[error("{0}")]
    Input(String),
    /// Writing output failed.
    #[error("{0}")]
    Output(String),
}

impl CliError {
    /// Exit codes (documented in README.md): 2 usage, 3 bad input, 4 output failure.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Input(_) => ExitCode::from(3),
            CliError::Output(_) => ExitCode::from(4),
        }
    }
}
