//! The subcommands of `hive-smol` and the error type they share.

pub mod create;
pub mod download;
pub mod info;

use std::process::ExitCode;

/// A failure that ends the command; its message is printed after `hive-smol: `.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line asks for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    /// An input file could not be used (unreadable or not a valid torrent).
    #[error("{0}")]
    Input(String),
    /// Writing output failed (for a download: files could not be created or written).
    #[error("{0}")]
    Output(String),
    /// The network could not be used (no port to listen on).
    #[error("{0}")]
    Network(String),
    /// A bug in Hive.
    #[error("{0}; please report this bug")]
    Internal(String),
}

impl CliError {
    /// Exit codes (documented in README.md): 1 internal error, 2 usage, 3 bad input,
    /// 4 output or disk failure, 5 network (cannot listen).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Internal(_) => ExitCode::from(1),
            CliError::Network(_) => ExitCode::from(5),
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Input(_) => ExitCode::from(3),
            CliError::Output(_) => ExitCode::from(4),
        }
    }
}
