use super::*;
use proptest::prelude::*;

const LIMITS: DecoderLimits = DecoderLimits::DEFAULT;

fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    msg.encode(&mut out).unwrap();
    assert_eq!(out.len(), msg.encoded_len());
    out
}

/// Decodes `stream` fed in chunks of the given sizes (cycled); returns each message re-encoded.
fn decode_chunked(
    stream: &[u8],
    sizes: &[usize],
    limits: DecoderLimits,
) -> Result<Vec<Vec<u8>>, WireError> {
    let mut decoder = FrameDecoder::new(limits);
    let mut out = Vec::new();
    let mut rest = stream;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.clamp(1, rest.len()));
        rest = tail;
        let mut input = chunk;
        while let Some(msg) = decoder.decode(&mut input)? {
            out.push(encode(&msg));
        }
        assert!(input.is_empty(), "Ok(None) must mean the input is used up");
    }
    assert_eq!(
        decoder.buffered(),
        0,
        "a whole stream leaves nothing buffered"
    );
    Ok(out)
}

/// Feeds `bytes` to a fresh decoder in one chunk and returns the first result.
fn decode_one(bytes: &[u8]) -> Result<Option<Message<'_>>, WireError> {
    let mut input = bytes;
    let mut decoder = FrameDecoder::default();
    // The message borrows `bytes` here (whole frame), so it can outlive the decoder.
    match decoder.decode(&mut input)? {
        None => Ok(None),
        Some(_) => Message::parse(bytes.get(4..).unwrap(), &LIMITS).map(Some),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `len id fields`: each integer field, then the data of piece, bitfield and extended.
fn frame_hex(bytes: &[u8]) -> String {
    let (len, rest) = bytes.split_at(4);
    let mut s = hex(len);
    if let Some((&id, payload)) = rest.split_first() {
        s += &format!(" {id:02x}");
        if id == id::EXTENDED {
            // BEP 10: the extended id, then a payload that is not made of 4-byte fields.
            let (ext, body) = payload.split_first().unwrap();
            return format!("{s} {ext:02x} {}", hex(body))
                .trim_end()
                .to_string();
        }
        if id == id::PIECE {
            let (header, data) = payload.split_at(8);
            s += &format!(" {} {}", hex(&header[..4]), hex(&header[4..]));
            return format!("{s} {}", hex(data));
        }
        if id == id::BITFIELD || id == id::PORT {
            return format!("{s} {}", hex(payload));
        }
        for word in payload.chunks(4) {
            s += " ";
            s += &hex(word);
        }
    }
    s
}

fn every_message() -> Vec<Message<'static>> {
    let block = BlockRequest {
        index: 1,
        begin: 0x4000,
        length: 0x4000,
    };
    vec![
        Message::KeepAlive,
        Message::Choke,
        Message::Unchoke,
        Message::Interested,
        Message::NotInterested,
        Message::Have(42),
        Message::Bitfield(&[0xff, 0x80]),
        Message::Request(block),
        Message::Piece {
            index: 1,
            begin: 0x4000,
            data: &[0xde, 0xad, 0xbe, 0xef, 0x01],
        },
        Message::Cancel(block),
        Message::Port(6881),
        Message::Suggest(7),
        Message::HaveAll,
        Message::HaveNone,
        Message::Reject(block),
        Message::AllowedFast(3),
        Message::Extended {
            id: 0,
            payload: b"d1:md6:ut_pexi1eee",
        },
        Message::Extended {
            id: 3,
            payload: b"",
        },
        Message::Unknown {
            id: 21,
            payload: &[1, 2, 3],
        },
    ]
}

fn sample_handshake() -> Handshake {
    let mut info_hash = [0u8; 20];
    for (i, b) in info_hash.iter_mut().enumerate() {
        *b = i as u8;
    }
    Handshake {
        reserved: Reserved::DHT | Reserved::FAST | Reserved::EXTENSION_PROTOCOL,
        info_hash,
        peer_id: *b"-HV0001-abcdefghijkl",
    }
}

#[test]
fn snapshot_every_message() {
    let mut text = String::new();
    for msg in every_message() {
        let bytes = encode(&msg);
        text += &format!("{msg:?}\n  {}\n", frame_hex(&bytes));
        // Every snapshot line is also a decoding test.
        assert_eq!(decode_one(&bytes), Ok(Some(msg)));
    }
    insta::assert_snapshot!("every_message", text);
}

#[test]
fn snapshot_handshake() {
    let h = sample_handshake();
    let b = h.to_bytes();
    let text = format!(
        "{:?}\n{} {} {} {} {}\n",
        h.reserved,
        hex(&b[..1]),
        hex(&b[1..20]),
        hex(&b[20..28]),
        hex(&b[28..48]),
        hex(&b[48..]),
    );
    insta::assert_snapshot!("handshake", text);
    let mut v = Vec::new();
    h.encode(&mut v).unwrap();
    assert_eq!(v, b);
    assert_eq!(Handshake::parse(&b), Ok(Some(h)));
}

#[test]
fn reserved_bits() {
    let r = Reserved([0x80, 0, 0, 0, 0, 0x10, 0, 0x05]);
    assert!(r.dht() && r.fast() && r.extension_protocol());
    assert_eq!(r.unknown(), Reserved([0x80, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(
        format!("{r:?}"),
        "Reserved(8000000000100005 [dht, fast, extension protocol, unknown bits])"
    );
    assert_eq!(
        format!("{:?}", Reserved::NONE),
        "Reserved(0000000000000000)"
    );
    let mut s = r;
    s.set(Reserved::FAST, false);
    assert!(!s.fast() && s.dht());
    assert_eq!(
        s.bytes(),
        [0x80, 0, 0, 0, 0, 0x10, 0, 0x01],
        "unknown bits kept"
    );
    // BEP 6: in force only if both ends set it.
    assert!(!(s & r).fast());
    assert!((Reserved::FAST & r).fast());
    // Unknown bits survive a handshake round trip.
    let h = Handshake {
        reserved: r,
        ..sample_handshake()
    };
    assert_eq!(
        Handshake::parse(&h.to_bytes()).unwrap().unwrap().reserved,
        r
    );
}

#[test]
fn handshake_prefix_comes_first_then_rest_is_left() {
    let h = sample_handshake();
    let mut stream = h.to_bytes().to_vec();
    stream.extend_from_slice(&[0, 0, 0, 1, 2]); // interested, right behind the handshake
    let mut dec = HandshakeDecoder::new();
    let mut input = &stream[..];
    assert_eq!(
        dec.decode(&mut input),
        Ok(Some(HandshakeEvent::InfoHash {
            reserved: h.reserved,
            info_hash: h.info_hash
        }))
    );
    assert_eq!(input.len(), 25, "stops after the info hash");
    assert_eq!(
        dec.decode(&mut input),
        Ok(Some(HandshakeEvent::Complete(h)))
    );
    assert_eq!(input, &[0, 0, 0, 1, 2], "never consumes past the handshake");
    assert!(dec.is_complete());
    assert_eq!(dec.decode(&mut input), Ok(None));
    assert_eq!(input.len(), 5);
    assert_eq!(decode_one(input), Ok(Some(Message::Interested)));
}

#[test]
fn handshake_rejects_bad_protocol_early() {
    let mut dec = HandshakeDecoder::new();
    // An encrypted (MSE) stream starts with random bytes: refused at the first one.
    let mut input: &[u8] = &[0x8f];
    assert_eq!(
        dec.decode(&mut input),
        Err(WireError::BadProtocol {
            offset: 0,
            byte: 0x8f
        })
    );
    assert_eq!(dec.decode(&mut &[19u8][..]), Err(WireError::Failed));

    let mut bad = sample_handshake().to_bytes();
    bad[12] = b'P'; // "BitTorrent Protocol"
    let mut dec = HandshakeDecoder::new();
    let mut input = &bad[..12];
    assert_eq!(dec.decode(&mut input), Ok(None));
    let mut input = &bad[12..];
    assert_eq!(
        dec.decode(&mut input),
        Err(WireError::BadProtocol {
            offset: 12,
            byte: b'P'
        })
    );
    assert_eq!(
        Handshake::parse(&bad).unwrap_err().to_string(),
        "not a BitTorrent handshake: byte 12 is 0x50 (expected 19 then \"BitTorrent protocol\"; \
         maybe an encrypted or non-BitTorrent peer)"
    );
    assert_eq!(Handshake::parse(&bad[..11]), Ok(None));
}

#[test]
fn whole_frames_are_borrowed_not_copied() {
    let data = vec![7u8; 16 * 1024];
    let mut stream = Vec::new();
    for i in 0..4 {
        encode_piece_header(&mut stream, i, 0, data.len()).unwrap();
        stream.extend_from_slice(&data);
    }
    let range = stream.as_ptr_range();
    let mut dec = FrameDecoder::default();
    let mut input = &stream[..];
    let mut n = 0;
    while let Some(msg) = dec.decode(&mut input).unwrap() {
        let Message::Piece {
            index, data: got, ..
        } = msg
        else {
            panic!("{msg:?}")
        };
        assert_eq!(index, n);
        assert!(
            range.contains(&got.as_ptr()),
            "block data points into the input"
        );
        assert_eq!(got, &data[..]);
        n += 1;
    }
    assert_eq!(n, 4);
    assert_eq!(dec.buffer_capacity(), 0, "nothing was buffered");
}

/// A piece frame whose header came in one chunk (whole or any part of it) and whose block
/// comes whole in the next: the block is borrowed from the second chunk, not buffered. This
/// is how a driver that keeps blocks apart from the messages around them (the simulator,
/// `poll_transmit_parts`) delivers them.
#[test]
fn a_block_after_a_split_header_is_borrowed() {
    let data: Vec<u8> = (0..16 * 1024).map(|i| i as u8).collect();
    let mut stream = encode(&Message::Have(1));
    let start = stream.len();
    encode_piece_header(&mut stream, 4, 16 * 1024, data.len()).unwrap();
    stream.extend_from_slice(&data);
    stream.extend(encode(&Message::Have(2)));
    for k in 1..=PIECE_HEADER_LEN {
        let (first, second) = stream.split_at(start + k);
        let mut dec = FrameDecoder::default();
        let mut input = first;
        assert_eq!(dec.decode(&mut input).unwrap(), Some(Message::Have(1)));
        assert_eq!(dec.decode(&mut input).unwrap(), None);
        assert_eq!(dec.buffered(), k, "split after {k} header bytes");
        let range = second.as_ptr_range();
        let mut input = second;
        let msg = dec.decode(&mut input).unwrap().unwrap();
        let Message::Piece {
            index,
            begin,
            data: got,
        } = msg
        else {
            panic!("{msg:?}")
        };
        assert_eq!((index, begin), (4, 16 * 1024));
        assert_eq!(got, &data[..]);
        assert!(
            range.contains(&got.as_ptr()),
            "split after {k} header bytes: the block was copied"
        );
        assert_eq!(dec.decode(&mut input).unwrap(), Some(Message::Have(2)));
        assert_eq!(dec.decode(&mut input).unwrap(), None);
        assert_eq!(dec.buffered(), 0);
        assert!(
            dec.buffer_capacity() < 64,
            "split after {k} header bytes: {} bytes reserved for a block never buffered",
            dec.buffer_capacity()
        );
    }
}

/// Every way of cutting a stream with a piece frame in two or three chunks (exhaustive)
/// decodes the same messages: a split block is still reassembled.
#[test]
fn a_piece_decodes_whatever_the_cuts() {
    let data: Vec<u8> = (0..40).map(|i| i as u8 ^ 0x5a).collect();
    let msgs = [
        Message::Have(7),
        Message::Piece {
            index: 3,
            begin: 16 * 1024,
            data: &data,
        },
        Message::Piece {
            index: 3,
            begin: 0,
            data: &data[..1],
        },
        Message::KeepAlive,
        Message::Request(BlockRequest {
            index: 1,
            begin: 0,
            length: 16 * 1024,
        }),
    ];
    let stream: Vec<u8> = msgs.iter().flat_map(encode).collect();
    let expected: Vec<Vec<u8>> = msgs.iter().map(encode).collect();
    let decode_cut = |cuts: &[usize]| {
        let mut dec = FrameDecoder::default();
        let mut out = Vec::new();
        let mut from = 0;
        for &to in cuts.iter().chain([&stream.len()]) {
            let mut input = &stream[from..to];
            while let Some(msg) = dec.decode(&mut input).unwrap() {
                out.push(encode(&msg));
            }
            assert!(input.is_empty());
            from = to;
        }
        assert_eq!(dec.buffered(), 0);
        out
    };
    for a in 0..=stream.len() {
        assert_eq!(decode_cut(&[a]), expected, "cut at {a}");
        for b in a..=stream.len() {
            assert_eq!(decode_cut(&[a, b]), expected, "cuts at {a} and {b}");
        }
    }
}

#[test]
fn straddling_frames_reuse_one_buffer() {
    let data = vec![9u8; 16 * 1024];
    let mut stream = Vec::new();
    for i in 0..64 {
        encode_piece_header(&mut stream, i, 0, data.len()).unwrap();
        stream.extend_from_slice(&data);
    }
    let mut dec = FrameDecoder::default();
    let mut capacity = None;
    let mut n = 0;
    // 1000-byte chunks: every frame straddles.
    for chunk in stream.chunks(1000) {
        let mut input = chunk;
        while let Some(msg) = dec.decode(&mut input).unwrap() {
            assert_eq!(msg.block().unwrap().length, 16 * 1024);
            n += 1;
        }
        let cap = dec.buffer_capacity();
        assert!(
            *capacity.get_or_insert(cap) == cap,
            "no reallocation per message"
        );
    }
    assert_eq!(n, 64);
    assert_eq!(capacity, Some(16 * 1024 + 9));
}

#[test]
fn one_byte_at_a_time() {
    let mut stream = Vec::new();
    for msg in every_message() {
        stream.extend(encode(&msg));
    }
    let expected: Vec<_> = every_message().iter().map(encode).collect();
    assert_eq!(decode_chunked(&stream, &[1], LIMITS), Ok(expected.clone()));
    assert_eq!(
        decode_chunked(&stream, &[stream.len()], LIMITS),
        Ok(expected)
    );
}

#[test]
fn truncated_frames_wait_for_more() {
    for msg in every_message() {
        let bytes = encode(&msg);
        for cut in 0..bytes.len() {
            let mut dec = FrameDecoder::default();
            let mut input = &bytes[..cut];
            assert_eq!(dec.decode(&mut input), Ok(None), "{msg:?} cut at {cut}");
            assert!(input.is_empty());
            assert_eq!(dec.buffered(), cut);
        }
    }
}

/// Feeds `bytes` one at a time; returns the error and how many bytes were fed when it came.
fn first_error(bytes: &[u8]) -> (WireError, usize, usize) {
    let mut dec = FrameDecoder::default();
    for (i, b) in bytes.iter().enumerate() {
        let mut input = std::slice::from_ref(b);
        if let Err(e) = dec.decode(&mut input) {
            return (e, i + 1, dec.buffer_capacity());
        }
    }
    panic!("no error for {bytes:02x?}");
}

#[test]
fn hostile_lengths_are_refused_before_buffering() {
    let huge = [0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0];
    let too_long = WireError::FrameTooLong {
        len: u32::MAX,
        max: LIMITS.largest_frame(),
    };
    assert_eq!(decode_one(&huge), Err(too_long));
    assert_eq!(first_error(&huge), (too_long, 4, 0));

    // A piece frame one byte over 16 KiB + 9: refused at its id byte.
    let mut piece = ((16 * 1024 + 10) as u32).to_be_bytes().to_vec();
    piece.extend([7, 0, 0, 0, 1]);
    let over = WireError::BlockTooLong {
        len: 16 * 1024 + 1,
        max: 16 * 1024,
    };
    assert_eq!(first_error(&piece), (over, 5, 0));

    // A bitfield one byte over the 2^21-piece default is over every limit: refused at byte 4.
    let bitfield = [0, 0x04, 0, 0x02, 5, 0];
    let over = WireError::FrameTooLong {
        len: 0x40002,
        max: 0x40001,
    };
    assert_eq!(first_error(&bitfield), (over, 4, 0));

    let cases: &[(&[u8], WireError)] = &[
        // have with 3 bytes
        (
            &[0, 0, 0, 4, 4, 0, 0, 1],
            WireError::WrongLength {
                id: 4,
                len: 3,
                expected: 4,
            },
        ),
        // choke with a payload
        (
            &[0, 0, 0, 2, 0, 0],
            WireError::WrongLength {
                id: 0,
                len: 1,
                expected: 0,
            },
        ),
        // request with 13 bytes
        (
            &[0, 0, 0, 14, 6, 0],
            WireError::WrongLength {
                id: 6,
                len: 13,
                expected: 12,
            },
        ),
        // port with 4 bytes
        (
            &[0, 0, 0, 5, 9, 0],
            WireError::WrongLength {
                id: 9,
                len: 4,
                expected: 2,
            },
        ),
        // have-all with a payload (BEP 6)
        (
            &[0, 0, 0, 2, 14, 0],
            WireError::WrongLength {
                id: 14,
                len: 1,
                expected: 0,
            },
        ),
        // piece without room for index and begin
        (
            &[0, 0, 0, 5, 7, 0],
            WireError::TooShort {
                id: 7,
                len: 4,
                min: 8,
            },
        ),
        // extended without its extended id
        (
            &[0, 0, 0, 1, 20],
            WireError::TooShort {
                id: 20,
                len: 0,
                min: 1,
            },
        ),
        // extended message over 64 KiB
        (
            &[0, 1, 0, 1, 20, 0],
            WireError::FrameTooLong {
                len: 0x10001,
                max: 0x10000,
            },
        ),
        // unknown message over 64 KiB
        (
            &[0, 1, 0, 1, 99, 0],
            WireError::FrameTooLong {
                len: 0x10001,
                max: 0x10000,
            },
        ),
    ];
    for &(bytes, err) in cases {
        // Whole, and byte by byte: the error comes at the id byte, before any buffering.
        assert_eq!(decode_one(bytes).err(), Some(err), "{bytes:02x?}");
        if !matches!(err, WireError::TooShort { id: 20, .. }) {
            assert_eq!(first_error(bytes), (err, 5, 0), "{bytes:02x?}");
        }
    }
}

#[test]
fn bitfield_limit_follows_the_piece_count() {
    let limits = LIMITS.with_piece_count(12);
    assert_eq!(limits.max_bitfield_len, 2);
    let mut dec = FrameDecoder::new(limits);
    let mut input: &[u8] = &[0, 0, 0, 3, 5, 0xff, 0xf0];
    assert_eq!(
        dec.decode(&mut input),
        Ok(Some(Message::Bitfield(&[0xff, 0xf0])))
    );
    let mut dec = FrameDecoder::new(limits);
    let mut input: &[u8] = &[0, 0, 0, 4, 5, 0xff, 0xf0, 0];
    assert_eq!(
        dec.decode(&mut input),
        Err(WireError::BitfieldTooLong { len: 3, max: 2 })
    );
}

#[test]
fn zero_length_piece_is_refused() {
    let bytes = [0, 0, 0, 9, 7, 0, 0, 0, 2, 0, 0, 0x40, 0];
    let err = WireError::EmptyBlock {
        index: 2,
        begin: 0x4000,
    };
    assert_eq!(decode_one(&bytes), Err(err));
    assert_eq!(first_error(&bytes).0, err);
    assert_eq!(
        err.to_string(),
        "piece message for piece 2 at offset 16384 carries no data"
    );
}

#[test]
fn unknown_ids_are_reported_not_errors() {
    let bytes = [0, 0, 0, 3, 21, 0xab, 0xcd, 0, 0, 0, 1, 1];
    let mut dec = FrameDecoder::default();
    let mut input = &bytes[..];
    assert_eq!(
        dec.decode(&mut input),
        Ok(Some(Message::Unknown {
            id: 21,
            payload: &[0xab, 0xcd]
        }))
    );
    assert_eq!(dec.decode(&mut input), Ok(Some(Message::Unchoke)));
    let mut input: &[u8] = &[0, 0, 0, 1, 255];
    assert_eq!(
        dec.decode(&mut input),
        Ok(Some(Message::Unknown {
            id: 255,
            payload: &[]
        }))
    );
}

#[test]
fn errors_are_final() {
    let mut dec = FrameDecoder::default();
    let mut input: &[u8] = &[0, 0, 0, 4, 4, 0, 0, 1];
    assert!(dec.decode(&mut input).is_err());
    assert!(dec.is_failed());
    let mut input: &[u8] = &[0, 0, 0, 0];
    assert_eq!(dec.decode(&mut input), Err(WireError::Failed));
}

#[test]
fn encoding_into_a_small_buffer_writes_nothing() {
    let mut buf = [0u8; 12];
    let mut out = &mut buf[..];
    assert_eq!(
        Message::Request(BlockRequest {
            index: 1,
            begin: 2,
            length: 3
        })
        .encode(&mut out),
        Err(WireError::BufferTooSmall {
            needed: 17,
            available: 12
        })
    );
    assert_eq!(
        encode_piece_header(&mut out, 0, 0, 16384),
        Err(WireError::BufferTooSmall {
            needed: 13,
            available: 12
        })
    );
    assert_eq!(out.len(), 12);
    assert_eq!(
        sample_handshake().encode(&mut out),
        Err(WireError::BufferTooSmall {
            needed: 68,
            available: 12
        })
    );
    assert_eq!(buf, [0; 12]);
    let mut out = &mut buf[..];
    Message::Have(5).encode(&mut out).unwrap();
    assert_eq!(out.len(), 3);
}

#[test]
fn piece_header_plus_block_equals_piece_message() {
    let data = [1u8, 2, 3, 4, 5, 6];
    let mut split = Vec::new();
    encode_piece_header(&mut split, 9, 32, data.len()).unwrap();
    assert_eq!(split.len(), PIECE_HEADER_LEN);
    split.extend_from_slice(&data);
    let whole = encode(&Message::Piece {
        index: 9,
        begin: 32,
        data: &data,
    });
    assert_eq!(split, whole);
}

#[test]
fn validation_helpers() {
    assert_eq!(bitfield_len(0), 0);
    assert_eq!(bitfield_len(8), 1);
    assert_eq!(bitfield_len(9), 2);
    assert_eq!(validate_bitfield(&[0xff, 0x80], 9), Ok(()));
    assert_eq!(validate_bitfield(&[0xff], 8), Ok(()));
    assert_eq!(
        validate_bitfield(&[0xff, 0xc0], 9),
        Err(WireError::BitfieldSpareBits { piece_count: 9 })
    );
    assert_eq!(
        validate_bitfield(&[0xff, 0x01], 15),
        Err(WireError::BitfieldSpareBits { piece_count: 15 })
    );
    assert_eq!(validate_bitfield(&[0xff, 0xfe], 15), Ok(()));
    assert_eq!(
        validate_bitfield(&[0xff], 9),
        Err(WireError::BitfieldLength {
            len: 1,
            expected: 2,
            piece_count: 9
        })
    );
    assert_eq!(
        validate_bitfield(&[0xff, 0, 0], 9).unwrap_err().to_string(),
        "bitfield is 3 bytes, the torrent's 9 pieces need 2"
    );
    assert!(has_piece(&[0x80, 0x01], 0));
    assert!(!has_piece(&[0x80, 0x01], 1));
    assert!(has_piece(&[0x80, 0x01], 15));
    assert!(!has_piece(&[0x80, 0x01], 16));
    assert_eq!(validate_index(4, 5), Ok(()));
    assert_eq!(
        validate_index(5, 5),
        Err(WireError::IndexOutOfRange {
            index: 5,
            piece_count: 5
        })
    );
    let b = |begin, length| BlockRequest {
        index: 0,
        begin,
        length,
    };
    assert_eq!(validate_block(b(0, 16384), 32768, 16384), Ok(()));
    assert_eq!(validate_block(b(16384, 16384), 32768, 16384), Ok(()));
    assert_eq!(validate_block(b(30000, 2768), 32768, 16384), Ok(()));
    for bad in [b(0, 0), b(0, 16385), b(16385, 16384), b(u32::MAX, 2)] {
        assert!(validate_block(bad, 32768, 16384).is_err(), "{bad:?}");
    }
}

#[test]
fn error_messages_name_the_message() {
    assert_eq!(
        WireError::WrongLength {
            id: 4,
            len: 3,
            expected: 4
        }
        .to_string(),
        "have message has a 3-byte payload, expected 4"
    );
    assert_eq!(
        WireError::FrameTooLong {
            len: u32::MAX,
            max: 262_145
        }
        .to_string(),
        "frame length 4294967295 exceeds the limit of 262145 bytes"
    );
}

/// Ids this crate does not assign, for `Unknown`.
fn unassigned_ids() -> Vec<u8> {
    (0..=255)
        .filter(|&i| message_name(i) == "unknown")
        .collect()
}

/// An owned description of a message; `build` borrows from it.
#[derive(Clone, Debug)]
struct Spec {
    kind: u8,
    a: u32,
    b: u32,
    c: u32,
    data: Vec<u8>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u8..18,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 1000..1200),
        ],
    )
        .prop_map(|(kind, a, b, c, data)| Spec {
            kind,
            a,
            b,
            c,
            data,
        })
}

fn build(s: &Spec) -> Message<'_> {
    let block = BlockRequest {
        index: s.a,
        begin: s.b,
        length: s.c,
    };
    match s.kind {
        0 => Message::KeepAlive,
        1 => Message::Choke,
        2 => Message::Unchoke,
        3 => Message::Interested,
        4 => Message::NotInterested,
        5 => Message::Have(s.a),
        6 => Message::Bitfield(&s.data),
        7 => Message::Request(block),
        8 => Message::Piece {
            index: s.a,
            begin: s.b,
            data: if s.data.is_empty() { &[0] } else { &s.data },
        },
        9 => Message::Cancel(block),
        10 => Message::Port(s.a as u16),
        11 => Message::Suggest(s.a),
        12 => Message::HaveAll,
        13 => Message::HaveNone,
        14 => Message::Reject(block),
        15 => Message::AllowedFast(s.a),
        16 => Message::Extended {
            id: s.a as u8,
            payload: &s.data,
        },
        _ => {
            let ids = unassigned_ids();
            Message::Unknown {
                id: ids[s.a as usize % ids.len()],
                payload: &s.data,
            }
        }
    }
}

proptest! {
    #[test]
    fn round_trip_every_variant(s in spec()) {
        let msg = build(&s);
        let bytes = encode(&msg);
        let mut dec = FrameDecoder::default();
        let mut input = &bytes[..];
        prop_assert_eq!(dec.decode(&mut input), Ok(Some(msg)));
        prop_assert!(input.is_empty());
        prop_assert_eq!(Message::parse(&bytes[4..], &LIMITS), Ok(msg));
    }

    #[test]
    fn any_chunking_yields_the_same_messages(
        specs in proptest::collection::vec(spec(), 0..24),
        sizes in proptest::collection::vec(1usize..300, 1..40),
    ) {
        let expected: Vec<Vec<u8>> = specs.iter().map(|s| encode(&build(s))).collect();
        let stream = expected.concat();
        prop_assert_eq!(decode_chunked(&stream, &sizes, LIMITS), Ok(expected.clone()));
        prop_assert_eq!(decode_chunked(&stream, &[1], LIMITS), Ok(expected));
    }

    #[test]
    fn handshake_any_chunking(
        reserved in any::<[u8; 8]>(),
        info_hash in any::<[u8; 20]>(),
        peer_id in any::<[u8; 20]>(),
        sizes in proptest::collection::vec(1usize..80, 1..10),
    ) {
        let h = Handshake { reserved: Reserved(reserved), info_hash, peer_id };
        let mut stream = h.to_bytes().to_vec();
        stream.extend_from_slice(b"rest");
        let mut dec = HandshakeDecoder::new();
        let mut events = Vec::new();
        let mut rest = &stream[..];
        let mut leftover = Vec::new();
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            rest = tail;
            let mut input = chunk;
            while !dec.is_complete() {
                match dec.decode(&mut input).unwrap() {
                    Some(ev) => events.push(ev),
                    None => break,
                }
            }
            leftover.extend_from_slice(input);
        }
        prop_assert_eq!(events, vec![
            HandshakeEvent::InfoHash { reserved: h.reserved, info_hash },
            HandshakeEvent::Complete(h),
        ]);
        prop_assert_eq!(leftover, b"rest");
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2000),
        sizes in proptest::collection::vec(1usize..64, 1..10),
        small in any::<bool>(),
    ) {
        let limits = if small {
            DecoderLimits { max_block_len: 16, max_bitfield_len: 4, max_frame_len: 32 }
        } else {
            LIMITS
        };
        let mut dec = FrameDecoder::new(limits);
        let mut rest = &bytes[..];
        let mut failed = false;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() || failed {
                break;
            }
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            rest = tail;
            let mut input = chunk;
            loop {
                match dec.decode(&mut input) {
                    Ok(Some(msg)) => prop_assert!(msg.encoded_len() <= 4 + limits.largest_frame() as usize),
                    Ok(None) => break,
                    Err(_) => { failed = true; break; }
                }
            }
            prop_assert!(dec.buffer_capacity() <= limits.largest_frame() as usize);
        }
        let mut hs = HandshakeDecoder::new();
        let mut input = &bytes[..];
        let _ = hs.decode(&mut input);
    }
}

/// The shape a connection driver takes: the decoder and the state it updates are separate
/// fields, so a message borrowed from the decoder can be handed to the state.
#[test]
fn driver_shape_compiles_and_works() {
    #[derive(Default)]
    struct Conn {
        handshake: HandshakeDecoder,
        decoder: FrameDecoder,
        seen: Vec<(Option<u8>, usize)>,
    }
    impl Conn {
        fn on_bytes(&mut self, mut input: &[u8]) -> Result<(), WireError> {
            while !self.handshake.is_complete() {
                match self.handshake.decode(&mut input)? {
                    Some(_) => {}
                    None => return Ok(()),
                }
            }
            while let Some(msg) = self.decoder.decode(&mut input)? {
                self.seen.push((msg.id(), msg.payload_len()));
            }
            Ok(())
        }
    }
    let mut stream = sample_handshake().to_bytes().to_vec();
    for msg in every_message() {
        stream.extend(encode(&msg));
    }
    for size in [1, 7, 68, 69, stream.len()] {
        let mut conn = Conn::default();
        for chunk in stream.chunks(size) {
            conn.on_bytes(chunk).unwrap();
        }
        let expected: Vec<_> = every_message()
            .iter()
            .map(|m| (m.id(), m.payload_len()))
            .collect();
        assert_eq!(conn.seen, expected, "chunk size {size}");
    }
}
