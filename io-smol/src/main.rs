//! `hive-smol`: the command-line BitTorrent client.
//!
//! `main` only parses arguments and maps errors to exit codes; each subcommand lives in
//! `cli/<name>.rs` (downloading, the default command, in `cli/download.rs`), the real I/O in
//! `driver/`, `storage.rs` and `resume.rs`.
#![forbid(unsafe_code)]

mod cli;
mod driver;
mod live;
mod resume;
mod storage;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Hive: a BitTorrent client.
#[derive(Debug, Parser)]
#[command(
    name = "hive-smol",
    version,
    about,
    args_conflicts_with_subcommands = true,
    after_help = "Exit codes: 0 done (also after Ctrl-C), 1 internal error, 2 usage error, \
                  3 unusable torrent, 4 files could not be created/written/read, \
                  5 no port to listen on."
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    download: cli::download::DownloadArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what a .torrent file or magnet URI describes.
    Info(cli::info::InfoArgs),
    /// Write a new .torrent file for a file or directory.
    Create(cli::create::CreateArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Some(Command::Info(a)) => cli::info::run(&a),
        Some(Command::Create(a)) => cli::create::run(&a),
        None => cli::download::run(&args.download),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hive-smol: {e}");
            e.exit_code()
        }
    }
}
