//! `hive-smol`: the command-line BitTorrent client.
//!
//! `main` only parses arguments and maps errors to exit codes; each subcommand lives in
//! `cli/<name>.rs`.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Hive: a BitTorrent client.
#[derive(Debug, Parser)]
#[command(
    name = "hive-smol",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
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
        None => Err(cli::CliError::Usage(
            "downloading is not implemented yet; use `hive-smol info` or `hive-smol create`".into(),
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hive-smol: {e}");
            e.exit_code()
        }
    }
}
