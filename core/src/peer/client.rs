//! Client names from peer ids, for the conventions real clients use.
//!
//! Peer ids are not authenticated: this is for display and logging only. The extension
//! handshake's `v` (BEP 10) is the more reliable name when the peer sends one.

use std::fmt::Write;

/// How the four version characters of an Azureus-style id (`-XXabcd-`) read.
#[derive(Clone, Copy)]
enum Style {
    /// `a.b.c`, each character a digit or a letter (A = 10, as libtorrent and Transmission
    /// read them): `-qB4500-` is 4.5.0, `-lt0D60-` is 0.13.6.
    Three,
    /// `a.b.c.d` in the same alphabet: `-AZ5770-` is 5.7.7.0.
    Four,
    /// µTorrent: hex digits `a.b.c`, the fourth a release letter (`-UT355W-` is 3.5.5).
    MicroTorrent,
    /// Transmission: `-TR3000-` is 3.00 and `-TR2940-` 2.94 before version 4, `-TR4050-` is
    /// 4.0.5 from version 4 on; a final `Z` or `X` marks a development build ("+").
    Transmission,
    /// Two decimal digits of major and two of minor: WebTorrent's `-WW0102-` is 1.2.
    TwoTwo,
}

/// Azureus-style prefixes (`-XX` + four version characters + `-`), a small table of the
/// clients one meets in swarms today.
const AZUREUS: &[(&[u8; 2], &str, Style)] = &[
    (b"AZ", "Vuze", Style::Four),
    (b"BI", "BiglyBT", Style::Four),
    (b"BT", "BitTorrent", Style::MicroTorrent),
    (b"DE", "Deluge", Style::Four),
    (b"HV", "Hive", Style::Three),
    (b"KT", "KTorrent", Style::Three),
    (b"LT", "libtorrent (Rasterbar)", Style::Three),
    (b"lt", "libTorrent (rakshasa)", Style::Three),
    (b"PI", "PicoTorrent", Style::Three),
    (b"qB", "qBittorrent", Style::Three),
    (b"TR", "Transmission", Style::Transmission),
    (b"UM", "\u{b5}Torrent Mac", Style::MicroTorrent),
    (b"UT", "\u{b5}Torrent", Style::MicroTorrent),
    (b"WW", "WebTorrent", Style::TwoTwo),
];

/// The value of a version character: `0-9`, then `A-Z` as 10..=35, `a-z` as 36..=61.
fn char_value(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'A'..=b'Z' => Some(u32::from(c - b'A') + 10),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 36),
        _ => None,
    }
}

fn hex_value(c: u8) -> Option<u32> {
    char::from(c).to_digit(16)
}

fn dec_value(c: u8) -> Option<u32> {
    char::from(c).to_digit(10)
}

/// A readable client name and version from a peer id, e.g. `-TR3000-…` → "Transmission 3.00";
/// `None` for ids that follow no convention this table knows.
pub fn client_name(peer_id: &[u8; 20]) -> Option<String> {
    if let Some(name) = azureus_style(peer_id) {
        return Some(name);
    }
    dashed_style(peer_id)
}

fn azureus_style(id: &[u8; 20]) -> Option<String> {
    let [b'-', c0, c1, v0, v1, v2, v3, b'-', ..] = *id else {
        return None;
    };
    let &(_, name, style) = AZUREUS.iter().find(|(code, _, _)| **code == [c0, c1])?;
    let mut out = String::from(name);
    out.push(' ');
    match style {
        Style::Three => {
            let [a, b, c] = [char_value(v0)?, char_value(v1)?, char_value(v2)?];
            let _ = write!(out, "{a}.{b}.{c}");
        }
        Style::Four => {
            let [a, b, c] = [char_value(v0)?, char_value(v1)?, char_value(v2)?];
            let d = char_value(v3)?;
            let _ = write!(out, "{a}.{b}.{c}.{d}");
        }
        Style::MicroTorrent => {
            let [a, b, c] = [hex_value(v0)?, hex_value(v1)?, hex_value(v2)?];
            let _ = write!(out, "{a}.{b}.{c}");
            match v3 {
                b'B' | b'b' => out.push_str(" beta"),
                b'X' | b'x' | b'Z' => out.push_str(" dev"),
                _ => {}
            }
        }
        Style::Transmission => {
            let major = dec_value(v0)?;
            let dev = matches!(v3, b'Z' | b'X');
            if major >= 4 {
                let _ = write!(out, "{major}.{}.{}", dec_value(v1)?, dec_value(v2)?);
            } else {
                let minor = dec_value(v1)? * 10 + dec_value(v2)?;
                let _ = write!(out, "{major}.{minor:02}");
            }
            if dev {
                out.push('+');
            }
        }
        Style::TwoTwo => {
            let major = dec_value(v0)? * 10 + dec_value(v1)?;
            let minor = dec_value(v2)? * 10 + dec_value(v3)?;
            let _ = write!(out, "{major}.{minor}");
        }
    }
    Some(out)
}

/// Mainline-style ids: a letter, then `major-minor-patch-` in decimal (`M7-10-1--`), and
/// aria2's two-letter variant (`A2-1-37-0-`).
fn dashed_style(id: &[u8; 20]) -> Option<String> {
    let (name, rest) = match id {
        [b'A', b'2', b'-', rest @ ..] => ("aria2", rest.as_slice()),
        [b'M', rest @ ..] => ("BitTorrent", rest.as_slice()),
        _ => return None,
    };
    let mut parts = rest.split(|&b| b == b'-');
    let mut out = String::from(name);
    for sep in [' ', '.', '.'] {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        out.push(sep);
        out.extend(part.iter().map(|&b| char::from(b)));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(prefix: &[u8]) -> [u8; 20] {
        let mut out = [b'x'; 20];
        for (d, s) in out.iter_mut().zip(prefix) {
            *d = *s;
        }
        out
    }

    #[test]
    fn known_clients() {
        let cases: &[(&[u8], &str)] = &[
            (b"-TR3000-", "Transmission 3.00"),
            (b"-TR2940-", "Transmission 2.94"),
            (b"-TR4050-", "Transmission 4.0.5"),
            (b"-TR400Z-", "Transmission 4.0.0+"),
            (b"-lt0D60-", "libTorrent (rakshasa) 0.13.6"),
            (b"-LT2090-", "libtorrent (Rasterbar) 2.0.9"),
            (b"-qB4500-", "qBittorrent 4.5.0"),
            (b"-UT355W-", "\u{b5}Torrent 3.5.5"),
            (b"-UT360B-", "\u{b5}Torrent 3.6.0 beta"),
            (b"-DE13F0-", "Deluge 1.3.15.0"),
            (b"-AZ5770-", "Vuze 5.7.7.0"),
            (b"-WW0102-", "WebTorrent 1.2"),
            (b"-HV0100-", "Hive 0.1.0"),
            (b"A2-1-37-0-", "aria2 1.37.0"),
            (b"M7-10-1--", "BitTorrent 7.10.1"),
        ];
        for (prefix, want) in cases {
            assert_eq!(
                client_name(&id(prefix)).as_deref(),
                Some(*want),
                "{prefix:?}"
            );
        }
    }

    #[test]
    fn unknown_or_malformed() {
        for prefix in [
            &b"-ZZ1234-"[..],
            b"-TR30-0-",
            b"-qB45\xff0-",
            b"random-bytes",
            b"A2-x-1-2-",
            b"M-1-2--",
            &[0u8; 20],
        ] {
            assert_eq!(client_name(&id(prefix)), None, "{prefix:?}");
        }
    }
}
