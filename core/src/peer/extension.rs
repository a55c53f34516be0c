//! The extension protocol handshake (BEP 10): extended message id 0, a bencoded dictionary.
//!
//! Decoding borrows from the payload and is tolerant the way BEP 10 asks ("any unknown names
//! should be ignored"): unknown keys are skipped, and a known key with the wrong type or an
//! out-of-range value is ignored as if absent. Only a payload that is too long, not bencode, or
//! not a dictionary is an error. Everything kept is bounded: at most [`MAX_EXTENSIONS`] names
//! in `m`, names up to [`MAX_NAME_LEN`] bytes, `v` up to [`MAX_VERSION_LEN`] bytes, `reqq`
//! clamped to `1..=`[`MAX_REQQ`].

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::bencode::{self, DecodeError, Limits};

/// Names kept from one `m` dictionary; later ones are ignored.
pub const MAX_EXTENSIONS: usize = 64;
/// Longest extension name kept; longer names are ignored.
pub const MAX_NAME_LEN: usize = 64;
/// Longest `v` (client version) kept; a longer one is ignored.
pub const MAX_VERSION_LEN: usize = 128;
/// Upper clamp of `reqq`. libtorrent advertises 500 by default and allows up to 2000.
pub const MAX_REQQ: u32 = 2000;

/// Why an extension handshake could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    /// The payload is longer than the configured limit.
    #[error("extension handshake of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Payload bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not bencode.
    #[error("extension handshake is not valid bencode: {0}")]
    Bencode(#[from] DecodeError),
    /// The payload is bencode but not a dictionary.
    #[error("extension handshake is a bencoded {found}, not a dictionary")]
    NotADict {
        /// The type found instead.
        found: &'static str,
    },
}

/// An extension handshake, borrowing its strings from the payload it was decoded from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtensionHandshake<'a> {
    /// `m`: extension name → the id the *sender* wants to receive that extension's messages
    /// under; 0 disables an extension (BEP 10: `m` is additive across handshakes).
    pub m: Vec<(&'a [u8], u8)>,
    /// `v`: client name and version (UTF-8).
    pub v: Option<&'a str>,
    /// `p`: the sender's TCP listen port.
    pub p: Option<u16>,
    /// `reqq`: requests the sender queues without dropping (clamped to `1..=MAX_REQQ`).
    pub reqq: Option<u32>,
    /// `yourip`: the address the sender sees the receiver at (4 or 16 bytes).
    pub yourip: Option<IpAddr>,
    /// `ipv4`: the sender's own IPv4 address.
    pub ipv4: Option<Ipv4Addr>,
    /// `ipv6`: the sender's own IPv6 address.
    pub ipv6: Option<Ipv6Addr>,
    /// `metadata_size` (BEP 9): bytes of the info dictionary.
    pub metadata_size: Option<u32>,
    /// `upload_only` (BEP 21): the sender will not download (a seed or a partial seed).
    pub upload_only: Option<bool>,
}

fn ip_from(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
}

impl<'a> ExtensionHandshake<'a> {
    /// Decodes the payload of extended message 0 (after the extended id byte).
    pub fn decode(payload: &'a [u8], max_len: usize) -> Result<Self, ExtensionError> {
        if payload.len() > max_len {
            return Err(ExtensionError::TooLong {
                len: payload.len(),
                max: max_len,
            });
        }
        // Lenient: some clients do not sort their keys. Trailing bytes after the dictionary
        // are ignored (decode_prefix), as libtorrent does.
        let (root, _) = bencode::decode_prefix(payload, Limits::lenient())?;
        let Some(dict) = root.as_dict() else {
            return Err(ExtensionError::NotADict {
                found: root.type_name(),
            });
        };
        let mut out = ExtensionHandshake::default();
        for (key, value) in dict.entries() {
            match *key {
                b"m" => {
                    let Some(m) = value.as_dict() else { continue };
                    for (name, id) in m.entries() {
                        if out.m.len() >= MAX_EXTENSIONS {
                            break;
                        }
                        let id = id.as_int().and_then(|i| u8::try_from(i).ok());
                        if let Some(id) = id.filter(|_| name.len() <= MAX_NAME_LEN) {
                            out.m.push((name, id));
                        }
                    }
                }
                b"v" => {
                    out.v = value
                        .as_str()
                        .filter(|v| v.len() <= MAX_VERSION_LEN && !v.is_empty());
                }
                b"p" => {
                    out.p = value
                        .as_int()
                        .and_then(|p| u16::try_from(p).ok())
                        .filter(|&p| p != 0);
                }
                b"reqq" => {
                    out.reqq = value
                        .as_int()
                        .filter(|&q| q > 0)
                        .map(|q| u32::try_from(q).unwrap_or(MAX_REQQ).min(MAX_REQQ));
                }
                b"yourip" => out.yourip = value.as_bytes().and_then(ip_from),
                b"ipv4" => {
                    out.ipv4 = value
                        .as_bytes()
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map(Ipv4Addr::from);
                }
                b"ipv6" => {
                    out.ipv6 = value
                        .as_bytes()
                        .and_then(|b| <[u8; 16]>::try_from(b).ok())
                        .map(Ipv6Addr::from);
                }
                b"metadata_size" => {
                    out.metadata_size = value
                        .as_int()
                        .and_then(|s| u32::try_from(s).ok())
                        .filter(|&s| s > 0);
                }
                b"upload_only" => out.upload_only = value.as_int().map(|u| u != 0),
                _ => {}
            }
        }
        Ok(out)
    }

    /// The id the sender assigned to extension `name`; `None` if absent or disabled (0).
    pub fn extension_id(&self, name: &[u8]) -> Option<u8> {
        self.m
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|&(_, id)| id)
            .filter(|&id| id != 0)
    }

    /// Appends the canonical bencoding (sorted keys; `m` sorted, first of duplicate names).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut m: Vec<(&[u8], u8)> = Vec::with_capacity(self.m.len());
        for &(name, id) in &self.m {
            if !m.iter().any(|(n, _)| *n == name) {
                m.push((name, id));
            }
        }
        m.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out.push(b'd');
        // Keys in byte order: ipv4 ipv6 m metadata_size p reqq upload_only v yourip.
        if let Some(ip) = self.ipv4 {
            bencode::encode_bytes(out, b"ipv4");
            bencode::encode_bytes(out, &ip.octets());
        }
        if let Some(ip) = self.ipv6 {
            bencode::encode_bytes(out, b"ipv6");
            bencode::encode_bytes(out, &ip.octets());
        }
        bencode::encode_bytes(out, b"m");
        out.push(b'd');
        for (name, id) in m {
            bencode::encode_bytes(out, name);
            bencode::encode_int(out, i64::from(id));
        }
        out.push(b'e');
        let ints: [(&[u8], Option<i64>); 4] = [
            (b"metadata_size", self.metadata_size.map(i64::from)),
            (b"p", self.p.map(i64::from)),
            (b"reqq", self.reqq.map(i64::from)),
            (b"upload_only", self.upload_only.map(i64::from)),
        ];
        for (key, value) in ints {
            if let Some(value) = value {
                bencode::encode_bytes(out, key);
                bencode::encode_int(out, value);
            }
        }
        if let Some(v) = self.v {
            bencode::encode_bytes(out, b"v");
            bencode::encode_bytes(out, v.as_bytes());
        }
        match self.yourip {
            Some(IpAddr::V4(ip)) => {
                bencode::encode_bytes(out, b"yourip");
                bencode::encode_bytes(out, &ip.octets());
            }
            Some(IpAddr::V6(ip)) => {
                bencode::encode_bytes(out, b"yourip");
                bencode::encode_bytes(out, &ip.octets());
            }
            None => {}
        }
        out.push(b'e');
    }

    /// The canonical bencoding as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// What a connection keeps from the peer's extension handshakes (owned, bounded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct RemoteExtensions {
    /// Name → the id to send that extension's messages to the peer under; 0 entries removed.
    pub ids: Vec<(Vec<u8>, u8)>,
    pub version: Option<String>,
    pub listen_port: Option<u16>,
    pub reqq: Option<u32>,
    pub yourip: Option<IpAddr>,
    pub metadata_size: Option<u32>,
    pub upload_only: bool,
    pub received: bool,
}

impl RemoteExtensions {
    /// Merges a handshake: BEP 10 says `m` is additive and id 0 disables an extension; other
    /// keys replace what an earlier handshake said when present.
    pub fn merge(&mut self, hs: &ExtensionHandshake<'_>) {
        self.received = true;
        for &(name, id) in &hs.m {
            let pos = self.ids.iter().position(|(n, _)| n.as_slice() == name);
            match (pos, id) {
                (Some(i), 0) => {
                    self.ids.remove(i);
                }
                (Some(i), id) => {
                    if let Some(entry) = self.ids.get_mut(i) {
                        entry.1 = id;
                    }
                }
                (None, 0) => {}
                (None, id) => {
                    if self.ids.len() < MAX_EXTENSIONS {
                        self.ids.push((name.to_vec(), id));
                    }
                }
            }
        }
        if let Some(v) = hs.v {
            self.version = Some(v.to_owned());
        }
        self.listen_port = hs.p.or(self.listen_port);
        self.reqq = hs.reqq.or(self.reqq);
        self.yourip = hs.yourip.or(self.yourip);
        self.metadata_size = hs.metadata_size.or(self.metadata_size);
        if let Some(u) = hs.upload_only {
            self.upload_only = u;
        }
    }

    pub fn id(&self, name: &[u8]) -> Option<u8> {
        self.ids
            .iter()
            .find(|(n, _)| n.as_slice() == name)
            .map(|&(_, id)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_canonical() {
        let hs = ExtensionHandshake {
            m: vec![(b"ut_pex", 2), (b"ut_metadata", 1)],
            v: Some("Hive 0.1"),
            p: Some(6881),
            reqq: Some(250),
            yourip: Some(IpAddr::from([192, 0, 2, 7])),
            ipv4: None,
            ipv6: Some(Ipv6Addr::LOCALHOST),
            metadata_size: Some(31_235),
            upload_only: Some(true),
        };
        let bytes = hs.to_bytes();
        // Canonical: the strict decoder (sorted keys) accepts it.
        assert!(bencode::decode(&bytes).is_ok());
        let back = ExtensionHandshake::decode(&bytes, 1 << 14).unwrap();
        assert_eq!(back.extension_id(b"ut_metadata"), Some(1));
        assert_eq!(back.extension_id(b"ut_pex"), Some(2));
        assert_eq!(back.v, hs.v);
        assert_eq!(back.p, hs.p);
        assert_eq!(back.reqq, hs.reqq);
        assert_eq!(back.yourip, hs.yourip);
        assert_eq!(back.ipv6, hs.ipv6);
        assert_eq!(back.metadata_size, hs.metadata_size);
        assert_eq!(back.upload_only, Some(true));
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(
            bytes.escape_ascii().to_string(),
            "d4:ipv616:\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01\
             1:md11:ut_metadatai1e6:ut_pexi2ee13:metadata_sizei31235e1:pi6881e4:reqqi250e\
             11:upload_onlyi1e1:v8:Hive 0.16:yourip4:\\xc0\\x00\\x02\\x07e"
        );
    }

    #[test]
    fn bep10_example_decodes() {
        // The example from BEP 10 (with its µ as UTF-8 and the length of `v` fixed to 13).
        let payload = b"d1:md11:LT_metadatai1e6:ut_pexi2ee1:pi6881e1:v13:\xc2\xb5Torrent 1.2e";
        let hs = ExtensionHandshake::decode(payload, 1024).unwrap();
        assert_eq!(hs.extension_id(b"LT_metadata"), Some(1));
        assert_eq!(hs.extension_id(b"ut_pex"), Some(2));
        assert_eq!(hs.p, Some(6881));
        assert_eq!(hs.v, Some("\u{b5}Torrent 1.2"));
    }

    #[test]
    fn wrong_types_and_unknown_keys_are_ignored() {
        let payload = b"d1:ai1e1:mli1ee1:p5:hello4:reqqi-5e1:vi3e6:yourip3:abc\
                        13:metadata_size3:big5:zzzzzd1:xi1eee";
        let hs = ExtensionHandshake::decode(payload, 1024).unwrap();
        assert_eq!(hs, ExtensionHandshake::default());
        // Unsorted keys, bad ids in m (negative, too big, not an int) skipped one by one.
        let payload = b"d1:pi70000e1:md1:ai300e1:bi-1e1:c1:x1:di0e1:ei7eee";
        let hs = ExtensionHandshake::decode(payload, 1024).unwrap();
        assert_eq!(hs.m, vec![(&b"d"[..], 0), (&b"e"[..], 7)]);
        assert_eq!(hs.p, None);
        assert_eq!(hs.extension_id(b"d"), None);
        // reqq is clamped.
        let hs = ExtensionHandshake::decode(b"d4:reqqi99999999999ee", 1024).unwrap();
        assert_eq!(hs.reqq, Some(MAX_REQQ));
        // Trailing bytes after the dictionary are tolerated.
        let hs = ExtensionHandshake::decode(b"d1:pi1eeXYZ", 1024).unwrap();
        assert_eq!(hs.p, Some(1));
    }

    #[test]
    fn fatal_errors() {
        assert_eq!(
            ExtensionHandshake::decode(b"li1ee", 64),
            Err(ExtensionError::NotADict { found: "list" })
        );
        assert!(matches!(
            ExtensionHandshake::decode(b"d1:m", 64),
            Err(ExtensionError::Bencode(_))
        ));
        assert_eq!(
            ExtensionHandshake::decode(&[b'd'; 100], 64),
            Err(ExtensionError::TooLong { len: 100, max: 64 })
        );
        let msg = ExtensionHandshake::decode(b"i1e", 64)
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "extension handshake is a bencoded integer, not a dictionary"
        );
    }

    #[test]
    fn m_is_bounded_and_additive() {
        let mut payload = b"d1:md".to_vec();
        for i in 0..200u32 {
            let name = format!("x{i:04}");
            bencode::encode_bytes(&mut payload, name.as_bytes());
            bencode::encode_int(&mut payload, 1);
        }
        payload.extend_from_slice(b"ee");
        let hs = ExtensionHandshake::decode(&payload, 1 << 16).unwrap();
        assert_eq!(hs.m.len(), MAX_EXTENSIONS);

        let mut remote = RemoteExtensions::default();
        remote.merge(&ExtensionHandshake::decode(b"d1:md1:ai1e1:bi2eee", 64).unwrap());
        remote.merge(&ExtensionHandshake::decode(b"d1:md1:ai0e1:ci3ee1:pi9ee", 64).unwrap());
        assert_eq!(remote.id(b"a"), None);
        assert_eq!(remote.id(b"b"), Some(2));
        assert_eq!(remote.id(b"c"), Some(3));
        assert_eq!(remote.listen_port, Some(9));
    }
}
