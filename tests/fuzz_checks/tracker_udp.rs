//! `tracker_udp`: one datagram through every BEP 15 decoder: `Request::decode` (tracker side)
//! and `Response::decode` for both address families (client side).
//!
//! Properties: the generic decoders agree with the per-packet ones; whatever decodes
//! re-encodes to the datagram (its fixed part for requests, whose trailing bytes BEP 15 says to
//! ignore; all of it for responses, whose tail is the peer, entry or message list); the
//! transaction id check agrees with the field; `to_response` keeps at most `max_peers` unique,
//! usable peers and counts the rest.

use std::collections::BTreeSet;

use hive_core::tracker::udp::{
    self, AnnounceRequest, AnnounceResponse, ConnectRequest, ConnectResponse, ErrorResponse,
    Request, Response, ScrapeRequest, ScrapeResponse, UdpError,
};
use hive_core::tracker::{AddressFamily, ResponseLimits};

use super::tracker_http::TIGHT;

/// The fuzz target's body.
pub fn check(data: &[u8]) {
    check_request(data);
    for family in [AddressFamily::V4, AddressFamily::V6] {
        check_response(data, family);
    }
}

fn check_request(data: &[u8]) {
    let Ok(request) = Request::decode(data) else {
        return;
    };
    let mut out = Vec::new();
    match request {
        Request::Connect(c) => {
            assert_eq!(ConnectRequest::decode(data), Ok(c));
            assert_eq!(request.connection_id(), None);
            c.encode(&mut out);
            assert_eq!(out.len(), ConnectRequest::LEN);
        }
        Request::Announce(a) => {
            assert_eq!(AnnounceRequest::decode(data), Ok(a));
            assert_eq!(request.connection_id(), Some(a.connection_id));
            a.encode(&mut out);
            assert_eq!(out.len(), AnnounceRequest::LEN);
        }
        Request::Scrape(s) => {
            assert_eq!(ScrapeRequest::decode(data), Ok(s));
            assert_eq!(request.connection_id(), Some(s.connection_id));
            let hashes: Vec<[u8; 20]> = s.info_hashes.iter().collect();
            assert_eq!(hashes.len(), s.info_hashes.len());
            assert_eq!(hashes.len(), (data.len() - ScrapeRequest::HEADER_LEN) / 20);
            let encoded =
                udp::encode_scrape_request(&mut out, s.connection_id, s.transaction_id, &hashes);
            match hashes.len() {
                0 => assert_eq!(encoded, Err(UdpError::NoInfoHashes)),
                n if n > udp::MAX_SCRAPE_HASHES => {
                    assert_eq!(encoded, Err(UdpError::TooManyInfoHashes(n)));
                }
                n => {
                    assert_eq!(encoded, Ok(()));
                    assert_eq!(out.len(), ScrapeRequest::HEADER_LEN + 20 * n);
                }
            }
        }
    }
    assert_eq!(
        out[..],
        data[..out.len()],
        "request does not re-encode to its bytes"
    );
}

fn check_response(data: &[u8], family: AddressFamily) {
    let Ok(response) = Response::decode(data, family) else {
        return;
    };
    let tid = response.transaction_id();
    assert_eq!(response.check_transaction(tid), Ok(()));
    assert!(response.check_transaction(tid.wrapping_add(1)).is_err());
    let mut out = Vec::new();
    match response {
        Response::Connect(c) => {
            assert_eq!(ConnectResponse::decode(data), Ok(c));
            c.encode(&mut out);
            assert_eq!(out[..], data[..ConnectResponse::LEN]);
            return;
        }
        Response::Announce(a) => {
            assert_eq!(AnnounceResponse::decode(data, family), Ok(a));
            assert_eq!(a.peers.family(), family);
            a.encode(&mut out);
            for limits in [ResponseLimits::DEFAULT, TIGHT] {
                let r = a.to_response(&limits);
                assert!(r.peers.len() <= limits.max_peers);
                let unique: BTreeSet<_> = r.peers.iter().collect();
                assert_eq!(unique.len(), r.peers.len(), "duplicate peers kept");
                assert!(
                    r.peers
                        .iter()
                        .all(|p| p.port() != 0 && p.ip() == p.ip().to_canonical())
                );
                let offered = a.peers.len() + usize::from(a.peers.trailing_bytes() != 0);
                assert_eq!(r.peers.len() + r.peers_ignored, offered);
                assert!((limits.min_interval..=limits.max_interval).contains(&r.interval));
                assert_eq!(
                    (r.complete, r.incomplete),
                    (Some(a.seeders), Some(a.leechers))
                );
            }
        }
        Response::Scrape(s) => {
            assert_eq!(ScrapeResponse::decode(data), Ok(s));
            assert_eq!(s.entries.iter().count(), s.entries.len());
            s.encode(&mut out);
        }
        Response::Error(e) => {
            assert_eq!(ErrorResponse::decode(data), Ok(e));
            assert!(e.message_text(8).len() <= 3 * 8);
            e.encode(&mut out);
        }
    }
    assert_eq!(out, data, "response does not re-encode to the datagram");
}
