//! `tracker_http`: HTTP tracker reply bodies through `parse_announce_response` and
//! `parse_scrape_response`, under the default limits and under tiny ones that short inputs hit.
//!
//! Properties: whatever parses is within the limits (peers, intervals, tracker id, scrape
//! entries); peers are usable, canonical (no IPv4-mapped IPv6) and unique; and nothing is lost
//! silently: kept + ignored peers equal the peers offered (compact entries, a partial trailing
//! entry, dictionary entries), kept + ignored scrape entries equal the entries of `files`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use hive_core::bencode::{self, Limits, Value};
use hive_core::tracker::http::{self, HttpError};
use hive_core::tracker::{AddressFamily, ResponseLimits};

/// Limits small enough that fuzz inputs reach every cap.
pub const TIGHT: ResponseLimits = ResponseLimits {
    max_peers: 3,
    min_interval: Duration::from_secs(10),
    max_interval: Duration::from_secs(100),
    default_interval: Duration::from_secs(50),
    max_body: 2048,
    max_scrape_files: 2,
    max_tracker_id: 4,
    max_message: 8,
};

/// The fuzz target's body.
pub fn check(data: &[u8]) {
    for limits in [ResponseLimits::DEFAULT, TIGHT] {
        check_announce(data, &limits);
        check_scrape(data, &limits);
    }
}

/// Peers a reply offers under `key` (a compact string's entries plus one for a partial
/// trailing entry, or a list's entries).
fn offered(top: &Value<'_>, key: &[u8], family: AddressFamily) -> usize {
    match top.get(key) {
        None => 0,
        Some(v) => match (v.as_bytes(), v.as_list()) {
            (Some(b), _) => {
                let n = family.entry_len();
                b.len() / n + usize::from(b.len() % n != 0)
            }
            (None, Some(list)) => list.len(),
            (None, None) => 0,
        },
    }
}

fn check_announce(data: &[u8], limits: &ResponseLimits) {
    let result = http::parse_announce_response(data, limits);
    if data.len() > limits.max_body {
        assert!(matches!(result, Err(HttpError::TooLarge { .. })));
        return;
    }
    let r = match result {
        Ok(r) => r,
        Err(HttpError::Failure(reason)) => {
            // Lossy UTF-8 of at most max_message bytes: each byte becomes at most U+FFFD.
            assert!(reason.len() <= 3 * limits.max_message);
            return;
        }
        Err(_) => return,
    };
    let interval_range = limits.min_interval..=limits.max_interval;
    assert!(
        interval_range.contains(&r.interval),
        "interval {:?}",
        r.interval
    );
    assert!(r.min_interval.is_none_or(|m| interval_range.contains(&m)));
    assert!(
        r.tracker_id
            .as_ref()
            .is_none_or(|id| !id.is_empty() && id.len() <= limits.max_tracker_id)
    );
    assert!(
        r.warning
            .as_ref()
            .is_none_or(|w| w.len() <= 3 * limits.max_message)
    );
    assert!(
        r.peers.len() <= limits.max_peers,
        "{} peers kept",
        r.peers.len()
    );
    let mut seen = BTreeSet::new();
    for p in &r.peers {
        assert!(seen.insert(*p), "duplicate peer {p}");
        let ip = p.ip();
        assert_eq!(ip, ip.to_canonical(), "IPv4-mapped address kept: {p}");
        assert!(p.port() != 0 && !ip.is_unspecified() && !ip.is_multicast());
        assert!(!matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()));
    }
    let (top, _) = bencode::decode_prefix(data, Limits::lenient()).expect("it parsed");
    let offered =
        offered(&top, b"peers", AddressFamily::V4) + offered(&top, b"peers6", AddressFamily::V6);
    assert_eq!(
        r.peers.len() + r.peers_ignored,
        offered,
        "peers lost without a count"
    );
}

fn check_scrape(data: &[u8], limits: &ResponseLimits) {
    let Ok(s) = http::parse_scrape_response(data, limits) else {
        return;
    };
    assert!(data.len() <= limits.max_body);
    assert!(s.files.len() <= limits.max_scrape_files);
    let (top, _) = bencode::decode_prefix(data, Limits::lenient()).expect("it parsed");
    let entries = top
        .get(b"files")
        .and_then(Value::as_dict)
        .expect("a scrape reply has files")
        .len();
    assert_eq!(
        s.files.len() + s.ignored,
        entries,
        "scrape entries lost without a count"
    );
}
