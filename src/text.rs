//! Transcript normalisation for comparisons: lower case, no punctuation, single spaces.

/// Lower-case, replace every character that is not a letter, digit or apostrophe inside a word
/// by a space, drop apostrophes, collapse white space.
pub fn normalize_transcript(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|c| *c != '\'' && *c != '’')
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                ' '
            }
        })
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn strips_case_and_punctuation() {
        assert_eq!(
            normalize_transcript("  And so, my fellow Americans!"),
            "and so my fellow americans"
        );
        assert_eq!(
            normalize_transcript("What's the weather today?"),
            "whats the weather today"
        );
    }
}
