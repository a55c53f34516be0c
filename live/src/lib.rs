//! Hive's swarm view: one self-contained page, its HTTP + WebSocket server, and the schema-1
//! messages the page reads.
//!
//! Two programs serve it: `hive-smol --ui` (a live download, `source: "live"`) and
//! `hive-sim view` (a recorded simulation, `source: "replay"`). Each hands [`server::serve`] a
//! channel on which every connected page arrives as a [`server::Client`], and sends it
//! [`schema`] messages. Access rules are the same for both ([`check_access`]).
#![forbid(unsafe_code)]

pub mod schema;
pub mod server;

use std::net::SocketAddr;

/// Why a view address and token were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessError {
    /// A token that is empty or too long.
    #[error("--ui-token: give a token of 1 to 256 characters")]
    BadToken,
    /// A non-loopback address without a token.
    #[error(
        "--ui {0} is not a loopback address: anyone who can reach it could watch the swarm; \
         add --ui-token TOKEN (the page asks for it) or use --ui 127.0.0.1:PORT"
    )]
    NeedsToken(SocketAddr),
}

/// The view's access rule: loopback needs nothing; any other address needs a token (1 to 256
/// characters), which the page asks for and the WebSocket checks.
pub fn check_access(addr: SocketAddr, token: Option<&str>) -> Result<(), AccessError> {
    match token {
        Some(t) if t.is_empty() || t.len() > 256 => Err(AccessError::BadToken),
        None if !addr.ip().is_loopback() => Err(AccessError::NeedsToken(addr)),
        _ => Ok(()),
    }
}

/// `--ui`'s value: `ADDR:PORT`, `[V6]:PORT`, or a bare port on 127.0.0.1.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| {
        format!("{s:?} is not an address for the view: use ADDR:PORT or PORT (e.g. 127.0.0.1:8080)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_rules() {
        let lo: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:1".parse().unwrap();
        assert_eq!(check_access(lo, None), Ok(()));
        assert_eq!(check_access("[::1]:1".parse().unwrap(), None), Ok(()));
        assert_eq!(check_access(any, None), Err(AccessError::NeedsToken(any)));
        assert_eq!(check_access(any, Some("t")), Ok(()));
        assert_eq!(check_access(lo, Some("")), Err(AccessError::BadToken));
        assert_eq!(parse_addr("9000"), Ok("127.0.0.1:9000".parse().unwrap()));
        assert!(parse_addr("f.torrent").unwrap_err().contains("ADDR:PORT"));
    }
}
