//! Turning a stream of token bytes into a stream of text pieces.
//!
//! Two concerns sit between the sampler and the caller's callback:
//! - a token's bytes can end in the middle of a UTF-8 character (byte-level BPE splits emoji
//!   and CJK characters across tokens), so bytes are held back until the character completes;
//! - a stop string can span several tokens, so text that might be the start of a stop string is
//!   held back until it is known not to be one. The stop string itself is never emitted.

/// Incremental UTF-8 decoder: feed bytes, get back the longest complete text.
#[derive(Debug, Default)]
pub struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Append `bytes` and return the text that is now complete. Invalid sequences become
    /// U+FFFD; an incomplete sequence at the end waits for the next call.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // SAFETY-free: `valid` is valid UTF-8 by construction of valid_up_to.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                        None => {
                            rest = after; // incomplete character at the end: keep it
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// End of stream: the bytes of a character the stream did not complete (generation
    /// stopped by max_tokens in the middle of a character that spans several tokens) are
    /// dropped, not returned and not turned into U+FFFD; returns how many there were.
    pub fn finish(&mut self) -> usize {
        std::mem::take(&mut self.pending).len()
    }
}

/// What [`StopFilter::push`] decided.
#[derive(Debug, PartialEq, Eq)]
pub struct Filtered {
    /// Text safe to hand to the caller now.
    pub emit: String,
    /// A stop string was found: generation must end; `emit` ends right before it.
    pub stopped: bool,
}

/// Holds back text that could be the beginning of a stop string.
#[derive(Debug)]
pub struct StopFilter {
    stops: Vec<String>,
    held: String,
}

impl StopFilter {
    pub fn new(stops: &[String]) -> Self {
        Self { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), held: String::new() }
    }

    pub fn push(&mut self, text: &str) -> Filtered {
        self.held.push_str(text);
        if self.stops.is_empty() {
            return Filtered { emit: std::mem::take(&mut self.held), stopped: false };
        }
        // Earliest complete stop string wins.
        if let Some(pos) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let emit = self.held[..pos].to_string();
            self.held.clear();
            return Filtered { emit, stopped: true };
        }
        // Longest suffix of `held` that is a proper prefix of some stop string stays held.
        let mut keep_from = self.held.len();
        for (i, _) in self.held.char_indices().rev() {
            let suffix = &self.held[i..];
            if self.stops.iter().any(|s| s.starts_with(suffix)) {
                keep_from = i;
            }
            if self.held.len() - i >= self.stops.iter().map(String::len).max().unwrap_or(0) {
                break;
            }
        }
        let emit = self.held[..keep_from].to_string();
        self.held.drain(..keep_from);
        Filtered { emit, stopped: false }
    }

    /// End of generation without a stop string: release what was held.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_pushes() {
        let emoji = "🦀".as_bytes(); // 4 bytes
        let mut d = Utf8Decoder::default();
        assert_eq!(d.push(&emoji[..1]), "");
        assert_eq!(d.push(&emoji[1..3]), "");
        assert_eq!(d.push(&emoji[3..]), "🦀");
        assert_eq!(d.push("é!".as_bytes()), "é!");
        assert_eq!(d.finish(), 0);
    }

    #[test]
    fn utf8_invalid_bytes_become_replacement_and_an_unfinished_character_is_dropped() {
        let mut d = Utf8Decoder::default();
        assert_eq!(d.push(&[b'a', 0xff, b'b']), "a\u{fffd}b");
        // Two of the three bytes of '€': held back, then dropped at the end.
        assert_eq!(d.push(&[0xe2, 0x82]), "");
        assert_eq!(d.finish(), 2);
        assert_eq!(d.finish(), 0);
        assert_eq!(d.push("€".as_bytes()), "€");
    }

    #[test]
    fn stop_string_across_pieces_is_never_emitted() {
        let mut f = StopFilter::new(&["\n\nUser:".to_string()]);
        let mut out = String::new();
        let mut stopped = false;
        for piece in ["Hello", " there", "\n", "\nUs", "er:", " more"] {
            let r = f.push(piece);
            out.push_str(&r.emit);
            if r.stopped {
                stopped = true;
                break;
            }
        }
        assert!(stopped);
        assert_eq!(out, "Hello there");
    }

    #[test]
    fn false_start_of_stop_string_is_released() {
        let mut f = StopFilter::new(&["END".to_string()]);
        assert_eq!(f.push("the E").emit, "the ");
        assert_eq!(f.push("N").emit, "");
        assert_eq!(f.push("x").emit, "ENx");
        assert_eq!(f.push("EN").emit, "");
        assert_eq!(f.finish(), "EN");
    }

    #[test]
    fn earliest_stop_wins() {
        let mut f = StopFilter::new(&["bb".to_string(), "a".to_string()]);
        let r = f.push("xxbbya");
        assert_eq!(r, Filtered { emit: "xx".into(), stopped: true });
    }
}
