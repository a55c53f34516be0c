use super::*;
use crate::bencode::OwnedValue;
use crate::rng::Rng;
use crate::tracker::udp::Request;
use crate::tracker::write_compact_peers;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;

const HASH: [u8; 20] = [0xAB; 20];
const PEER_ID: [u8; 20] = *b"-HV0001-abcdefghijkl";

fn stats() -> AnnounceStats {
    AnnounceStats {
        info_hash: HASH,
        peer_id: PEER_ID,
        port: 6881,
        uploaded: 10,
        downloaded: 20,
        left: 300,
    }
}

fn t(secs: u64) -> Instant {
    Instant::from_secs(secs)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn tiers(v: &[&[&str]]) -> Vec<Vec<String>> {
    v.iter()
        .map(|tier| tier.iter().map(|s| s.to_string()).collect())
        .collect()
}

fn announcer(v: &[&[&str]], config: AnnounceConfig, seed: u64) -> Announcer {
    let (a, rejected) = Announcer::new(tiers(v), config, Rng::new(seed), t(0));
    assert!(rejected.is_empty(), "{rejected:?}");
    a
}

fn drain(a: &mut Announcer, now: Instant) -> Vec<Action> {
    let mut out = Vec::new();
    while let Some(action) = a.poll_action(now, &stats()) {
        out.push(action);
        assert!(out.len() < 1000, "poll_action never returns None");
    }
    out
}

fn outcomes(a: &mut Announcer) -> Vec<Outcome> {
    std::iter::from_fn(|| a.poll_outcome()).collect()
}

/// The value of query parameter `name` in `url`.
fn param<'u>(url: &'u str, name: &str) -> Option<&'u str> {
    url.split_once('?')?
        .1
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn dict(entries: Vec<(&str, OwnedValue)>) -> OwnedValue {
    OwnedValue::Dict(
        entries
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

fn compact(peers: &[SocketAddr]) -> OwnedValue {
    let mut bytes = Vec::new();
    write_compact_peers(&mut bytes, peers.iter().copied(), AddressFamily::V4);
    OwnedValue::Bytes(bytes)
}

fn ok_body(interval: i64, min_interval: Option<i64>, peers: &[SocketAddr]) -> Vec<u8> {
    let mut entries = vec![
        ("interval", OwnedValue::Int(interval)),
        ("complete", OwnedValue::Int(5)),
        ("incomplete", OwnedValue::Int(7)),
        ("peers", compact(peers)),
    ];
    if let Some(m) = min_interval {
        entries.push(("min interval", OwnedValue::Int(m)));
    }
    dict(entries).to_bytes()
}

/// The single HTTP action in `actions`: (tracker, request, url, event).
fn one_http(actions: Vec<Action>) -> (TrackerId, RequestId, String, Event) {
    match <[Action; 1]>::try_from(actions) {
        Ok(
            [
                Action::Http {
                    tracker,
                    request,
                    url,
                    event,
                },
            ],
        ) => (tracker, request, url, event),
        other => panic!("expected one http action, got {other:?}"),
    }
}

/// The single UDP action in `actions`, decoded: (tracker, request, packet).
fn one_udp(actions: Vec<Action>) -> (TrackerId, RequestId, Request<'static>) {
    match <[Action; 1]>::try_from(actions) {
        Ok(
            [
                Action::UdpSend {
                    tracker,
                    request,
                    packet,
                    ..
                },
            ],
        ) => {
            let packet: &'static [u8] = Box::leak(packet.into_boxed_slice());
            (tracker, request, Request::decode(packet).unwrap())
        }
        other => panic!("expected one udp action, got {other:?}"),
    }
}

fn url_of(a: &Announcer, id: TrackerId) -> &str {
    a.url(id).unwrap()
}

const TRACKER_ADDR: &str = "127.0.0.1:6969";

fn connect_reply(tid: u32, connection_id: u64) -> Vec<u8> {
    let mut out = Vec::new();
    udp::ConnectResponse {
        transaction_id: tid,
        connection_id,
    }
    .encode(&mut out);
    out
}

fn announce_reply(tid: u32, interval: u32, peers: &[SocketAddr]) -> Vec<u8> {
    let mut out = Vec::new();
    udp::encode_announce_response(
        &mut out,
        tid,
        interval,
        7,
        5,
        peers.iter().copied(),
        AddressFamily::V4,
    );
    out
}

// ---- construction ----

#[test]
fn shuffle_is_seeded_and_stays_within_tiers() {
    let list: &[&[&str]] = &[
        &[
            "http://a/announce",
            "http://b/announce",
            "http://c/announce",
            "http://d/announce",
        ],
        &["udp://e:1", "udp://f:1", "udp://g:1"],
    ];
    let order = |seed| {
        let a = announcer(list, AnnounceConfig::DEFAULT, seed);
        a.tiers()
            .iter()
            .map(|tier| {
                tier.iter()
                    .map(|&id| a.url(id).unwrap().to_owned())
                    .collect()
            })
            .collect::<Vec<Vec<String>>>()
    };
    let first = order(7);
    assert_eq!(first, order(7), "same seed, same order");
    for (tier, urls) in first.iter().zip(list) {
        let mut sorted = tier.clone();
        sorted.sort();
        assert_eq!(sorted, urls.to_vec(), "a permutation of its own tier");
    }
    assert!(
        (0..20).any(|seed| order(seed) != first),
        "other seeds give other orders"
    );
}

#[test]
fn bad_urls_are_reported_not_used() {
    let config = AnnounceConfig {
        max_trackers: 3,
        ..AnnounceConfig::DEFAULT
    };
    let (a, rejected) = Announcer::new(
        tiers(&[
            &["wss://t/announce", " http://a/announce\n", "udp://nohost"],
            &[],
            &["http://a/announce", "udp://b:80/announce", "udp://c:81"],
            &["http://d/announce"],
        ]),
        config,
        Rng::new(1),
        t(0),
    );
    let messages: Vec<String> = rejected.iter().map(ToString::to_string).collect();
    insta::assert_debug_snapshot!(messages, @r#"
    [
        "tracker url 'wss://t/announce' is not http://, https:// or udp://; it is ignored",
        "udp tracker url 'udp://nohost' is invalid (missing :port); it is ignored",
        "tracker url 'http://a/announce' is listed more than once; the repeat is ignored",
        "the torrent lists more than 3 trackers; 'http://d/announce' is ignored",
    ]
    "#);
    // Empty tiers disappear; the surviving URLs are trimmed.
    assert_eq!(a.tiers().len(), 2);
    assert_eq!(a.tiers()[0].len(), 1);
    assert_eq!(a.url(a.tiers()[0][0]), Some("http://a/announce"));
    assert_eq!(a.status(a.tiers()[1][0]).unwrap().tier, 1);
}

#[test]
fn no_trackers_means_nothing_to_do() {
    let (mut a, _) = Announcer::new(vec![], AnnounceConfig::DEFAULT, Rng::new(1), t(0));
    assert_eq!(drain(&mut a, t(0)), []);
    assert_eq!(a.next_deadline(), None);
    a.stop(t(1));
    assert!(a.is_done());
}

// ---- HTTP, intervals, events ----

#[test]
fn first_announce_is_started_with_every_parameter() {
    let mut a = announcer(
        &[&["http://t.example/announce?pk=1"]],
        AnnounceConfig::DEFAULT,
        3,
    );
    assert_eq!(a.next_deadline(), Some(t(0)));
    let (_, _, url, event) = one_http(drain(&mut a, t(0)));
    assert_eq!(event, Event::Started);
    assert!(url.starts_with("http://t.example/announce?pk=1&info_hash=%AB%AB"));
    assert_eq!(param(&url, "event"), Some("started"));
    assert_eq!(param(&url, "numwant"), Some("50"));
    assert_eq!(param(&url, "left"), Some("300"));
    assert_eq!(param(&url, "uploaded"), Some("10"));
    assert_eq!(param(&url, "downloaded"), Some("20"));
    assert_eq!(param(&url, "port"), Some("6881"));
    assert_eq!(param(&url, "compact"), Some("1"));
    assert_eq!(
        param(&url, "key"),
        Some(format!("{:08X}", a.key()).as_str())
    );
    assert_eq!(param(&url, "trackerid"), None);
    // In flight: nothing more to do until the HTTP timeout.
    assert_eq!(drain(&mut a, t(0)), []);
    assert_eq!(a.next_deadline(), Some(t(30)));
}

#[test]
fn interval_and_min_interval_are_honoured() {
    let mut a = announcer(&[&["http://t/announce"]], AnnounceConfig::DEFAULT, 1);
    let (id, req, _, _) = one_http(drain(&mut a, t(0)));
    let peers = [addr("10.0.0.1:1"), addr("10.0.0.2:2")];
    a.on_http_response(req, &ok_body(1800, Some(600), &peers), t(1));
    assert_eq!(
        outcomes(&mut a),
        [
            Outcome::Swarm {
                tracker: id,
                complete: Some(5),
                incomplete: Some(7),
                downloaded: None
            },
            Outcome::Peers {
                tracker: id,
                peers: peers.to_vec()
            }
        ]
    );
    assert_eq!(a.next_deadline(), Some(t(1801)));
    assert_eq!(drain(&mut a, t(1800)), []);
    // Early announce: not before min interval...
    a.want_more_peers(t(100));
    assert_eq!(a.next_deadline(), Some(t(601)));
    assert_eq!(drain(&mut a, t(600)), []);
    let (_, req, _, event) = one_http(drain(&mut a, t(601)));
    assert_eq!(event, Event::None);
    a.on_http_response(req, &ok_body(1800, None, &[]), t(601));
    assert_eq!(outcomes(&mut a).len(), 1, "no empty Peers outcome");
    // ...which defaults to 120 s when the tracker gives none; after it, at once.
    a.want_more_peers(t(610));
    assert_eq!(a.next_deadline(), Some(t(721)));
    a.want_more_peers(t(800));
    assert_eq!(a.next_deadline(), Some(t(721)));
    let (_, _, _, event) = one_http(drain(&mut a, t(800)));
    assert_eq!(event, Event::None);
}

#[test]
fn tiny_intervals_are_clamped_by_the_codec() {
    let mut a = announcer(&[&["http://t/announce"]], AnnounceConfig::DEFAULT, 1);
    let (_, req, _, _) = one_http(drain(&mut a, t(0)));
    a.on_http_response(req, &ok_body(0, Some(0), &[]), t(0));
    assert_eq!(a.next_deadline(), Some(t(60)));
}

#[test]
fn tracker_id_is_kept_and_echoed() {
    let mut a = announcer(&[&["http://t/announce"]], AnnounceConfig::DEFAULT, 1);
    let (_, req, _, _) = one_http(drain(&mut a, t(0)));
    let body = dict(vec![
        ("interval", OwnedValue::Int(60)),
        ("tracker id", OwnedValue::str("id 7")),
        ("warning message", OwnedValue::str("be nice")),
    ]);
    a.on_http_response(req, &body.to_bytes(), t(0));
    assert_eq!(
        outcomes(&mut a),
        [Outcome::Warning {
            tracker: TrackerId(0),
            url: "http://t/announce".to_owned(),
            message: "be nice".to_owned()
        }]
    );
    let (_, req, url, _) = one_http(drain(&mut a, t(120)));
    assert_eq!(param(&url, "trackerid"), Some("id%207"));
    // A reply without one keeps the old one.
    a.on_http_response(req, &ok_body(60, None, &[]), t(120));
    let (_, _, url, _) = one_http(drain(&mut a, t(240)));
    assert_eq!(param(&url, "trackerid"), Some("id%207"));
}

#[test]
fn started_completed_stopped_sequence() {
    let mut a = announcer(&[&["http://t/announce"]], AnnounceConfig::DEFAULT, 1);
    let (_, req, _, event) = one_http(drain(&mut a, t(0)));
    assert_eq!(event, Event::Started);
    // Completion while `started` is in flight: `completed` follows after min interval.
    a.torrent_completed(t(5));
    a.on_http_response(req, &ok_body(1800, Some(300), &[]), t(10));
    assert_eq!(a.next_deadline(), Some(t(310)));
    let (_, req, url, event) = one_http(drain(&mut a, t(310)));
    assert_eq!(event, Event::Completed);
    assert_eq!(param(&url, "event"), Some("completed"));
    a.on_http_response(req, &ok_body(1800, Some(300), &[]), t(311));
    // Only once.
    a.torrent_completed(t(400));
    assert_eq!(a.next_deadline(), Some(t(2111)));
    let (_, req, url, event) = one_http(drain(&mut a, t(2111)));
    assert_eq!(event, Event::None);
    assert_eq!(param(&url, "event"), None);
    a.on_http_response(req, &ok_body(1800, Some(300), &[]), t(2111));
    assert_eq!(outcomes(&mut a).len(), 3, "one Swarm per success");
    a.stop(t(2200));
    assert!(a.is_stopping() && !a.is_done());
    let (_, req, url, event) = one_http(drain(&mut a, t(2200)));
    assert_eq!(event, Event::Stopped);
    assert_eq!(param(&url, "numwant"), Some("0"));
    assert_eq!(a.next_deadline(), Some(t(2205)), "stop timeout");
    a.on_http_response(req, &ok_body(1800, None, &[]), t(2201));
    assert!(a.is_done());
    assert_eq!(outcomes(&mut a), [], "a stopped reply yields nothing");
    assert_eq!(drain(&mut a, t(2201)), []);
    assert_eq!(a.next_deadline(), None);
    // Inputs after the end are stale, not errors.
    a.on_http_response(req, b"junk", t(2202));
    a.want_more_peers(t(2202));
    a.torrent_completed(t(2202));
    assert_eq!(drain(&mut a, t(9999)), []);
    assert_eq!(a.counters().stale_inputs, 1);
}

#[test]
fn complete_at_start_sends_started_with_left_zero_and_never_completed() {
    let mut a = announcer(&[&["http://t/announce"]], AnnounceConfig::DEFAULT, 1);
    // The session found the data complete before the first announce went out.
    a.torrent_completed(t(0));
    let seed = AnnounceStats { left: 0, ..stats() };
    let Some(Action::Http { request, url, .. }) = a.poll_action(t(0), &seed) else {
        panic!()
    };
    assert_eq!(param(&url, "event"), Some("started"));
    assert_eq!(param(&url, "left"), Some("0"));
    a.on_http_response(request, &ok_body(60, Some(60), &[]), t(0));
    a.torrent_completed(t(1));
    for now in [60, 120, 180] {
        let Some(Action::Http { request, url, .. }) = a.poll_action(t(now), &seed) else {
            panic!()
        };
        assert_eq!(param(&url, "event"), None, "at {now}");
        a.on_http_response(request, &ok_body(60, Some(60), &[]), t(now));
    }
}

#[test]
fn stopped_goes_only_to_trackers_that_got_started() {
    // Three tiers of one tracker each, so the walk order is fixed.
    let mut a = announcer(
        &[
            &["http://a/announce"],
            &["http://b/announce"],
            &["http://c/announce"],
        ],
        AnnounceConfig::DEFAULT,
        1,
    );
    let (_, req, _, _) = one_http(drain(&mut a, t(0)));
    a.on_failure(req, FailureKind::Network("refused".into()), t(0));
    let (b, req, url, event) = one_http(drain(&mut a, t(0)));
    assert!(url.starts_with("http://b/"));
    assert_eq!(event, Event::Started);
    a.on_http_response(req, &ok_body(1800, None, &[]), t(1));
    a.stop(t(10));
    let (tracker, req, url, event) = one_http(drain(&mut a, t(10)));
    assert_eq!((tracker, event), (b, Event::Stopped));
    assert!(url.starts_with("http://b/"));
    // One attempt: a failure ends it too.
    a.on_failure(req, FailureKind::HttpStatus(500), t(11));
    assert!(a.is_done());
    assert_eq!(
        outcomes(&mut a)
            .iter()
            .filter(|o| matches!(o, Outcome::TrackerError { .. }))
            .count(),
        1,
        "only a's failure is reported"
    );
}

#[test]
fn stop_waits_at_most_the_stop_timeout() {
    let config = AnnounceConfig {
        announce_to_all_tiers: true,
        ..AnnounceConfig::DEFAULT
    };
    let mut a = announcer(
        &[&["http://a/announce"], &["udp://b:1"], &["udp://c:1"]],
        config,
        1,
    );
    let actions = drain(&mut a, t(0));
    assert_eq!(actions.len(), 3, "one per tier in all-tiers mode");
    let Some(Action::UdpSend { packet, .. }) = actions.get(1) else {
        panic!("{actions:?}")
    };
    let Ok(Request::Connect(c)) = Request::decode(packet) else {
        panic!()
    };
    // b's `started` goes out; a's is out; c is still connecting (it has heard nothing).
    a.on_udp_packet(
        TrackerId(1),
        addr(TRACKER_ADDR),
        &connect_reply(c.transaction_id, 3),
        t(0),
    );
    let (_, _, req) = one_udp(drain(&mut a, t(0)));
    assert!(matches!(req, Request::Announce(r) if r.event == Event::Started));
    a.stop(t(1));
    let actions = drain(&mut a, t(1));
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert!(matches!(
        &actions[0],
        Action::Http {
            event: Event::Stopped,
            ..
        }
    ));
    let (id, _, req) = one_udp(vec![actions[1].clone()]);
    assert_eq!(id, TrackerId(1));
    assert!(
        matches!(req, Request::Announce(r) if r.event == Event::Stopped && r.connection_id == 3)
    );
    assert_eq!(a.next_deadline(), Some(t(6)));
    assert_eq!(drain(&mut a, t(5)), [], "no retransmit while stopping");
    assert!(!a.is_done());
    assert_eq!(drain(&mut a, t(6)), []);
    assert!(a.is_done());
    assert_eq!(a.next_deadline(), None);
}

#[test]
fn stop_before_anything_answered_is_done_at_once() {
    let mut a = announcer(&[&["http://a/announce"]], AnnounceConfig::DEFAULT, 1);
    a.stop(t(0));
    assert!(a.is_done());
    assert_eq!(drain(&mut a, t(0)), []);
}

// ---- failures, backoff, tiers ----

#[test]
fn failover_to_second_tier_then_promoted_tracker_stays_first() {
    let mut a = announcer(
        &[
            &["http://a1/announce", "http://a2/announce"],
            &["http://b1/announce", "http://b2/announce"],
        ],
        AnnounceConfig::DEFAULT,
        5,
    );
    let tier1: Vec<TrackerId> = a.tiers()[1].clone();
    let mut tried = Vec::new();
    // Both of tier 0 fail, then tier 1's first fails, and its second answers.
    for kind in [
        FailureKind::Network("unreachable".into()),
        FailureKind::HttpStatus(503),
        FailureKind::Timeout,
    ] {
        let (id, req, _, _) = one_http(drain(&mut a, t(0)));
        tried.push(id);
        a.on_failure(req, kind, t(0));
    }
    let (winner, req, _, event) = one_http(drain(&mut a, t(0)));
    assert_eq!(event, Event::Started);
    assert_eq!(tried[2], tier1[0], "tier 1 in its shuffled order");
    assert_eq!(winner, tier1[1]);
    assert!(a.tiers()[0].contains(&tried[0]) && a.tiers()[0].contains(&tried[1]));
    a.on_http_response(req, &ok_body(60, Some(60), &[]), t(1));
    assert_eq!(a.tiers()[1], [tier1[1], tier1[0]], "promoted to the front");
    let errors: Vec<String> = outcomes(&mut a)
        .into_iter()
        .filter_map(|o| match o {
            Outcome::TrackerError { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        [
            "could not reach tracker: unreachable",
            "tracker answered http status 503",
            "tracker did not answer in time"
        ]
    );
    // At the next announce tier 0's backoff (at most 15 s) is over, so it is tried first
    // again, as BEP 12 says; it fails again, and the promoted tracker is asked next.
    let (id, req, _, _) = one_http(drain(&mut a, t(61)));
    assert!(a.tiers()[0].contains(&id), "tier 0 first on every announce");
    a.on_failure(req, FailureKind::Timeout, t(61));
    let (id2, req, _, _) = one_http(drain(&mut a, t(61)));
    assert!(a.tiers()[0].contains(&id2) && id2 != id);
    a.on_failure(req, FailureKind::Timeout, t(61));
    let (id3, _, _, event) = one_http(drain(&mut a, t(61)));
    assert_eq!(
        id3, winner,
        "the promoted tracker is asked before its tier mate"
    );
    assert_eq!(event, Event::None, "it already accepted started");
}

#[test]
fn tier_promotion_within_one_tier() {
    let mut a = announcer(
        &[&[
            "http://x/announce",
            "http://y/announce",
            "http://z/announce",
        ]],
        AnnounceConfig::DEFAULT,
        9,
    );
    let order = a.tiers()[0].clone();
    for _ in 0..2 {
        let (_, req, _, _) = one_http(drain(&mut a, t(0)));
        a.on_failure(req, FailureKind::Timeout, t(0));
    }
    let (id, req, _, _) = one_http(drain(&mut a, t(0)));
    assert_eq!(id, order[2]);
    a.on_http_response(req, &ok_body(1800, None, &[]), t(0));
    // BEP 12's example: tracker3, tracker1, tracker2.
    assert_eq!(a.tiers()[0], [order[2], order[0], order[1]]);
    let (id, _, _, _) = one_http(drain(&mut a, t(1800)));
    assert_eq!(id, order[2]);
}

#[test]
fn backoff_doubles_to_the_cap_with_bounded_jitter() {
    let mut a = announcer(&[&["http://t/announce"]], AnnounceConfig::DEFAULT, 11);
    let mut now = t(0);
    let mut jittered = 0;
    for failure in 1..=10u32 {
        let (id, req, _, _) = one_http(drain(&mut a, now));
        a.on_failure(req, FailureKind::HttpStatus(503), now);
        let status = a.status(id).unwrap();
        assert_eq!(status.failures, failure);
        assert_eq!(status.last_error, Some("tracker answered http status 503"));
        let until = status.backoff_until.unwrap();
        assert_eq!(
            a.next_deadline(),
            Some(until),
            "all trackers back off: earliest retry"
        );
        let full = (15u64 << (failure - 1)).min(1800) * 1_000_000;
        let wait = (until - now).as_micros() as u64;
        assert!(
            wait <= full && wait >= full * 3 / 4,
            "failure {failure}: {wait} vs {full}"
        );
        assert_eq!(
            drain(&mut a, Instant::from_micros(until.as_micros() - 1)),
            []
        );
        jittered += usize::from(wait != full);
        now = until;
    }
    assert!(jittered > 5, "jitter is applied");
    // A success forgives everything.
    let (id, req, _, _) = one_http(drain(&mut a, now));
    a.on_http_response(req, &ok_body(1800, None, &[]), now);
    assert_eq!(a.status(id).unwrap().failures, 0);
    assert_eq!(a.status(id).unwrap().backoff_until, None);
}

#[test]
fn all_trackers_backing_off_wait_for_the_earliest() {
    let mut a = announcer(
        &[&["http://a/announce"], &["http://b/announce"]],
        AnnounceConfig::DEFAULT,
        2,
    );
    let (first, req, _, _) = one_http(drain(&mut a, t(0)));
    a.on_failure(req, FailureKind::Timeout, t(0));
    let (_, req, _, _) = one_http(drain(&mut a, t(10)));
    a.on_failure(req, FailureKind::Timeout, t(10));
    let first_retry = a.status(first).unwrap().backoff_until.unwrap();
    assert_eq!(a.next_deadline(), Some(first_retry));
    let (id, _, _, event) = one_http(drain(&mut a, first_retry));
    assert_eq!((id, event), (first, Event::Started));
}

#[test]
fn failure_reason_and_garbage_are_failures() {
    let mut a = announcer(&[&["http://t/announce"]], AnnounceConfig::DEFAULT, 1);
    let (_, req, _, _) = one_http(drain(&mut a, t(0)));
    let refusal = dict(vec![(
        "failure reason",
        OwnedValue::str("unregistered torrent"),
    )]);
    a.on_http_response(req, &refusal.to_bytes(), t(0));
    let (_, req, _, event) = one_http(drain(&mut a, t(100)));
    assert_eq!(event, Event::Started, "a refused started is sent again");
    a.on_http_response(req, b"<html>502 Bad Gateway</html>", t(100));
    let messages: Vec<String> = outcomes(&mut a)
        .into_iter()
        .map(|o| match o {
            Outcome::TrackerError { message, .. } => message,
            other => panic!("{other:?}"),
        })
        .collect();
    insta::assert_debug_snapshot!(messages, @r#"
    [
        "tracker refused the announce: unregistered torrent",
        "tracker reply is not bencode: invalid bencode at byte 0: unexpected byte 0x3c, expected 'i', 'l', 'd' or a digit",
    ]
    "#);
}

#[test]
fn http_timeout_makes_a_late_reply_stale() {
    let mut a = announcer(&[&["http://t/announce"]], AnnounceConfig::DEFAULT, 1);
    let (id, req, _, _) = one_http(drain(&mut a, t(0)));
    assert_eq!(drain(&mut a, t(29)), []);
    assert_eq!(drain(&mut a, t(30)), []);
    assert_eq!(a.status(id).unwrap().failures, 1);
    a.on_http_response(req, &ok_body(1800, None, &[addr("1.1.1.1:1")]), t(31));
    a.on_failure(req, FailureKind::Timeout, t(31));
    assert_eq!(a.counters().stale_inputs, 2);
    assert_eq!(a.status(id).unwrap().failures, 1);
    assert!(matches!(
        outcomes(&mut a).as_slice(),
        [Outcome::TrackerError { message, .. }] if message == "tracker did not answer in time"
    ));
}

#[test]
fn outcome_queue_is_bounded() {
    let config = AnnounceConfig {
        max_outcomes: 2,
        ..AnnounceConfig::DEFAULT
    };
    let mut a = announcer(&[&["http://t/announce"]], config, 1);
    let mut now = t(0);
    for _ in 0..5 {
        let (_, req, _, _) = one_http(drain(&mut a, now));
        a.on_failure(req, FailureKind::Timeout, now);
        now = a.next_deadline().unwrap();
    }
    assert_eq!(outcomes(&mut a).len(), 2);
    assert_eq!(a.counters().dropped_outcomes, 3);
}

// ---- UDP (BEP 15) ----

#[test]
fn udp_connect_then_announce() {
    let mut a = announcer(
        &[&["udp://tracker.example:6969/announce"]],
        AnnounceConfig::DEFAULT,
        4,
    );
    let actions = drain(&mut a, t(0));
    let Some(Action::UdpSend { host, port, .. }) = actions.first() else {
        panic!("{actions:?}")
    };
    assert_eq!((host.as_str(), *port), ("tracker.example", 6969));
    let (id, _, Request::Connect(connect)) = one_udp(actions) else {
        panic!()
    };
    a.on_udp_packet(
        id,
        addr(TRACKER_ADDR),
        &connect_reply(connect.transaction_id, 0xC1),
        t(1),
    );
    let (_, _, Request::Announce(ann)) = one_udp(drain(&mut a, t(1))) else {
        panic!()
    };
    assert_ne!(
        ann.transaction_id, connect.transaction_id,
        "a new transaction id per request"
    );
    assert_eq!(ann.connection_id, 0xC1);
    assert_eq!(ann.info_hash, HASH);
    assert_eq!(ann.peer_id, PEER_ID);
    assert_eq!((ann.downloaded, ann.left, ann.uploaded), (20, 300, 10));
    assert_eq!(ann.event, Event::Started);
    assert_eq!(ann.key, a.key());
    assert_eq!(ann.num_want, 50);
    assert_eq!(ann.port, 6881);
    let peers = [addr("10.1.1.1:1000"), addr("10.1.1.2:2000")];
    a.on_udp_packet(
        id,
        addr(TRACKER_ADDR),
        &announce_reply(ann.transaction_id, 900, &peers),
        t(2),
    );
    assert_eq!(
        outcomes(&mut a),
        [
            Outcome::Swarm {
                tracker: id,
                complete: Some(5),
                incomplete: Some(7),
                downloaded: None
            },
            Outcome::Peers {
                tracker: id,
                peers: peers.to_vec()
            }
        ]
    );
    assert!(a.status(id).unwrap().started);
    assert_eq!(a.next_deadline(), Some(t(902)));
}

/// An announcer whose UDP tracker answered connect (id 77) and announce at 0 s.
fn udp_announced_at_zero() -> (Announcer, TrackerId) {
    let mut a = announcer(&[&["udp://t:1"]], AnnounceConfig::DEFAULT, 4);
    let (id, _, Request::Connect(c)) = one_udp(drain(&mut a, t(0))) else {
        panic!()
    };
    a.on_udp_packet(
        id,
        addr(TRACKER_ADDR),
        &connect_reply(c.transaction_id, 77),
        t(0),
    );
    let (_, _, Request::Announce(ann)) = one_udp(drain(&mut a, t(0))) else {
        panic!()
    };
    a.on_udp_packet(
        id,
        addr(TRACKER_ADDR),
        &announce_reply(ann.transaction_id, 60, &[]),
        t(0),
    );
    (a, id)
}

#[test]
fn udp_connection_id_is_reused_within_a_minute_then_renewed() {
    // Within 60 s of the connect reply: straight to announce with the same id.
    let (mut a, _) = udp_announced_at_zero();
    a.stop(t(59));
    let (_, _, Request::Announce(stop)) = one_udp(drain(&mut a, t(59))) else {
        panic!()
    };
    assert_eq!(
        (stop.connection_id, stop.event, stop.num_want),
        (77, Event::Stopped, 0)
    );
    // At 60 s it has expired.
    let (mut a, _) = udp_announced_at_zero();
    a.stop(t(60));
    let (_, _, req) = one_udp(drain(&mut a, t(60)));
    assert!(matches!(req, Request::Connect(_)), "{req:?}");
    // The regular re-announce (interval >= 60 s) always needs a new one.
    let (mut a, _) = udp_announced_at_zero();
    let next = a.next_deadline().unwrap();
    assert_eq!(next, t(120), "interval 60 s, default min interval 120 s");
    let (_, _, req) = one_udp(drain(&mut a, next));
    assert!(matches!(req, Request::Connect(_)), "{req:?}");
}

#[test]
fn udp_retransmits_at_15_30_60_then_fails() {
    let config = AnnounceConfig {
        udp_max_retransmits: 8,
        ..AnnounceConfig::DEFAULT
    };
    let mut a = announcer(&[&["udp://t:1"]], config, 4);
    let mut sends = Vec::new();
    let mut tids = Vec::new();
    let mut now = t(0);
    while sends.len() < 20 {
        for action in drain(&mut a, now) {
            let (_, _, Request::Connect(c)) = one_udp(vec![action]) else {
                panic!()
            };
            sends.push(now.as_micros() / 1_000_000);
            tids.push(c.transaction_id);
        }
        if a.status(TrackerId(0)).unwrap().failures > 0 {
            break;
        }
        now = a.next_deadline().unwrap();
    }
    // BEP 15: "Connect times out: t = 0, 15, 45, 105, ..."; n goes up to 8 (3840 s).
    assert_eq!(sends, [0, 15, 45, 105, 225, 465, 945, 1905, 3825]);
    assert_eq!(now, t(3825 + 3840), "fails after the last timeout");
    assert!(
        tids.windows(2).all(|w| w[0] == w[1]),
        "a retransmit repeats the request"
    );
    assert!(matches!(
        outcomes(&mut a).as_slice(),
        [Outcome::TrackerError { message, .. }] if message == "tracker did not answer in time"
    ));
    // The default gives up after two retransmits.
    let mut a = announcer(&[&["udp://t:1"]], AnnounceConfig::DEFAULT, 4);
    let mut sends = Vec::new();
    let mut now = t(0);
    while a.status(TrackerId(0)).unwrap().failures == 0 {
        sends.extend(
            drain(&mut a, now)
                .iter()
                .map(|_| now.as_micros() / 1_000_000),
        );
        now = a.next_deadline().unwrap();
    }
    assert_eq!(sends, [0, 15, 45]);
    assert_eq!(
        a.status(TrackerId(0))
            .unwrap()
            .backoff_until
            .map(|b| b > t(105)),
        Some(true)
    );
}

#[test]
fn udp_announce_retransmit_reconnects_when_the_id_expires() {
    let config = AnnounceConfig {
        udp_max_retransmits: 8,
        ..AnnounceConfig::DEFAULT
    };
    let mut a = announcer(&[&["udp://t:1"]], config, 4);
    let (id, _, Request::Connect(c)) = one_udp(drain(&mut a, t(0))) else {
        panic!()
    };
    a.on_udp_packet(
        id,
        addr(TRACKER_ADDR),
        &connect_reply(c.transaction_id, 5),
        t(1),
    );
    // BEP 15's "announce times out" example, announcing at once after the connect reply.
    let mut log = Vec::new();
    let mut now = t(1);
    while now < t(300) {
        for action in drain(&mut a, now) {
            let (_, _, req) = one_udp(vec![action]);
            let kind = match req {
                Request::Connect(_) => "connect",
                Request::Announce(_) => "announce",
                Request::Scrape(_) => "scrape",
            };
            log.push(format!("{} {kind}", now.as_micros() / 1_000_000));
        }
        now = a.next_deadline().unwrap();
    }
    assert_eq!(
        log,
        [
            "1 announce",
            "16 announce",
            "46 announce",
            "106 connect",
            "226 connect"
        ]
    );
}

#[test]
fn udp_ignores_wrong_transactions_and_garbage() {
    let mut a = announcer(&[&["udp://t:1"]], AnnounceConfig::DEFAULT, 4);
    let (id, _, Request::Connect(c)) = one_udp(drain(&mut a, t(0))) else {
        panic!()
    };
    let from = addr(TRACKER_ADDR);
    a.on_udp_packet(id, from, &connect_reply(c.transaction_id ^ 1, 9), t(1));
    a.on_udp_packet(id, from, b"\x00\x00", t(1));
    a.on_udp_packet(id, from, &[0xFF; 40], t(1));
    // An announce reply with the right id answers nothing we asked at this step.
    a.on_udp_packet(id, from, &announce_reply(c.transaction_id, 60, &[]), t(1));
    a.on_udp_packet(id, from, &udp_error(c.transaction_id ^ 1, "nope"), t(1));
    assert_eq!(a.counters().ignored_packets, 5);
    // A packet for a tracker with nothing in flight, or that does not exist, is stale.
    a.on_udp_packet(
        TrackerId(9),
        from,
        &connect_reply(c.transaction_id, 9),
        t(1),
    );
    assert_eq!(a.counters().stale_inputs, 1);
    assert_eq!(drain(&mut a, t(1)), []);
    assert_eq!(outcomes(&mut a), []);
    a.on_udp_packet(id, from, &connect_reply(c.transaction_id, 9), t(2));
    let (_, _, req) = one_udp(drain(&mut a, t(2)));
    assert!(matches!(req, Request::Announce(ann) if ann.connection_id == 9));
}

fn udp_error(tid: u32, message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    udp::ErrorResponse {
        transaction_id: tid,
        message: message.as_bytes(),
    }
    .encode(&mut out);
    out
}

#[test]
fn udp_error_packet_is_a_failure_and_drops_the_connection_id() {
    let mut a = announcer(&[&["udp://t:1"]], AnnounceConfig::DEFAULT, 4);
    let (id, _, Request::Connect(c)) = one_udp(drain(&mut a, t(0))) else {
        panic!()
    };
    a.on_udp_packet(
        id,
        addr(TRACKER_ADDR),
        &connect_reply(c.transaction_id, 5),
        t(0),
    );
    let (_, _, Request::Announce(ann)) = one_udp(drain(&mut a, t(0))) else {
        panic!()
    };
    a.on_udp_packet(
        id,
        addr(TRACKER_ADDR),
        &udp_error(ann.transaction_id, "Connection ID missmatch.\0"),
        t(1),
    );
    assert_eq!(
        outcomes(&mut a),
        [Outcome::TrackerError {
            tracker: id,
            url: "udp://t:1".to_owned(),
            message: "tracker refused the announce: Connection ID missmatch.".to_owned()
        }]
    );
    let retry = a.status(id).unwrap().backoff_until.unwrap();
    assert!(
        retry < t(60),
        "retried while the old id would still be valid"
    );
    let (_, _, req) = one_udp(drain(&mut a, retry));
    assert!(matches!(req, Request::Connect(_)), "{req:?}");
}

#[test]
fn long_error_text_is_cut() {
    let mut a = announcer(&[&["http://t/announce"]], AnnounceConfig::DEFAULT, 1);
    let (id, req, _, _) = one_http(drain(&mut a, t(0)));
    a.on_failure(req, FailureKind::Network("é".repeat(5000)), t(0));
    let kept = a.status(id).unwrap().last_error.unwrap();
    assert!(kept.len() <= 1024 && kept.starts_with("could not reach tracker: é"));
}

#[test]
fn udp_driver_failure_is_a_failure() {
    let mut a = announcer(&[&["udp://nx.example:1"]], AnnounceConfig::DEFAULT, 4);
    let (id, req, _) = one_udp(drain(&mut a, t(0)));
    a.on_failure(req, FailureKind::Network("no such host".into()), t(0));
    let status = a.status(id).unwrap();
    assert_eq!(status.failures, 1);
    assert!(!status.in_flight);
    // The request is over: the next wake-up is the backoff, not a retransmit.
    assert_eq!(a.next_deadline(), status.backoff_until);
}

// ---- scripted runs against fake trackers ----

/// How a fake tracker answers.
#[derive(Clone, Debug)]
enum Reply {
    Ok {
        interval: u32,
        peers: Vec<SocketAddr>,
    },
    Status(u16),
    Refuse(&'static str),
    Silent,
}

/// A fake tracker behaviour: by URL and time.
type Script = fn(&str, Instant) -> Reply;

enum Input {
    Http(RequestId, Vec<u8>),
    Fail(RequestId, FailureKind),
    Udp(TrackerId, Vec<u8>),
}

fn secs(now: Instant) -> String {
    let us = now.as_micros();
    format!("{:>5}.{:03}", us / 1_000_000, us % 1_000_000 / 1000)
}

/// The fake trackers' answers to `action`, built with the codecs.
fn answer(
    a: &Announcer,
    script: Script,
    action: &Action,
    now: Instant,
    log: &mut String,
) -> Vec<Input> {
    let stamp = secs(now);
    match action {
        Action::Http {
            tracker,
            request,
            url,
            event,
        } => {
            let base = url_of(a, *tracker);
            let _ = writeln!(
                log,
                "{stamp}  -> {base} {event:?} left={}",
                param(url, "left").unwrap_or("?")
            );
            match script(base, now) {
                Reply::Ok { interval, peers } => {
                    vec![Input::Http(
                        *request,
                        ok_body(i64::from(interval), None, &peers),
                    )]
                }
                Reply::Status(code) => vec![Input::Fail(*request, FailureKind::HttpStatus(code))],
                Reply::Refuse(why) => vec![Input::Http(
                    *request,
                    dict(vec![("failure reason", OwnedValue::str(why))]).to_bytes(),
                )],
                Reply::Silent => vec![],
            }
        }
        Action::UdpSend {
            tracker, packet, ..
        } => {
            let base = url_of(a, *tracker);
            let req = Request::decode(packet).unwrap();
            let what = match req {
                Request::Connect(_) => "connect".to_owned(),
                Request::Announce(ann) => format!("announce {:?} left={}", ann.event, ann.left),
                Request::Scrape(_) => "scrape".to_owned(),
            };
            let _ = writeln!(log, "{stamp}  -> {base} {what}");
            let tid = req.transaction_id();
            let reply = match (script(base, now), req) {
                (Reply::Ok { .. }, Request::Connect(_)) => connect_reply(tid, 0xC0FFEE),
                (Reply::Ok { interval, peers }, Request::Announce(_)) => {
                    announce_reply(tid, interval, &peers)
                }
                (Reply::Refuse(why), _) => udp_error(tid, why),
                _ => return vec![],
            };
            vec![Input::Udp(*tracker, reply)]
        }
    }
}

/// Drives `a` against `script` from 0 s to `until`, stopping at `stop_at`; returns the log.
fn run(a: &mut Announcer, script: Script, until: Instant, stop_at: Option<Instant>) -> String {
    let mut log = String::new();
    let mut now = t(0);
    let mut stopped = false;
    for _ in 0..10_000 {
        if let Some(s) = stop_at.filter(|s| !stopped && now >= *s) {
            let _ = writeln!(log, "{}  stop", secs(s));
            a.stop(now);
            stopped = true;
        }
        loop {
            let mut inbox = Vec::new();
            while let Some(action) = a.poll_action(now, &stats()) {
                inbox.extend(answer(a, script, &action, now, &mut log));
            }
            if inbox.is_empty() {
                break;
            }
            for input in inbox {
                match input {
                    Input::Http(req, body) => a.on_http_response(req, &body, now),
                    Input::Fail(req, kind) => a.on_failure(req, kind, now),
                    Input::Udp(tracker, bytes) => {
                        a.on_udp_packet(tracker, addr(TRACKER_ADDR), &bytes, now)
                    }
                }
            }
        }
        while let Some(outcome) = a.poll_outcome() {
            let line = match outcome {
                Outcome::Peers { tracker, peers } => {
                    format!("{} peers from {}", peers.len(), url_of(a, tracker))
                }
                Outcome::Swarm {
                    tracker,
                    complete,
                    incomplete,
                    ..
                } => format!(
                    "swarm {}: {} seeds {} leechers",
                    url_of(a, tracker),
                    complete.unwrap_or(0),
                    incomplete.unwrap_or(0)
                ),
                Outcome::Warning { url, message, .. } => format!("warning {url}: {message}"),
                Outcome::TrackerError { url, message, .. } => format!("error {url}: {message}"),
            };
            let _ = writeln!(log, "{}     {line}", secs(now));
        }
        if a.is_done() {
            let _ = writeln!(log, "{}  done", secs(now));
            return log;
        }
        let mut next = a.next_deadline();
        if let Some(s) = stop_at.filter(|_| !stopped) {
            next = Some(next.map_or(s, |n| n.min(s)));
        }
        match next {
            Some(n) if n <= until => now = now.max(n),
            _ => return log,
        }
    }
    panic!("the run did not settle:\n{log}");
}

/// Tier 0: an HTTP tracker that answers 503 for the first 1000 s, and a silent UDP one;
/// tier 1: a working HTTP tracker.
fn failover_script(url: &str, now: Instant) -> Reply {
    let peers = vec![addr("10.0.0.1:6881"), addr("10.0.0.2:6881")];
    match url {
        "http://primary.example/announce" if now < t(1000) => Reply::Status(503),
        "http://primary.example/announce" => Reply::Ok {
            interval: 1800,
            peers: peers[..1].to_vec(),
        },
        "udp://silent.example:6969" => Reply::Silent,
        "http://backup.example/announce" => Reply::Ok {
            interval: 1800,
            peers,
        },
        _ => Reply::Refuse("unknown tracker"),
    }
}

#[test]
fn scripted_failover_log() {
    let mut a = announcer(
        &[
            &[
                "http://primary.example/announce",
                "udp://silent.example:6969",
            ],
            &["http://backup.example/announce"],
        ],
        AnnounceConfig::DEFAULT,
        42,
    );
    let log = run(&mut a, failover_script, t(4000), Some(t(3700)));
    insta::assert_snapshot!(log);
    assert!(a.is_done());
}

fn random_script(url: &str, now: Instant) -> Reply {
    // Deterministic but irregular: depends on the URL and the minute.
    let minute = now.as_micros() / 60_000_000;
    let h = url
        .bytes()
        .fold(minute, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    match h % 5 {
        0 => Reply::Silent,
        1 => Reply::Status(502),
        2 => Reply::Refuse("busy"),
        _ => Reply::Ok {
            interval: 300 + (h % 7) as u32 * 100,
            peers: vec![addr("10.9.9.9:1")],
        },
    }
}

#[test]
fn same_seed_same_run() {
    let list: &[&[&str]] = &[
        &["http://a/announce", "udp://b:1", "http://c/announce"],
        &["udp://d:2", "http://e/announce"],
    ];
    let go = |seed| {
        let mut a = announcer(list, AnnounceConfig::DEFAULT, seed);
        run(&mut a, random_script, t(20_000), Some(t(19_000)))
    };
    let first = go(1);
    assert!(first.lines().count() > 20, "{first}");
    assert_eq!(first, go(1));
    assert_ne!(first, go(2));
}

#[test]
fn announce_to_all_tiers_runs_each_tier() {
    let config = AnnounceConfig {
        announce_to_all_tiers: true,
        ..AnnounceConfig::DEFAULT
    };
    let mut a = announcer(
        &[
            &["http://a/announce"],
            &["http://b/announce"],
            &["http://c/announce"],
        ],
        config,
        1,
    );
    let actions = drain(&mut a, t(0));
    let urls: Vec<&str> = actions
        .iter()
        .map(|action| match action {
            Action::Http { url, .. } => url.split('?').next().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        urls,
        [
            "http://a/announce",
            "http://b/announce",
            "http://c/announce"
        ]
    );
}

// ---- robustness ----

#[derive(Clone, Debug)]
enum Op {
    Advance(u32),
    ReplyHttp(usize, u8),
    FailHttp(usize),
    UdpGarbage(u8, Vec<u8>),
    UdpConnectReply(u8, bool),
    Completed,
    MorePeers,
    Stop,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u32..4000).prop_map(Op::Advance),
        3 => (0usize..8, 0u8..4).prop_map(|(i, k)| Op::ReplyHttp(i, k)),
        2 => (0usize..8).prop_map(Op::FailHttp),
        1 => (0u8..6, proptest::collection::vec(any::<u8>(), 0..40)).prop_map(|(i, b)| Op::UdpGarbage(i, b)),
        2 => (0u8..6, any::<bool>()).prop_map(|(i, ok)| Op::UdpConnectReply(i, ok)),
        1 => Just(Op::Completed),
        1 => Just(Op::MorePeers),
        1 => Just(Op::Stop),
    ]
}

proptest! {
    /// Any sequence of inputs: no panic, drains terminate, one request per lane, queues bounded,
    /// deadlines never in the past after a drain (no busy loop).
    #[test]
    fn arbitrary_inputs_keep_the_invariants(seed in any::<u64>(), all_tiers in any::<bool>(),
                                            ops in proptest::collection::vec(op(), 0..120)) {
        let config = AnnounceConfig { announce_to_all_tiers: all_tiers, max_outcomes: 8, udp_max_retransmits: 3, ..AnnounceConfig::DEFAULT };
        let (mut a, _) = Announcer::new(
            tiers(&[&["http://a/announce", "udp://b:1"], &["udp://c:2", "http://d/announce"], &["udp://e:3"]]),
            config, Rng::new(seed), t(0));
        let mut now = t(0);
        let mut http: Vec<RequestId> = Vec::new();
        let mut last_udp: BTreeMap<TrackerId, Vec<u8>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Advance(s) => now = now + Duration::from_secs(u64::from(s)),
                Op::ReplyHttp(i, kind) => if let Some(&r) = http.get(i) {
                    let body = match kind {
                        0 => ok_body(100, Some(70), &[addr("1.2.3.4:5")]),
                        1 => b"d14:failure reason3:nope".to_vec(),
                        2 => b"garbage".to_vec(),
                        _ => ok_body(-5, None, &[]),
                    };
                    a.on_http_response(r, &body, now);
                },
                Op::FailHttp(i) => if let Some(&r) = http.get(i) {
                    a.on_failure(r, FailureKind::HttpStatus(503), now);
                },
                Op::UdpGarbage(i, bytes) => a.on_udp_packet(TrackerId(u32::from(i)), addr(TRACKER_ADDR), &bytes, now),
                Op::UdpConnectReply(i, ok) => {
                    let id = TrackerId(u32::from(i));
                    if let Some(packet) = last_udp.get(&id) {
                        let req = Request::decode(packet).unwrap();
                        let reply = match (ok, req) {
                            (true, Request::Connect(c)) => connect_reply(c.transaction_id, 1),
                            (true, Request::Announce(r)) => announce_reply(r.transaction_id, 61, &[addr("5.6.7.8:9")]),
                            (_, other) => udp_error(other.transaction_id(), "no"),
                        };
                        a.on_udp_packet(id, addr(TRACKER_ADDR), &reply, now);
                    }
                }
                Op::Completed => a.torrent_completed(now),
                Op::MorePeers => a.want_more_peers(now),
                Op::Stop => a.stop(now),
            }
            let mut n = 0;
            while let Some(action) = a.poll_action(now, &stats()) {
                n += 1;
                prop_assert!(n < 100);
                match action {
                    Action::Http { request, .. } => { http.insert(0, request); http.truncate(8); }
                    Action::UdpSend { tracker, packet, .. } => {
                        prop_assert!(packet.len() == 16 || packet.len() == 98);
                        last_udp.insert(tracker, packet);
                    }
                }
            }
            if let Some(d) = a.next_deadline() {
                prop_assert!(d > now, "deadline {d:?} not after now {now:?} after a drain");
            }
            let busy = a.trackers.iter().filter(|t| t.request.is_some()).count();
            if !a.is_stopping() {
                prop_assert!(busy <= a.lanes.len());
            }
            prop_assert!(a.outcomes.len() <= 8);
            prop_assert_eq!(a.is_done(), a.is_stopping() && busy == 0);
        }
    }
}

/// `wants_poll` is true while a poll could act: at first, at a deadline, and after an input
/// until a poll answers `None`; false in between (debug builds also probe each `false`).
#[test]
fn wants_poll_follows_deadlines_and_inputs() {
    let mut a = announcer(
        &[&["http://t.example/announce"]],
        AnnounceConfig::DEFAULT,
        3,
    );
    assert!(a.wants_poll(t(0)));
    let (_, request, _, _) = one_http(drain(&mut a, t(0)));
    // The request is in flight: nothing to do before its timeout.
    let timeout = a
        .next_deadline()
        .expect("a request in flight has a deadline");
    assert!(timeout > t(1));
    assert!(!a.wants_poll(t(1)));
    assert!(a.wants_poll(timeout));
    // An answer is an input: the next poll must run, then there is nothing until the interval.
    a.on_http_response(request, &ok_body(1800, None, &[]), t(2));
    assert!(a.wants_poll(t(2)));
    assert!(drain(&mut a, t(2)).is_empty());
    assert!(!a.wants_poll(t(3)));
    assert_eq!(a.next_deadline(), Some(t(2 + 1800)));
    assert!(a.wants_poll(t(2 + 1800)));
}
