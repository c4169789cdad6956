//! The text transforms of corpus cleaning, one per step. Each returns the text borrowed when
//! it has nothing to change, so that a clean corpus is not copied.

use std::borrow::Cow;

use unicode_normalization::{is_nfc, is_nfkc, UnicodeNormalization};

use super::Normalization;

/// Elements whose content is not text (scripts, style sheets): removed with their tags.
const RAW_TEXT_ELEMENTS: [&str; 2] = ["script", "style"];

/// Elements that begin or end a block: their tags become a line break, so that paragraphs,
/// list items and table rows stay apart.
const BLOCK_ELEMENTS: [&str; 27] = [
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "dd",
    "div",
    "dl",
    "dt",
    "figcaption",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "tr",
    "ul",
];

/// Elements whose tags become a space: table cells.
const CELL_ELEMENTS: [&str; 2] = ["td", "th"];

/// The named character references decoded; any other `&name;` stays as it is.
const NAMED_ENTITIES: [(&str, char); 24] = [
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("nbsp", '\u{a0}'),
    ("copy", '©'),
    ("reg", '®'),
    ("trade", '™'),
    ("deg", '°'),
    ("middot", '·'),
    ("bull", '•'),
    ("hellip", '…'),
    ("ndash", '–'),
    ("mdash", '—'),
    ("lsquo", '‘'),
    ("rsquo", '’'),
    ("ldquo", '“'),
    ("rdquo", '”'),
    ("laquo", '«'),
    ("raquo", '»'),
    ("euro", '€'),
    ("pound", '£'),
    ("times", '×'),
];

/// Remove HTML/XML markup: comments (`<!-- ... -->`), tags (`<` followed by a letter, `/`,
/// `!` or `?`, up to the next `>`), and the content of `<script>` and `<style>` elements;
/// block-level tags (p, div, br, li, h1-h6, tr, ...) become a line break and table cells a
/// space, so words on either side stay apart. Then character references are decoded: numeric
/// ones (`&#39;`, `&#x27;`) and the common named ones (`&amp;`, `&lt;`, `&gt;`, `&quot;`,
/// `&apos;`, `&nbsp;`, typographic quotes and dashes, ...); an unknown or invalid one stays as
/// written.
///
/// Not an HTML parser: a `>` inside an attribute value ends the tag early, and plain text such
/// as `x<y and y>z` loses what lies between the brackets. Meant for text taken from web pages
/// or XML dumps, not for code.
pub fn strip_markup(text: &str) -> Cow<'_, str> {
    if !text.contains('<') && !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let stripped = if text.contains('<') { Cow::Owned(strip_tags(text)) } else { Cow::Borrowed(text) };
    let decoded = match decode_entities(&stripped) {
        Cow::Borrowed(_) => stripped.into_owned(),
        Cow::Owned(s) => s,
    };
    if decoded == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(decoded)
    }
}

fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('<') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let Some(tag) = Tag::parse(tail) else {
            out.push('<');
            rest = &tail[1..];
            continue;
        };
        rest = &tail[tag.len..];
        if !tag.closing && RAW_TEXT_ELEMENTS.contains(&tag.name.as_str()) {
            rest = skip_past_close(rest, &tag.name);
        }
        if BLOCK_ELEMENTS.contains(&tag.name.as_str()) {
            out.push('\n');
        } else if CELL_ELEMENTS.contains(&tag.name.as_str()) {
            out.push(' ');
        }
    }
    out.push_str(rest);
    out
}

/// A tag at the start of a text: its length in bytes, its element name (lowercase, empty for
/// comments, declarations and processing instructions), whether it closes an element.
struct Tag {
    len: usize,
    name: String,
    closing: bool,
}

impl Tag {
    fn parse(tail: &str) -> Option<Tag> {
        if let Some(comment) = tail.strip_prefix("<!--") {
            let end = comment.find("-->")?;
            return Some(Tag { len: 4 + end + 3, name: String::new(), closing: false });
        }
        let after = &tail[1..];
        let first = after.chars().next()?;
        if !(first.is_ascii_alphabetic() || matches!(first, '/' | '!' | '?')) {
            return None;
        }
        let end = after.find('>')?;
        let inner = &after[..end];
        let closing = inner.starts_with('/');
        let name: String = inner.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        let self_closing = inner.ends_with('/');
        Some(Tag { len: 1 + end + 1, name: name.to_ascii_lowercase(), closing: closing || self_closing })
    }
}

/// The text after the closing tag of `name` (any case), or nothing when it is never closed.
fn skip_past_close<'a>(text: &'a str, name: &str) -> &'a str {
    let close = format!("</{name}");
    let lower = text.to_ascii_lowercase();
    match lower.find(&close) {
        // ASCII lowercasing keeps byte offsets.
        Some(at) => match text[at..].find('>') {
            Some(end) => &text[at + end + 1..],
            None => "",
        },
        None => "",
    }
}

/// Decode the character references of `text` (see [`strip_markup`]).
fn decode_entities(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        // The longest reference decoded is `&#x10FFFF;` (10 bytes) or a name of the table.
        let decoded = tail[1..].char_indices().take(12).find(|&(_, c)| c == ';').and_then(|(semi, _)| {
            let body = &tail[1..1 + semi];
            entity(body).map(|c| (c, 1 + semi + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &tail[len..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The character of a reference's body (between `&` and `;`).
fn entity(body: &str) -> Option<char> {
    if let Some(number) = body.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        // NUL and surrogates are not characters of a text.
        return char::from_u32(code).filter(|&c| c != '\0');
    }
    NAMED_ENTITIES.iter().find(|(name, _)| *name == body).map(|&(_, c)| c)
}

/// Unicode normalisation to `form`.
pub fn normalize_unicode(text: &str, form: Normalization) -> Cow<'_, str> {
    match form {
        Normalization::Nfc if !is_nfc(text) => Cow::Owned(text.nfc().collect()),
        Normalization::Nfkc if !is_nfkc(text) => Cow::Owned(text.nfkc().collect()),
        _ => Cow::Borrowed(text),
    }
}

/// Lowercase by Unicode's rules.
pub fn lowercase(text: &str) -> Cow<'_, str> {
    let lower = text.to_lowercase();
    if lower == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(lower)
    }
}

/// Whether `c` is removed as a control character: Unicode's control characters (C0, DEL, C1)
/// except newline and tab, and the byte-order mark / zero-width no-break space.
fn is_stripped_control(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || c == '\u{feff}'
}

/// Remove control characters, keeping newline and tab.
pub fn strip_control(text: &str) -> Cow<'_, str> {
    if text.chars().any(is_stripped_control) {
        Cow::Owned(text.chars().filter(|&c| !is_stripped_control(c)).collect())
    } else {
        Cow::Borrowed(text)
    }
}

/// Normalise whitespace for prose: within each line, runs of whitespace (spaces, tabs,
/// no-break spaces, ...) become one space and the ends are trimmed; runs of blank lines become
/// one blank line, and leading and trailing blank lines go.
pub fn normalize_whitespace(text: &str) -> Cow<'_, str> {
    let mut out = String::with_capacity(text.len());
    let mut blank_before = false;
    for line in text.split('\n') {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_none() {
            blank_before = true;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_before { "\n\n" } else { "\n" });
        }
        blank_before = false;
        for (i, word) in words.enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    if out == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfkc_folds_compatibility_characters_and_nfc_keeps_them() {
        assert_eq!(normalize_unicode("ﬁnal ①", Normalization::Nfkc), "final 1");
        assert_eq!(normalize_unicode("ﬁnal", Normalization::Nfc), "ﬁnal");
        // "e" + combining acute becomes the one precomposed letter under both forms.
        assert_eq!(normalize_unicode("cafe\u{301}", Normalization::Nfc), "caf\u{e9}");
        assert_eq!(normalize_unicode("cafe\u{301}", Normalization::Nfkc), "caf\u{e9}");
        assert_eq!(normalize_unicode("ﬁ", Normalization::None), "ﬁ");
        assert!(matches!(normalize_unicode("plain text", Normalization::Nfkc), Cow::Borrowed(_)));
    }

    #[test]
    fn markup_goes_and_entities_are_decoded() {
        assert_eq!(strip_markup("<p>Fish &amp; chips</p><p>It&#39;s &lt;hot&gt; &#x263A;</p>"), "\nFish & chips\n\nIt's <hot> ☺\n");
        assert_eq!(strip_markup("a <b>bold</b> <i class=\"x\">word</i><br/>next"), "a bold word\nnext");
        assert_eq!(strip_markup("before<!-- a comment -->after"), "beforeafter");
        assert_eq!(strip_markup("<script>var x = 1 < 2;</script>kept<STYLE>p {}</STYLE> too"), "kept too");
        assert_eq!(strip_markup("<tr><td>1</td><td>2</td></tr>"), "\n 1  2 \n");
        // Not markup: a lone `<`, an unknown or unterminated reference, an invalid code point.
        assert_eq!(strip_markup("1 < 2 & 3 &bogus; &amp &#xD800; &#0;"), "1 < 2 & 3 &bogus; &amp &#xD800; &#0;");
        // A reference decodes once: `&amp;lt;` is the text `&lt;`.
        assert_eq!(strip_markup("&amp;lt;"), "&lt;");
        assert!(matches!(strip_markup("no markup here"), Cow::Borrowed(_)));
    }

    #[test]
    fn control_characters_go_except_newline_and_tab() {
        assert_eq!(strip_control("a\u{0}b\u{7}c\td\ne\u{1b}[0m\u{7f}\u{85}\u{feff}f"), "abc\td\ne[0mf");
        assert!(matches!(strip_control("tab\tand\nnewline"), Cow::Borrowed(_)));
    }

    #[test]
    fn whitespace_collapses_within_lines_and_blank_lines_collapse_to_one() {
        assert_eq!(normalize_whitespace("  a  \t b \n\n\n\n c\u{a0}\u{a0}d  \n  \n"), "a b\n\nc d");
        assert_eq!(normalize_whitespace("one\ntwo"), "one\ntwo");
        assert!(matches!(normalize_whitespace("one\n\ntwo"), Cow::Borrowed(_)));
        assert_eq!(normalize_whitespace(" \n\t "), "");
    }

    #[test]
    fn lowercase_follows_unicode() {
        assert_eq!(lowercase("ÉCOLE Straße ǅ"), "école straße ǆ");
        assert!(matches!(lowercase("already lower"), Cow::Borrowed(_)));
    }
}
