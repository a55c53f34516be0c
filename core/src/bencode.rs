//! Bencode (BEP 3): a borrowing decoder, an encoder and canonical-form checks.
//!
//! The decoder never copies: byte strings are slices of the input and every [`Value`] keeps the
//! raw bytes it was decoded from, so a torrent's info hash is the SHA-1 of exactly the bytes in
//! the file (BEP 3), whatever their key order. It is bounded: nesting depth is capped
//! ([`Limits::max_depth`]), integers must fit an `i64`, and string lengths are checked against
//! the input before anything is sliced, so hostile input costs at most O(input) memory.
//!
//! Canonical form (BEP 3): integers without leading zeros or `-0`, string lengths without
//! leading zeros, dictionary keys sorted as raw bytes and unique. [`decode`] demands all of it;
//! [`decode_with`] and [`Limits::lenient`] accept unsorted keys, which real torrents contain
//! (libtorrent's `unordered.torrent`, Transmission's `unordered-info-dict.torrent`). Duplicate
//! keys are always refused: two values for one key make a file mean two different things.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

/// What went wrong while decoding, without the position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The input ended inside a value.
    #[error("unexpected end of input")]
    UnexpectedEof,
    /// A byte that cannot start a value.
    #[error("unexpected byte {0:#04x}, expected 'i', 'l', 'd' or a digit")]
    UnexpectedByte(u8),
    /// An integer (or string length) that is not a plain decimal number.
    #[error("malformed integer")]
    MalformedInteger,
    /// An integer with a leading zero, such as `i03e`.
    #[error("integer has a leading zero (not canonical bencode)")]
    LeadingZero,
    /// The integer `-0`.
    #[error("negative zero is not valid bencode")]
    NegativeZero,
    /// An integer outside the 64-bit signed range.
    #[error("integer does not fit in 64 bits")]
    IntegerOverflow,
    /// A string length larger than the bytes that follow it.
    #[error("string length {0} runs past the end of the input")]
    StringTooLong(u64),
    /// Lists and dictionaries nested deeper than the limit.
    #[error("nesting deeper than {0} levels")]
    TooDeep(u32),
    /// A dictionary key that is not a byte string.
    #[error("dictionary key is not a byte string")]
    NonStringKey,
    /// A dictionary key smaller than or equal to the key before it (strict mode).
    #[error("dictionary keys are not sorted")]
    UnsortedKeys,
    /// The same key twice in one dictionary.
    #[error("duplicate dictionary key {0:?}")]
    DuplicateKey(String),
    /// Bytes left over after the top-level value.
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
}

/// A decoding failure: what was wrong and at which byte offset of the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid bencode at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Offset of the offending byte in the input.
    pub offset: usize,
    /// What was wrong there.
    pub kind: DecodeErrorKind,
}

/// Bounds and strictness for decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum nesting of lists and dictionaries (libtorrent uses 100 too).
    pub max_depth: u32,
    /// Refuse dictionaries whose keys are not in ascending byte order.
    pub require_sorted_keys: bool,
}

impl Limits {
    /// Canonical bencode only: sorted keys, depth 100.
    pub const STRICT: Limits = Limits {
        max_depth: 100,
        require_sorted_keys: true,
    };

    /// Accepts unsorted dictionary keys (as found in real torrent files); depth 100.
    pub const fn lenient() -> Limits {
        Limits {
            max_depth: 100,
            require_sorted_keys: false,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::STRICT
    }
}

/// A decoded value that borrows from the input.
#[derive(Clone, PartialEq, Eq)]
pub struct Value<'a> {
    /// The value itself.
    pub kind: Kind<'a>,
    /// The exact input bytes this value was decoded from (for hashing the `info` dict).
    pub raw: &'a [u8],
    /// Offset of `raw` in the input.
    pub offset: usize,
}

/// The four bencode types.
#[derive(Clone, PartialEq, Eq)]
pub enum Kind<'a> {
    /// `i<n>e`
    Int(i64),
    /// `<len>:<bytes>`
    Bytes(&'a [u8]),
    /// `l...e`
    List(Vec<Value<'a>>),
    /// `d...e`, entries in input order.
    Dict(Dict<'a>),
}

/// A dictionary's entries, in the order they appeared in the input.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Dict<'a> {
    entries: Vec<(&'a [u8], Value<'a>)>,
}

impl<'a> Dict<'a> {
    /// The value stored under `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        // Dictionaries in torrents and tracker replies have a handful of keys: a linear scan
        // beats building an index.
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The entries in input order.
    pub fn entries(&self) -> &[(&'a [u8], Value<'a>)] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the dictionary has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<'a> Value<'a> {
    /// Byte range of this value in the input.
    pub fn span(&self) -> Range<usize> {
        self.offset..self.offset + self.raw.len()
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self.kind {
            Kind::Int(n) => Some(n),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.kind {
            Kind::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string as UTF-8, if this is a byte string holding valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The list, if this is one.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match &self.kind {
            Kind::List(items) => Some(items),
            _ => None,
        }
    }

    /// The dictionary, if this is one.
    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match &self.kind {
            Kind::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Shortcut: `self` as a dictionary, then the value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.as_dict().and_then(|d| d.get(key))
    }

    /// The name of this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Int(_) => "integer",
            Kind::Bytes(_) => "byte string",
            Kind::List(_) => "list",
            Kind::Dict(_) => "dictionary",
        }
    }

    /// Appends the canonical encoding of this value to `out` (keys sorted, whatever the input
    /// order was). For a value decoded in strict mode this reproduces `raw` exactly.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match &self.kind {
            Kind::Int(n) => encode_int(out, *n),
            Kind::Bytes(b) => encode_bytes(out, b),
            Kind::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode(out);
                }
                out.push(b'e');
            }
            Kind::Dict(d) => {
                let mut sorted: Vec<&(&[u8], Value<'_>)> = d.entries.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(b.0));
                out.push(b'd');
                for (k, v) in sorted {
                    encode_bytes(out, k);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// An owned copy of this value.
    pub fn to_owned_value(&self) -> OwnedValue {
        match &self.kind {
            Kind::Int(n) => OwnedValue::Int(*n),
            Kind::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
            Kind::List(items) => {
                OwnedValue::List(items.iter().map(Value::to_owned_value).collect())
            }
            Kind::Dict(d) => OwnedValue::Dict(
                d.entries
                    .iter()
                    .map(|(k, v)| (k.to_vec(), v.to_owned_value()))
                    .collect(),
            ),
        }
    }
}

/// Byte strings print as text when they are short printable ASCII, as hex otherwise.
struct BytesDebug<'a>(&'a [u8]);

impl fmt::Debug for BytesDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let printable = self.0.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
        if printable && self.0.len() <= 200 {
            write!(f, "{:?}", String::from_utf8_lossy(self.0))
        } else {
            write!(f, "<{} bytes>", self.0.len())
        }
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl fmt::Debug for Kind<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Int(n) => write!(f, "{n}"),
            Kind::Bytes(b) => BytesDebug(b).fmt(f),
            Kind::List(items) => f.debug_list().entries(items).finish(),
            Kind::Dict(d) => d.fmt(f),
        }
    }
}

impl fmt::Debug for Dict<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (BytesDebug(k), v)))
            .finish()
    }
}

/// Decodes one canonical bencode value that must span the whole input.
pub fn decode(input: &[u8]) -> Result<Value<'_>, DecodeError> {
    decode_with(input, Limits::STRICT)
}

/// Decodes one value spanning the whole input, with the given limits.
pub fn decode_with(input: &[u8], limits: Limits) -> Result<Value<'_>, DecodeError> {
    let (value, used) = decode_prefix(input, limits)?;
    if used != input.len() {
        return Err(DecodeError {
            offset: used,
            kind: DecodeErrorKind::TrailingBytes(input.len() - used),
        });
    }
    Ok(value)
}

/// Decodes one value at the start of `input` and returns it with the number of bytes it used.
///
/// For payloads where bencode is followed by raw data (BEP 9 `ut_metadata` pieces).
pub fn decode_prefix(input: &[u8], limits: Limits) -> Result<(Value<'_>, usize), DecodeError> {
    let mut parser = Parser {
        input,
        pos: 0,
        limits,
    };
    let value = parser.value(0)?;
    Ok((value, parser.pos))
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    limits: Limits,
}

impl<'a> Parser<'a> {
    fn err(&self, offset: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError { offset, kind }
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err(self.pos, DecodeErrorKind::UnexpectedEof))
    }

    fn value(&mut self, depth: u32) -> Result<Value<'a>, DecodeError> {
        let start = self.pos;
        let kind = match self.peek()? {
            b'i' => {
                self.pos += 1;
                let n = self.integer(b'e', true)?;
                Kind::Int(n)
            }
            b'0'..=b'9' => Kind::Bytes(self.byte_string()?),
            b'l' => {
                self.enter(depth)?;
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Kind::List(items)
            }
            b'd' => {
                self.enter(depth)?;
                self.pos += 1;
                Kind::Dict(self.dict_entries(depth)?)
            }
            other => return Err(self.err(start, DecodeErrorKind::UnexpectedByte(other))),
        };
        let raw = self.input.get(start..self.pos).unwrap_or_default();
        Ok(Value {
            kind,
            raw,
            offset: start,
        })
    }

    fn enter(&self, depth: u32) -> Result<(), DecodeError> {
        if depth >= self.limits.max_depth {
            return Err(self.err(self.pos, DecodeErrorKind::TooDeep(self.limits.max_depth)));
        }
        Ok(())
    }

    fn dict_entries(&mut self, depth: u32) -> Result<Dict<'a>, DecodeError> {
        let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
        let mut sorted_so_far = true;
        while self.peek()? != b'e' {
            let key_start = self.pos;
            if !self.peek()?.is_ascii_digit() {
                return Err(self.err(key_start, DecodeErrorKind::NonStringKey));
            }
            let key = self.byte_string()?;
            if let Some((last, _)) = entries.last() {
                if key <= *last {
                    if self.limits.require_sorted_keys || key == *last {
                        let kind = if key == *last {
                            DecodeErrorKind::DuplicateKey(String::from_utf8_lossy(key).into_owned())
                        } else {
                            DecodeErrorKind::UnsortedKeys
                        };
                        return Err(self.err(key_start, kind));
                    }
                    sorted_so_far = false;
                }
            }
            // Out of order input: duplicates may hide anywhere, check them all.
            if !sorted_so_far && entries.iter().any(|(k, _)| *k == key) {
                return Err(self.err(
                    key_start,
                    DecodeErrorKind::DuplicateKey(String::from_utf8_lossy(key).into_owned()),
                ));
            }
            let value = self.value(depth + 1)?;
            entries.push((key, value));
        }
        self.pos += 1;
        Ok(Dict { entries })
    }

    /// Parses a decimal number up to `terminator`; the cursor ends after the terminator.
    fn integer(&mut self, terminator: u8, allow_negative: bool) -> Result<i64, DecodeError> {
        let start = self.pos;
        let rest = self.input.get(start..).unwrap_or_default();
        let Some(len) = rest.iter().position(|b| *b == terminator) else {
            return Err(self.err(self.input.len(), DecodeErrorKind::UnexpectedEof));
        };
        let text = rest.get(..len).unwrap_or_default();
        let (negative, digits) = match text.split_first() {
            Some((b'-', digits)) if allow_negative => (true, digits),
            _ => (false, text),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(self.err(start, DecodeErrorKind::MalformedInteger));
        }
        if digits.len() > 1 && digits.first() == Some(&b'0') {
            return Err(self.err(start, DecodeErrorKind::LeadingZero));
        }
        if negative && digits == b"0" {
            return Err(self.err(start, DecodeErrorKind::NegativeZero));
        }
        // Accumulate negatively so that i64::MIN parses.
        let mut n: i64 = 0;
        for d in digits {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_sub(i64::from(d - b'0')))
                .ok_or_else(|| self.err(start, DecodeErrorKind::IntegerOverflow))?;
        }
        let n = if negative {
            n
        } else {
            n.checked_neg()
                .ok_or_else(|| self.err(start, DecodeErrorKind::IntegerOverflow))?
        };
        self.pos = start + len + 1;
        Ok(n)
    }

    fn byte_string(&mut self) -> Result<&'a [u8], DecodeError> {
        let len_start = self.pos;
        let len = self.integer(b':', false)?;
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        let start = self.pos;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|end| *end <= self.input.len())
            .ok_or_else(|| self.err(len_start, DecodeErrorKind::StringTooLong(len)))?;
        self.pos = end;
        Ok(self.input.get(start..end).unwrap_or_default())
    }
}

/// Appends `i<n>e` to `out`.
pub fn encode_int(out: &mut Vec<u8>, n: i64) {
    out.push(b'i');
    push_decimal(out, n);
    out.push(b'e');
}

/// Appends `<len>:<bytes>` to `out`.
pub fn encode_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    push_decimal(out, i64::try_from(bytes.len()).unwrap_or(i64::MAX));
    out.push(b':');
    out.extend_from_slice(bytes);
}

/// Writes a decimal integer without allocating.
fn push_decimal(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        i -= 1;
        // i stays within 0..20: u64::MAX has 20 decimal digits.
        if let Some(slot) = digits.get_mut(i) {
            *slot = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(digits.get(i..).unwrap_or_default());
}

/// An owned bencode value, for building documents; dictionaries are always sorted because
/// they are `BTreeMap`s keyed by raw bytes, so [`OwnedValue::encode`] is always canonical.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedValue {
    /// An integer.
    Int(i64),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<OwnedValue>),
    /// A dictionary, sorted by key.
    Dict(BTreeMap<Vec<u8>, OwnedValue>),
}

impl OwnedValue {
    /// A byte string from text.
    pub fn str(s: &str) -> OwnedValue {
        OwnedValue::Bytes(s.as_bytes().to_vec())
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            OwnedValue::Int(n) => encode_int(out, *n),
            OwnedValue::Bytes(b) => encode_bytes(out, b),
            OwnedValue::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode(out);
                }
                out.push(b'e');
            }
            OwnedValue::Dict(map) => {
                out.push(b'd');
                for (k, v) in map {
                    encode_bytes(out, k);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The canonical encoding as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err_kind(input: &[u8]) -> DecodeErrorKind {
        decode(input).unwrap_err().kind
    }

    #[test]
    fn decodes_each_type() {
        let v = decode(b"d0:de3:bar4:spam3:fooi42e4:listli1eli2eeee").unwrap();
        assert_eq!(v.get(b"bar").unwrap().as_bytes(), Some(&b"spam"[..]));
        assert_eq!(v.get(b"foo").unwrap().as_int(), Some(42));
        let list = v.get(b"list").unwrap();
        assert_eq!(list.raw, b"li1eli2eee");
        assert_eq!(list.span(), 31..41);
        assert_eq!(v.get(b"").unwrap().as_dict().unwrap().len(), 0);
    }

    #[test]
    fn integer_edge_cases() {
        assert_eq!(decode(b"i0e").unwrap().as_int(), Some(0));
        assert_eq!(decode(b"i-7e").unwrap().as_int(), Some(-7));
        assert_eq!(
            decode(b"i9223372036854775807e").unwrap().as_int(),
            Some(i64::MAX)
        );
        assert_eq!(
            decode(b"i-9223372036854775808e").unwrap().as_int(),
            Some(i64::MIN)
        );
        assert_eq!(
            err_kind(b"i9223372036854775808e"),
            DecodeErrorKind::IntegerOverflow
        );
        assert_eq!(err_kind(b"i03e"), DecodeErrorKind::LeadingZero);
        assert_eq!(err_kind(b"i-0e"), DecodeErrorKind::NegativeZero);
        assert_eq!(err_kind(b"i-e"), DecodeErrorKind::MalformedInteger);
        assert_eq!(err_kind(b"ie"), DecodeErrorKind::MalformedInteger);
        assert_eq!(err_kind(b"i1x2e"), DecodeErrorKind::MalformedInteger);
        assert_eq!(err_kind(b"i12"), DecodeErrorKind::UnexpectedEof);
        assert_eq!(err_kind(b"03:abc"), DecodeErrorKind::LeadingZero);
        assert_eq!(err_kind(b"-3:abc"), DecodeErrorKind::UnexpectedByte(b'-'));
    }

    #[test]
    fn strings_are_bounded_by_input() {
        assert_eq!(decode(b"4:spam").unwrap().as_str(), Some("spam"));
        assert_eq!(err_kind(b"5:spam"), DecodeErrorKind::StringTooLong(5));
        assert_eq!(
            err_kind(b"99999999999999999999:x"),
            DecodeErrorKind::IntegerOverflow
        );
    }

    #[test]
    fn canonical_checks_and_lenient_mode() {
        assert_eq!(err_kind(b"d1:bi1e1:ai2ee"), DecodeErrorKind::UnsortedKeys);
        let lenient = decode_with(b"d1:bi1e1:ai2ee", Limits::lenient()).unwrap();
        assert_eq!(lenient.get(b"a").unwrap().as_int(), Some(2));
        let mut canonical = Vec::new();
        lenient.encode(&mut canonical);
        assert_eq!(canonical, b"d1:ai2e1:bi1ee");
        assert!(matches!(
            err_kind(b"d1:ai1e1:ai2ee"),
            DecodeErrorKind::DuplicateKey(_)
        ));
        // A duplicate hidden behind an out-of-order key is still caught.
        assert!(matches!(
            decode_with(b"d1:ai1e1:ci1e1:bi1e1:ai2ee", Limits::lenient())
                .unwrap_err()
                .kind,
            DecodeErrorKind::DuplicateKey(_)
        ));
        assert_eq!(err_kind(b"di1ei2ee"), DecodeErrorKind::NonStringKey);
    }

    #[test]
    fn errors_carry_offsets() {
        let e = decode(b"d3:fooi01ee").unwrap_err();
        assert_eq!(e.offset, 7);
        assert_eq!(
            e.to_string(),
            "invalid bencode at byte 7: integer has a leading zero (not canonical bencode)"
        );
        let e = decode(b"i1ei2e").unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::TrailingBytes(3));
        assert_eq!(e.offset, 3);
    }

    #[test]
    fn depth_is_bounded() {
        let deep = [vec![b'l'; 100], vec![b'e'; 100]].concat();
        assert!(decode(&deep).is_ok());
        let deeper = [vec![b'l'; 101], vec![b'e'; 101]].concat();
        assert_eq!(err_kind(&deeper), DecodeErrorKind::TooDeep(100));
        // A million opening brackets must not blow the stack.
        assert_eq!(
            err_kind(&vec![b'l'; 1_000_000]),
            DecodeErrorKind::TooDeep(100)
        );
    }

    #[test]
    fn prefix_decoding_reports_length() {
        let (v, used) = decode_prefix(b"d1:ai1eeRAWDATA", Limits::STRICT).unwrap();
        assert_eq!(used, 8);
        assert_eq!(v.get(b"a").unwrap().as_int(), Some(1));
    }

    fn owned_strategy() -> impl Strategy<Value = OwnedValue> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(OwnedValue::Int),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(OwnedValue::Bytes),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(OwnedValue::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..8
                )
                .prop_map(OwnedValue::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(value in owned_strategy()) {
            let bytes = value.to_bytes();
            let decoded = decode(&bytes).unwrap();
            prop_assert_eq!(decoded.raw, &bytes[..]);
            prop_assert_eq!(decoded.to_owned_value(), value);
            let mut again = Vec::new();
            decoded.encode(&mut again);
            prop_assert_eq!(again, bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_with(&bytes, Limits::lenient());
        }
    }
}
