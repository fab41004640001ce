//! The domain of dispatch: how an attempt ended, what it used, what it cost,
//! and what that does to its provider's health. Pure: the caller passes the
//! clock in, the store keeps the state, the runner acts on it.
//!
//! Why here and not in the runner: the same rules are read by `vane run`,
//! `vane status`, `vane providers` and the store's transaction that records an
//! attempt's end, and they must agree; a function of (state, event, now) is
//! the one place they can.

use serde::{Deserialize, Serialize};

/// How a dispatch attempt ended. Only `RateLimited`, `QuotaExhausted`,
/// `Auth`, `Transient` and `Timeout` are the provider's fault (they count
/// against its health and may fail over); `TaskFailed` means the agent ran
/// and the task is not done — never a failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// started, not finished (or its runner died: see `Interrupted`)
    Running,
    /// the agent finished and the task's critics passed (or it has none)
    Succeeded,
    /// the agent ran; the task is not done (critics failed, agent gave up)
    TaskFailed,
    /// the provider refused for now; `resets_at_ms` says until when
    RateLimited,
    /// the account's usage or quota is used up
    QuotaExhausted,
    /// credentials missing or refused, or the provider is misconfigured:
    /// not retryable until someone fixes it
    Auth,
    /// a fault that may pass: a 5xx, an overloaded API, a crash, a cut stream
    Transient,
    /// the attempt ran past its timeout and was stopped
    Timeout,
    /// its runner was stopped or died before the attempt ended
    Interrupted,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Running,
        Outcome::Succeeded,
        Outcome::TaskFailed,
        Outcome::RateLimited,
        Outcome::QuotaExhausted,
        Outcome::Auth,
        Outcome::Transient,
        Outcome::Timeout,
        Outcome::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Succeeded => "succeeded",
            Outcome::TaskFailed => "task_failed",
            Outcome::RateLimited => "rate_limited",
            Outcome::QuotaExhausted => "quota_exhausted",
            Outcome::Auth => "auth",
            Outcome::Transient => "transient",
            Outcome::Timeout => "timeout",
            Outcome::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The provider is at fault: the task may go to the next provider.
    pub fn is_provider_fault(self) -> bool {
        matches!(
            self,
            Outcome::RateLimited
                | Outcome::QuotaExhausted
                | Outcome::Auth
                | Outcome::Transient
                | Outcome::Timeout
        )
    }
}

/// Tokens an attempt used, as its provider reported them.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Usage {
    /// input tokens not read from a cache
    pub input_tokens: u64,
    /// input tokens read from the provider's prompt cache
    pub cached_input_tokens: u64,
    /// input tokens written to the prompt cache (Anthropic bills them apart)
    pub cache_write_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, o: &Usage) {
        self.input_tokens += o.input_tokens;
        self.cached_input_tokens += o.cached_input_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.output_tokens += o.output_tokens;
    }
    pub fn total(&self) -> u64 {
        self.input_tokens + self.cached_input_tokens + self.cache_write_tokens + self.output_tokens
    }
}

/// USD per million tokens; cost is computed in integer micro-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    #[serde(default)]
    pub cached_input: Option<f64>,
    #[serde(default)]
    pub cache_write: Option<f64>,
    pub output: f64,
}

/// One USD in micro-dollars.
pub const MICROS: i64 = 1_000_000;

fn per_mtok_micros(usd_per_mtok: f64) -> i128 {
    // micro-dollars per million tokens, exact for any price with ≤ 6 decimals
    (usd_per_mtok * MICROS as f64).round() as i128
}

impl Price {
    /// The cost of `u` in micro-dollars, rounded up (a ledger never
    /// under-counts): cached input at `cached_input` (else the input price),
    /// cache writes at `cache_write` (else the input price).
    pub fn cost_micros(&self, u: &Usage) -> i64 {
        let parts = [
            (u.input_tokens, self.input),
            (
                u.cached_input_tokens,
                self.cached_input.unwrap_or(self.input),
            ),
            (u.cache_write_tokens, self.cache_write.unwrap_or(self.input)),
            (u.output_tokens, self.output),
        ];
        let numerator: i128 = parts
            .iter()
            .map(|(t, p)| *t as i128 * per_mtok_micros(*p))
            .sum();
        let m = 1_000_000i128;
        ((numerator + m - 1) / m) as i64
    }
}

/// Dollars for people: `$1.234567`.
pub fn usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    format!("{sign}${}.{:06}", m / 1_000_000, m % 1_000_000)
}

/// A provider's health as dispatch sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// takes attempts
    Ok,
    /// rate-limited or out of quota until `cooling_until_ms`
    Cooling,
    /// the circuit breaker opened after repeated faults, until `cooling_until_ms`
    Open,
    /// credentials or configuration refused: takes nothing until reset
    Disabled,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Ok => "ok",
            HealthState::Cooling => "cooling",
            HealthState::Open => "open",
            HealthState::Disabled => "disabled",
        }
    }
    pub fn parse(s: &str) -> Option<HealthState> {
        [
            HealthState::Ok,
            HealthState::Cooling,
            HealthState::Open,
            HealthState::Disabled,
        ]
        .into_iter()
        .find(|h| h.as_str() == s)
    }
}

/// The breaker's numbers (`[dispatch.breaker]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerPolicy {
    /// consecutive provider faults that open the circuit (LiteLLM: 3)
    pub allowed_fails: u32,
    /// how long an open circuit stays open, seconds (LiteLLM: 5)
    pub cooldown_s: u64,
    /// the circuit also opens when more than this share of the attempts in
    /// the last minute failed (LiteLLM: 0.5)...
    pub failure_rate: f64,
    /// ...and at least this many attempts were made in that minute
    pub min_attempts: u32,
    /// a usage or quota limit with no reset time given cools this long
    pub quota_cooldown_s: u64,
    /// a rate limit with no reset time given cools this long
    pub rate_limit_cooldown_s: u64,
    /// the longest wait any reset time or Retry-After may impose
    pub max_cooldown_s: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            allowed_fails: 3,
            cooldown_s: 30,
            failure_rate: 0.5,
            min_attempts: 4,
            quota_cooldown_s: 3600,
            rate_limit_cooldown_s: 60,
            max_cooldown_s: 6 * 3600,
        }
    }
}

/// A provider's recorded health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProviderHealth {
    pub provider: String,
    pub state: HealthState,
    /// until when a cooling or open provider takes nothing (ms since epoch)
    pub cooling_until_ms: Option<i64>,
    pub consecutive_failures: u32,
    /// start of the current one-minute window, and its attempts and faults
    pub window_start_ms: i64,
    pub window_attempts: u32,
    pub window_failures: u32,
    pub last_outcome: Option<Outcome>,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

impl ProviderHealth {
    pub fn new(provider: &str, now: i64) -> ProviderHealth {
        ProviderHealth {
            provider: provider.to_string(),
            state: HealthState::Ok,
            cooling_until_ms: None,
            consecutive_failures: 0,
            window_start_ms: now,
            window_attempts: 0,
            window_failures: 0,
            last_outcome: None,
            last_error: None,
            last_error_at_ms: None,
            updated_at_ms: now,
        }
    }

    /// Takes an attempt now? A cooling or open provider becomes usable again
    /// once its time is up (half-open: the next attempt decides).
    pub fn available(&self, now: i64) -> bool {
        match self.state {
            HealthState::Ok => true,
            HealthState::Disabled => false,
            HealthState::Cooling | HealthState::Open => {
                self.cooling_until_ms.is_none_or(|t| now >= t)
            }
        }
    }

    /// The health after an attempt ended with `outcome` (`resets_at_ms`: the
    /// provider's own reset or Retry-After time, when it gave one).
    pub fn after(
        &self,
        outcome: Outcome,
        error: Option<&str>,
        resets_at_ms: Option<i64>,
        now: i64,
        p: &BreakerPolicy,
    ) -> ProviderHealth {
        let mut h = self.clone();
        h.updated_at_ms = now;
        if now - h.window_start_ms >= 60_000 {
            h.window_start_ms = now;
            h.window_attempts = 0;
            h.window_failures = 0;
        }
        if outcome == Outcome::Running || outcome == Outcome::Interrupted {
            return h;
        }
        h.window_attempts += 1;
        h.last_outcome = Some(outcome);
        let cap = |t: i64| t.min(now + p.max_cooldown_s as i64 * 1000).max(now);
        if !outcome.is_provider_fault() {
            h.state = HealthState::Ok;
            h.cooling_until_ms = None;
            h.consecutive_failures = 0;
            return h;
        }
        h.window_failures += 1;
        h.consecutive_failures += 1;
        h.last_error = error.map(|e| e.chars().take(500).collect());
        h.last_error_at_ms = Some(now);
        match outcome {
            Outcome::Auth => {
                h.state = HealthState::Disabled;
                h.cooling_until_ms = None;
            }
            Outcome::RateLimited => {
                h.state = HealthState::Cooling;
                h.cooling_until_ms = Some(cap(
                    resets_at_ms.unwrap_or(now + p.rate_limit_cooldown_s as i64 * 1000)
                ));
            }
            Outcome::QuotaExhausted => {
                h.state = HealthState::Cooling;
                h.cooling_until_ms = Some(cap(
                    resets_at_ms.unwrap_or(now + p.quota_cooldown_s as i64 * 1000)
                ));
            }
            _ => {
                let rate_tripped = h.window_attempts >= p.min_attempts
                    && (h.window_failures as f64) > p.failure_rate * h.window_attempts as f64;
                if h.consecutive_failures >= p.allowed_fails || rate_tripped {
                    h.state = HealthState::Open;
                    let until = now + p.cooldown_s as i64 * 1000;
                    h.cooling_until_ms = Some(cap(resets_at_ms.map_or(until, |r| r.max(until))));
                } else if let Some(r) = resets_at_ms {
                    // a transient fault with a Retry-After: honour it
                    h.state = HealthState::Cooling;
                    h.cooling_until_ms = Some(cap(r));
                }
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_exact_micro_dollars_rounded_up() {
        let p = Price {
            input: 3.0,
            cached_input: Some(0.3),
            cache_write: Some(3.75),
            output: 15.0,
        };
        let u = Usage {
            input_tokens: 1_000_000,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            output_tokens: 0,
        };
        assert_eq!(p.cost_micros(&u), 3_000_000);
        let u = Usage {
            input_tokens: 1,
            cached_input_tokens: 10,
            cache_write_tokens: 100,
            output_tokens: 1000,
        };
        // 3 + 3 + 375 + 15000 micro-dollars
        assert_eq!(p.cost_micros(&u), 15_381);
        let tiny = Price {
            input: 0.15,
            cached_input: None,
            cache_write: None,
            output: 0.6,
        };
        let one = Usage {
            input_tokens: 1,
            ..Default::default()
        };
        assert_eq!(
            tiny.cost_micros(&one),
            1,
            "0.15 micro-dollars round up to 1"
        );
        let u = Usage {
            input_tokens: 12_345,
            cached_input_tokens: 20_000,
            cache_write_tokens: 1_000,
            output_tokens: 2_000,
        };
        // 37035 + 6000 + 3750 + 30000 = 76785
        assert_eq!(p.cost_micros(&u), 76_785);
        let no_cache_price = Price {
            input: 2.0,
            cached_input: None,
            cache_write: None,
            output: 8.0,
        };
        let u = Usage {
            input_tokens: 0,
            cached_input_tokens: 500_000,
            cache_write_tokens: 0,
            output_tokens: 0,
        };
        assert_eq!(no_cache_price.cost_micros(&u), 1_000_000);
        assert_eq!(usd(1_234_567), "$1.234567");
        assert_eq!(usd(5), "$0.000005");
    }

    #[test]
    fn breaker_opens_after_allowed_fails_and_recovers() {
        let p = BreakerPolicy {
            allowed_fails: 3,
            cooldown_s: 5,
            min_attempts: 100,
            ..Default::default()
        };
        let mut h = ProviderHealth::new("a", 0);
        for i in 0..2 {
            h = h.after(Outcome::Transient, Some("500"), None, i, &p);
            assert_eq!(h.state, HealthState::Ok);
        }
        h = h.after(Outcome::Transient, Some("500"), None, 10, &p);
        assert_eq!(h.state, HealthState::Open);
        assert!(!h.available(10 + 4_999));
        assert!(h.available(10 + 5_000));
        // a task failure is not the provider's fault: it closes the circuit
        h = h.after(Outcome::TaskFailed, None, None, 6_000, &p);
        assert_eq!(h.state, HealthState::Ok);
        assert_eq!(h.consecutive_failures, 0);
    }

    #[test]
    fn breaker_opens_on_failure_rate_in_a_minute() {
        let p = BreakerPolicy {
            allowed_fails: 100,
            min_attempts: 4,
            ..Default::default()
        };
        let mut h = ProviderHealth::new("a", 0);
        h = h.after(Outcome::Succeeded, None, None, 1, &p);
        h = h.after(Outcome::Transient, None, None, 2, &p);
        h = h.after(Outcome::Succeeded, None, None, 3, &p);
        h = h.after(Outcome::Transient, None, None, 4, &p);
        assert_eq!(h.state, HealthState::Ok, "2 of 4 is not more than half");
        h = h.after(Outcome::Transient, None, None, 5, &p);
        assert_eq!(h.state, HealthState::Open, "3 of 5");
        // a minute later the window starts over
        let h2 = h.after(Outcome::Succeeded, None, None, 70_000, &p);
        assert_eq!(h2.window_attempts, 1);
    }

    #[test]
    fn limits_cool_until_the_reset_and_auth_disables() {
        let p = BreakerPolicy::default();
        let h = ProviderHealth::new("a", 0);
        let r = h.after(Outcome::RateLimited, Some("429"), Some(90_000), 1_000, &p);
        assert_eq!(
            (r.state, r.cooling_until_ms),
            (HealthState::Cooling, Some(90_000))
        );
        let q = h.after(Outcome::QuotaExhausted, None, None, 1_000, &p);
        assert_eq!(q.cooling_until_ms, Some(1_000 + 3_600_000));
        let far = h.after(Outcome::QuotaExhausted, None, Some(i64::MAX / 2), 0, &p);
        assert_eq!(far.cooling_until_ms, Some(6 * 3_600_000), "capped");
        let a = h.after(Outcome::Auth, Some("invalid x-api-key"), None, 0, &p);
        assert_eq!(a.state, HealthState::Disabled);
        assert!(!a.available(i64::MAX));
        // an interrupted attempt says nothing about the provider
        let i = r.after(Outcome::Interrupted, None, None, 2_000, &p);
        assert_eq!(i.state, HealthState::Cooling);
    }
}
