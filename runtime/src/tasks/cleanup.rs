//! Turning a chat model's reply into the bare answer.

/// Remove a leading label such as "Translation:" or "Answer -" (case-insensitive) when it is
/// one of `labels`.
pub(crate) fn strip_label<'a>(text: &'a str, labels: &[&str]) -> &'a str {
    let trimmed = text.trim_start();
    for label in labels {
        if trimmed.len() >= label.len() && trimmed.is_char_boundary(label.len()) && trimmed[..label.len()].eq_ignore_ascii_case(label) {
            let rest = trimmed[label.len()..].trim_start();
            if let Some(rest) = rest.strip_prefix(':').or_else(|| rest.strip_prefix('-')) {
                return rest.trim_start();
            }
        }
    }
    trimmed
}

/// Keep the first `n` paragraphs (blocks separated by a blank line): what a model adds after
/// its answer ("I hope this helps", notes, alternatives) comes after a blank line.
pub(crate) fn first_paragraphs(text: &str, n: usize) -> String {
    let normalized = text.replace("\r\n", "\n");
    normalized.split("\n\n").map(str::trim).filter(|p| !p.is_empty()).take(n.max(1)).collect::<Vec<_>>().join("\n\n")
}

/// Remove one pair of matching quotes around the whole text, unless the source was quoted too.
pub(crate) fn strip_quotes<'a>(text: &'a str, source: &str) -> &'a str {
    let t = text.trim();
    for (open, close) in [('"', '"'), ('\u{201c}', '\u{201d}'), ('\u{201e}', '\u{201c}'), ('\u{ab}', '\u{bb}'), ('\'', '\'')] {
        let source_quoted = source.trim_start().starts_with(open);
        if !source_quoted && t.len() >= 2 && t.starts_with(open) && t.ends_with(close) {
            let inner = &t[open.len_utf8()..t.len() - close.len_utf8()];
            if !inner.contains(open) && !inner.contains(close) {
                return inner.trim();
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(strip_label("Translation: Hallo", &["translation"]), "Hallo");
        assert_eq!(strip_label("  answer - Paris", &["answer"]), "Paris");
        assert_eq!(strip_label("Answers are here", &["answer"]), "Answers are here");
    }

    #[test]
    fn paragraphs() {
        assert_eq!(first_paragraphs("Paris.\n\nI hope this helps!", 1), "Paris.");
        assert_eq!(first_paragraphs("\n\nParis\r\n\r\nmore", 1), "Paris");
    }

    #[test]
    fn quotes() {
        assert_eq!(strip_quotes("\"Hallo Welt\"", "Hello world"), "Hallo Welt");
        assert_eq!(strip_quotes("\"Hallo\"", "\"Hello\""), "\"Hallo\"");
        assert_eq!(strip_quotes("\u{201e}Hallo\u{201c}", "Hello"), "Hallo");
    }
}
