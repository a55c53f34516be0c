use super::*;
use crate::rng::Rng;
use proptest::prelude::*;

const KIB: u32 = 1024;

fn cfg_rarest() -> PickerConfig {
    PickerConfig {
        initial_random_pieces: 0,
        ..PickerConfig::default()
    }
}

/// `count` pieces of one block each (16 KiB), so one piece = one pick of 1 block.
fn small(count: u32, config: PickerConfig, seed: u64) -> Picker {
    Picker::new(
        count,
        16 * KIB,
        u64::from(count) * 16 * 1024,
        config,
        Rng::new(seed),
    )
    .unwrap()
}

fn bits(n: u32, ones: &[u32]) -> Bitfield {
    let mut b = Bitfield::new(n);
    for &i in ones {
        b.set(i);
    }
    b
}

fn check(p: &Picker) {
    if let Err(e) = p.debug_check_invariants() {
        panic!("{e}");
    }
}

fn pick(p: &mut Picker, peer: u32, max: usize) -> Vec<BlockRequest> {
    let mut out = Vec::new();
    p.pick(PeerKey(peer), max, &mut out);
    check(p);
    out
}

fn pieces(reqs: &[BlockRequest]) -> Vec<u32> {
    let mut v: Vec<u32> = reqs.iter().map(|r| r.index).collect();
    v.dedup();
    v
}

/// Receives and verifies (ok) every block in `reqs` from `peer`.
fn deliver(p: &mut Picker, peer: u32, reqs: &[BlockRequest]) {
    for r in reqs {
        match p.block_received(PeerKey(peer), *r) {
            BlockOutcome::Accepted {
                piece_complete: true,
                ..
            } => {
                assert_eq!(p.piece_verified(r.index, true), Ok(VerifyOutcome::Passed));
            }
            BlockOutcome::Accepted { .. } => {}
            other => panic!("{r:?}: {other:?}"),
        }
        check(p);
    }
}

#[test]
fn geometry_short_last_piece_and_block() {
    // 100000 bytes in 32 KiB pieces: 3 full pieces and a last one of 1696 bytes.
    let g = Geometry::new(4, 32768, 100_000).unwrap();
    assert_eq!(g.piece_size(0), Some(32768));
    assert_eq!(g.piece_size(3), Some(100_000 - 3 * 32768));
    assert_eq!(g.piece_size(4), None);
    assert_eq!(g.block_count(0), Some(2));
    assert_eq!(g.block_count(3), Some(1));
    assert_eq!(
        g.block(3, 0),
        Some(BlockRequest {
            index: 3,
            begin: 0,
            length: 1696
        })
    );
    assert_eq!(g.block(3, 1), None);
    assert_eq!(
        g.block(2, 1),
        Some(BlockRequest {
            index: 2,
            begin: 16384,
            length: 16384
        })
    );
    // Piece length not a multiple of 16 KiB: the last block of every piece is short.
    let g = Geometry::new(3, 40_000, 100_000).unwrap();
    assert_eq!(g.block_count(0), Some(3));
    assert_eq!(g.block(0, 2).map(|b| b.length), Some(40_000 - 32768));
    assert_eq!(g.block(2, 1).map(|b| b.length), Some(20_000 - 16384));
    // Validation of incoming blocks.
    let ok = BlockRequest {
        index: 0,
        begin: 16384,
        length: 16384,
    };
    assert_eq!(g.block_index(&ok), Some(1));
    assert_eq!(g.block_index(&BlockRequest { begin: 1, ..ok }), None);
    assert_eq!(g.block_index(&BlockRequest { length: 1, ..ok }), None);
    assert_eq!(g.block_index(&BlockRequest { index: 3, ..ok }), None);
    assert_eq!(g.block_index(&BlockRequest { begin: 49152, ..ok }), None);
    assert_eq!(g.pieces_for_bytes(0, 40_000), 0..1);
    assert_eq!(g.pieces_for_bytes(39_999, 2), 0..2);
    assert_eq!(g.pieces_for_bytes(80_000, 100), 2..3);
    assert_eq!(g.pieces_for_bytes(5, 0), 0..0);
    // Mismatches are typed errors.
    assert!(matches!(
        Geometry::new(3, 32768, 100_000),
        Err(PickerError::GeometryMismatch { .. })
    ));
    assert_eq!(Geometry::new(1, 0, 1), Err(PickerError::BadPieceLength(0)));
    assert!(Geometry::new(0, 16384, 0).is_err());
    assert_eq!(Geometry::new(1, 16384, 1).unwrap().piece_size(0), Some(1));
}

#[test]
fn downloads_last_short_piece_exactly() {
    let mut p = Picker::new(4, 32768, 100_000, cfg_rarest(), Rng::new(1)).unwrap();
    p.peer_have_all(PeerKey(1));
    let mut all = Vec::new();
    loop {
        let got = pick(&mut p, 1, 3);
        if got.is_empty() {
            break;
        }
        deliver(&mut p, 1, &got);
        all.extend(got);
    }
    assert!(p.is_finished());
    all.sort();
    let bytes: u64 = all.iter().map(|b| u64::from(b.length)).sum();
    assert_eq!(bytes, 100_000);
    assert_eq!(all.len(), 7);
    assert_eq!(
        all.last(),
        Some(&BlockRequest {
            index: 3,
            begin: 0,
            length: 1696
        })
    );
}

#[test]
fn rarest_first() {
    let n = 6;
    let mut p = small(n, cfg_rarest(), 7);
    // Availability: piece i is held by 6 - i peers (piece 5 rarest), plus a seed.
    for peer in 0..6u32 {
        let ones: Vec<u32> = (0..n).filter(|&i| i < n - peer).collect();
        p.peer_bitfield(PeerKey(10 + peer), &bits(n, &ones))
            .unwrap();
    }
    p.peer_have_all(PeerKey(99));
    check(&p);
    assert_eq!(p.availability(5), Some(2));
    assert_eq!(p.availability(0), Some(7));
    let order: Vec<u32> = (0..n).map(|_| pieces(&pick(&mut p, 99, 1))[0]).collect();
    assert_eq!(order, vec![5, 4, 3, 2, 1, 0]);
}

#[test]
fn rarest_first_follows_have_updates() {
    let n = 5;
    let mut p = small(n, cfg_rarest(), 3);
    p.peer_have_all(PeerKey(0));
    for peer in 1..4 {
        p.peer_bitfield(PeerKey(peer), &bits(n, &[0, 1, 2]))
            .unwrap();
    }
    // Pieces 3 and 4 are rarest; two peers announce 3 (one twice: peers do repeat haves).
    p.peer_have(PeerKey(1), 3).unwrap();
    p.peer_have(PeerKey(2), 3).unwrap();
    p.peer_have(PeerKey(2), 3).unwrap();
    p.peer_gone(PeerKey(3));
    check(&p);
    let avail: Vec<u32> = (0..n).map(|i| p.availability(i).unwrap()).collect();
    assert_eq!(avail, vec![3, 3, 3, 3, 1]);
    p.peer_have_none(PeerKey(1));
    check(&p);
    let avail: Vec<u32> = (0..n).map(|i| p.availability(i).unwrap()).collect();
    assert_eq!(avail, vec![2, 2, 2, 2, 1]);
    assert_eq!(pieces(&pick(&mut p, 0, 1)), vec![4]);
    // Piece 2 becomes the unique rarest once others gain holders.
    for peer in 5..8 {
        p.peer_bitfield(PeerKey(peer), &bits(n, &[0, 1, 3]))
            .unwrap();
    }
    check(&p);
    assert_eq!(pieces(&pick(&mut p, 0, 1)), vec![2]);
}

#[test]
fn seeded_tie_break_is_deterministic() {
    let run = |seed: u64| {
        let mut p = small(64, cfg_rarest(), seed);
        p.peer_have_all(PeerKey(1));
        (0..20)
            .map(|_| pick(&mut p, 1, 1)[0].index)
            .collect::<Vec<_>>()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
    // Ties are not broken by index.
    assert_ne!(run(1), (0..20).collect::<Vec<_>>());
}

#[test]
fn partial_pieces_first_and_own_first() {
    // 4 pieces of 4 blocks.
    let mut p = Picker::new(4, 64 * KIB, 4 * 64 * 1024, cfg_rarest(), Rng::new(5)).unwrap();
    p.peer_have_all(PeerKey(1));
    p.peer_have_all(PeerKey(2));
    // Make piece 3 the rarest so that a fresh pick would choose it.
    p.peer_bitfield(PeerKey(3), &bits(4, &[0, 1, 2])).unwrap();
    let a = pick(&mut p, 1, 2);
    assert_eq!(pieces(&a), vec![3]);
    let first = pick(&mut p, 2, 2);
    // Peer 2 finishes peer 1's partial piece 3 instead of starting another.
    assert_eq!(pieces(&first), vec![3]);
    assert_eq!(
        p.piece_status(3),
        Some(PieceStatus::Downloading {
            free: 0,
            requested: 4,
            received: 0
        })
    );
    // Someone else's partial piece is still preferred to a fresh one.
    let x = pick(&mut p, 1, 2);
    let y = pick(&mut p, 2, 2);
    assert_eq!(pieces(&y), pieces(&x));

    // Two partial pieces: a peer continues the one it was last given, even though the other
    // has fewer free blocks.
    let mut p = Picker::new(4, 64 * KIB, 4 * 64 * 1024, cfg_rarest(), Rng::new(6)).unwrap();
    p.peer_have_all(PeerKey(1));
    let a = pieces(&pick(&mut p, 1, 2))[0];
    let others: Vec<u32> = (0..4).filter(|&i| i != a).collect();
    p.peer_bitfield(PeerKey(2), &bits(4, &others)).unwrap();
    let b = pieces(&pick(&mut p, 2, 1))[0];
    assert_ne!(a, b, "peer 2 lacks piece a, so it starts another");
    p.peer_have(PeerKey(2), a).unwrap();
    assert_eq!(pieces(&pick(&mut p, 2, 1)), vec![b]);
    assert_eq!(pieces(&pick(&mut p, 1, 1)), vec![a]);
    // A third peer takes the one closest to completion.
    p.peer_have_all(PeerKey(3));
    assert_eq!(pieces(&pick(&mut p, 3, 1)), vec![a]);
}

#[test]
fn initial_random_then_rarest() {
    // Piece 0 is strictly rarest; with initial random picking the first pick is often not it.
    let first_picks = |config: PickerConfig| {
        (0..32u64)
            .map(|seed| {
                let mut p = small(16, config, seed);
                p.peer_have_all(PeerKey(0));
                let others: Vec<u32> = (1..16).collect();
                p.peer_bitfield(PeerKey(1), &bits(16, &others)).unwrap();
                pick(&mut p, 0, 1)[0].index
            })
            .collect::<Vec<_>>()
    };
    assert!(first_picks(cfg_rarest()).iter().all(|&x| x == 0));
    let random = first_picks(PickerConfig::default());
    assert!(
        random.iter().filter(|&&x| x != 0).count() > 16,
        "{random:?}"
    );

    // After initial_random_pieces are verified, picking is rarest-first.
    let config = PickerConfig {
        initial_random_pieces: 2,
        ..PickerConfig::default()
    };
    let mut p = small(16, config, 9);
    p.peer_have_all(PeerKey(0));
    let others: Vec<u32> = (1..16).collect();
    p.peer_bitfield(PeerKey(1), &bits(16, &others)).unwrap();
    let mut done = 0;
    while done < 2 {
        let got = pick(&mut p, 0, 1);
        deliver(&mut p, 0, &got);
        if got[0].index == 0 {
            return; // got the rare piece by chance: nothing more to show for this seed
        }
        done += 1;
    }
    assert_eq!(pick(&mut p, 0, 1)[0].index, 0);
}

#[test]
fn never_picks_a_piece_the_peer_lacks() {
    let n = 40;
    let mut p = Picker::new(
        n,
        32 * KIB,
        u64::from(n) * 32768,
        PickerConfig::default(),
        Rng::new(2),
    )
    .unwrap();
    let even: Vec<u32> = (0..n).filter(|i| i % 2 == 0).collect();
    p.peer_bitfield(PeerKey(1), &bits(n, &even)).unwrap();
    p.peer_have_none(PeerKey(2));
    assert!(!p.is_interesting(PeerKey(2)));
    assert!(pick(&mut p, 2, 10).is_empty());
    assert!(pick(&mut p, 77, 10).is_empty(), "unknown peer gets nothing");
    let mut seen = 0;
    loop {
        let got = pick(&mut p, 1, 7);
        if got.is_empty() {
            break;
        }
        assert!(got.iter().all(|b| b.index % 2 == 0), "{got:?}");
        seen += got.len();
        deliver(&mut p, 1, &got);
    }
    assert_eq!(seen, 40);
    assert!(!p.is_interesting(PeerKey(1)));
    assert!(!p.is_finished());
}

#[test]
fn request_limit_per_peer() {
    let config = PickerConfig {
        max_requests_per_peer: 5,
        ..cfg_rarest()
    };
    let mut p = small(20, config, 1);
    p.peer_have_all(PeerKey(1));
    assert_eq!(pick(&mut p, 1, 100).len(), 5);
    assert!(pick(&mut p, 1, 100).is_empty());
    assert_eq!(p.outstanding(PeerKey(1)), 5);
}

#[test]
fn priorities_and_skips() {
    let n = 8;
    let mut p = small(n, cfg_rarest(), 4);
    p.peer_have_all(PeerKey(1));
    // Piece 7 is rarest (everyone else has 0..7) but piece 2 has top priority.
    p.peer_bitfield(PeerKey(2), &bits(n, &[0, 1, 2, 3, 4, 5, 6]))
        .unwrap();
    p.set_piece_priority(2, 7).unwrap();
    p.set_piece_priority(5, 1).unwrap();
    for skip in [0, 3, 6] {
        p.set_piece_priority(skip, 0).unwrap();
    }
    check(&p);
    assert_eq!(p.wanted_count(), 5);
    assert_eq!(p.set_piece_priority(1, 8), Err(PickerError::BadPriority(8)));
    let order: Vec<u32> = (0..6)
        .filter_map(|_| pick(&mut p, 1, 1).first().map(|b| b.index))
        .collect();
    // 2 (prio 7), then prio 4 rarest first: 7, then 1 and 4 (tied), then 5 (prio 1).
    assert_eq!(order.len(), 5);
    assert_eq!(order[0], 2);
    assert_eq!(order[1], 7);
    assert_eq!(order[4], 5);
    assert!(!order.contains(&0) && !order.contains(&3) && !order.contains(&6));
    assert!(p.in_endgame());
    // Un-skipping a piece makes it pickable again.
    p.set_piece_priority(3, 4).unwrap();
    assert!(!p.in_endgame());
    assert_eq!(pieces(&pick(&mut p, 1, 1)), vec![3]);
}

#[test]
fn file_priorities_map_to_pieces() {
    // 4 pieces of 16 KiB; files: [0, 20000) skip, [20000, 40000) prio 7, rest skip.
    let mut p = small(4, cfg_rarest(), 1);
    let total = 4 * 16384u64;
    p.set_file_priorities(&[(20_000, 0), (20_000, 7), (total - 40_000, 0)])
        .unwrap();
    let prios: Vec<u8> = (0..4).map(|i| p.piece_priority(i).unwrap()).collect();
    // Piece 0 is all file 0; piece 1 is shared (max wins); piece 2 shared with file 1.
    assert_eq!(prios, vec![0, 7, 7, 0]);
    check(&p);
    assert_eq!(
        p.set_file_priorities(&[(1, 4)]),
        Err(PickerError::FileLengthMismatch {
            got: 1,
            expected: total
        })
    );
    // Zero-length files touch no piece.
    p.set_file_priorities(&[(0, 7), (total, 1), (0, 7)])
        .unwrap();
    assert!((0..4).all(|i| p.piece_priority(i) == Some(1)));
}

#[test]
fn endgame_duplicates_and_cancels() {
    // 2 pieces x 2 blocks; peers 1..=4 are seeds; endgame allows 3 requesters.
    let mut p = Picker::new(2, 32 * KIB, 65536, cfg_rarest(), Rng::new(3)).unwrap();
    for k in 1..=4 {
        p.peer_have_all(PeerKey(k));
    }
    let a = pick(&mut p, 1, 10);
    assert_eq!(a.len(), 4);
    assert!(p.in_endgame());
    let b = pick(&mut p, 2, 10);
    assert_eq!(b.len(), 4, "endgame: every block requested a second time");
    let c = pick(&mut p, 3, 2);
    assert_eq!(c.len(), 2);
    let c2 = pick(&mut p, 3, 10);
    assert_eq!(c2.len(), 2);
    assert!(pick(&mut p, 4, 10).is_empty(), "bounded at 3 requesters");
    assert!(pick(&mut p, 1, 10).is_empty(), "never the same peer twice");

    let blk = a[0];
    match p.block_received(PeerKey(2), blk) {
        BlockOutcome::Accepted {
            cancel,
            piece_complete: false,
        } => {
            let mut v: Vec<_> = cancel.iter().collect();
            v.sort();
            assert_eq!(v, vec![PeerKey(1), PeerKey(3)]);
        }
        other => panic!("{other:?}"),
    }
    check(&p);
    assert_eq!(p.outstanding(PeerKey(1)), 3);
    assert_eq!(p.outstanding(PeerKey(3)), 3);
    // The cancelled copies that cross in flight are duplicates, not errors.
    assert_eq!(p.block_received(PeerKey(1), blk), BlockOutcome::Duplicate);
    assert_eq!(p.block_received(PeerKey(3), blk), BlockOutcome::Duplicate);
    // Peer 4 may now take the freed requester slot of another block.
    assert!(pick(&mut p, 4, 10).len() <= 3);
    check(&p);
}

#[test]
fn peer_gone_releases_all_requests_at_once() {
    let mut p = Picker::new(10, 64 * KIB, 10 * 65536, cfg_rarest(), Rng::new(8)).unwrap();
    p.peer_have_all(PeerKey(1));
    p.peer_bitfield(PeerKey(2), &Bitfield::full(10)).unwrap();
    assert!(p.is_seed(PeerKey(2)));
    let got = pick(&mut p, 1, 10);
    assert_eq!(got.len(), 10);
    deliver(&mut p, 1, &got[..1]);
    assert_eq!(p.peer_gone(PeerKey(1)), 9);
    check(&p);
    assert_eq!(p.peer_count(), 1);
    assert_eq!(p.availability(0), Some(1));
    // The piece with a received block stays partial; the untouched one went back to the order.
    // The rest of the partial piece comes first, then the released pieces (order reshuffled).
    let again = pick(&mut p, 2, 9);
    assert_eq!(again.get(..3), got.get(1..4));
    assert_eq!(again.len(), 9);
    let mut all = again.clone();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 9);
    // Data from the departed peer is unrequested now.
    assert_eq!(
        p.block_received(PeerKey(1), got[1]),
        BlockOutcome::Unrequested
    );
}

#[test]
fn timeout_reissues_to_another_peer() {
    let mut p = Picker::new(4, 64 * KIB, 4 * 65536, cfg_rarest(), Rng::new(8)).unwrap();
    p.peer_have_all(PeerKey(1));
    p.peer_have_all(PeerKey(2));
    let got = pick(&mut p, 1, 4);
    assert!(p.request_timed_out(PeerKey(1), got[2]));
    assert!(!p.request_timed_out(PeerKey(1), got[2]), "only once");
    assert!(
        !p.request_timed_out(PeerKey(2), got[3]),
        "not peer 2's request"
    );
    check(&p);
    assert_eq!(pick(&mut p, 2, 1), vec![got[2]]);
    // The late copy from peer 1 is reported, not accepted; peer 2's copy is.
    assert_eq!(
        p.block_received(PeerKey(1), got[2]),
        BlockOutcome::Unrequested
    );
    assert!(matches!(
        p.block_received(PeerKey(2), got[2]),
        BlockOutcome::Accepted { .. }
    ));
    // BEP 6 reject works the same way; releasing everything un-starts the piece.
    assert!(p.request_rejected(PeerKey(1), got[0]));
    assert_eq!(p.peer_choked(PeerKey(1)), 2);
    check(&p);
    assert_eq!(
        p.piece_status(got[0].index),
        Some(PieceStatus::Downloading {
            free: 3,
            requested: 0,
            received: 1
        })
    );
}

#[test]
fn block_outcomes_for_bad_input() {
    let mut p = small(4, cfg_rarest(), 1);
    p.peer_have_all(PeerKey(1));
    let got = pick(&mut p, 1, 1)[0];
    let bad = [
        BlockRequest { begin: 1, ..got },
        BlockRequest { length: 5, ..got },
        BlockRequest { index: 4, ..got },
        BlockRequest {
            index: u32::MAX,
            begin: u32::MAX,
            length: u32::MAX,
        },
    ];
    for b in bad {
        assert_eq!(p.block_received(PeerKey(1), b), BlockOutcome::Invalid);
        assert!(!p.request_timed_out(PeerKey(1), b));
    }
    let other = (0..4).find(|&i| i != got.index).unwrap();
    let other_block = p.geometry().block(other, 0).unwrap();
    assert_eq!(
        p.block_received(PeerKey(1), other_block),
        BlockOutcome::Unrequested
    );
    assert_eq!(p.block_received(PeerKey(9), got), BlockOutcome::Unrequested);
    deliver(&mut p, 1, &[got]);
    assert_eq!(p.block_received(PeerKey(1), got), BlockOutcome::Duplicate);
    assert_eq!(
        p.piece_verified(got.index, true),
        Err(PickerError::NotVerifying(got.index))
    );
    assert_eq!(
        p.peer_have(PeerKey(1), 4),
        Err(PickerError::PieceOutOfRange {
            piece: 4,
            piece_count: 4
        })
    );
    assert_eq!(
        p.peer_bitfield(PeerKey(2), &Bitfield::new(5)),
        Err(PickerError::BitfieldLength {
            got: 5,
            expected: 4
        })
    );
    check(&p);
}

#[test]
fn hash_failure_redownload_and_ban() {
    // One piece of 2 blocks; peers 1 and 2 share it, then peer 1 sends it alone.
    let mut p = Picker::new(2, 32 * KIB, 65536, cfg_rarest(), Rng::new(1)).unwrap();
    for k in 1..=3 {
        p.peer_have_all(PeerKey(k));
    }
    let a = pick(&mut p, 1, 1);
    let b = pick(&mut p, 2, 1);
    assert_eq!(pieces(&a), pieces(&b));
    let piece = a[0].index;
    assert!(matches!(
        p.block_received(PeerKey(1), a[0]),
        BlockOutcome::Accepted {
            piece_complete: false,
            ..
        }
    ));
    assert!(matches!(
        p.block_received(PeerKey(2), b[0]),
        BlockOutcome::Accepted {
            piece_complete: true,
            ..
        }
    ));
    assert_eq!(p.piece_status(piece), Some(PieceStatus::Verifying));
    assert_eq!(
        p.piece_verified(piece, false),
        Ok(VerifyOutcome::Failed {
            contributors: vec![PeerKey(1), PeerKey(2)],
            ban: vec![]
        })
    );
    check(&p);
    assert_eq!(p.piece_status(piece), Some(PieceStatus::Missing));
    assert_eq!(
        (p.strikes(PeerKey(1)), p.strikes(PeerKey(2))),
        (Some(1), Some(1))
    );

    // Re-download: peer 1 alone sends the whole piece, which fails again: 2 strikes -> 3: ban.
    let mut again = Vec::new();
    while pieces(&again) != vec![piece] {
        // Pick until we are given the failed piece (it is back among untouched pieces).
        let got = pick(&mut p, 1, 2);
        if pieces(&got) == vec![piece] {
            again = got;
        } else {
            deliver(&mut p, 1, &got);
        }
    }
    for blk in &again {
        p.block_received(PeerKey(1), *blk);
    }
    assert_eq!(
        p.piece_verified(piece, false),
        Ok(VerifyOutcome::Failed {
            contributors: vec![PeerKey(1)],
            ban: vec![PeerKey(1)]
        })
    );
    assert_eq!(p.strikes(PeerKey(1)), Some(3));
    // The caller drops the banned peer; another peer completes the piece.
    p.peer_gone(PeerKey(1));
    let got = pick(&mut p, 3, 2);
    assert_eq!(pieces(&got), vec![piece]);
    deliver(&mut p, 3, &got);
    assert_eq!(p.piece_status(piece), Some(PieceStatus::Have));
    assert!(p.is_finished());
    check(&p);
}

#[test]
fn interest_and_seed_conversion() {
    let n = 3;
    let mut p = small(n, cfg_rarest(), 1);
    assert!(p.peer_bitfield(PeerKey(1), &bits(n, &[0])).unwrap());
    assert!(p.is_interesting(PeerKey(1)));
    assert_eq!(p.peer_have(PeerKey(1), 1).unwrap(), NewHave::Wanted);
    assert!(!p.is_seed(PeerKey(1)));
    p.peer_have(PeerKey(1), 2).unwrap();
    assert!(p.is_seed(PeerKey(1)), "a full bitfield becomes a seed");
    check(&p);
    assert_eq!(p.availability(2), Some(1));
    p.peer_bitfield(PeerKey(2), &bits(n, &[1])).unwrap();
    let got = pick(&mut p, 2, 1);
    assert_eq!(pieces(&got), vec![1]);
    deliver(&mut p, 2, &got);
    assert!(!p.is_interesting(PeerKey(2)), "we have its only piece now");
    p.mark_have(0).unwrap();
    p.mark_have(2).unwrap();
    assert!(p.is_finished());
    assert!(!p.is_interesting(PeerKey(1)));
    assert_eq!(p.have().as_bytes(), &[0b1110_0000]);
    check(&p);
}

/// aria2 sends a bitfield instead of a burst of haves, at any point: it adds to what the peer
/// announced before (haves or an earlier bitfield), never replaces it.
#[test]
fn late_bitfield_merges_with_earlier_announcements() {
    let n = 5;
    let mut p = small(n, cfg_rarest(), 1);
    p.peer_have(PeerKey(1), 1).unwrap();
    assert!(p.peer_bitfield(PeerKey(1), &bits(n, &[0])).unwrap());
    assert!(p.peer_bitfield(PeerKey(1), &bits(n, &[2])).unwrap());
    check(&p);
    assert_eq!(p.peer_piece_count(PeerKey(1)), 3);
    let held: Vec<u32> = (0..n).filter(|&i| p.peer_has(PeerKey(1), i)).collect();
    assert_eq!(held, [0, 1, 2]);
    let avail: Vec<u32> = (0..n).map(|i| p.availability(i).unwrap()).collect();
    assert_eq!(avail, [1, 1, 1, 0, 0]);
    // The merged set is full: the peer becomes a seed, counted once.
    p.peer_bitfield(PeerKey(1), &bits(n, &[3, 4])).unwrap();
    check(&p);
    assert!(p.is_seed(PeerKey(1)));
    assert_eq!(p.peer_piece_count(PeerKey(1)), n);
    // A seed stays one whatever bitfield follows.
    p.peer_bitfield(PeerKey(1), &bits(n, &[])).unwrap();
    check(&p);
    assert!(p.is_seed(PeerKey(1)));
    assert_eq!(p.availability(0), Some(1));
    assert_eq!(p.peer_piece_count(PeerKey(9)), 0, "unknown peer");
}

/// Peers repeat haves; a repeat must change nothing (availability, wanted counts, the RNG that
/// orders ties) and say so, so that the session skips interest and requests.
#[test]
fn repeated_have_changes_nothing() {
    let n = 4;
    let mut p = small(n, cfg_rarest(), 3);
    p.peer_have_all(PeerKey(0));
    p.peer_bitfield(PeerKey(1), &bits(n, &[0])).unwrap();
    assert_eq!(p.peer_have(PeerKey(1), 2).unwrap(), NewHave::Wanted);
    p.mark_have(3).unwrap();
    assert_eq!(p.peer_have(PeerKey(1), 3).unwrap(), NewHave::Unwanted);
    let before = p.clone();
    for piece in [0, 2, 3] {
        assert_eq!(p.peer_have(PeerKey(1), piece).unwrap(), NewHave::Known);
    }
    assert_eq!(
        p.peer_have(PeerKey(0), 1).unwrap(),
        NewHave::Known,
        "a seed"
    );
    assert_eq!(p, before);
    check(&p);
}

#[test]
fn mark_have_drops_requests() {
    let mut p = Picker::new(2, 32 * KIB, 65536, cfg_rarest(), Rng::new(1)).unwrap();
    p.peer_have_all(PeerKey(1));
    let got = pick(&mut p, 1, 1);
    p.mark_have(got[0].index).unwrap();
    check(&p);
    assert_eq!(p.outstanding(PeerKey(1)), 0);
    assert_eq!(
        p.block_received(PeerKey(1), got[0]),
        BlockOutcome::Duplicate
    );
}

#[test]
fn config_is_validated() {
    let bad = PickerConfig {
        endgame_max_requesters: 5,
        ..PickerConfig::default()
    };
    assert!(matches!(
        Picker::new(1, 16384, 1, bad, Rng::new(0)),
        Err(PickerError::BadConfig(_))
    ));
}

/// A whole swarm download with random bitfields, haves, departures and hash failures: the
/// fast and the naive pick agree at every step and the download finishes.
#[test]
fn simulated_download_fast_matches_naive() {
    let n = 300;
    let mut rng = Rng::new(42);
    let mut fast = Picker::new(
        n,
        64 * KIB,
        u64::from(n) * 65536 - 1000,
        PickerConfig::default(),
        Rng::new(7),
    )
    .unwrap();
    for k in 0..20u32 {
        let mut b = Bitfield::new(n);
        let density = rng.below(100);
        for i in 0..n {
            if rng.below(100) < density {
                b.set(i);
            }
        }
        fast.peer_bitfield(PeerKey(k), &b).unwrap();
    }
    fast.peer_have_all(PeerKey(100));
    let mut naive = fast.clone();
    let mut out_f = Vec::new();
    let mut out_n = Vec::new();
    let mut steps = 0;
    while !fast.is_finished() {
        steps += 1;
        assert!(steps < 100_000, "livelock");
        let peer = PeerKey(if rng.below(10) == 0 {
            100
        } else {
            rng.below(20) as u32
        });
        let max = 1 + rng.index(12);
        out_f.clear();
        out_n.clear();
        fast.pick(peer, max, &mut out_f);
        naive.pick_naive(peer, max, &mut out_n);
        assert_eq!(out_f, out_n);
        assert_eq!(fast, naive);
        // Deliver some, time out some.
        for r in &out_f {
            match rng.below(10) {
                0 => {
                    fast.request_timed_out(peer, *r);
                }
                _ => {
                    if let BlockOutcome::Accepted {
                        piece_complete: true,
                        ..
                    } = fast.block_received(peer, *r)
                    {
                        let ok = rng.below(20) != 0;
                        fast.piece_verified(r.index, ok).unwrap();
                    }
                }
            }
        }
        if rng.below(50) == 0 {
            let k = rng.below(20) as u32;
            fast.peer_gone(PeerKey(k));
            fast.peer_have_none(PeerKey(k));
        }
        if rng.below(3) == 0 {
            fast.peer_have(
                PeerKey(rng.below(20) as u32),
                rng.below(u64::from(n)) as u32,
            )
            .unwrap();
        }
        naive = fast.clone();
        if steps % 97 == 0 {
            check(&fast);
        }
    }
    check(&fast);
}

// ----- property test: random operation sequences keep every invariant ------------------------

#[derive(Clone, Debug)]
enum Op {
    Bitfield(u32, u64),
    Have(u32, u32),
    HaveAll(u32),
    HaveNone(u32),
    Gone(u32),
    Choked(u32),
    Pick(u32, usize),
    Receive(u32, usize),
    ReceiveRaw(u32, u32, u32),
    Timeout(u32, usize),
    Verify(usize, bool),
    Priority(u32, u8),
    MarkHave(u32),
}

fn op() -> impl Strategy<Value = Op> {
    let peer = 0u32..5;
    prop_oneof![
        1 => (peer.clone(), any::<u64>()).prop_map(|(p, m)| Op::Bitfield(p, m)),
        3 => (peer.clone(), 0u32..14).prop_map(|(p, i)| Op::Have(p, i)),
        1 => (peer.clone()).prop_map(Op::HaveAll),
        1 => (peer.clone()).prop_map(Op::HaveNone),
        1 => (peer.clone()).prop_map(Op::Gone),
        1 => (peer.clone()).prop_map(Op::Choked),
        6 => (peer.clone(), 0usize..9).prop_map(|(p, m)| Op::Pick(p, m)),
        6 => (peer.clone(), any::<usize>()).prop_map(|(p, i)| Op::Receive(p, i)),
        1 => (peer.clone(), 0u32..14, 0u32..5).prop_map(|(p, i, b)| Op::ReceiveRaw(p, i, b)),
        2 => (peer.clone(), any::<usize>()).prop_map(|(p, i)| Op::Timeout(p, i)),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(i, ok)| Op::Verify(i, ok)),
        1 => (0u32..14, 0u8..9).prop_map(|(i, p)| Op::Priority(i, p)),
        1 => (0u32..14).prop_map(Op::MarkHave),
    ]
}

fn geometry() -> impl Strategy<Value = (u32, u32, u64)> {
    (
        1u32..12,
        prop::sample::select(vec![16384u32, 32768, 40000, 65536]),
        any::<u32>(),
    )
        .prop_map(|(count, len, r)| {
            let last = 1 + u64::from(r) % u64::from(len);
            (count, len, u64::from(count - 1) * u64::from(len) + last)
        })
}

fn apply(p: &mut Picker, op: &Op) {
    let n = p.geometry().piece_count();
    match *op {
        Op::Bitfield(k, mask) => {
            let mut b = Bitfield::new(n);
            for i in 0..n.min(64) {
                if mask & (1 << i) != 0 {
                    b.set(i);
                }
            }
            p.peer_bitfield(PeerKey(k), &b).unwrap();
        }
        Op::Have(k, i) => {
            let r = p.peer_have(PeerKey(k), i);
            assert_eq!(r.is_err(), i >= n);
        }
        Op::HaveAll(k) => {
            p.peer_have_all(PeerKey(k));
        }
        Op::HaveNone(k) => p.peer_have_none(PeerKey(k)),
        Op::Gone(k) => {
            let before = p.outstanding(PeerKey(k));
            assert_eq!(p.peer_gone(PeerKey(k)), before);
            assert_eq!(p.outstanding(PeerKey(k)), 0);
        }
        Op::Choked(k) => {
            p.peer_choked(PeerKey(k));
            assert_eq!(p.outstanding(PeerKey(k)), 0);
        }
        Op::Pick(k, max) => {
            let before = p.outstanding(PeerKey(k));
            let mut naive = p.clone();
            let mut out = vec![BlockRequest {
                index: 9,
                begin: 9,
                length: 9,
            }];
            let got = p.pick(PeerKey(k), max, &mut out);
            let mut out_naive = out.get(..1).unwrap().to_vec();
            naive.pick_naive(PeerKey(k), max, &mut out_naive);
            assert_eq!(out, out_naive, "fast and naive picks differ");
            assert_eq!(*p, naive);
            assert_eq!(out.len(), 1 + got, "appends, never clears");
            assert!(got <= max);
            assert_eq!(p.outstanding(PeerKey(k)), before + got);
            for b in out.iter().skip(1) {
                assert!(
                    p.peer_has(PeerKey(k), b.index),
                    "picked a piece the peer lacks"
                );
                assert!(
                    p.piece_priority(b.index).unwrap() > 0,
                    "picked a skipped piece"
                );
                assert!(p.geometry().block_index(b).is_some());
                if !p.in_endgame() {
                    // Outside endgame every block has a single requester.
                    let Some(PieceState::Downloading(slot)) = p.state_at(b.index) else {
                        panic!("picked piece not downloading");
                    };
                    let blk = p.downloads[slot as usize].blocks[(b.begin / BLOCK_SIZE) as usize];
                    assert!(
                        matches!(blk, Block::Requested(s) if s.len() == 1),
                        "{blk:?}"
                    );
                }
            }
        }
        Op::Receive(k, i) => {
            let reqs: Vec<_> = p.outstanding_requests(PeerKey(k)).collect();
            if let Some(r) = reqs.get(i % reqs.len().max(1)) {
                let before = p.outstanding(PeerKey(k));
                match p.block_received(PeerKey(k), *r) {
                    BlockOutcome::Accepted { cancel, .. } => {
                        assert!(!cancel.contains(PeerKey(k)));
                        assert_eq!(p.outstanding(PeerKey(k)), before - 1);
                    }
                    other => panic!("outstanding block {r:?} gave {other:?}"),
                }
            }
        }
        Op::ReceiveRaw(k, piece, b) => {
            let req = p.geometry().block(piece, b).unwrap_or(BlockRequest {
                index: piece,
                begin: b * BLOCK_SIZE,
                length: BLOCK_SIZE,
            });
            p.block_received(PeerKey(k), req);
        }
        Op::Timeout(k, i) => {
            let reqs: Vec<_> = p.outstanding_requests(PeerKey(k)).collect();
            if let Some(r) = reqs.get(i % reqs.len().max(1)) {
                assert!(p.request_timed_out(PeerKey(k), *r));
            }
        }
        Op::Verify(i, ok) => {
            let verifying: Vec<u32> = (0..n)
                .filter(|&x| p.piece_status(x) == Some(PieceStatus::Verifying))
                .collect();
            if let Some(&piece) = verifying.get(i % verifying.len().max(1)) {
                let out = p.piece_verified(piece, ok).unwrap();
                assert_eq!(out == VerifyOutcome::Passed, ok);
                let want = if ok {
                    PieceStatus::Have
                } else {
                    PieceStatus::Missing
                };
                assert_eq!(p.piece_status(piece), Some(want));
            }
        }
        Op::Priority(i, prio) => {
            let r = p.set_piece_priority(i, prio);
            assert_eq!(r.is_err(), i >= n || prio > MAX_PRIORITY);
        }
        Op::MarkHave(i) => {
            if i < n {
                p.mark_have(i).unwrap();
                assert_eq!(p.piece_status(i), Some(PieceStatus::Have));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_invariants(
        (count, len, total) in geometry(),
        seed in any::<u64>(),
        random_pieces in 0u32..3,
        max_req in 1u8..=4,
        ops in proptest::collection::vec(op(), 0..80),
    ) {
        let config = PickerConfig {
            initial_random_pieces: random_pieces,
            endgame_max_requesters: max_req,
            max_requests_per_peer: 6,
            ..PickerConfig::default()
        };
        let mut p = Picker::new(count, len, total, config, Rng::new(seed)).unwrap();
        check(&p);
        for op in &ops {
            apply(&mut p, op);
            check(&p);
        }
        // Liveness: a fresh seed can always finish the download from here.
        let seed_peer = PeerKey(1000);
        p.peer_have_all(seed_peer);
        for _ in 0..10_000 {
            if p.is_finished() {
                break;
            }
            let mut out = Vec::new();
            p.pick(seed_peer, 4, &mut out);
            for r in &out {
                if let BlockOutcome::Accepted { piece_complete: true, .. } = p.block_received(seed_peer, *r) {
                    p.piece_verified(r.index, true).unwrap();
                }
            }
            if out.is_empty() {
                // Blocks held by other peers: they never answer, time them out.
                for k in 0..5 {
                    p.peer_choked(PeerKey(k));
                }
                for x in 0..count {
                    if p.piece_status(x) == Some(PieceStatus::Verifying) {
                        p.piece_verified(x, true).unwrap();
                    }
                }
            }
            check(&p);
        }
        prop_assert!(p.is_finished());
    }
}

/// A sparse peer whose only piece is the most common one: the walk from the rare end gives up
/// after its budget and scans the peer's bitfield instead, with the naive answer.
#[test]
fn sparse_peer_falls_back_to_bitfield_scan() {
    let n = 2000;
    let mut p = small(n, cfg_rarest(), 11);
    let all_but: Vec<u32> = (0..n).filter(|&i| i != 7).collect();
    p.peer_bitfield(PeerKey(1), &bits(n, &all_but)).unwrap();
    p.peer_bitfield(PeerKey(2), &bits(n, &[7])).unwrap();
    p.peer_bitfield(PeerKey(3), &bits(n, &[7])).unwrap();
    p.peer_bitfield(PeerKey(4), &bits(n, &[7, 1999])).unwrap();
    let mut naive = p.clone();
    let mut out = Vec::new();
    naive.pick_naive(PeerKey(2), 3, &mut out);
    assert_eq!(pick(&mut p, 2, 3), out);
    assert_eq!(pieces(&out), vec![7]);
    assert_eq!(p, naive);
    // Peer 4: piece 1999 (availability 2) is rarer than piece 7 (availability 4).
    out.clear();
    naive.pick_naive(PeerKey(4), 1, &mut out);
    assert_eq!(pick(&mut p, 4, 1), out);
    assert_eq!(pieces(&out), vec![1999]);
    assert_eq!(p, naive);
}

proptest! {
    /// After every verified piece, `interest_flips` names exactly the peers whose
    /// `is_interesting` changed, and `holders_of_changed` exactly the peers that have the piece:
    /// the session updates interest and sends `have`s from these lists alone.
    #[test]
    fn verified_piece_reports_flips_and_holders(
        sets in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 6), 1..5),
        seed_peer in any::<bool>(),
        rng in any::<u64>(),
    ) {
        let n = 6;
        let mut p = small(n, cfg_rarest(), rng);
        let mut keys = Vec::new();
        for (k, set) in sets.iter().enumerate() {
            let ones: Vec<u32> = (0..n).filter(|i| set[*i as usize]).collect();
            p.peer_bitfield(PeerKey(k as u32), &bits(n, &ones)).unwrap();
            keys.push(PeerKey(k as u32));
        }
        let source = PeerKey(100);
        if seed_peer {
            p.peer_have_all(source);
        } else {
            p.peer_bitfield(source, &bits(n, &[0, 1, 2, 3, 4, 5])).unwrap();
        }
        keys.push(source);
        loop {
            let got = pick(&mut p, source.0, 1);
            let Some(r) = got.first().copied() else { break };
            let before: Vec<bool> = keys.iter().map(|k| p.is_interesting(*k)).collect();
            deliver(&mut p, source.0, &got);
            let flipped: Vec<PeerKey> = keys
                .iter()
                .zip(&before)
                .filter(|(k, b)| p.is_interesting(**k) != **b)
                .map(|(k, _)| *k)
                .collect();
            let mut reported = p.interest_flips().to_vec();
            reported.sort_unstable();
            prop_assert_eq!(reported, flipped);
            let holders: Vec<PeerKey> =
                keys.iter().copied().filter(|k| p.peer_has(*k, r.index)).collect();
            let mut named = p.holders_of_changed().to_vec();
            named.sort_unstable();
            prop_assert_eq!(named, holders);
        }
        prop_assert!(p.is_finished());
    }
}
