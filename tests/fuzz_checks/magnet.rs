//! `magnet`: `Magnet::parse` on any text; whatever parses must satisfy the module's promises
//! (no empty or duplicate trackers, web seeds or peers; no port 0) and round-trip: the
//! canonical link (`to_uri`) parses back to the same `Magnet`, and is a fixed point.
//!
//! Input that is not a magnet link is also tried behind a valid `xt`, so that mutations of the
//! parameters are not all lost to `NotMagnet`.

use hive_core::magnet::{MAX_MAGNET_LEN, Magnet, PeerAddress};

/// Prepended to inputs that do not start with `magnet:?`.
const PREFIX: &str = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&";

/// The fuzz target's body.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check_text(&text);
    if !text
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("magnet:?"))
    {
        check_text(&format!("{PREFIX}{text}"));
    }
}

fn check_text(text: &str) {
    let Ok(m) = Magnet::parse(text) else {
        return;
    };
    for list in [&m.trackers, &m.web_seeds] {
        for (i, s) in list.iter().enumerate() {
            assert!(!s.is_empty(), "empty value kept");
            assert!(!list[..i].contains(s), "duplicate {s:?} kept");
        }
    }
    for (i, p) in m.peers.iter().enumerate() {
        assert!(!m.peers[..i].contains(p), "duplicate peer {p} kept");
        let port = match p {
            PeerAddress::Socket(a) => a.port(),
            PeerAddress::Host { name, port } => {
                assert!(!name.is_empty());
                *port
            }
        };
        assert_ne!(port, 0);
    }
    assert!(m.display_name.as_ref().is_none_or(|n| !n.is_empty()));

    let uri = m.to_uri();
    if uri.len() > MAX_MAGNET_LEN {
        // Known limit: percent-encoding can make the canonical link of a link near the
        // 64 KiB bound longer than the bound, and it is then refused (`TooLong`). Fuzz inputs
        // are far shorter (libFuzzer's default -max_len is 4096).
        return;
    }
    let again =
        Magnet::parse(&uri).unwrap_or_else(|e| panic!("to_uri {uri:?} does not parse: {e}"));
    assert_eq!(again, m, "parse(to_uri(m)) != m for {uri:?}");
    assert_eq!(
        again.to_uri(),
        uri,
        "the canonical link is not a fixed point"
    );
    assert_eq!(uri.parse::<Magnet>().ok(), Some(m));
}
