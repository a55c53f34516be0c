//! Path sanitisation: turns one path component from a torrent into a name that is safe on
//! every operating system, or drops it. See the table in the [`super`] module doc.
//!
//! The rules are the same on every platform (the core never asks which OS it runs on), so a
//! torrent lays out the same names on Linux, macOS and Windows, and the simulator sees what a
//! real client would write. Where the platforms disagree we take the strictest rule, as
//! Transmission does (`appendSanitizedComponent` applies the Windows rules everywhere).

/// Longest component in bytes. 255 is Linux's `NAME_MAX` (bytes); Windows and macOS count
/// UTF-16 units, and a UTF-8 string never has more UTF-16 units than bytes, so 255 bytes fits
/// everywhere.
pub(crate) const MAX_COMPONENT_BYTES: usize = 255;

/// Longest extension (with its dot) kept when a long name is truncated, or moved behind a
/// duplicate counter. libtorrent looks for the dot in the last 10 characters; we are a little
/// more generous so that `.torrent` or `.epub.zip`-style tails survive.
const MAX_EXTENSION_BYTES: usize = 16;

/// Sanitises one path component. `None` means the component is dropped (it was empty, `.`,
/// `..`, or nothing but dots and spaces).
pub(crate) fn component(raw: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    // Invalid UTF-8: each maximal invalid sequence becomes one `_` (libtorrent's
    // `sanitize_append_path_element` does the same), so Transmission's bad-utf8-path.torrent
    // loads and every name we hand out is a valid `String`.
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c);
        }
        if !chunk.invalid().is_empty() {
            out.push('_');
        }
    }
    trim_trailing_dots_and_spaces(&mut out);
    if out.is_empty() {
        return None;
    }
    if is_windows_device_name(&out) {
        // `CON`, `nul.txt`, `COM1.tar.gz` open a device on Windows instead of a file.
        out.insert(0, '_');
    }
    Some(fit(&out, ""))
}

fn push_char(out: &mut String, c: char) {
    match c {
        // Separators (`\` is one on Windows), the Windows-reserved set (`:` also makes drive
        // prefixes such as `C:foo` and NTFS alternate data streams), and control characters.
        '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*' => out.push('_'),
        c if c.is_control() => out.push('_'),
        // Bidirectional overrides and isolates make `evil\u{202E}gpj.exe` display as
        // `evilexe.jpg`; libtorrent filters the same marks out ("Trojan Source").
        '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => {}
        c => out.push(c),
    }
}

/// Windows silently drops trailing dots and spaces, so `a.` and `a` would be one file there;
/// stripping them everywhere also turns `.` and `..` into nothing.
fn trim_trailing_dots_and_spaces(s: &mut String) {
    let keep = s.trim_end_matches(['.', ' ']).len();
    s.truncate(keep);
}

/// Device names reserved by Windows in every directory, with or without an extension.
fn is_windows_device_name(name: &str) -> bool {
    const DEVICES: [&str; 30] = [
        "CON",
        "PRN",
        "AUX",
        "NUL",
        "CLOCK$",
        "CONIN$",
        "CONOUT$",
        "COM0",
        "COM1",
        "COM2",
        "COM3",
        "COM4",
        "COM5",
        "COM6",
        "COM7",
        "COM8",
        "COM9",
        "LPT0",
        "LPT1",
        "LPT2",
        "LPT3",
        "LPT4",
        "LPT5",
        "LPT6",
        "LPT7",
        "LPT8",
        "LPT9",
        "COM\u{b9}",
        "COM\u{b2}",
        "COM\u{b3}",
    ];
    const MORE: [&str; 3] = ["LPT\u{b9}", "LPT\u{b2}", "LPT\u{b3}"];
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_uppercase();
    DEVICES.iter().chain(MORE.iter()).any(|d| *d == upper)
}

/// The extension of `name` (from its last dot, dot included), if it is short enough to be
/// worth keeping and the dot is not the first character (`.bashrc` has no extension).
fn extension(name: &str) -> &str {
    match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= MAX_EXTENSION_BYTES => {
            name.get(dot..).unwrap_or("")
        }
        _ => "",
    }
}

/// `name` with `suffix` inserted before its extension, cut to [`MAX_COMPONENT_BYTES`] at a
/// character boundary by shortening the stem (so the extension survives, as in libtorrent).
/// Never a Windows device name, even when `name` was not one.
pub(crate) fn fit(name: &str, suffix: &str) -> String {
    let out = fit_unchecked(name, suffix);
    // Cutting the stem can uncover a device name: `CON` + 300 spaces + `x` is cut to `CON` and
    // trailing spaces, which are trimmed; a duplicate counter turns a 255-byte `CON   …x`
    // into `CON   ….1`. Both found by fuzzing. The prefixed name starts with `_`, so fitting
    // it again cannot uncover another one.
    if is_windows_device_name(&out) {
        return fit_unchecked(&format!("_{out}"), "");
    }
    out
}

fn fit_unchecked(name: &str, suffix: &str) -> String {
    let ext = extension(name);
    let stem = name.get(..name.len() - ext.len()).unwrap_or(name);
    let budget = MAX_COMPONENT_BYTES.saturating_sub(ext.len() + suffix.len());
    let mut cut = stem.len().min(budget);
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = String::with_capacity(cut + suffix.len() + ext.len());
    out.push_str(stem.get(..cut).unwrap_or(""));
    if out.len() < stem.len() && ext.is_empty() && suffix.is_empty() {
        // A cut without an extension may leave a trailing dot or space behind.
        trim_trailing_dots_and_spaces(&mut out);
    }
    out.push_str(suffix);
    out.push_str(ext);
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// Case-folded form of a component, for collision checks: Windows and macOS file systems are
/// case-insensitive by default, so `README` and `readme` are one file there.
pub(crate) fn fold(name: &str) -> String {
    name.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(raw: &[u8]) -> Option<String> {
        component(raw)
    }

    #[test]
    fn dot_and_empty_components_are_dropped() {
        for raw in [
            &b""[..],
            b".",
            b"..",
            b"...",
            b" ",
            b". .",
            b"..\xe2\x80\xae",
        ] {
            assert_eq!(c(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn separators_and_reserved_characters_become_underscores() {
        assert_eq!(c(b"/foobar").as_deref(), Some("_foobar"));
        assert_eq!(c(b"\\").as_deref(), Some("_"));
        assert_eq!(c(b"foo/../../../bar").as_deref(), Some("foo_.._.._.._bar"));
        assert_eq!(c(b"C:foo").as_deref(), Some("C_foo"));
        assert_eq!(c(b"a<b>c\"d|e?f*g").as_deref(), Some("a_b_c_d_e_f_g"));
        assert_eq!(c(b"nul\0byte\x07\x7f").as_deref(), Some("nul_byte__"));
    }

    #[test]
    fn trailing_dots_and_spaces_are_stripped() {
        assert_eq!(c(b"foobar ").as_deref(), Some("foobar"));
        assert_eq!(c(b"abc...").as_deref(), Some("abc"));
        assert_eq!(c(b"a. . .").as_deref(), Some("a"));
        assert_eq!(c(b".hidden").as_deref(), Some(".hidden"));
        assert_eq!(c(b"a...b").as_deref(), Some("a...b"));
    }

    #[test]
    fn windows_device_names_get_a_prefix() {
        assert_eq!(c(b"CON").as_deref(), Some("_CON"));
        assert_eq!(c(b"nul.txt").as_deref(), Some("_nul.txt"));
        assert_eq!(c(b"com1.tar.gz").as_deref(), Some("_com1.tar.gz"));
        assert_eq!(c(b"LPT9 .x").as_deref(), Some("_LPT9 .x"));
        assert_eq!(c(b"CONSOLE").as_deref(), Some("CONSOLE"));
        assert_eq!(c(b"aux_").as_deref(), Some("aux_"));
    }

    #[test]
    fn invalid_utf8_is_replaced_per_sequence() {
        assert_eq!(c(b"file\x80.foo").as_deref(), Some("file_.foo"));
        assert_eq!(c(b"filename\xc2").as_deref(), Some("filename_"));
        assert_eq!(
            c("\u{3c0}file.\u{1f600}".as_bytes()).as_deref(),
            Some("\u{3c0}file.\u{1f600}")
        );
        // An overlong encoding of '.' must not become a dot.
        assert_eq!(c(b"x\xc0\xae").as_deref(), Some("x__"));
    }

    #[test]
    fn bidi_controls_are_removed() {
        assert_eq!(
            c("evil\u{202e}gpj.exe".as_bytes()).as_deref(),
            Some("evilgpj.exe")
        );
    }

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.test", "abcdefghi_".repeat(30));
        let out = c(long.as_bytes()).unwrap();
        assert_eq!(out.len(), MAX_COMPONENT_BYTES);
        assert!(out.ends_with(".test"));
        // Multi-byte characters are never split.
        let wide = format!("{}.jpg", "\u{2014}".repeat(100));
        let out = c(wide.as_bytes()).unwrap();
        assert!(out.len() <= MAX_COMPONENT_BYTES);
        assert!(out.ends_with("\u{2014}.jpg"));
        // No extension: a plain cut.
        let out = c("x".repeat(300).as_bytes()).unwrap();
        assert_eq!(out.len(), MAX_COMPONENT_BYTES);
    }

    #[test]
    fn cutting_never_uncovers_a_device_name() {
        let spaced = format!("CON{}x", " ".repeat(300));
        assert_eq!(c(spaced.as_bytes()).as_deref(), Some("_CON"));
        let full = format!("CON{}x", " ".repeat(251));
        assert_eq!(c(full.as_bytes()).as_deref(), Some(full.as_str()));
        let renamed = fit(&full, ".1");
        assert!(!is_windows_device_name(&renamed), "{renamed:?}");
        assert!(renamed.starts_with("_CON ") && renamed.ends_with(" .1"));
        assert_eq!(renamed.len(), MAX_COMPONENT_BYTES);
    }

    #[test]
    fn fit_inserts_counters_before_the_extension() {
        assert_eq!(fit("bar.txt", ".1"), "bar.1.txt");
        assert_eq!(fit("bar", ".2"), "bar.2");
        assert_eq!(fit(".bashrc", ".1"), ".bashrc.1");
        let long = format!("{}.txt", "a".repeat(251));
        let out = fit(&long, ".12");
        assert_eq!(out.len(), MAX_COMPONENT_BYTES);
        assert!(out.ends_with("a.12.txt"));
    }
}
