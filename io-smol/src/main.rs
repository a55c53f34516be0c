//! `hive-smol`: the command-line BitTorrent client.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("hive-smol: no command is implemented yet");
    std::process::exit(2);
}
