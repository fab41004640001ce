//! The adapters' parsers on what the real CLIs print. The `*-not-logged-in`,
//! `codex-401`, `codex-429`, `codex-insufficient-quota` and `codex-offline`
//! fixtures were captured from Claude Code 2.1.332 and Codex 0.171.0 (the
//! Codex ones against a loopback server answering as the OpenAI API does);
//! the other Claude fixtures are those captures with the fields of the
//! documented success / rate-limit / limit answers filled in.

use vane_core::dispatch::Outcome;
use vane_dispatch::process::Exit;
use vane_dispatch::{claude, codex, command};

const NOW: i64 = 1_800_000_000_000;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn exit(status: i32) -> Exit {
    Exit {
        status: Some(status),
        ..Exit::default()
    }
}

fn claude_of(name: &str, status: i32) -> vane_dispatch::provider::AttemptResult {
    let text = fixture(name);
    let mut s = claude::Stream::default();
    for l in text.lines() {
        s.feed(l);
    }
    let mut e = exit(status);
    e.cut_line = !text.ends_with('\n');
    s.finish(&e, NOW)
}

fn codex_of(name: &str, status: i32) -> (vane_dispatch::provider::AttemptResult, bool) {
    let mut s = codex::Stream::default();
    let mut stopped = false;
    for l in fixture(name).lines() {
        if s.feed(l) {
            stopped = true;
            break;
        }
    }
    (s.finish(&exit(status), NOW), stopped)
}

#[test]
fn claude_success_reads_usage_cost_and_model() {
    let r = claude_of("claude-success.jsonl", 0);
    assert_eq!(r.outcome(), Outcome::Succeeded, "{r:?}");
    assert_eq!(r.usage.input_tokens, 1200);
    assert_eq!(r.usage.cached_input_tokens, 24000);
    assert_eq!(r.usage.cache_write_tokens, 3000);
    assert_eq!(r.usage.output_tokens, 850);
    assert_eq!(r.reported_micros, Some(42_100));
    assert_eq!(r.num_turns, Some(4));
    // the model that did the most output
    assert_eq!(r.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    assert_eq!(
        r.session_id.as_deref(),
        Some("7fd06bb6-07a6-4900-b7a5-0c74ea347054")
    );
    assert!(r.summary.unwrap().contains("hello.txt"));
}

#[test]
fn claude_not_logged_in_is_auth() {
    let r = claude_of("claude-not-logged-in.jsonl", 1);
    assert_eq!(r.outcome(), Outcome::Auth, "{r:?}");
    assert!(r.error.unwrap().contains("Not logged in"));
}

#[test]
fn claude_limits_carry_their_reset() {
    let r = claude_of("claude-rate-limited.jsonl", 1);
    assert_eq!(r.outcome(), Outcome::RateLimited, "{r:?}");
    assert_eq!(r.resets_at_ms, Some(1_900_000_000_000));
    let r = claude_of("claude-weekly-limit.jsonl", 1);
    assert_eq!(r.outcome(), Outcome::QuotaExhausted, "{r:?}");
    assert_eq!(r.resets_at_ms, Some(1_900_300_000_000));
}

#[test]
fn claude_limits_of_the_agent_are_task_failures_and_outages_transient() {
    let r = claude_of("claude-max-turns.jsonl", 1);
    assert_eq!(r.outcome(), Outcome::TaskFailed, "{r:?}");
    assert_eq!(r.reported_micros, Some(310_000), "its cost still counts");
    let r = claude_of("claude-overloaded.jsonl", 1);
    assert_eq!(r.outcome(), Outcome::Transient, "{r:?}");
}

#[test]
fn claude_cut_crash_and_garbage_are_transient() {
    let r = claude_of("claude-cut.jsonl", 1);
    assert_eq!(r.outcome(), Outcome::Transient, "{r:?}");
    assert!(r.error.unwrap().contains("mid-line"));
    // garbage, then a crash with a stack trace on stderr
    let mut s = claude::Stream::default();
    s.feed("\u{1b}[31mnot json at all");
    s.feed("{\"type\":");
    let mut e = exit(134);
    e.stderr = b"Error: something broke\n    at main (cli.js:1:1)\n".to_vec();
    let r = s.finish(&e, NOW);
    assert_eq!(r.outcome(), Outcome::Transient, "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("134"), "{r:?}");
    assert_eq!(r.detail["unparsed_lines"], 2);
    // a hang ends as a timeout; a missing executable is a configuration fault
    let r = claude::Stream::default().finish(
        &Exit {
            timed_out: true,
            ..Exit::default()
        },
        NOW,
    );
    assert_eq!(r.outcome(), Outcome::Timeout);
    let r = claude::Stream::default().finish(
        &Exit {
            spawn_error: Some("cannot start `claude`: No such file".into()),
            ..Exit::default()
        },
        NOW,
    );
    assert_eq!(r.outcome(), Outcome::Auth);
}

#[test]
fn claude_old_usage_limit_text_gives_its_epoch() {
    let mut s = claude::Stream::default();
    s.feed(r#"{"type":"result","subtype":"success","is_error":true,"result":"Claude AI usage limit reached|1900000000","session_id":"x","total_cost_usd":0,"usage":{}}"#);
    let r = s.finish(&exit(1), NOW);
    assert_eq!(r.outcome(), Outcome::QuotaExhausted, "{r:?}");
    assert_eq!(r.resets_at_ms, Some(1_900_000_000_000));
}

#[test]
fn codex_success_reads_usage() {
    let (r, _) = codex_of("codex-success.jsonl", 0);
    assert_eq!(r.outcome(), Outcome::Succeeded, "{r:?}");
    // Codex's input_tokens include the cached ones
    assert_eq!(r.usage.input_tokens, 4000);
    assert_eq!(r.usage.cached_input_tokens, 20000);
    assert_eq!(r.usage.output_tokens, 900);
    assert_eq!(
        r.session_id.as_deref(),
        Some("01a236e0-5b1c-7a40-9d2e-6f3b8c1d2e4f")
    );
    assert_eq!(r.summary.as_deref(), Some("Wrote hello.txt through vane."));
}

#[test]
fn codex_real_failures_are_classified() {
    let (r, _) = codex_of("codex-401.jsonl", 1);
    assert_eq!(r.outcome(), Outcome::Auth, "{r:?}");
    assert!(r.error.unwrap().contains("401 Unauthorized"));
    let (r, _) = codex_of("codex-insufficient-quota.jsonl", 1);
    assert_eq!(r.outcome(), Outcome::QuotaExhausted, "{r:?}");
    let (r, _) = codex_of("codex-429.jsonl", 1);
    assert_eq!(r.outcome(), Outcome::RateLimited, "{r:?}");
    // unreachable: ends at once instead of waiting for the network forever
    let (r, stopped) = codex_of("codex-offline.jsonl", 143);
    assert!(stopped, "the stream asks to stop");
    assert_eq!(r.outcome(), Outcome::Transient, "{r:?}");
    assert!(r.error.unwrap().contains("Name does not resolve"));
}

#[test]
fn command_contract() {
    let mut s = command::Stream::default();
    s.feed("working…");
    s.feed(r#"{"outcome":"rate_limited","error":"slow down","retry_after_s":30,"usage":{"input_tokens":10,"output_tokens":2},"cost_usd":0.001}"#);
    let r = s.finish(&exit(0), NOW);
    assert_eq!(r.outcome(), Outcome::RateLimited);
    assert_eq!(r.resets_at_ms, Some(NOW + 30_000));
    assert_eq!(r.reported_micros, Some(1000));
    assert_eq!(r.usage.input_tokens, 10);
    // no result line: the exit status decides
    assert_eq!(
        command::Stream::default().finish(&exit(0), NOW).outcome(),
        Outcome::Succeeded
    );
    let mut s = command::Stream::default();
    s.feed("fatal: Invalid API key");
    assert_eq!(s.finish(&exit(1), NOW).outcome(), Outcome::Auth);
    let mut s = command::Stream::default();
    s.feed(r#"{"outcome":"bogus"}"#);
    assert_eq!(s.finish(&exit(0), NOW).outcome(), Outcome::Transient);
}

/// Agents' output is untrusted: every parser takes any bytes — each fixture
/// cut at every character, and mutated deterministically — without a panic,
/// and always ends with a class.
#[test]
fn parsers_take_any_output() {
    let fixtures = [
        "claude-success.jsonl",
        "claude-not-logged-in.jsonl",
        "claude-rate-limited.jsonl",
        "codex-401.jsonl",
        "codex-success.jsonl",
        "codex-offline.jsonl",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let feed_all = |text: &str| {
        let mut c = claude::Stream::default();
        let mut x = codex::Stream::default();
        let mut m = command::Stream::default();
        for l in text.lines() {
            c.feed(l);
            x.feed(l);
            m.feed(l);
        }
        let e = exit(1);
        assert!(c.finish(&e, NOW).outcome.is_some());
        assert!(x.finish(&e, NOW).outcome.is_some());
        assert!(m.finish(&e, NOW).outcome.is_some());
    };
    for f in fixtures {
        let text = fixture(f);
        let chars: Vec<char> = text.chars().collect();
        for cut in (0..chars.len()).step_by(7) {
            feed_all(&chars[..cut].iter().collect::<String>());
        }
        for _ in 0..300 {
            let mut bytes = text.clone().into_bytes();
            for _ in 0..1 + next() % 8 {
                let i = (next() % bytes.len() as u64) as usize;
                bytes[i] = (next() % 256) as u8;
            }
            feed_all(&String::from_utf8_lossy(&bytes));
        }
    }
}
