//! Output tails: what a report keeps of a command's output.
//!
//! Why not just the last N characters: a failing `cargo build` ends with the
//! rustc command line it ran (several KB on one line), so a plain character
//! tail keeps that line and drops the error above it. Every long line is
//! shortened to its beginning and end first, and only then is the tail cut.

/// A line longer than this keeps its first and last [`KEEP`] characters.
const LONG_LINE: usize = 400;
const KEEP: usize = 160;

/// The last `max_chars` characters of `text` after every line longer than
/// 400 characters was shortened to its first and last 160 (with the count of
/// characters left out in between).
pub fn tail(text: &str, max_chars: usize) -> String {
    let mut short = String::with_capacity(text.len().min(max_chars * 2));
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            short.push('\n');
        }
        let n = line.chars().count();
        if n > LONG_LINE {
            let head: String = line.chars().take(KEEP).collect();
            let end: String = line.chars().skip(n - KEEP).collect();
            short.push_str(&head);
            short.push_str(&format!(" …[{} characters]… ", n - 2 * KEEP));
            short.push_str(&end);
        } else {
            short.push_str(line);
        }
    }
    let n = short.chars().count();
    if n <= max_chars {
        short
    } else {
        short.chars().skip(n - max_chars).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(tail("a\nb\n", 100), "a\nb\n");
    }

    #[test]
    fn the_last_characters_are_kept() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ééé", 2), "éé");
    }

    #[test]
    fn a_long_last_line_does_not_push_out_the_error_above_it() {
        let text = format!(
            "error[E0308]: mismatched types\n{}\nCaused by: rustc (exit 101)",
            "x".repeat(5000)
        );
        let t = tail(&text, 1000);
        assert!(t.starts_with("error[E0308]"), "{t}");
        assert!(t.contains("…[4680 characters]…"), "{t}");
        assert!(t.ends_with("(exit 101)"));
    }
}
