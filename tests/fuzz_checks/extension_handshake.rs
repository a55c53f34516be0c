//! `extension_handshake`: the payload of BEP 10 extended message 0 (a bencoded dictionary from
//! the peer), decoded by `ExtensionHandshake::decode` with the limit a connection uses.
//!
//! Properties: the decoder's documented bounds hold for whatever it keeps (at most
//! `MAX_EXTENSIONS` names of at most `MAX_NAME_LEN` bytes, `v` non-empty and at most
//! `MAX_VERSION_LEN` bytes, `p` and `metadata_size` non-zero, `reqq` within `1..=MAX_REQQ`);
//! only payloads over the limit, non-bencode or non-dictionaries are errors, and an over-long
//! payload is refused before it is parsed; the canonical re-encoding decodes to the same
//! handshake (with `m` in sorted order) and is a fixed point; `extension_id` agrees with `m`.
//!
//! Input that is not a dictionary is also tried as the value of an `m` key and as a whole
//! dictionary body, so that mutations reach the per-key rules instead of all failing at the
//! first byte.

use hive_core::peer::extension::{MAX_EXTENSIONS, MAX_NAME_LEN, MAX_REQQ, MAX_VERSION_LEN};
use hive_core::peer::{ExtensionError, ExtensionHandshake, PeerConfig};

/// The fuzz target's body.
pub fn check(data: &[u8]) {
    let limit = PeerConfig::new([0; 20]).max_extension_handshake;
    check_payload(data, limit);
    if data.first() != Some(&b'd') {
        let mut inside_m = b"d1:m".to_vec();
        inside_m.extend_from_slice(data);
        inside_m.push(b'e');
        check_payload(&inside_m, limit);
        let mut body = vec![b'd'];
        body.extend_from_slice(data);
        body.push(b'e');
        check_payload(&body, limit);
    }
    // The limit is enforced on the length alone, before any parsing.
    if data.len() > 1 {
        let small = data.len() - 1;
        assert!(matches!(
            ExtensionHandshake::decode(data, small),
            Err(ExtensionError::TooLong { len, max }) if len == data.len() && max == small
        ));
    }
}

fn check_payload(payload: &[u8], limit: usize) {
    let hs = match ExtensionHandshake::decode(payload, limit) {
        Ok(hs) => hs,
        Err(ExtensionError::TooLong { len, max }) => {
            assert_eq!((len, max), (payload.len(), limit));
            assert!(payload.len() > limit);
            return;
        }
        Err(ExtensionError::Bencode(_) | ExtensionError::NotADict { .. }) => return,
    };
    assert!(payload.len() <= limit);
    check_bounds(&hs);

    // Bencode refuses duplicate keys, so every name in `m` is distinct.
    for (i, (name, _)) in hs.m.iter().enumerate() {
        assert!(
            !hs.m.iter().take(i).any(|(n, _)| n == name),
            "duplicate extension name {name:?} kept"
        );
    }
    for &(name, id) in &hs.m {
        assert_eq!(hs.extension_id(name), (id != 0).then_some(id));
    }

    let canonical = hs.to_bytes();
    let back = ExtensionHandshake::decode(&canonical, usize::MAX)
        .unwrap_or_else(|e| panic!("canonical encoding {canonical:?} does not decode: {e}"));
    let mut sorted = hs.clone();
    sorted.m.sort_unstable_by(|a, b| a.0.cmp(b.0));
    assert_eq!(back, sorted, "canonical encoding changed the handshake");
    assert_eq!(
        back.to_bytes(),
        canonical,
        "canonical encoding is not a fixed point"
    );
}

fn check_bounds(hs: &ExtensionHandshake<'_>) {
    assert!(hs.m.len() <= MAX_EXTENSIONS, "{} names kept", hs.m.len());
    assert!(hs.m.iter().all(|(n, _)| n.len() <= MAX_NAME_LEN));
    assert!(
        hs.v.is_none_or(|v| !v.is_empty() && v.len() <= MAX_VERSION_LEN),
        "v = {:?}",
        hs.v
    );
    assert_ne!(hs.p, Some(0));
    assert_ne!(hs.metadata_size, Some(0));
    assert!(hs.reqq.is_none_or(|q| (1..=MAX_REQQ).contains(&q)));
}
