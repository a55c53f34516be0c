//! HTTP tracker protocol: announce URLs (BEP 3, 7, 23), scrape URLs (BEP 48) and the bencoded
//! replies to both.
//!
//! URLs are written into a caller-owned `String` (appended, never cleared). Binary values
//! (`info_hash`, `peer_id`, `trackerid`) are percent-encoded the way libtorrent and Transmission
//! send them: RFC 3986 unreserved bytes (`A-Z a-z 0-9 - . _ ~`) literal, every other byte as
//! `%XX` with uppercase hex. Trackers compare the decoded bytes, but some caches and a few
//! trackers compare the raw query, so matching the big clients byte for byte is the safe choice.
//!
//! URL decisions:
//! - A query already in the announce URL (private trackers put the passkey there) is kept and
//!   our parameters follow it after `&`; otherwise they start with `?`.
//! - A fragment (`#...`) is dropped: HTTP clients never send it, and appending after it would
//!   hide our parameters inside the fragment.
//! - ASCII control characters (CR, LF, TAB, NUL, DEL...) are refused: they never belong in a URL
//!   and CR/LF in a request line is header injection by a hostile `.torrent`. A space or a
//!   non-ASCII byte in the announce URL is percent-encoded, as browsers do.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{
    AddressFamily, AnnounceRequest, AnnounceResponse, CompactPeers, PeerCollector, ResponseLimits,
    ScrapeStats, count,
};
use crate::bencode::{self, DecodeError, Limits, Value};

/// Errors from building URLs and from parsing tracker replies.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The announce URL is not `http://` or `https://` (UDP URLs go to [`super::udp`]).
    #[error("tracker url '{url}' does not start with http:// or https://")]
    NotHttp {
        /// The URL (its first 64 characters).
        url: String,
    },
    /// The announce URL holds an ASCII control character.
    #[error("tracker url has a control character at byte {offset}")]
    ControlChar {
        /// Byte offset of the character in the URL.
        offset: usize,
    },
    /// The announce URL's last path component does not start with `announce` (BEP 48).
    #[error("tracker url path does not end in 'announce...', so it has no scrape url (BEP 48)")]
    ScrapeUnsupported,
    /// The reply body is larger than [`ResponseLimits::max_body`].
    #[error("tracker reply is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Body length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The reply body is not bencode (often an HTML error page).
    #[error("tracker reply is not bencode: {0}")]
    Bencode(#[from] DecodeError),
    /// The reply is bencode but not a dictionary.
    #[error("tracker reply is a bencode {found}, expected a dictionary")]
    NotADict {
        /// The type found.
        found: &'static str,
    },
    /// The tracker answered with `failure reason`: it refused the request.
    #[error("tracker refused the request: {0}")]
    Failure(String),
    /// A known key holds the wrong bencode type.
    #[error("tracker reply key '{key}' is a {found}, expected {expected}")]
    WrongType {
        /// The key.
        key: &'static str,
        /// What BEP 3 / 7 / 23 / 48 says it holds.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// A scrape reply without the `files` dictionary.
    #[error("tracker scrape reply has no 'files' dictionary")]
    MissingFiles,
}

/// Appends `bytes` percent-encoded: RFC 3986 unreserved bytes literal, the rest as `%XX`
/// (uppercase hex), exactly what libtorrent and Transmission put in a tracker URL.
pub fn percent_encode(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            push_escape(out, b);
        }
    }
}

fn push_escape(out: &mut String, b: u8) {
    out.push('%');
    out.push(hex_upper(b >> 4));
    out.push(hex_upper(b & 0x0f));
}

fn hex_upper(nibble: u8) -> char {
    let n = nibble & 0x0f;
    char::from(if n < 10 { b'0' + n } else { b'A' + n - 10 })
}

/// An announce URL split into scheme+authority+path and the query, the fragment dropped.
struct SplitUrl<'a> {
    base: &'a str,
    query: Option<&'a str>,
}

fn split_url(url: &str) -> Result<SplitUrl<'_>, HttpError> {
    if let Some(offset) = url.bytes().position(|b| b.is_ascii_control()) {
        return Err(HttpError::ControlChar { offset });
    }
    let http = ["http://", "https://"].iter().any(|prefix| {
        url.get(..prefix.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(prefix))
    });
    if !http {
        return Err(HttpError::NotHttp {
            url: url.chars().take(64).collect(),
        });
    }
    let without_fragment = url.split('#').next().unwrap_or_default();
    Ok(match without_fragment.split_once('?') {
        Some((base, query)) => SplitUrl {
            base,
            query: Some(query),
        },
        None => SplitUrl {
            base: without_fragment,
            query: None,
        },
    })
}

/// Appends part of the caller's URL, escaping only what cannot appear in a request line.
fn push_url_text(out: &mut String, text: &str) {
    for &b in text.as_bytes() {
        if b == b' ' || !b.is_ascii() {
            push_escape(out, b);
        } else {
            out.push(char::from(b));
        }
    }
}

/// Appends the base URL and the query separator, keeping an existing query.
fn push_base(out: &mut String, url: &SplitUrl<'_>, base: &str) {
    push_url_text(out, base);
    out.push('?');
    if let Some(query) = url.query {
        push_url_text(out, query);
        if !query.is_empty() && !query.ends_with('&') {
            out.push('&');
        }
    }
}

/// Appends the full announce URL for `req` to `out`.
///
/// Parameter order follows libtorrent: `info_hash, peer_id, port, uploaded, downloaded, left,
/// compact, event, numwant, key, trackerid, ip`; optional ones are omitted when `None`. `key`
/// is 8 uppercase hex digits as libtorrent and Transmission send it.
pub fn write_announce_url(
    out: &mut String,
    announce: &str,
    req: &AnnounceRequest<'_>,
) -> Result<(), HttpError> {
    let url = split_url(announce)?;
    push_base(out, &url, url.base);
    out.push_str("info_hash=");
    percent_encode(out, &req.info_hash);
    out.push_str("&peer_id=");
    percent_encode(out, &req.peer_id);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "&port={}&uploaded={}&downloaded={}&left={}&compact={}",
        req.port,
        req.uploaded,
        req.downloaded,
        req.left,
        u8::from(req.compact)
    );
    if let Some(event) = req.event.http_value() {
        out.push_str("&event=");
        out.push_str(event);
    }
    if let Some(n) = req.num_want {
        let _ = write!(out, "&numwant={n}");
    }
    if let Some(key) = req.key {
        let _ = write!(out, "&key={key:08X}");
    }
    if let Some(id) = req.tracker_id {
        out.push_str("&trackerid=");
        percent_encode(out, id);
    }
    if let Some(ip) = req.ip {
        out.push_str("&ip=");
        percent_encode(out, ip.to_string().as_bytes());
    }
    Ok(())
}

/// Where the last path component of an announce URL's base starts, if it is `announce...`.
fn announce_component(base: &str) -> Option<usize> {
    let after_scheme = base.find("://")? + 3;
    let path_start = after_scheme + base.get(after_scheme..)?.find('/')?;
    let last = path_start + base.get(path_start..)?.rfind('/')? + 1;
    base.get(last..)?.starts_with("announce").then_some(last)
}

/// The scrape URL for an announce URL by the BEP 48 convention: the last path component must
/// start with `announce`, which becomes `scrape` (`/announce.php` → `/scrape.php`); the query is
/// kept (passkeys) and the fragment dropped. `None` when the tracker has no scrape URL.
pub fn scrape_url(announce: &str) -> Option<String> {
    let url = split_url(announce).ok()?;
    let last = announce_component(url.base)?;
    let mut out = String::with_capacity(announce.len());
    push_url_text(&mut out, url.base.get(..last)?);
    out.push_str("scrape");
    push_url_text(&mut out, url.base.get(last + "announce".len()..)?);
    if let Some(query) = url.query {
        out.push('?');
        push_url_text(&mut out, query);
    }
    Some(out)
}

/// Appends the scrape URL for `announce` with one `info_hash` parameter per hash (BEP 48).
pub fn write_scrape_url(
    out: &mut String,
    announce: &str,
    info_hashes: &[[u8; 20]],
) -> Result<(), HttpError> {
    let url = split_url(announce)?;
    let last = announce_component(url.base).ok_or(HttpError::ScrapeUnsupported)?;
    let (head, tail) = url
        .base
        .split_at_checked(last)
        .ok_or(HttpError::ScrapeUnsupported)?;
    let tail = tail.get("announce".len()..).unwrap_or_default();
    let mut base = String::with_capacity(url.base.len());
    base.push_str(head);
    base.push_str("scrape");
    base.push_str(tail);
    push_base(out, &url, &base);
    for (i, hash) in info_hashes.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str("info_hash=");
        percent_encode(out, hash);
    }
    Ok(())
}

/// A successful scrape reply (BEP 48).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ScrapeResponse {
    /// Counts per info hash.
    pub files: BTreeMap<[u8; 20], ScrapeStats>,
    /// Entries dropped: key not 20 bytes, value not a dictionary, or beyond `max_scrape_files`.
    pub ignored: usize,
}

/// Decodes the top-level dictionary of a reply and handles `failure reason`.
fn top_dict<'a>(body: &'a [u8], limits: &ResponseLimits) -> Result<Value<'a>, HttpError> {
    if body.len() > limits.max_body {
        return Err(HttpError::TooLarge {
            len: body.len(),
            max: limits.max_body,
        });
    }
    // Lenient: some trackers send unsorted keys, and some append a newline after the value.
    let (value, _used) = bencode::decode_prefix(body, Limits::lenient())?;
    if value.as_dict().is_none() {
        return Err(HttpError::NotADict {
            found: value.type_name(),
        });
    }
    if let Some(reason) = value.get(b"failure reason") {
        let bytes = reason.as_bytes().ok_or(HttpError::WrongType {
            key: "failure reason",
            expected: "a string",
            found: reason.type_name(),
        })?;
        return Err(HttpError::Failure(text(bytes, limits.max_message)));
    }
    Ok(value)
}

/// Lossy UTF-8 of at most `max` bytes of `bytes`.
fn text(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(bytes.get(..max).unwrap_or(bytes)).into_owned()
}

fn int_key(dict: &Value<'_>, key: &'static str) -> Result<Option<i64>, HttpError> {
    match dict.get(key.as_bytes()) {
        None => Ok(None),
        Some(v) => v.as_int().map(Some).ok_or(HttpError::WrongType {
            key,
            expected: "an integer",
            found: v.type_name(),
        }),
    }
}

fn bytes_key<'a>(dict: &Value<'a>, key: &'static str) -> Result<Option<&'a [u8]>, HttpError> {
    match dict.get(key.as_bytes()) {
        None => Ok(None),
        Some(v) => v.as_bytes().map(Some).ok_or(HttpError::WrongType {
            key,
            expected: "a string",
            found: v.type_name(),
        }),
    }
}

/// Parses an announce reply (BEP 3, with BEP 23 compact `peers` and BEP 7 `peers6`).
///
/// Decisions: a known key with the wrong type fails the whole reply (the tracker is broken
/// and the caller backs off), but inside a dictionary-form peer list a bad entry is only
/// skipped and counted. Peers given by host name are skipped: the core resolves nothing and
/// real trackers send addresses. A missing `interval` takes [`ResponseLimits::default_interval`].
/// A `failure reason` gives [`HttpError::Failure`] whatever else the reply holds.
pub fn parse_announce_response(
    body: &[u8],
    limits: &ResponseLimits,
) -> Result<AnnounceResponse, HttpError> {
    let top = top_dict(body, limits)?;
    let interval = int_key(&top, "interval")?
        .and_then(|s| limits.clamp_interval(s))
        .unwrap_or(limits.default_interval);
    let min_interval = int_key(&top, "min interval")?.and_then(|s| limits.clamp_interval(s));
    let tracker_id = bytes_key(&top, "tracker id")?
        .filter(|id| !id.is_empty() && id.len() <= limits.max_tracker_id)
        .map(<[u8]>::to_vec);
    let warning = bytes_key(&top, "warning message")?.map(|w| text(w, limits.max_message));
    let complete = int_key(&top, "complete")?.and_then(count);
    let incomplete = int_key(&top, "incomplete")?.and_then(count);
    let downloaded = int_key(&top, "downloaded")?.and_then(count);

    let mut collector = PeerCollector::new(limits.max_peers);
    for (key, family) in [("peers", AddressFamily::V4), ("peers6", AddressFamily::V6)] {
        if let Some(v) = top.get(key.as_bytes()) {
            collect_peers(&mut collector, key, v, family)?;
        }
    }
    let (peers, peers_ignored) = collector.finish();
    Ok(AnnounceResponse {
        interval,
        min_interval,
        tracker_id,
        warning,
        complete,
        incomplete,
        downloaded,
        peers,
        peers_ignored,
    })
}

/// A peer list is a compact string (BEP 23 / BEP 7) or a list of dictionaries (BEP 3);
/// trackers may pick either whatever we asked, so both are accepted under both keys.
fn collect_peers(
    collector: &mut PeerCollector,
    key: &'static str,
    value: &Value<'_>,
    family: AddressFamily,
) -> Result<(), HttpError> {
    if let Some(bytes) = value.as_bytes() {
        collector.offer_compact(CompactPeers::new(bytes, family));
        return Ok(());
    }
    let list = value.as_list().ok_or(HttpError::WrongType {
        key,
        expected: "a string or a list",
        found: value.type_name(),
    })?;
    for entry in list {
        match dict_peer(entry) {
            Some(addr) => collector.offer(addr),
            None => collector.ignore(1),
        }
    }
    Ok(())
}

/// One BEP 3 peer dictionary: `ip` (IPv4 or IPv6 text, brackets tolerated) and `port`.
/// The optional `peer id` is not kept: compact replies never carry it and the handshake
/// tells us the real one.
fn dict_peer(entry: &Value<'_>) -> Option<core::net::SocketAddr> {
    let ip = entry.get(b"ip")?.as_str()?;
    let ip = ip
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(ip);
    let ip: core::net::IpAddr = ip.parse().ok()?;
    let port = u16::try_from(entry.get(b"port")?.as_int()?).ok()?;
    Some(core::net::SocketAddr::new(ip, port))
}

/// Parses a scrape reply (BEP 48): `files` maps 20-byte info hashes to `complete`,
/// `downloaded`, `incomplete`. Missing or negative counts read as 0.
pub fn parse_scrape_response(
    body: &[u8],
    limits: &ResponseLimits,
) -> Result<ScrapeResponse, HttpError> {
    let top = top_dict(body, limits)?;
    let files = top.get(b"files").ok_or(HttpError::MissingFiles)?;
    let files = files.as_dict().ok_or(HttpError::WrongType {
        key: "files",
        expected: "a dictionary",
        found: files.type_name(),
    })?;
    let mut out = ScrapeResponse::default();
    for (key, stats) in files.entries() {
        let hash: Option<[u8; 20]> = (*key).try_into().ok();
        match (hash, stats.as_dict()) {
            (Some(hash), Some(_)) if out.files.len() < limits.max_scrape_files => {
                let n = |k: &[u8]| stats.get(k).and_then(Value::as_int).and_then(count);
                out.files.insert(
                    hash,
                    ScrapeStats {
                        complete: n(b"complete").unwrap_or(0),
                        downloaded: n(b"downloaded").unwrap_or(0),
                        incomplete: n(b"incomplete").unwrap_or(0),
                    },
                );
            }
            _ => out.ignored += 1,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::OwnedValue;
    use crate::tracker::Event;
    use core::net::{IpAddr, Ipv6Addr, SocketAddr};
    use proptest::prelude::*;
    use std::time::Duration;

    /// The info hash from the BitTorrent wiki's example: a mix of bytes that need escapes and
    /// bytes that are unreserved (`4`, `V`, `x`, `E`, `g`).
    const HASH: [u8; 20] = [
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf1, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
        0x12, 0x34, 0x56, 0x78, 0x9a,
    ];
    const PEER_ID: [u8; 20] = *b"-HV0001-a.b_c~d e/f!";

    fn request() -> AnnounceRequest<'static> {
        AnnounceRequest::new(HASH, PEER_ID, 6881, 1_000_000)
    }

    fn url(announce: &str, req: &AnnounceRequest<'_>) -> String {
        let mut out = String::new();
        write_announce_url(&mut out, announce, req).unwrap();
        out
    }

    #[test]
    fn wiki_example_hash_escapes_like_libtorrent() {
        let mut out = String::new();
        percent_encode(&mut out, &HASH);
        assert_eq!(out, "%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A");
    }

    #[test]
    fn percent_encoding_of_every_byte() {
        for b in 0..=255u8 {
            let mut out = String::new();
            percent_encode(&mut out, &[b]);
            let unreserved = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
            let expected = if unreserved {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            };
            assert_eq!(out, expected, "byte {b:#04x}");
        }
    }

    #[test]
    fn announce_url_minimal() {
        insta::assert_snapshot!(url("http://tracker.example:6969/announce", &request()));
    }

    #[test]
    fn announce_url_every_parameter() {
        let req = AnnounceRequest {
            uploaded: 123,
            downloaded: 456_789,
            left: 0,
            event: Event::Started,
            num_want: Some(200),
            key: Some(0x00ab_cdef),
            tracker_id: Some(b"id 1/\xff"),
            ip: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ..request()
        };
        insta::assert_snapshot!(url("http://tracker.example:6969/announce", &req));
    }

    #[test]
    fn announce_url_keeps_query_drops_fragment() {
        let req = AnnounceRequest {
            event: Event::Stopped,
            compact: false,
            ..request()
        };
        insta::assert_snapshot!(url(
            "https://t.example/a b/announce.php?passkey=s3cr\u{e9}t#frag?x",
            &req
        ));
    }

    #[test]
    fn announce_url_separators() {
        let tail = "info_hash=%124Vx";
        assert!(
            url("http://t/announce", &request()).starts_with(&format!("http://t/announce?{tail}"))
        );
        assert!(
            url("http://t/announce?", &request()).starts_with(&format!("http://t/announce?{tail}"))
        );
        assert!(
            url("http://t/announce?a=1&", &request())
                .starts_with(&format!("http://t/announce?a=1&{tail}"))
        );
        assert!(
            url("http://t/announce?a=1", &request())
                .starts_with(&format!("http://t/announce?a=1&{tail}"))
        );
        assert!(
            url("HTTPS://t/announce#x?y", &request())
                .starts_with(&format!("HTTPS://t/announce?{tail}"))
        );
        let completed = url(
            "http://t/a",
            &AnnounceRequest {
                event: Event::Completed,
                ..request()
            },
        );
        assert!(completed.contains("&compact=1&event=completed"));
        assert!(!url("http://t/a", &request()).contains("event"));
    }

    #[test]
    fn announce_url_rejections() {
        let mut out = String::new();
        assert_eq!(
            write_announce_url(&mut out, "udp://t.example:80/announce", &request()),
            Err(HttpError::NotHttp {
                url: "udp://t.example:80/announce".into()
            })
        );
        assert_eq!(
            write_announce_url(&mut out, "http://t/announce\r\nHost: evil", &request()),
            Err(HttpError::ControlChar { offset: 17 })
        );
        assert!(matches!(
            write_announce_url(&mut out, "http:/", &request()),
            Err(HttpError::NotHttp { .. })
        ));
        assert!(out.is_empty(), "nothing is written on error");
    }

    #[test]
    fn scrape_url_convention() {
        let cases = [
            ("http://t.example/announce", Some("http://t.example/scrape")),
            (
                "http://t.example:80/x/announce.php?pk=1#f",
                Some("http://t.example:80/x/scrape.php?pk=1"),
            ),
            (
                "http://t.example/announce?",
                Some("http://t.example/scrape?"),
            ),
            (
                "http://t.example/announcer",
                Some("http://t.example/scraper"),
            ),
            ("http://t.example/a", None),
            ("http://t.example/announce/x", None),
            ("http://t.example/x%064announce", None),
            ("http://t.example/", None),
            ("http://announce.example", None),
            ("http://t.example?announce", None),
            ("udp://t.example:80/announce", None),
        ];
        for (announce, scrape) in cases {
            assert_eq!(scrape_url(announce).as_deref(), scrape, "{announce}");
        }
    }

    #[test]
    fn scrape_url_with_hashes() {
        let mut out = String::new();
        write_scrape_url(
            &mut out,
            "http://t.example/announce.php?pk=1",
            &[HASH, [b'a'; 20]],
        )
        .unwrap();
        insta::assert_snapshot!(out);
        let mut out = String::new();
        assert_eq!(
            write_scrape_url(&mut out, "http://t.example/tracker", &[HASH]),
            Err(HttpError::ScrapeUnsupported)
        );
    }

    // ---- replies ----

    fn dict(entries: Vec<(&str, OwnedValue)>) -> OwnedValue {
        OwnedValue::Dict(
            entries
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    fn parse(v: &OwnedValue) -> Result<AnnounceResponse, HttpError> {
        parse_announce_response(&v.to_bytes(), &ResponseLimits::DEFAULT)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn full_compact_reply() {
        let mut v4 = Vec::new();
        super::super::write_compact_peers(
            &mut v4,
            [addr("10.1.2.3:6881"), addr("192.0.2.9:51413")],
            AddressFamily::V4,
        );
        let mut v6 = Vec::new();
        super::super::write_compact_peers(&mut v6, [addr("[2001:db8::1]:6881")], AddressFamily::V6);
        let reply = dict(vec![
            ("interval", OwnedValue::Int(1800)),
            ("min interval", OwnedValue::Int(900)),
            ("tracker id", OwnedValue::str("abc")),
            ("warning message", OwnedValue::str("be nice")),
            ("complete", OwnedValue::Int(5)),
            ("incomplete", OwnedValue::Int(7)),
            ("downloaded", OwnedValue::Int(99)),
            ("peers", OwnedValue::Bytes(v4)),
            ("peers6", OwnedValue::Bytes(v6)),
        ]);
        let r = parse(&reply).unwrap();
        assert_eq!(
            r,
            AnnounceResponse {
                interval: Duration::from_secs(1800),
                min_interval: Some(Duration::from_secs(900)),
                tracker_id: Some(b"abc".to_vec()),
                warning: Some("be nice".into()),
                complete: Some(5),
                incomplete: Some(7),
                downloaded: Some(99),
                peers: vec![
                    addr("10.1.2.3:6881"),
                    addr("192.0.2.9:51413"),
                    addr("[2001:db8::1]:6881")
                ],
                peers_ignored: 0,
            }
        );
    }

    #[test]
    fn bep7_example_reply() {
        let r = parse_announce_response(
            b"d8:intervali1800e5:peers6:iiiipp6:peers618:iiiiiiiiiiiiiiiippe",
            &ResponseLimits::DEFAULT,
        )
        .unwrap();
        assert_eq!(
            r.peers,
            [
                addr("105.105.105.105:28784"),
                addr("[6969:6969:6969:6969:6969:6969:6969:6969]:28784")
            ]
        );
    }

    #[test]
    fn dictionary_peers_skip_garbage() {
        let peer =
            |ip: OwnedValue, port: i64| dict(vec![("ip", ip), ("port", OwnedValue::Int(port))]);
        let reply = dict(vec![
            ("interval", OwnedValue::Int(60)),
            (
                "peers",
                OwnedValue::List(vec![
                    peer(OwnedValue::str("10.0.0.1"), 6881),
                    dict(vec![
                        ("ip", OwnedValue::str("2001:db8::2")),
                        ("port", OwnedValue::Int(1)),
                        ("peer id", OwnedValue::Bytes(vec![7; 20])),
                    ]),
                    peer(OwnedValue::str("[2001:db8::3]"), 2),
                    peer(OwnedValue::str("::ffff:10.0.0.1"), 6881), // the first one again
                    OwnedValue::Int(3),
                    OwnedValue::str("10.0.0.9:1"),
                    OwnedValue::List(vec![]),
                    dict(vec![("ip", OwnedValue::str("10.0.0.2"))]),
                    dict(vec![("port", OwnedValue::Int(5))]),
                    peer(OwnedValue::str("10.0.0.3"), 0),
                    peer(OwnedValue::str("10.0.0.3"), 65536),
                    peer(OwnedValue::str("10.0.0.3"), -1),
                    peer(OwnedValue::str("tracker.example"), 80),
                    peer(OwnedValue::str("10.0.0.256"), 80),
                    peer(OwnedValue::Bytes(vec![0xff, 0xfe]), 80),
                    peer(OwnedValue::Int(167772161), 80),
                    dict(vec![
                        ("ip", OwnedValue::str("10.0.0.4")),
                        ("port", OwnedValue::str("80")),
                    ]),
                ]),
            ),
        ]);
        let r = parse(&reply).unwrap();
        assert_eq!(
            r.peers,
            [
                addr("10.0.0.1:6881"),
                addr("[2001:db8::2]:1"),
                addr("[2001:db8::3]:2")
            ]
        );
        assert_eq!(r.peers_ignored, 14);
    }

    #[test]
    fn compact_partial_entries_are_truncated() {
        let mut peers = vec![10, 0, 0, 1, 0, 80];
        peers.extend_from_slice(&[10, 0, 0]);
        let reply = dict(vec![
            ("interval", OwnedValue::Int(60)),
            ("peers", OwnedValue::Bytes(peers)),
        ]);
        let r = parse(&reply).unwrap();
        assert_eq!(r.peers, [addr("10.0.0.1:80")]);
        assert_eq!(r.peers_ignored, 1);
    }

    #[test]
    fn huge_peer_lists_are_capped() {
        let limits = ResponseLimits {
            max_body: 4 << 20,
            ..ResponseLimits::DEFAULT
        };
        let compact: Vec<u8> = (0..100_000u32)
            .flat_map(|i| {
                let ip = (0x0a00_0000 + i).to_be_bytes();
                [ip[0], ip[1], ip[2], ip[3], 0x1a, 0xe1]
            })
            .collect();
        let peers6 = vec![0x20; 18 * 1000];
        let reply = dict(vec![
            ("peers", OwnedValue::Bytes(compact)),
            ("peers6", OwnedValue::Bytes(peers6)),
        ]);
        let r = parse_announce_response(&reply.to_bytes(), &limits).unwrap();
        assert_eq!(r.peers.len(), 1000);
        assert_eq!(r.peers_ignored, 100_000 - 1000 + 1000);
        assert_eq!(r.interval, limits.default_interval);

        let peer = dict(vec![
            ("ip", OwnedValue::str("10.0.0.1")),
            ("port", OwnedValue::Int(1)),
        ]);
        let many = dict(vec![("peers", OwnedValue::List(vec![peer; 20_000]))]);
        let r = parse_announce_response(&many.to_bytes(), &limits).unwrap();
        assert_eq!((r.peers.len(), r.peers_ignored), (1, 19_999));

        let small = ResponseLimits {
            max_peers: 3,
            ..ResponseLimits::DEFAULT
        };
        let body = dict(vec![("peers", OwnedValue::Bytes(vec![1; 60]))]).to_bytes();
        let r = parse_announce_response(&body, &small).unwrap();
        assert_eq!(
            (r.peers.len(), r.peers_ignored),
            (1, 9),
            "ten copies of 1.1.1.1:257"
        );
    }

    #[test]
    fn body_size_is_bounded() {
        let body = vec![b' '; ResponseLimits::DEFAULT.max_body + 1];
        assert_eq!(
            parse_announce_response(&body, &ResponseLimits::DEFAULT),
            Err(HttpError::TooLarge {
                len: body.len(),
                max: ResponseLimits::DEFAULT.max_body
            })
        );
    }

    #[test]
    fn intervals_are_validated() {
        let r = parse(&dict(vec![
            ("interval", OwnedValue::Int(-5)),
            ("min interval", OwnedValue::Int(-1)),
        ]))
        .unwrap();
        assert_eq!(
            (r.interval, r.min_interval),
            (Duration::from_secs(1800), None)
        );
        let r = parse(&dict(vec![
            ("interval", OwnedValue::Int(0)),
            ("min interval", OwnedValue::Int(1)),
        ]))
        .unwrap();
        assert_eq!(
            (r.interval, r.min_interval),
            (Duration::from_secs(60), Some(Duration::from_secs(60)))
        );
        let r = parse(&dict(vec![("interval", OwnedValue::Int(i64::MAX))])).unwrap();
        assert_eq!(r.interval, Duration::from_secs(86_400));
        let r = parse(&dict(vec![
            ("complete", OwnedValue::Int(-3)),
            ("incomplete", OwnedValue::Int(1 << 40)),
        ]))
        .unwrap();
        assert_eq!((r.complete, r.incomplete), (None, Some(u32::MAX)));
    }

    #[test]
    fn failures_and_wrong_types() {
        let failure = dict(vec![
            ("failure reason", OwnedValue::str("unregistered torrent")),
            ("interval", OwnedValue::Int(60)),
        ]);
        assert_eq!(
            parse(&failure),
            Err(HttpError::Failure("unregistered torrent".into()))
        );
        assert_eq!(
            parse(&failure).unwrap_err().to_string(),
            "tracker refused the request: unregistered torrent"
        );
        let long = dict(vec![(
            "failure reason",
            OwnedValue::Bytes(vec![b'x'; 5000]),
        )]);
        assert!(matches!(parse(&long), Err(HttpError::Failure(m)) if m.len() == 1024));
        let cases: Vec<(OwnedValue, HttpError)> = vec![
            (
                dict(vec![("failure reason", OwnedValue::Int(1))]),
                HttpError::WrongType {
                    key: "failure reason",
                    expected: "a string",
                    found: "integer",
                },
            ),
            (
                dict(vec![("interval", OwnedValue::str("1800"))]),
                HttpError::WrongType {
                    key: "interval",
                    expected: "an integer",
                    found: "byte string",
                },
            ),
            (
                dict(vec![("peers", OwnedValue::Int(0))]),
                HttpError::WrongType {
                    key: "peers",
                    expected: "a string or a list",
                    found: "integer",
                },
            ),
            (
                dict(vec![("peers6", dict(vec![]))]),
                HttpError::WrongType {
                    key: "peers6",
                    expected: "a string or a list",
                    found: "dictionary",
                },
            ),
            (
                dict(vec![("tracker id", OwnedValue::Int(1))]),
                HttpError::WrongType {
                    key: "tracker id",
                    expected: "a string",
                    found: "integer",
                },
            ),
            (
                OwnedValue::List(vec![]),
                HttpError::NotADict { found: "list" },
            ),
        ];
        for (value, err) in cases {
            assert_eq!(parse(&value), Err(err));
        }
        let html =
            parse_announce_response(b"<html>502 Bad Gateway</html>", &ResponseLimits::DEFAULT);
        assert!(matches!(html, Err(HttpError::Bencode(_))));
        assert!(matches!(
            parse_announce_response(b"d8:intervali1", &ResponseLimits::DEFAULT),
            Err(HttpError::Bencode(_))
        ));
        assert!(matches!(
            parse_announce_response(b"", &ResponseLimits::DEFAULT),
            Err(HttpError::Bencode(_))
        ));
    }

    #[test]
    fn lenient_framing() {
        // Unsorted keys and a trailing newline, both seen from real trackers.
        let r = parse_announce_response(
            b"d8:intervali120e5:peers0:8:completei1ee\n",
            &ResponseLimits::DEFAULT,
        )
        .unwrap();
        assert_eq!(
            (r.interval, r.complete),
            (Duration::from_secs(120), Some(1))
        );
        let too_long_id = dict(vec![("tracker id", OwnedValue::Bytes(vec![b'i'; 257]))]);
        assert_eq!(parse(&too_long_id).unwrap().tracker_id, None);
        let empty_id = dict(vec![("tracker id", OwnedValue::str(""))]);
        assert_eq!(parse(&empty_id).unwrap().tracker_id, None);
    }

    #[test]
    fn scrape_bep48_example() {
        // BEP 48's example plus the two `e`s it lacks (after `i19e` and at the very end): as
        // printed it closes neither the first file's dictionary nor the top level.
        let body =
            b"d5:filesd20:xxxxxxxxxxxxxxxxxxxxd8:completei11e10:downloadedi13772e10:incompletei19ee\
20:yyyyyyyyyyyyyyyyyyyyd8:completei21e10:downloadedi206e10:incompletei20eeee";
        let r = parse_scrape_response(body, &ResponseLimits::DEFAULT).unwrap();
        assert_eq!(r.ignored, 0);
        assert_eq!(
            r.files[&[b'x'; 20]],
            ScrapeStats {
                complete: 11,
                downloaded: 13772,
                incomplete: 19
            }
        );
        assert_eq!(
            r.files[&[b'y'; 20]],
            ScrapeStats {
                complete: 21,
                downloaded: 206,
                incomplete: 20
            }
        );
    }

    #[test]
    fn scrape_hostile_replies() {
        let limits = ResponseLimits::DEFAULT;
        let files = |entries: Vec<(Vec<u8>, OwnedValue)>| {
            dict(vec![(
                "files",
                OwnedValue::Dict(entries.into_iter().collect()),
            )])
            .to_bytes()
        };
        let r = parse_scrape_response(
            &files(vec![
                (vec![1; 19], dict(vec![])),
                (vec![2; 20], OwnedValue::Int(1)),
                (
                    vec![3; 20],
                    dict(vec![
                        ("complete", OwnedValue::Int(-1)),
                        ("downloaded", OwnedValue::str("x")),
                    ]),
                ),
            ]),
            &limits,
        )
        .unwrap();
        assert_eq!(r.ignored, 2);
        assert_eq!(r.files[&[3; 20]], ScrapeStats::default());
        let many: Vec<_> = (0..2000u32)
            .map(|i| {
                let mut k = vec![0; 16];
                k.extend_from_slice(&i.to_be_bytes());
                (k, dict(vec![]))
            })
            .collect();
        let r = parse_scrape_response(&files(many), &limits).unwrap();
        assert_eq!((r.files.len(), r.ignored), (1000, 1000));
        assert_eq!(
            parse_scrape_response(b"de", &limits),
            Err(HttpError::MissingFiles)
        );
        assert!(matches!(
            parse_scrape_response(b"d5:filesi1ee", &limits),
            Err(HttpError::WrongType { key: "files", .. })
        ));
        assert_eq!(
            parse_scrape_response(b"d14:failure reason4:nopee", &limits),
            Err(HttpError::Failure("nope".into()))
        );
    }

    // ---- properties ----

    /// Usable, distinct addresses in each family (the parser's filters then change nothing).
    fn usable_v4() -> impl Strategy<Value = SocketAddr> {
        (1u8..224, any::<[u8; 3]>(), 1u16..)
            .prop_map(|(a, [b, c, d], port)| SocketAddr::new(IpAddr::from([a, b, c, d]), port))
    }

    fn usable_v6() -> impl Strategy<Value = SocketAddr> {
        (any::<[u16; 7]>(), 1u16..).prop_map(|(rest, port)| {
            let [b, c, d, e, f, g, h] = rest;
            SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, b, c, d, e, f, g, h)), port)
        })
    }

    fn distinct(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
        let mut seen = std::collections::BTreeSet::new();
        addrs.into_iter().filter(|a| seen.insert(*a)).collect()
    }

    fn peer_dicts(addrs: &[SocketAddr]) -> OwnedValue {
        OwnedValue::List(
            addrs
                .iter()
                .map(|a| {
                    dict(vec![
                        ("ip", OwnedValue::str(&a.ip().to_string())),
                        ("port", OwnedValue::Int(a.port().into())),
                    ])
                })
                .collect(),
        )
    }

    proptest! {
        #[test]
        fn announce_reply_round_trip(
            interval in 60i64..86_400,
            min_interval in proptest::option::of(60i64..86_400),
            counts in any::<(Option<u32>, Option<u32>, Option<u32>)>(),
            tracker_id in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..50)),
            warning in proptest::option::of("[ -~]{0,40}"),
            v4 in proptest::collection::vec(usable_v4(), 0..60),
            v6 in proptest::collection::vec(usable_v6(), 0..30),
            compact in any::<bool>(),
        ) {
            let (v4, v6) = (distinct(v4), distinct(v6));
            let mut entries = vec![("interval", OwnedValue::Int(interval))];
            if let Some(m) = min_interval { entries.push(("min interval", OwnedValue::Int(m))); }
            for (key, n) in [("complete", counts.0), ("incomplete", counts.1), ("downloaded", counts.2)] {
                if let Some(n) = n { entries.push((key, OwnedValue::Int(n.into()))); }
            }
            if let Some(id) = &tracker_id { entries.push(("tracker id", OwnedValue::Bytes(id.clone()))); }
            if let Some(w) = &warning { entries.push(("warning message", OwnedValue::str(w))); }
            if compact {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                super::super::write_compact_peers(&mut a, v4.clone(), AddressFamily::V4);
                super::super::write_compact_peers(&mut b, v6.clone(), AddressFamily::V6);
                entries.push(("peers", OwnedValue::Bytes(a)));
                entries.push(("peers6", OwnedValue::Bytes(b)));
            } else {
                let all: Vec<_> = v4.iter().chain(&v6).copied().collect();
                entries.push(("peers", peer_dicts(&all)));
            }
            let r = parse(&dict(entries)).unwrap();
            let secs = |s: i64| Duration::from_secs(s as u64);
            prop_assert_eq!(r, AnnounceResponse {
                interval: secs(interval),
                min_interval: min_interval.map(secs),
                tracker_id,
                warning,
                complete: counts.0,
                incomplete: counts.1,
                downloaded: counts.2,
                peers: v4.into_iter().chain(v6).collect(),
                peers_ignored: 0,
            });
        }

        #[test]
        fn scrape_reply_round_trip(files in proptest::collection::btree_map(any::<[u8; 20]>(), any::<(u32, u32, u32)>(), 0..30)) {
            let value = dict(vec![("files", OwnedValue::Dict(files.iter().map(|(k, (c, d, i))| {
                (k.to_vec(), dict(vec![
                    ("complete", OwnedValue::Int((*c).into())),
                    ("downloaded", OwnedValue::Int((*d).into())),
                    ("incomplete", OwnedValue::Int((*i).into())),
                ]))
            }).collect()))]);
            let r = parse_scrape_response(&value.to_bytes(), &ResponseLimits::DEFAULT).unwrap();
            let expected: BTreeMap<_, _> = files.into_iter().map(|(k, (complete, downloaded, incomplete))| {
                (k, ScrapeStats { complete, downloaded, incomplete })
            }).collect();
            prop_assert_eq!(r, ScrapeResponse { files: expected, ignored: 0 });
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_announce_response(&bytes, &ResponseLimits::DEFAULT);
            let _ = parse_scrape_response(&bytes, &ResponseLimits::DEFAULT);
        }

        #[test]
        fn hostile_structures_never_panic(value in hostile_reply()) {
            let body = value.to_bytes();
            if let Ok(r) = parse_announce_response(&body, &ResponseLimits::DEFAULT) {
                prop_assert!(r.peers.len() <= 1000);
                prop_assert!(r.interval >= Duration::from_secs(60) && r.interval <= Duration::from_secs(86_400));
            }
            let _ = parse_scrape_response(&body, &ResponseLimits::DEFAULT);
        }

        #[test]
        fn announce_url_is_plain_ascii_and_decodes_back(info_hash in any::<[u8; 20]>(), peer_id in any::<[u8; 20]>(), port in any::<u16>()) {
            let u = url("http://t.example/announce", &AnnounceRequest::new(info_hash, peer_id, port, 0));
            prop_assert!(u.bytes().all(|b| b.is_ascii_graphic()));
            let query = u.split_once('?').unwrap().1;
            let param = |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(name)).map(percent_decode);
            prop_assert_eq!(param("info_hash="), Some(info_hash.to_vec()));
            prop_assert_eq!(param("peer_id="), Some(peer_id.to_vec()));
            prop_assert_eq!(param("port="), Some(port.to_string().into_bytes()));
        }
    }

    fn percent_decode(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut bytes = s.bytes();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                let hex: String = [bytes.next().unwrap(), bytes.next().unwrap()]
                    .iter()
                    .map(|b| char::from(*b))
                    .collect();
                assert_eq!(hex, hex.to_ascii_uppercase());
                out.push(u8::from_str_radix(&hex, 16).unwrap());
            } else {
                out.push(b);
            }
        }
        out
    }

    /// Replies with the right keys and wrong or random values, nested garbage included.
    fn hostile_reply() -> impl Strategy<Value = OwnedValue> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(OwnedValue::Int),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(OwnedValue::Bytes),
            Just(OwnedValue::str("10.0.0.1")),
            Just(OwnedValue::str("::1")),
        ];
        let keys = prop_oneof![
            Just("ip"),
            Just("port"),
            Just("peer id"),
            Just("peers"),
            Just("peers6"),
            Just("interval"),
            Just("min interval"),
            Just("failure reason"),
            Just("files"),
            Just("complete"),
            Just("tracker id"),
        ];
        let value = leaf.prop_recursive(3, 64, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(OwnedValue::List),
                proptest::collection::btree_map(
                    keys.clone().prop_map(|k| k.as_bytes().to_vec()),
                    inner,
                    0..6
                )
                .prop_map(OwnedValue::Dict),
            ]
        });
        proptest::collection::btree_map(
            prop_oneof![
                Just("peers"),
                Just("peers6"),
                Just("interval"),
                Just("files"),
                Just("warning message"),
                Just("downloaded")
            ]
            .prop_map(|k| k.as_bytes().to_vec()),
            value,
            0..6,
        )
        .prop_map(OwnedValue::Dict)
    }
}
