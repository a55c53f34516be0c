//! `handshake`: a connection's receive side from its first byte: the `HandshakeDecoder` over
//! reads of any size (see [`super::chunks`]), then the `FrameDecoder` over what follows.
//!
//! Properties: `InfoHash` comes after exactly 48 bytes and `Complete` after 68, each once, in
//! that order, whatever the chunking; the complete handshake re-encodes to the 68 bytes it was
//! read from and agrees with `Handshake::parse`; the decoder never consumes past byte 68 (the
//! rest belongs to the frame decoder, which must then behave as in `wire_frames`); a bad
//! protocol string fails at its first wrong byte, and the failure is final.

use hive_core::wire::{
    HANDSHAKE_LEN, HANDSHAKE_PREFIX_LEN, Handshake, HandshakeDecoder, HandshakeEvent, PROTOCOL,
    WireError,
};

use super::chunks;
use super::wire_frames;

/// The fuzz target's body.
pub fn check(data: &[u8]) {
    let split = chunks::split(data);
    let stream = split.stream;
    let expected_prefix: Vec<u8> = [19u8].iter().chain(PROTOCOL).copied().collect();
    let parsed = Handshake::parse(stream);

    let mut decoder = HandshakeDecoder::new();
    let mut consumed = 0usize;
    let mut events = Vec::new();
    let mut error = None;
    let reads = split.chunks();
    let mut rest_reads: Vec<&[u8]> = Vec::new();
    'reads: for (i, read) in reads.iter().enumerate() {
        let mut input = *read;
        loop {
            let before = input.len();
            let result = decoder.decode(&mut input);
            consumed += before - input.len();
            assert_eq!(decoder.received(), consumed);
            match result {
                Ok(Some(event)) => {
                    let at = match event {
                        HandshakeEvent::InfoHash { .. } => HANDSHAKE_PREFIX_LEN,
                        HandshakeEvent::Complete(_) => HANDSHAKE_LEN,
                    };
                    assert_eq!(consumed, at, "{event:?} after {consumed} bytes");
                    events.push(event);
                }
                Ok(None) => {
                    if decoder.is_complete() {
                        // Complete: the decoder leaves the rest of the read alone.
                        assert_eq!(input.len(), before);
                        rest_reads.push(input);
                        rest_reads.extend(&reads[i + 1..]);
                        break 'reads;
                    }
                    assert!(
                        input.is_empty(),
                        "Ok(None) with input left before completion"
                    );
                    break;
                }
                Err(e) => {
                    assert_eq!(decoder.decode(&mut input), Err(WireError::Failed));
                    error = Some(e);
                    break 'reads;
                }
            }
        }
    }
    assert!(consumed <= HANDSHAKE_LEN);

    match error {
        Some(WireError::BadProtocol { offset, byte }) => {
            assert!(offset < expected_prefix.len());
            assert_eq!(stream.get(offset), Some(&byte));
            assert_ne!(expected_prefix[offset], byte);
            assert_eq!(stream[..offset], expected_prefix[..offset], "failed late");
            assert_eq!(parsed, Err(WireError::BadProtocol { offset, byte }));
            assert!(events.is_empty());
            return;
        }
        Some(other) => panic!("unexpected handshake error {other:?}"),
        None => {}
    }
    let n = stream.len().min(HANDSHAKE_LEN);
    assert_eq!(consumed, n);
    assert_eq!(stream[..n.min(20)], expected_prefix[..n.min(20)]);
    let complete = events.iter().find_map(|e| match e {
        HandshakeEvent::Complete(h) => Some(*h),
        HandshakeEvent::InfoHash { .. } => None,
    });
    let want_events = usize::from(n >= HANDSHAKE_PREFIX_LEN) + usize::from(n == HANDSHAKE_LEN);
    assert_eq!(events.len(), want_events, "events {events:?}");
    if let Some(HandshakeEvent::InfoHash {
        reserved,
        info_hash,
    }) = events.first()
    {
        assert_eq!(&reserved.bytes()[..], &stream[20..28]);
        assert_eq!(&info_hash[..], &stream[28..48]);
    }
    assert_eq!(parsed, Ok(complete));
    let Some(handshake) = complete else {
        assert!(!decoder.is_complete());
        return;
    };
    assert_eq!(handshake.to_bytes()[..], stream[..HANDSHAKE_LEN]);

    // The frame decoder takes over the same reads, as a connection does.
    let limits = wire_frames::limits(split.variant);
    let after = wire_frames::run(limits, &rest_reads);
    let whole = wire_frames::run(limits, &[&stream[HANDSHAKE_LEN..]]);
    assert_eq!(
        after, whole,
        "frames after the handshake depend on the chunking"
    );
}
