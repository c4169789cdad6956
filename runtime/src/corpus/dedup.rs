//! Exact de-duplication: of whole documents, and of lines repeated across the corpus.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use super::CHUNK;

/// Which documents to keep: each one whose text (SHA-256) was not seen before. `progress` is
/// given the documents done so far; None when it returned false.
pub(super) fn exact_duplicates(docs: &[String], mut progress: impl FnMut(usize) -> bool) -> Option<Vec<bool>> {
    let mut seen: HashSet<[u8; 32]> = HashSet::with_capacity(docs.len());
    let mut keep = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        if i % CHUNK == 0 && !progress(i) {
            return None;
        }
        keep.push(seen.insert(Sha256::digest(doc.as_bytes()).into()));
    }
    progress(docs.len()).then_some(keep)
}

/// Remove every line of at least `min_chars` characters (after trimming) that appeared
/// before, in this document or an earlier one; lines are compared trimmed. Returns how many
/// documents lost a line (a document may be left blank), None when `progress` cancelled.
pub(super) fn duplicate_lines(docs: &mut [String], min_chars: usize, mut progress: impl FnMut(usize) -> bool) -> Option<usize> {
    // 128 bits of SHA-256 per distinct line: a collision, which would drop a line that is not
    // a duplicate, is out of reach at any corpus size.
    let mut seen: HashSet<[u8; 16]> = HashSet::new();
    let mut changed = 0;
    for (i, doc) in docs.iter_mut().enumerate() {
        if i % CHUNK == 0 && !progress(i) {
            return None;
        }
        let mut kept: Vec<&str> = Vec::new();
        let mut dropped = false;
        for line in doc.split('\n') {
            let trimmed = line.trim();
            // Blank lines are never duplicates; `nth` counts no further than it needs.
            if !trimmed.is_empty() && trimmed.chars().nth(min_chars.saturating_sub(1)).is_some() {
                let digest = Sha256::digest(trimmed.as_bytes());
                let mut key = [0u8; 16];
                key.copy_from_slice(&digest[..16]);
                if !seen.insert(key) {
                    dropped = true;
                    continue;
                }
            }
            kept.push(line);
        }
        if dropped {
            *doc = tidy_lines(&kept);
            changed += 1;
        }
    }
    progress(docs.len()).then_some(changed)
}

/// The lines of a document that lost some: without the blank runs the removals left behind
/// (at most one blank line in a row, none at either end).
fn tidy_lines(lines: &[&str]) -> String {
    let mut out = String::new();
    let mut blank_before = false;
    for line in lines {
        if line.trim().is_empty() {
            blank_before = true;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_before { "\n\n" } else { "\n" });
        }
        blank_before = false;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn an_exact_duplicate_document_goes_and_the_first_stays() {
        let docs = strings(&["alpha", "beta", "alpha", "Alpha", "beta"]);
        assert_eq!(exact_duplicates(&docs, |_| true).unwrap(), [true, true, false, true, false]);
        assert!(exact_duplicates(&docs, |_| false).is_none());
    }

    #[test]
    fn repeated_long_lines_go_beyond_their_first_occurrence_and_short_lines_stay() {
        let footer = "Copyright 2024 Example Press. All rights reserved.";
        let mut docs = vec![
            format!("First story.\nAmen.\n{footer}"),
            format!("Second story.\nAmen.\n\n  {footer}  \n\nThe end."),
            footer.to_string(),
            "Amen.\nAmen.".to_string(),
        ];
        let changed = duplicate_lines(&mut docs, 40, |_| true).unwrap();
        assert_eq!(changed, 2);
        assert_eq!(docs[0], format!("First story.\nAmen.\n{footer}"));
        // The removal leaves one blank line between the paragraphs it separated, not two.
        assert_eq!(docs[1], "Second story.\nAmen.\n\nThe end.");
        assert_eq!(docs[2], "", "a document of only a repeated line is left blank (and then removed)");
        assert_eq!(docs[3], "Amen.\nAmen.", "short lines are never duplicates");

        // A repeat within one document counts too; with a minimum of 1 even short lines go.
        let mut docs = strings(&["Amen.\nAmen.\nSo be it."]);
        assert_eq!(duplicate_lines(&mut docs, 1, |_| true), Some(1));
        assert_eq!(docs[0], "Amen.\nSo be it.");
    }
}
