//! The last resort: classifying a failure by the words an agent CLI printed.
//!
//! Structured fields come first everywhere (claude's `error` field and
//! `rate_limit_event`, codex's `turn.failed`, HTTP status codes). These texts
//! are what the CLIs print when nothing structured says why — the usage-limit
//! family above all, which both CLIs have reported only as prose in some
//! versions. Matching is case-insensitive on fixed phrases, never on a whole
//! message, so a reworded sentence still matches its key phrase.

use regex::Regex;
use std::sync::OnceLock;
use vane_core::dispatch::Outcome;

/// (phrase, class), most specific first.
const PHRASES: &[(&str, Outcome)] = &[
    // Claude Code
    ("not logged in", Outcome::Auth),
    ("please run /login", Outcome::Auth),
    ("invalid api key", Outcome::Auth),
    ("oauth token has expired", Outcome::Auth),
    ("authentication_error", Outcome::Auth),
    ("credit balance is too low", Outcome::QuotaExhausted),
    ("usage limit reached", Outcome::QuotaExhausted),
    ("limit reached", Outcome::QuotaExhausted),
    ("out of extra usage", Outcome::QuotaExhausted),
    // Codex
    ("you've hit your usage limit", Outcome::QuotaExhausted),
    ("usage_limit_reached", Outcome::QuotaExhausted),
    ("quota exceeded", Outcome::QuotaExhausted),
    ("insufficient_quota", Outcome::QuotaExhausted),
    ("401 unauthorized", Outcome::Auth),
    ("403 forbidden", Outcome::Auth),
    ("missing bearer", Outcome::Auth),
    ("invalid_api_key", Outcome::Auth),
    ("429 too many requests", Outcome::RateLimited),
    ("rate limit", Outcome::RateLimited),
    ("rate_limit", Outcome::RateLimited),
    ("overloaded", Outcome::Transient),
    ("stream disconnected", Outcome::Transient),
    ("internal server error", Outcome::Transient),
    ("502 bad gateway", Outcome::Transient),
    ("503 service unavailable", Outcome::Transient),
    ("connection refused", Outcome::Transient),
    ("timed out", Outcome::Transient),
];

/// The class a failure text names, if any.
pub fn classify(text: &str) -> Option<Outcome> {
    let t = text.to_lowercase();
    PHRASES.iter().find(|(p, _)| t.contains(p)).map(|(_, o)| *o)
}

/// A reset time a text gives, as ms since the epoch: Claude Code's old
/// `Claude AI usage limit reached|1767225600` (epoch seconds after a bar),
/// and "try again in 2 days 3 hours 5 minutes" / "resets in 45 minutes".
pub fn reset_time(text: &str, now_ms: i64) -> Option<i64> {
    static EPOCH: OnceLock<Regex> = OnceLock::new();
    static IN: OnceLock<Regex> = OnceLock::new();
    let epoch = EPOCH.get_or_init(|| Regex::new(r"limit reached\|(\d{9,11})").expect("regex"));
    if let Some(c) = epoch.captures(text) {
        return c[1].parse::<i64>().ok().map(|s| s * 1000);
    }
    let rel = IN.get_or_init(|| {
        Regex::new(r"(?i)(?:try again|resets?) in ((?:\s*\d+\s*(?:days?|hours?|hrs?|minutes?|mins?|seconds?|secs?|[dhms])\b,?(?:\s*and)?)+)")
            .expect("regex")
    });
    let c = rel.captures(text)?;
    static PART: OnceLock<Regex> = OnceLock::new();
    let part = PART.get_or_init(|| Regex::new(r"(\d+)\s*([a-z]+)").expect("regex"));
    let mut secs = 0i64;
    for p in part.captures_iter(&c[1].to_lowercase()) {
        let n: i64 = p[1].parse().ok()?;
        secs += n * match &p[2][..1] {
            "d" => 86_400,
            "h" => 3_600,
            "m" => 60,
            _ => 1,
        };
    }
    (secs > 0).then_some(now_ms + secs * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_classify() {
        assert_eq!(
            classify("Not logged in · Please run /login"),
            Some(Outcome::Auth)
        );
        assert_eq!(
            classify("You've hit your usage limit. Upgrade to Pro or try again in 2 days"),
            Some(Outcome::QuotaExhausted)
        );
        assert_eq!(
            classify("exceeded retry limit, last status: 429 Too Many Requests"),
            Some(Outcome::RateLimited)
        );
        assert_eq!(classify("the tests fail"), None);
    }

    #[test]
    fn reset_times() {
        assert_eq!(
            reset_time("Claude AI usage limit reached|1767225600", 0),
            Some(1_767_225_600_000)
        );
        assert_eq!(
            reset_time("try again in 2 days 3 hours 5 minutes.", 1000),
            Some(1000 + (2 * 86_400 + 3 * 3600 + 5 * 60) * 1000)
        );
        assert_eq!(reset_time("resets in 45 minutes", 0), Some(45 * 60_000));
        assert_eq!(reset_time("no time here", 0), None);
    }
}
