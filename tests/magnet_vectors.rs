//! The magnet link from Transmission's test assets against its `.torrent` twin.

use hive_core::bencode::{self, Limits};
use hive_core::magnet::Magnet;
use sha1::{Digest, Sha1};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const NAME: &str = "archlinux-2025.05.01-x86_64.iso";

#[test]
fn archlinux_magnet_matches_its_torrent() {
    let dir = hive_tests::shared_dir().join("vectors/transmission");
    let uri = std::fs::read_to_string(dir.join(format!("{NAME}.magnet"))).unwrap();
    let magnet = Magnet::parse(uri.trim()).unwrap();
    assert_eq!(magnet.display_name.as_deref(), Some(NAME));
    assert!(magnet.trackers.is_empty() && magnet.peers.is_empty());

    // The info hash is the SHA-1 of the raw `info` bytes in the torrent (BEP 3).
    let torrent = std::fs::read(dir.join(format!("{NAME}.torrent"))).unwrap();
    let root = bencode::decode_with(&torrent, Limits::lenient()).unwrap();
    let info = root.get(b"info").unwrap();
    let hash: [u8; 20] = Sha1::digest(info.raw).into();
    assert_eq!(magnet.info_hash.0, hash);
    // What `transmission-show` printed for the torrent when this test was written.
    assert_eq!(
        magnet.info_hash_hex(),
        "2e34989b1c60df821b2d046c884d8f4d1858b97a"
    );

    // The canonical form of this link is the link itself.
    assert_eq!(magnet.to_uri(), uri.trim());
}

/// Cross-check with Transmission itself when it is installed (it is on the dev machines).
#[test]
fn archlinux_magnet_matches_transmission_show() {
    let dir = hive_tests::shared_dir().join("vectors/transmission");
    let output = match std::process::Command::new("transmission-show")
        .arg(dir.join(format!("{NAME}.torrent")))
        .output()
    {
        Ok(out) if out.status.success() => out,
        _ => {
            eprintln!("transmission-show not available; skipping the cross-check");
            return;
        }
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let shown = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Hash:"))
        .map(str::trim)
        .expect("transmission-show prints a Hash: line");
    let uri = std::fs::read_to_string(dir.join(format!("{NAME}.magnet"))).unwrap();
    let magnet = Magnet::parse(uri.trim()).unwrap();
    assert_eq!(hex(&magnet.info_hash.0), shown);
}
