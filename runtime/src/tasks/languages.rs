//! Language names for translation prompts. Models follow "from German to French" far better
//! than "from de to fr", so codes are resolved to English names.

/// ISO 639-1 code and English name of each language the translation task accepts.
pub const LANGUAGES: &[(&str, &str)] = &[
    ("ar", "Arabic"),
    ("bg", "Bulgarian"),
    ("bn", "Bengali"),
    ("ca", "Catalan"),
    ("cs", "Czech"),
    ("da", "Danish"),
    ("de", "German"),
    ("el", "Greek"),
    ("en", "English"),
    ("es", "Spanish"),
    ("et", "Estonian"),
    ("fa", "Persian"),
    ("fi", "Finnish"),
    ("fr", "French"),
    ("he", "Hebrew"),
    ("hi", "Hindi"),
    ("hr", "Croatian"),
    ("hu", "Hungarian"),
    ("id", "Indonesian"),
    ("it", "Italian"),
    ("ja", "Japanese"),
    ("ko", "Korean"),
    ("lt", "Lithuanian"),
    ("lv", "Latvian"),
    ("ms", "Malay"),
    ("nl", "Dutch"),
    ("no", "Norwegian"),
    ("pl", "Polish"),
    ("pt", "Portuguese"),
    ("ro", "Romanian"),
    ("ru", "Russian"),
    ("sk", "Slovak"),
    ("sl", "Slovenian"),
    ("sr", "Serbian"),
    ("sv", "Swedish"),
    ("sw", "Swahili"),
    ("th", "Thai"),
    ("tr", "Turkish"),
    ("uk", "Ukrainian"),
    ("ur", "Urdu"),
    ("vi", "Vietnamese"),
    ("zh", "Chinese"),
];

/// The English name for an ISO 639-1 code or a language name (any case), or None.
/// Region suffixes are accepted: "pt-BR" and "en_US" resolve like "pt" and "en".
pub fn language_name(code_or_name: &str) -> Option<&'static str> {
    let wanted = code_or_name.trim();
    let base = wanted.split(['-', '_']).next().unwrap_or(wanted);
    LANGUAGES.iter().find(|(code, name)| code.eq_ignore_ascii_case(base) || name.eq_ignore_ascii_case(wanted)).map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_names_and_regions() {
        assert_eq!(language_name("de"), Some("German"));
        assert_eq!(language_name("DE"), Some("German"));
        assert_eq!(language_name("german"), Some("German"));
        assert_eq!(language_name("pt-BR"), Some("Portuguese"));
        assert_eq!(language_name("en_US"), Some("English"));
        assert_eq!(language_name("xx"), None);
        assert_eq!(language_name(""), None);
    }
}
