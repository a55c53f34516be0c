//! `bencode`: Hive's decoder against itself (strict, lenient, prefix) and, differentially,
//! against `bt_bencode` 0.8 as an independent oracle.
//!
//! Self-consistency: a strict decode re-encodes to exactly the input; every nested value's
//! `raw` is its slice of the input; strict and lenient agree except on unsorted keys; a
//! prefix decode agrees with the whole-input decode.
//!
//! Differential rules. Both decoders must agree on *canonical* input (what BEP 3 defines):
//! whenever the oracle accepts the input and its canonical re-encoding is the input itself,
//! Hive's strict decoder accepts it with an equal value, and whatever Hive accepts (strict or
//! lenient) the oracle accepts with an equal value. The oracle's documented differences,
//! studied in its source (`de.rs`, `read.rs`, `value.rs` of bt_bencode 0.8.2), are normalised
//! here rather than reported:
//!
//! | input                              | bt_bencode 0.8                  | Hive                        | normalisation |
//! |------------------------------------|---------------------------------|-----------------------------|---------------|
//! | nesting deeper than 100            | no limit (recursion; a deep input overflows the stack) | `TooDeep` | oracle not run when [`nesting_bound`] > 100 |
//! | unsorted dictionary keys           | accepted (`BTreeMap`)           | strict: `UnsortedKeys`; lenient: accepted | not canonical; compared through the lenient decoder |
//! | duplicate keys                     | accepted, last value wins       | `DuplicateKey` (always)     | not canonical; a rejection Hive may make |
//! | `i03e`, `i-0e`, `03:abc`           | accepted                        | `LeadingZero`/`NegativeZero` | not canonical; a rejection Hive may make |
//! | integers in `i64::MAX+1 ..= u64::MAX` | accepted (`Number::Unsigned`) | `IntegerOverflow`           | canonical input outside `i64` is exempt |
//! | `i-9223372036854775808e` (`i64::MIN`) | refused (negates a `u64` into `i64`) | accepted           | when Hive's value holds `i64::MIN`, the oracle must refuse |
//! | a string length that overflows `offset + len` (`18446744073709551615:`) | panics: `attempt to add with overflow` in `SliceRead::parse_byte_str` (found by this target) | `StringTooLong` | oracle not run when [`scan`] sees such a length |

use std::collections::BTreeMap;

use hive_core::bencode::{self, DecodeErrorKind, Kind, Limits, Value};

/// Deepest nesting Hive accepts, and so the deepest input handed to the oracle.
pub const MAX_DEPTH: usize = Limits::STRICT.max_depth as usize;

/// A value in a form both decoders map to: integers widened so that `u64` and `i64` meet.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Norm {
    Int(i128),
    Bytes(Vec<u8>),
    List(Vec<Norm>),
    Dict(BTreeMap<Vec<u8>, Norm>),
}

fn from_hive(v: &Value<'_>) -> Norm {
    match &v.kind {
        Kind::Int(n) => Norm::Int(i128::from(*n)),
        Kind::Bytes(b) => Norm::Bytes(b.to_vec()),
        Kind::List(items) => Norm::List(items.iter().map(from_hive).collect()),
        Kind::Dict(d) => Norm::Dict(
            d.entries()
                .iter()
                .map(|(k, v)| (k.to_vec(), from_hive(v)))
                .collect(),
        ),
    }
}

fn from_oracle(v: &bt_bencode::Value) -> Norm {
    use bt_bencode::value::Number;
    match v {
        bt_bencode::Value::Int(Number::Signed(n)) => Norm::Int(i128::from(*n)),
        bt_bencode::Value::Int(Number::Unsigned(n)) => Norm::Int(i128::from(*n)),
        bt_bencode::Value::ByteStr(b) => Norm::Bytes(b.to_vec()),
        bt_bencode::Value::List(items) => Norm::List(items.iter().map(from_oracle).collect()),
        bt_bencode::Value::Dict(d) => Norm::Dict(
            d.iter()
                .map(|(k, v)| (k.to_vec(), from_oracle(v)))
                .collect(),
        ),
    }
}

impl Norm {
    fn any_int(&self, pred: &dyn Fn(i128) -> bool) -> bool {
        match self {
            Norm::Int(n) => pred(*n),
            Norm::Bytes(_) => false,
            Norm::List(items) => items.iter().any(|i| i.any_int(pred)),
            Norm::Dict(d) => d.values().any(|v| v.any_int(pred)),
        }
    }
}

/// What a token scan of an input says about the oracle's chances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan {
    /// An upper bound on how deep either decoder nests.
    pub max_depth: usize,
    /// A string length that would overflow the oracle's `offset + len`.
    pub length_overflow: bool,
}

impl Scan {
    /// Whether bt_bencode can be run on the input without crashing.
    pub fn oracle_safe(&self) -> bool {
        self.max_depth <= MAX_DEPTH && !self.length_overflow
    }
}

/// An upper bound on how deep either decoder nests while reading `data`; see [`scan`].
pub fn nesting_bound(data: &[u8]) -> usize {
    scan(data).max_depth
}

/// Scans `data` along the same tokens as the decoders (strings skipped by their length,
/// integers up to their `e`) while the input is valid; it may only run further than a decoder
/// that has stopped at an error, so what it reports bounds what the oracle meets. The oracle
/// recurses without a depth limit and adds string lengths to its offset unchecked, so it only
/// sees inputs that are [`Scan::oracle_safe`].
pub fn scan(data: &[u8]) -> Scan {
    let mut length_overflow = false;
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
    while let Some(&b) = data.get(i) {
        match b {
            b'l' | b'd' => {
                depth += 1;
                max = max.max(depth);
                i += 1;
            }
            b'e' if depth > 0 => {
                depth -= 1;
                i += 1;
            }
            b'i' => match data[i..].iter().position(|&c| c == b'e') {
                Some(p) => i += p + 1,
                None => break,
            },
            b'0'..=b'9' => {
                let digits = data[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                if data.get(i + digits) != Some(&b':') {
                    break;
                }
                let len = data[i..i + digits].iter().try_fold(0usize, |n, d| {
                    n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
                });
                match len.and_then(|l| (i + digits + 1).checked_add(l)) {
                    Some(next) => i = next,
                    None => {
                        // A length that does not fit a usize is an error for the oracle too.
                        length_overflow = len.is_some();
                        break;
                    }
                }
            }
            _ => break,
        }
    }
    Scan {
        max_depth: max,
        length_overflow,
    }
}

/// Every nested value's `raw` is exactly its span of the input; `offset`s are consistent.
fn check_spans(v: &Value<'_>, input: &[u8]) {
    assert_eq!(
        input.get(v.span()),
        Some(v.raw),
        "raw bytes of a value are not its span of the input"
    );
    match &v.kind {
        Kind::List(items) => items.iter().for_each(|i| check_spans(i, input)),
        Kind::Dict(d) => d.entries().iter().for_each(|(_, v)| check_spans(v, input)),
        Kind::Int(_) | Kind::Bytes(_) => {}
    }
}

fn encode(v: &Value<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    v.encode(&mut out);
    out
}

/// The fuzz target's body.
pub fn check(data: &[u8]) {
    let strict = bencode::decode(data);
    let lenient = bencode::decode_with(data, Limits::lenient());

    // --- Hive against itself ---
    for e in [strict.as_ref().err(), lenient.as_ref().err()]
        .into_iter()
        .flatten()
    {
        assert!(e.offset <= data.len(), "error offset past the input: {e}");
    }
    match (&strict, &lenient) {
        (Ok(s), Ok(l)) => assert_eq!(s, l, "strict and lenient decode differ"),
        (Ok(_), Err(e)) => panic!("strict accepts what lenient refuses: {e}"),
        (Err(e), Ok(_)) => assert_eq!(
            e.kind,
            DecodeErrorKind::UnsortedKeys,
            "lenient accepts input strict refuses for another reason than key order"
        ),
        (Err(_), Err(_)) => {}
    }
    if let Ok(v) = &strict {
        assert_eq!(v.raw, data);
        assert_eq!(encode(v), data, "strict decode must re-encode to the input");
        check_spans(v, data);
    }
    if let Ok(v) = &lenient {
        check_spans(v, data);
        // The canonical form of a lenient value is canonical: strict accepts it, same value.
        let canonical = encode(v);
        let again = bencode::decode(&canonical).expect("canonical re-encoding must decode");
        assert_eq!(again.to_owned_value(), v.to_owned_value());
    }
    match bencode::decode_prefix(data, Limits::STRICT) {
        Ok((v, used)) => {
            assert!(used <= data.len() && used > 0);
            assert_eq!(v.raw, &data[..used]);
            if used == data.len() {
                assert!(
                    strict.is_ok(),
                    "prefix decode used the whole input, decode failed"
                );
            } else {
                let e = strict.as_ref().expect_err("decode accepted trailing bytes");
                assert_eq!(e.kind, DecodeErrorKind::TrailingBytes(data.len() - used));
                assert_eq!(e.offset, used);
            }
        }
        Err(e) => assert_eq!(Some(&e), strict.as_ref().err(), "prefix and whole disagree"),
    }

    // --- Hive against the oracle ---
    if !scan(data).oracle_safe() {
        return;
    }
    let oracle = bt_bencode::from_slice::<bt_bencode::Value>(data);
    let hive_norm = lenient.as_ref().ok().map(from_hive);
    if let Some(h) = &hive_norm {
        if h.any_int(&|n| n == i128::from(i64::MIN)) {
            assert!(
                oracle.is_err(),
                "bt_bencode is documented to refuse i64::MIN; normalisation out of date"
            );
            return;
        }
        let o = oracle
            .as_ref()
            .unwrap_or_else(|e| panic!("Hive accepts, bt_bencode refuses: {e}"));
        assert_eq!(
            h,
            &from_oracle(o),
            "Hive and bt_bencode decode different values"
        );
    }
    let Ok(o) = &oracle else {
        return;
    };
    let o_norm = from_oracle(o);
    let canonical = bt_bencode::to_vec(o).expect("oracle re-encodes its own value") == data;
    if strict.is_ok() {
        assert!(
            canonical,
            "Hive strict accepts input bt_bencode says is not canonical"
        );
    }
    let fits_i64 = !o_norm.any_int(&|n| i64::try_from(n).is_err());
    if canonical && fits_i64 {
        let e = strict.as_ref().err();
        assert!(e.is_none(), "canonical input refused by Hive: {e:?}");
    }
    if let Err(e) = &lenient {
        assert!(
            matches!(
                e.kind,
                DecodeErrorKind::LeadingZero
                    | DecodeErrorKind::NegativeZero
                    | DecodeErrorKind::IntegerOverflow
                    | DecodeErrorKind::DuplicateKey(_)
            ),
            "bt_bencode accepts, Hive refuses for an undocumented reason: {e}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_bound_follows_tokens() {
        assert_eq!(nesting_bound(b"lli1eee"), 2);
        assert_eq!(
            nesting_bound(b"d1:ll1:dee"),
            2,
            "strings are skipped, not scanned"
        );
        assert_eq!(nesting_bound(b"ilelllle"), 4);
        assert_eq!(nesting_bound(&[b'l'; 500]), 500);
        assert_eq!(nesting_bound(b"99999999999999999999999:l"), 0);
        assert!(!scan(b"18446744073709551615:").oracle_safe());
        assert!(!scan(b"d1:a18446744073709551610:e").oracle_safe());
        assert!(
            scan(b"99999999999999999999999:").oracle_safe(),
            "the oracle refuses these"
        );
        assert!(scan(b"d1:ai1ee").oracle_safe());
    }

    #[test]
    fn documented_differences_hold() {
        for input in [
            &b"i03e"[..],
            b"i-0e",
            b"03:abc",
            b"d1:ai1e1:ai2ee",
            b"i9223372036854775808e",
            b"d1:bi1e1:ai2ee",
            b"i-9223372036854775808e",
            b"li1ei2ee",
        ] {
            check(input);
        }
    }
}
