use super::*;
use crate::bencode::OwnedValue as O;
use proptest::prelude::*;

fn d(entries: Vec<(&str, O)>) -> O {
    O::Dict(
        entries
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

fn s(x: &str) -> O {
    O::str(x)
}

fn b(x: &[u8]) -> O {
    O::Bytes(x.to_vec())
}

fn int(n: i64) -> O {
    O::Int(n)
}

fn list(items: Vec<O>) -> O {
    O::List(items)
}

/// `n` distinct fake piece hashes.
fn hashes(n: u64) -> O {
    O::Bytes((0..n * 20).map(|i| (i % 251) as u8).collect())
}

fn single_info(len: i64, piece_length: i64) -> O {
    let n = (len as u64).div_ceil(piece_length as u64);
    d(vec![
        ("length", int(len)),
        ("name", s("file.bin")),
        ("piece length", int(piece_length)),
        ("pieces", hashes(n)),
    ])
}

fn file(path: &[&[u8]], len: i64) -> O {
    d(vec![
        ("length", int(len)),
        ("path", list(path.iter().map(|c| b(c)).collect())),
    ])
}

fn multi_info(files: Vec<O>, total: u64, piece_length: i64) -> O {
    d(vec![
        ("files", list(files)),
        ("name", s("top")),
        ("piece length", int(piece_length)),
        ("pieces", hashes(total.div_ceil(piece_length as u64))),
    ])
}

fn torrent(info: O) -> Vec<u8> {
    d(vec![("info", info)]).to_bytes()
}

fn with_info(info: O, outer: Vec<(&str, O)>) -> Vec<u8> {
    let mut entries = outer;
    entries.push(("info", info));
    d(entries).to_bytes()
}

fn err(bytes: &[u8]) -> String {
    Metainfo::from_bytes(bytes).unwrap_err().to_string()
}

/// Replaces one key's value in an info dict built by `single_info`.
fn info_with(mut info: O, key: &str, value: Option<O>) -> O {
    if let O::Dict(map) = &mut info {
        match value {
            Some(v) => map.insert(key.as_bytes().to_vec(), v),
            None => map.remove(key.as_bytes()),
        };
    }
    info
}

#[test]
fn single_file_torrent() {
    let info = single_info(40_000, 16_384);
    let bytes = with_info(
        info.clone(),
        vec![
            ("announce", s("http://t.example/announce")),
            ("comment", s("hi")),
            ("created by", s("test")),
            ("creation date", int(1_700_000_000)),
            ("encoding", s("UTF-8")),
        ],
    );
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(m.name(), "file.bin");
    assert!(!m.is_multi_file());
    assert_eq!(m.total_length(), 40_000);
    assert_eq!(m.piece_length(), 16_384);
    assert_eq!(m.piece_count(), 3);
    assert_eq!(m.piece_len(0), Some(16_384));
    assert_eq!(m.piece_len(2), Some(40_000 - 2 * 16_384));
    assert_eq!(m.piece_len(3), None);
    assert_eq!(m.info_bytes(), info.to_bytes());
    assert_eq!(m.info_hash(), InfoHash::of(&info.to_bytes()));
    let O::Bytes(all) = hashes(3) else { panic!() };
    assert_eq!(m.piece_hashes(), &all[..]);
    assert_eq!(m.piece_hash(1).unwrap(), &all[20..40]);
    assert_eq!(m.piece_hash(3), None);
    assert_eq!(m.files().len(), 1);
    assert_eq!(m.files()[0].path(), ["file.bin"]);
    assert_eq!(m.trackers(), [vec!["http://t.example/announce".to_owned()]]);
    assert_eq!(m.comment(), Some("hi"));
    assert_eq!(m.created_by(), Some("test"));
    assert_eq!(m.creation_date(), Some(1_700_000_000));
    assert_eq!(m.encoding(), Some("UTF-8"));
    assert!(!m.is_private());
    assert!(!m.is_hybrid());
    // BEP 9: the info bytes alone give the same torrent.
    let again = Metainfo::from_info_bytes(m.info_bytes()).unwrap();
    assert_eq!(again.info_hash(), m.info_hash());
    assert_eq!(again.layout(), m.layout());
    assert!(again.trackers().is_empty());
}

#[test]
fn info_hash_is_over_raw_bytes_even_when_unsorted() {
    // `name` before `length`: not canonical. A re-encoding would sort the keys.
    let info: &[u8] =
        b"d4:name1:x6:lengthi5e12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae";
    let mut file = b"d4:info".to_vec();
    file.extend_from_slice(info);
    file.extend_from_slice(b"e\n");
    let m = Metainfo::from_bytes(&file).unwrap();
    assert_eq!(m.info_hash(), InfoHash::of(info));
    assert_eq!(m.info_bytes(), info);
    assert_eq!(m.piece_hash(0), Some(b"aaaaaaaaaaaaaaaaaaaa"));
    let canonical = bencode::decode_with(info, Limits::lenient())
        .unwrap()
        .to_owned_value()
        .to_bytes();
    assert_ne!(InfoHash::of(&canonical), m.info_hash());
    assert_eq!(
        InfoHash([0xab; 20]).to_string(),
        "abababababababababababababababababababab"
    );
}

#[test]
fn error_messages_name_the_key() {
    let base = single_info(100_000, 16_384);
    let cases: Vec<(O, &str)> = vec![
        (
            info_with(base.clone(), "piece length", None),
            "info.piece length is missing",
        ),
        (
            info_with(base.clone(), "piece length", Some(s("16384"))),
            "info.piece length is not an integer (found byte string)",
        ),
        (
            info_with(base.clone(), "piece length", Some(int(-16384))),
            "info.piece length must be positive, found -16384",
        ),
        (
            info_with(base.clone(), "piece length", Some(int(0))),
            "info.piece length must be positive, found 0",
        ),
        (
            info_with(base.clone(), "piece length", Some(int(1 << 31))),
            "info.piece length 2147483648 is larger than the maximum 1073741824 (1 GiB)",
        ),
        (
            info_with(base.clone(), "name", None),
            "info.name is missing",
        ),
        (
            info_with(base.clone(), "name", Some(int(3))),
            "info.name is not a byte string (found integer)",
        ),
        (
            info_with(base.clone(), "pieces", None),
            "info.pieces is missing",
        ),
        (
            info_with(base.clone(), "pieces", Some(int(-23))),
            "info.pieces is not a byte string (found integer)",
        ),
        (
            info_with(base.clone(), "pieces", Some(b(&[0; 59]))),
            "info.pieces length 59 is not a multiple of 20",
        ),
        (
            info_with(base.clone(), "pieces", Some(b(&[0; 60]))),
            "piece count 3 (info.pieces) does not match total length 100000 / piece length \
             16384 = 7 pieces",
        ),
        (
            info_with(base.clone(), "length", Some(int(-425))),
            "info.length is negative (-425)",
        ),
        (
            info_with(base.clone(), "length", None),
            "info has neither length (single-file torrent) nor files (multi-file torrent)",
        ),
        (
            info_with(
                info_with(base.clone(), "length", Some(int(0))),
                "pieces",
                Some(b(b"")),
            ),
            "total length is 0: the torrent has no data",
        ),
        (
            info_with(
                info_with(base.clone(), "length", Some(int(1_759_218_597_889))),
                "pieces",
                Some(b(&[0; 20])),
            ),
            "total length 1759218597889 / piece length 16384 = 107374183 pieces, more than the \
             maximum 2097152",
        ),
        (
            info_with(base.clone(), "files", Some(list(vec![]))),
            "info.files is empty",
        ),
        (
            info_with(base.clone(), "files", Some(s("x"))),
            "info.files is not a list (found byte string)",
        ),
        (
            info_with(
                base.clone(),
                "files",
                Some(list(vec![file(&[b"a"], 5), d(vec![("length", int(-45))])])),
            ),
            "info.files[1].length is negative (-45)",
        ),
        (
            info_with(
                base.clone(),
                "files",
                Some(list(vec![d(vec![("path", list(vec![s("a")]))])])),
            ),
            "info.files[0].length is missing",
        ),
        (
            info_with(
                base.clone(),
                "files",
                Some(list(vec![d(vec![
                    ("length", list(vec![int(45)])),
                    ("path", list(vec![s("a")])),
                ])])),
            ),
            "info.files[0].length is not an integer (found list)",
        ),
        (
            info_with(
                base.clone(),
                "files",
                Some(list(vec![file(&[b"a"], 5), d(vec![("length", int(5))])])),
            ),
            "info.files[1].path is missing",
        ),
        (
            info_with(base.clone(), "files", Some(list(vec![file(&[], 5)]))),
            "info.files[0].path is empty",
        ),
        (
            info_with(
                base.clone(),
                "files",
                Some(list(vec![d(vec![
                    ("length", int(5)),
                    ("path", list(vec![int(1242), s("foo")])),
                ])])),
            ),
            "info.files[0].path[0] is not a byte string (found integer)",
        ),
        (
            info_with(base.clone(), "files", Some(list(vec![s("x")]))),
            "info.files[0] is not a dictionary (found byte string)",
        ),
        (
            info_with(
                base.clone(),
                "files",
                Some(list(vec![
                    file(&[b"a"], i64::MAX),
                    file(&[b"b"], i64::MAX),
                    file(&[b"c"], i64::MAX),
                ])),
            ),
            "info.files[2].length makes the total length overflow 64 bits",
        ),
    ];
    for (info, want) in cases {
        assert_eq!(err(&torrent(info)), want);
    }
}

#[test]
fn outer_errors() {
    assert_eq!(
        err(b"10:libtorrent"),
        "the torrent is not a bencoded dictionary (found byte string)"
    );
    assert_eq!(err(b"d3:fooi1ee"), "info is missing");
    assert_eq!(
        err(b"d4:info5:filese"),
        "info is not a dictionary (found byte string)"
    );
    assert_eq!(
        err(b"d4:infod"),
        "invalid bencode at byte 8: unexpected end of input"
    );
    let magnet = d(vec![(
        "magnet-info",
        d(vec![
            ("info_hash", b(&[0xc0; 20])),
            ("display-name", s("x")),
        ]),
    )])
    .to_bytes();
    assert_eq!(
        err(&magnet),
        "there is no info dictionary, only a saved magnet link (magnet-info, info hash \
         c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0); open it as a magnet link instead"
    );
    let v2 = d(vec![
        ("meta version", int(2)),
        ("name", s("x")),
        ("piece length", int(16384)),
        ("file tree", d(vec![])),
    ]);
    let msg = err(&torrent(v2));
    assert!(msg.contains("BEP 52"), "{msg}");
    assert!(
        msg.contains("Hive supports v1 and hybrid torrents"),
        "{msg}"
    );
    let huge = vec![b'x'; MAX_METAINFO_BYTES + 1];
    assert!(err(&huge).contains("limit"));
}

#[test]
fn hybrid_loads_through_v1() {
    let info = info_with(single_info(5, 16384), "meta version", Some(int(2)));
    let m = Metainfo::from_bytes(&torrent(info)).unwrap();
    assert!(m.is_hybrid());
    assert_eq!(m.piece_count(), 1);
}

#[test]
fn private_flag() {
    let p = |v: O| {
        Metainfo::from_bytes(&torrent(info_with(single_info(5, 16), "private", Some(v))))
            .unwrap()
            .is_private()
    };
    assert!(p(int(1)));
    assert!(!p(int(0)));
    // Wrong type: fail safe.
    assert!(p(s("1")));
}

#[test]
fn layout_maps_pieces_to_files() {
    // a:10, empty:0, b:30, c:5 with 16-byte pieces: 45 bytes, pieces of 16, 16, 13.
    let files = vec![
        file(&[b"a"], 10),
        file(&[b"empty"], 0),
        file(&[b"b"], 30),
        file(&[b"c"], 5),
    ];
    let m = Metainfo::from_bytes(&torrent(multi_info(files, 45, 16))).unwrap();
    let l = m.layout();
    assert_eq!(l.piece_count(), 3);
    assert_eq!(
        (l.piece_len(0), l.piece_len(1), l.piece_len(2)),
        (Some(16), Some(16), Some(13))
    );
    let slices = |p| {
        l.file_slices(p)
            .map(|s| (s.file, s.offset, s.len))
            .collect::<Vec<_>>()
    };
    assert_eq!(slices(0), [(0, 0, 10), (2, 0, 6)]);
    assert_eq!(slices(1), [(2, 6, 16)]);
    assert_eq!(slices(2), [(2, 22, 8), (3, 0, 5)]);
    assert_eq!(slices(3), []);
    assert_eq!(l.piece_range_of_file(0), Some(0..1));
    assert_eq!(l.piece_range_of_file(1), Some(0..0));
    assert_eq!(l.piece_range_of_file(2), Some(0..3));
    assert_eq!(l.piece_range_of_file(3), Some(2..3));
    assert_eq!(l.piece_range_of_file(4), None);
    assert_eq!(l.file_at_offset(9), Some(0));
    assert_eq!(l.file_at_offset(10), Some(2));
    assert_eq!(l.file_at_offset(45), None);
    assert_eq!(l.files()[1].offset(), 10);
    assert_eq!(l.files()[2].offset(), 10);
    assert_eq!(l.piece_byte_range(2), Some(32..45));
    assert_eq!(m.files()[0].path(), ["top", "a"]);
}

#[test]
fn dangerous_paths_are_sanitised() {
    let files = vec![
        file(&[b"..", b"..", b"etc", b"passwd"], 1),
        file(&[b"/abs"], 1),
        file(&[b"a\\b", b"C:", b"CON"], 1),
        file(&[b"", b".", b"x"], 1),
        file(&[b"..", b"."], 1),
        file(&[b"foo/../../bar"], 1),
    ];
    let info = info_with(multi_info(files, 6, 16), "name", Some(s("../up")));
    let m = Metainfo::from_bytes(&torrent(info)).unwrap();
    let paths: Vec<String> = m.files().iter().map(FileEntry::display_path).collect();
    assert_eq!(
        paths,
        [
            ".._up/etc/passwd",
            ".._up/_abs",
            ".._up/a_b/C_/_CON",
            ".._up/x",
            ".._up/_",
            ".._up/foo_.._.._bar",
        ]
    );
    // A name with nothing left becomes the info hash.
    let info = info_with(single_info(5, 16), "name", Some(s("..")));
    let m = Metainfo::from_bytes(&torrent(info)).unwrap();
    assert_eq!(m.name(), m.info_hash().to_string());
}

#[test]
fn utf8_variants_are_preferred() {
    let info = info_with(single_info(5, 16), "name.utf-8", Some(s("caf\u{e9}")));
    let info = info_with(info, "name", Some(b(b"caf\xe9")));
    assert_eq!(
        Metainfo::from_bytes(&torrent(info)).unwrap().name(),
        "caf\u{e9}"
    );
    let f = d(vec![
        ("length", int(5)),
        ("path", list(vec![b(b"\xe9")])),
        ("path.utf-8", list(vec![s("\u{e9}")])),
    ]);
    let m = Metainfo::from_bytes(&torrent(multi_info(vec![f], 5, 16))).unwrap();
    assert_eq!(m.files()[0].path(), ["top", "\u{e9}"]);
    // Empty or malformed variants fall back to the plain keys.
    let info = info_with(single_info(5, 16), "name.utf-8", Some(s("")));
    assert_eq!(
        Metainfo::from_bytes(&torrent(info)).unwrap().name(),
        "file.bin"
    );
    let f = d(vec![
        ("length", int(5)),
        ("path", list(vec![s("p")])),
        ("path.utf-8", list(vec![])),
    ]);
    let m = Metainfo::from_bytes(&torrent(multi_info(vec![f], 5, 16))).unwrap();
    assert_eq!(m.files()[0].path(), ["top", "p"]);
}

#[test]
fn duplicates_are_renamed_or_refused() {
    let files = vec![
        file(&[b"foo", b"bar.txt"], 5),
        file(&[b"foo", b"bar.txt"], 5),
        file(&[b"foo", b"BAR.txt"], 7),
        file(&[b"foo", b"bar.1.txt"], 3),
    ];
    let m = Metainfo::from_bytes(&torrent(multi_info(files, 20, 16))).unwrap();
    let paths: Vec<String> = m.files().iter().map(FileEntry::display_path).collect();
    assert_eq!(
        paths,
        [
            "top/foo/bar.txt",
            "top/foo/bar.2.txt",
            "top/foo/BAR.3.txt",
            "top/foo/bar.1.txt",
        ]
    );

    // A file where a directory must be.
    let files = vec![file(&[b"a"], 1), file(&[b"a", b"b"], 1)];
    let m = Metainfo::from_bytes(&torrent(multi_info(files, 2, 16))).unwrap();
    assert_eq!(m.files()[0].path(), ["top", "a.1"]);
    assert_eq!(m.files()[1].path(), ["top", "a", "b"]);

    // Same path, different lengths: contradictory.
    let files = vec![file(&[b"f.txt"], 1), file(&[b"g"], 1), file(&[b"f.txt"], 2)];
    assert_eq!(
        err(&torrent(multi_info(files, 4, 16))),
        "info.files[2] repeats the path of info.files[0] (top/f.txt) with a different length \
         (2 vs 1 bytes)"
    );

    // Renames are bounded.
    let files = (0..=MAX_RENAMES + 1).map(|_| file(&[b"x"], 1)).collect();
    let total = MAX_RENAMES as u64 + 2;
    assert_eq!(
        err(&torrent(multi_info(files, total, 16))),
        MetainfoError::TooManyDuplicates.to_string()
    );
}

#[test]
fn pad_files_and_attributes() {
    let files = vec![
        file(&[b"a"], 10),
        d(vec![("attr", s("p")), ("length", int(6))]),
        d(vec![
            ("length", int(6)),
            ("path", list(vec![s("_____padding_file_0")])),
        ]),
        d(vec![
            ("attr", s("xh")),
            ("length", int(4)),
            ("path", list(vec![s("run")])),
        ]),
        // BEP 47 symlink: no bytes in the piece space, length optional, target sanitised.
        d(vec![
            ("attr", s("l")),
            ("path", list(vec![s("link")])),
            ("symlink path", list(vec![s(".."), s("a")])),
        ]),
        // Two pad files with the same name never collide.
        d(vec![("attr", s("p")), ("length", int(6))]),
    ];
    let m = Metainfo::from_bytes(&torrent(multi_info(files, 32, 16))).unwrap();
    let f = m.files();
    assert!(!f[0].is_pad());
    assert!(f[1].is_pad());
    assert_eq!(f[1].path(), ["top", ".pad", "6"]);
    assert!(f[2].is_pad());
    assert!(f[3].is_executable() && f[3].is_hidden());
    assert_eq!(f[4].length(), 0);
    assert_eq!(f[4].symlink_target().unwrap(), ["top", "a"]);
    assert_eq!(f[5].path(), ["top", ".pad", "6"]);
    assert_eq!(m.total_length(), 32);
    // Pad bytes are in the piece space.
    let s1: Vec<_> = m.layout().file_slices(0).map(|s| s.file).collect();
    assert_eq!(s1, [0, 1]);
}

#[test]
fn trackers_follow_bep12() {
    let info = single_info(5, 16);
    let t = |outer: Vec<(&str, O)>| {
        Metainfo::from_bytes(&with_info(info.clone(), outer))
            .unwrap()
            .trackers()
            .to_vec()
    };
    let tiers = t(vec![
        ("announce", s("http://ignored.example/a")),
        (
            "announce-list",
            list(vec![
                list(vec![s(" udp://a.example:80/announce\t"), s("")]),
                list(vec![]),
                list(vec![
                    s("udp://a.example:80/announce"),
                    s("tracker.publicbt.com:80/announce"),
                    s("wss://ws.example/"),
                    int(3),
                    s("HTTPS://b.example/announce"),
                ]),
                s("http://flat.example/announce"),
            ]),
        ),
    ]);
    assert_eq!(
        tiers,
        [
            vec!["udp://a.example:80/announce".to_owned()],
            vec!["HTTPS://b.example/announce".to_owned()],
            vec!["http://flat.example/announce".to_owned()],
        ]
    );
    // announce-list with nothing usable: fall back to announce.
    let tiers = t(vec![
        ("announce", s("\t udp://test.com/announce")),
        ("announce-list", list(vec![list(vec![s("")])])),
    ]);
    assert_eq!(tiers, [vec!["udp://test.com/announce".to_owned()]]);
    assert!(t(vec![("announce", s("http://"))]).is_empty());
}

#[test]
fn web_seeds_follow_bep19() {
    let info = single_info(5, 16);
    let w = |v: O| {
        Metainfo::from_bytes(&with_info(info.clone(), vec![("url-list", v)]))
            .unwrap()
            .web_seeds()
            .to_vec()
    };
    assert_eq!(w(s("http://x.example/f")), ["http://x.example/f"]);
    assert_eq!(
        w(list(vec![
            s("http://x.example/a b"),
            s("http://x.example/a b"),
            s(""),
            list(vec![s("")]),
            int(-20),
            s("/8/items/"),
            s("ftp://x.example/"),
            s("https://y.example/"),
        ])),
        ["http://x.example/a%20b", "https://y.example/"]
    );
    assert!(w(int(1)).is_empty());
}

fn safe_component(c: &str) -> bool {
    !c.is_empty()
        && c != "."
        && c != ".."
        && !c.contains(['/', '\\', ':', '\0'])
        && c.len() <= sanitize::MAX_COMPONENT_BYTES
        && !c.ends_with(['.', ' '])
}

proptest! {
    #[test]
    fn paths_are_always_safe(
        comps in proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof![
                    Just(b'.'), Just(b'/'), Just(b'\\'), Just(b' '), Just(b':'), Just(0u8),
                    Just(0xff), Just(0xc0), Just(b'a'), any::<u8>()
                ],
                0..300,
            ),
            1..6,
        ),
        name in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let comp_refs: Vec<&[u8]> = comps.iter().map(Vec::as_slice).collect();
        let files = vec![file(&comp_refs, 3), file(&comp_refs, 3), file(&[b"z"], 1)];
        let info = info_with(multi_info(files, 7, 16), "name", Some(O::Bytes(name)));
        let m = Metainfo::from_bytes(&torrent(info)).unwrap();
        for f in m.files() {
            prop_assert!(f.path().len() >= 2);
            for c in f.path() {
                prop_assert!(safe_component(c), "{c:?}");
            }
        }
        let a = m.files()[0].path();
        let b = m.files()[1].path();
        prop_assert_ne!(folded(a), folded(b));
    }

    #[test]
    fn slices_cover_every_byte_once(
        lengths in proptest::collection::vec(0u64..100, 1..20),
        piece_length in 1i64..64,
    ) {
        let total: u64 = lengths.iter().sum();
        prop_assume!(total > 0);
        let files = lengths
            .iter()
            .enumerate()
            .map(|(i, l)| file(&[format!("f{i}").as_bytes()], *l as i64))
            .collect();
        let m = Metainfo::from_bytes(&torrent(multi_info(files, total, piece_length))).unwrap();
        let l = m.layout();
        let mut covered = vec![0u64; lengths.len()];
        let mut pos = 0u64;
        for p in 0..l.piece_count() {
            let mut sum = 0;
            for s in l.file_slices(p) {
                let f = &l.files()[s.file];
                prop_assert!(s.len > 0);
                prop_assert_eq!(f.offset() + s.offset, pos);
                prop_assert_eq!(covered[s.file], s.offset);
                covered[s.file] += s.len;
                prop_assert!(l.piece_range_of_file(s.file).unwrap().contains(&p));
                pos += s.len;
                sum += s.len;
            }
            prop_assert_eq!(Some(sum), l.piece_len(p));
        }
        prop_assert_eq!(pos, total);
        prop_assert_eq!(covered, lengths.clone());
        for (i, len) in lengths.iter().enumerate() {
            let r = l.piece_range_of_file(i).unwrap();
            prop_assert_eq!(r.is_empty(), *len == 0);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Metainfo::from_bytes(&bytes);
        let _ = Metainfo::from_info_bytes(&bytes);
    }

    #[test]
    fn mutated_torrents_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let files = vec![
            file(&[b"a", b"b"], 20),
            d(vec![("attr", s("p")), ("length", int(12))]),
            file(&[b"c"], 0),
            file(&[b"d"], 9),
        ];
        let mut bytes = with_info(
            multi_info(files, 41, 16),
            vec![("announce-list", list(vec![list(vec![s("http://a/")])]))],
        );
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(m) = Metainfo::from_bytes(&bytes) {
            for p in 0..m.piece_count() {
                prop_assert_eq!(
                    m.layout().file_slices(p).map(|s| s.len).sum::<u64>(),
                    m.piece_len(p).unwrap()
                );
            }
        }
    }
}
