//! Tracker URLs as the announcer accepts them: `http://`, `https://` (BEP 3) and
//! `udp://host:port[/path]` (BEP 15; the BEP 41 path and query are accepted and not sent).
//!
//! Everything else is refused with a [`UrlError`] at construction, so a hostile or broken
//! `announce-list` costs a warning, never a panic or a request to a nonsense address.

use core::net::Ipv6Addr;

use crate::tracker::{AnnounceRequest, http};

/// Longest URL text kept in an error message: a hostile torrent may carry megabyte URLs.
const MAX_URL_IN_MESSAGE: usize = 100;

/// Why a tracker URL from the torrent was not used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The scheme is not `http`, `https` or `udp` (e.g. `wss://` WebTorrent trackers).
    #[error("tracker url '{url}' is not http://, https:// or udp://; it is ignored")]
    UnsupportedScheme {
        /// The URL (shortened).
        url: String,
    },
    /// A `udp://` URL that is not `udp://host:port[/path]`.
    #[error("udp tracker url '{url}' is invalid ({reason}); it is ignored")]
    InvalidUdp {
        /// The URL (shortened).
        url: String,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// An `http(s)://` URL that cannot be used.
    #[error("http tracker url '{url}' is invalid ({reason}); it is ignored")]
    InvalidHttp {
        /// The URL (shortened).
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The same URL appears again (in this tier or another); only the first one is kept.
    #[error("tracker url '{url}' is listed more than once; the repeat is ignored")]
    Duplicate {
        /// The URL (shortened).
        url: String,
    },
    /// More trackers than [`super::AnnounceConfig::max_trackers`].
    #[error("the torrent lists more than {max} trackers; '{url}' is ignored")]
    TooMany {
        /// The URL (shortened).
        url: String,
        /// The limit.
        max: usize,
    },
}

/// How a tracker is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackerUrl {
    /// An HTTP(S) tracker: the driver performs a GET of the URL the announcer builds.
    Http,
    /// A UDP tracker (BEP 15): the driver resolves `host` and exchanges datagrams with it.
    Udp {
        /// Host name or IP literal (an IPv6 literal without its brackets).
        host: String,
        /// UDP port, never 0.
        port: u16,
    },
}

/// The URL shortened for an error message.
pub(crate) fn shorten(url: &str) -> String {
    url.chars().take(MAX_URL_IN_MESSAGE).collect()
}

/// Whether `url` starts with `scheme` (ASCII case-insensitive), and the rest after it.
fn strip_scheme<'a>(url: &'a str, scheme: &str) -> Option<&'a str> {
    let head = url.get(..scheme.len())?;
    if head.eq_ignore_ascii_case(scheme) {
        url.get(scheme.len()..)
    } else {
        None
    }
}

/// Classifies and validates one tracker URL (already trimmed of surrounding whitespace).
pub fn parse_tracker_url(url: &str) -> Result<TrackerUrl, UrlError> {
    if let Some(rest) = strip_scheme(url, "udp://") {
        return parse_udp(rest)
            .map(|(host, port)| TrackerUrl::Udp { host, port })
            .map_err(|reason| UrlError::InvalidUdp {
                url: shorten(url),
                reason,
            });
    }
    let rest = strip_scheme(url, "http://").or_else(|| strip_scheme(url, "https://"));
    let Some(rest) = rest else {
        return Err(UrlError::UnsupportedScheme { url: shorten(url) });
    };
    let invalid = |reason: String| UrlError::InvalidHttp {
        url: shorten(url),
        reason,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(invalid("no host".to_owned()));
    }
    // The codec is the authority on what it can turn into a request line (control
    // characters are refused there: CR/LF in a URL is header injection).
    let probe = AnnounceRequest::new([0; 20], [0; 20], 1, 0);
    http::write_announce_url(&mut String::new(), url, &probe)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(TrackerUrl::Http)
}

/// `host:port[/path][?query]` after `udp://`; the path and query (BEP 41) are ignored.
fn parse_udp(rest: &str) -> Result<(String, u16), &'static str> {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("user info is not allowed");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (ip, after) = bracketed
            .split_once(']')
            .ok_or("unterminated [ipv6] host")?;
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err("bad ipv6 address in brackets");
        }
        let port = after.strip_prefix(':').ok_or("missing :port")?;
        (ip, port)
    } else {
        let (host, port) = authority.rsplit_once(':').ok_or("missing :port")?;
        if host.contains(':') {
            return Err("an ipv6 host needs [brackets]");
        }
        let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        if !host.bytes().all(valid) {
            return Err("bad character in host");
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("no host");
    }
    let port: u16 = port.parse().map_err(|_| "port is not a number 1-65535")?;
    if port == 0 {
        return Err("port is 0");
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(host: &str, port: u16) -> Result<TrackerUrl, UrlError> {
        Ok(TrackerUrl::Udp {
            host: host.to_owned(),
            port,
        })
    }

    #[test]
    fn udp_urls() {
        assert_eq!(
            parse_tracker_url("udp://tracker.example:6969"),
            udp("tracker.example", 6969)
        );
        assert_eq!(
            parse_tracker_url("UDP://t.example:80/announce?passkey=x"),
            udp("t.example", 80)
        );
        assert_eq!(parse_tracker_url("udp://[::1]:1337/a"), udp("::1", 1337));
        assert_eq!(parse_tracker_url("udp://10.0.0.1:1"), udp("10.0.0.1", 1));
        for (bad, reason) in [
            ("udp://host", "missing :port"),
            ("udp://host:", "port is not a number 1-65535"),
            ("udp://host:0", "port is 0"),
            ("udp://host:65536", "port is not a number 1-65535"),
            ("udp://:80", "no host"),
            ("udp://::1:80", "an ipv6 host needs [brackets]"),
            ("udp://[::1:80", "unterminated [ipv6] host"),
            ("udp://[zz]:80", "bad ipv6 address in brackets"),
            ("udp://[::1]80", "missing :port"),
            ("udp://u@host:80", "user info is not allowed"),
            ("udp://ho st:80", "bad character in host"),
            ("udp://ho\nst:80", "bad character in host"),
            ("udp://", "missing :port"),
        ] {
            assert_eq!(
                parse_tracker_url(bad),
                Err(UrlError::InvalidUdp {
                    url: bad.to_owned(),
                    reason
                }),
                "{bad}"
            );
        }
    }

    #[test]
    fn http_urls_and_other_schemes() {
        assert_eq!(
            parse_tracker_url("http://t.example/announce"),
            Ok(TrackerUrl::Http)
        );
        assert_eq!(
            parse_tracker_url("HTTPS://t.example:443/a?pk=1"),
            Ok(TrackerUrl::Http)
        );
        assert!(matches!(
            parse_tracker_url("http:///announce"),
            Err(UrlError::InvalidHttp { .. })
        ));
        assert!(matches!(
            parse_tracker_url("http://t.example/a\r\nHost: evil"),
            Err(UrlError::InvalidHttp { .. })
        ));
        for other in ["wss://t.example/announce", "", "dht://x", "magnet:?xt=1"] {
            assert!(matches!(
                parse_tracker_url(other),
                Err(UrlError::UnsupportedScheme { .. })
            ));
        }
    }

    #[test]
    fn messages_are_short() {
        let long = format!("wss://{}", "x".repeat(10_000));
        let msg = parse_tracker_url(&long).unwrap_err().to_string();
        assert!(msg.len() < 200, "{msg}");
    }
}
