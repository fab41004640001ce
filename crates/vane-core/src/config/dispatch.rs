//! `[providers.NAME]`, `[dispatch]`, `[budgets.ENV]` and `[prices]`: what
//! `vane run` dispatches to and how much it may spend.
//!
//! Secrets are never values here: a provider names the environment variable
//! that holds its key (`api_key_env`), and only the names in `env_pass` (plus
//! that key) reach the agent's process.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::dispatch::{BreakerPolicy, Price, MICROS};

/// Which adapter runs a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Claude Code headless: `claude -p … --output-format stream-json`
    Claude,
    /// `codex exec --json`
    Codex,
    /// an OpenAI-compatible chat-completions endpoint, vane's tools as functions
    Openai,
    /// any executable speaking vane's small JSON contract
    Command,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Claude => "claude",
            ProviderKind::Codex => "codex",
            ProviderKind::Openai => "openai",
            ProviderKind::Command => "command",
        }
    }
}

/// `[providers.NAME]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// The executable (claude: `claude`, codex: `codex`; required for `command`).
    #[serde(default)]
    pub command: Option<String>,
    /// Extra arguments, after vane's own.
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// Turns one attempt may take (claude `--max-turns`, the openai tool loop).
    #[serde(default = "default_max_turns")]
    pub max_turns: u32,
    /// One attempt's wall-clock limit; the agent's process group is killed then.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// The most one attempt may cost (USD): a run starts only when the budget
    /// left covers it; claude gets `--max-budget-usd` from it.
    #[serde(default = "default_ceiling")]
    pub max_cost_usd: f64,
    /// openai: the API's base URL (`…/v1`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// The environment variable holding the API key (never the key itself).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Other environment variables the agent's process may see (names).
    #[serde(default)]
    pub env_pass: Vec<String>,
    /// This provider's price when the model is not in `[prices]` or the
    /// built-in table.
    #[serde(default)]
    pub price: Option<Price>,
    /// A provider can be kept configured but out of rotation.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn default_max_turns() -> u32 {
    40
}
fn default_timeout() -> u64 {
    1800
}
fn default_ceiling() -> f64 {
    5.0
}
fn yes() -> bool {
    true
}

impl ProviderConfig {
    pub fn ceiling_micros(&self) -> i64 {
        (self.max_cost_usd * MICROS as f64).round() as i64
    }
}

/// Where a task goes when its agent finished and its critics passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnSuccess {
    Done,
    Review,
}

/// `[dispatch]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dispatch {
    /// The providers in order of preference; a provider's fault (rate limit,
    /// quota, auth, outage) moves the task to the next one.
    pub providers: Vec<String>,
    /// Runners by default (`vane run --parallel`).
    pub parallel: usize,
    /// A task whose agent ran this many times without finishing it is marked
    /// blocked (with the failures recorded) instead of tried again.
    pub max_task_failures: u32,
    /// Retries of one provider's transient faults before failing over.
    pub retries: u32,
    /// Backoff between retries (jittered, exponential).
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// The longest Retry-After / reset time a runner waits in place; longer
    /// ones fail over (or cool the provider).
    pub max_wait_s: u64,
    /// done (default) or review when the critics passed.
    pub on_success: OnSuccess,
    pub breaker: BreakerPolicy,
}

impl Default for Dispatch {
    fn default() -> Self {
        Dispatch {
            providers: Vec::new(),
            parallel: 1,
            max_task_failures: 2,
            retries: 2,
            backoff_min_ms: 1000,
            backoff_max_ms: 30_000,
            max_wait_s: 60,
            on_success: OnSuccess::Done,
            breaker: BreakerPolicy::default(),
        }
    }
}

/// What happens when a budget is used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExceeded {
    /// no new dispatch until the window turns
    Stop,
    /// only providers cheaper than the one whose budget is used up
    Fallback,
}

/// Limits per window, USD.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetLimits {
    pub hour_usd: Option<f64>,
    pub day_usd: Option<f64>,
    pub month_usd: Option<f64>,
}

/// `[budgets.ENV]` (ENV from `VANE_ENV`, default `dev`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    #[serde(flatten)]
    pub total: BudgetLimits,
    #[serde(default = "stop")]
    pub on_exceeded: OnExceeded,
    /// `[budgets.ENV.providers.NAME]`
    #[serde(default)]
    pub providers: IndexMap<String, BudgetLimits>,
}

fn stop() -> OnExceeded {
    OnExceeded::Stop
}

/// Built-in prices, USD per million tokens (list prices; `[prices]` in
/// vane.toml overrides any of them). Keyed by model name.
pub const BUILTIN_PRICES: &[(&str, Price)] = &[
    ("claude-opus-4-1", p(15.0, 1.5, 18.75, 75.0)),
    ("claude-opus-4", p(15.0, 1.5, 18.75, 75.0)),
    ("claude-sonnet-4-5", p(3.0, 0.3, 3.75, 15.0)),
    ("claude-sonnet-4", p(3.0, 0.3, 3.75, 15.0)),
    ("claude-haiku-4-5", p(1.0, 0.1, 1.25, 5.0)),
    ("claude-3-5-haiku", p(0.8, 0.08, 1.0, 4.0)),
    ("gpt-5", p(1.25, 0.125, 1.25, 10.0)),
    ("gpt-5-codex", p(1.25, 0.125, 1.25, 10.0)),
    ("gpt-5-mini", p(0.25, 0.025, 0.25, 2.0)),
    ("gpt-5-nano", p(0.05, 0.005, 0.05, 0.4)),
    ("gpt-4.1", p(2.0, 0.5, 2.0, 8.0)),
    ("gpt-4.1-mini", p(0.4, 0.1, 0.4, 1.6)),
    ("gpt-4o", p(2.5, 1.25, 2.5, 10.0)),
    ("gpt-4o-mini", p(0.15, 0.075, 0.15, 0.6)),
];

const fn p(input: f64, cached: f64, write: f64, output: f64) -> Price {
    Price {
        input,
        cached_input: Some(cached),
        cache_write: Some(write),
        output,
    }
}

/// The price of `model` on `provider`: `[prices."PROVIDER/MODEL"]`, then
/// `[prices.MODEL]`, then the built-in table (longest model-name prefix, so
/// `claude-sonnet-4-5-20250929` is priced as `claude-sonnet-4-5`), then the
/// provider's own `price`. None: unpriced (the ledger says so).
pub fn price_of(
    prices: &IndexMap<String, Price>,
    provider: &str,
    pc: Option<&ProviderConfig>,
    model: Option<&str>,
) -> Option<Price> {
    if let Some(m) = model {
        if let Some(p) = prices
            .get(&format!("{provider}/{m}"))
            .or_else(|| prices.get(m))
        {
            return Some(*p);
        }
        let builtin = BUILTIN_PRICES
            .iter()
            .filter(|(k, _)| m == *k || m.starts_with(&format!("{k}-")))
            .max_by_key(|(k, _)| k.len());
        if let Some((_, p)) = builtin {
            return Some(*p);
        }
    }
    pc.and_then(|c| c.price)
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// The checks of `[providers]`, `[dispatch]`, `[budgets]` and `[prices]`.
pub(crate) fn validate(c: &super::Config) -> Result<(), crate::VaneError> {
    let bad = |m: String| Err(crate::VaneError::new(crate::ErrorCode::ConfigInvalid, m));
    for (name, p) in &c.providers {
        if !valid_name(name) {
            return bad(format!(
                "provider name `{name}`: use letters, digits, `_`, `-` and `.`"
            ));
        }
        if p.kind == ProviderKind::Command
            && p.command.as_deref().is_none_or(|c| c.trim().is_empty())
        {
            return bad(format!(
                "providers.{name}: kind = \"command\" needs `command`"
            ));
        }
        if p.kind == ProviderKind::Openai && (p.base_url.is_none() || p.model.is_none()) {
            return bad(format!(
                "providers.{name}: kind = \"openai\" needs `base_url` and `model`"
            ));
        }
        if let Some(u) = &p.base_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return bad(format!(
                    "providers.{name}: base_url must start with http:// or https://"
                ));
            }
        }
        if p.timeout_s == 0
            || p.max_turns == 0
            || !p.max_cost_usd.is_finite()
            || p.max_cost_usd <= 0.0
        {
            return bad(format!(
                "providers.{name}: timeout_s, max_turns and max_cost_usd must be > 0"
            ));
        }
        for v in p.api_key_env.iter().chain(&p.env_pass) {
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return bad(format!(
                    "providers.{name}: `{v}` is not an environment variable name (secrets are given by name, never by value)"
                ));
            }
        }
    }
    for name in &c.dispatch.providers {
        if !c.providers.contains_key(name) {
            return bad(format!(
                "dispatch.providers names `{name}`, which has no [providers.{name}] table"
            ));
        }
    }
    let d = &c.dispatch;
    if d.parallel == 0 || d.parallel > 64 || d.max_task_failures == 0 {
        return bad("dispatch: parallel must be 1..=64 and max_task_failures >= 1".into());
    }
    if d.backoff_min_ms == 0 || d.backoff_min_ms > d.backoff_max_ms {
        return bad("dispatch: need 0 < backoff_min_ms <= backoff_max_ms".into());
    }
    let b = &d.breaker;
    if b.allowed_fails == 0 || !(0.0..=1.0).contains(&b.failure_rate) || b.min_attempts == 0 {
        return bad(
            "dispatch.breaker: need allowed_fails >= 1, 0 <= failure_rate <= 1, min_attempts >= 1"
                .into(),
        );
    }
    for (env, budget) in &c.budgets {
        if !valid_name(env) {
            return bad(format!(
                "budgets.{env}: use letters, digits, `_`, `-` and `.`"
            ));
        }
        for (scope, l) in std::iter::once(("total", &budget.total))
            .chain(budget.providers.iter().map(|(k, v)| (k.as_str(), v)))
        {
            if scope != "total" && !c.providers.contains_key(scope) {
                return bad(format!(
                    "budgets.{env}.providers.{scope}: no [providers.{scope}] table"
                ));
            }
            for v in [l.hour_usd, l.day_usd, l.month_usd].into_iter().flatten() {
                if !v.is_finite() || v < 0.0 {
                    return bad(format!("budgets.{env}: limits are USD amounts >= 0"));
                }
            }
        }
    }
    for (k, p) in c
        .prices
        .iter()
        .map(|(k, p)| (k, Some(p)))
        .chain(c.providers.iter().map(|(k, p)| (k, p.price.as_ref())))
    {
        if let Some(p) = p {
            let all = [Some(p.input), p.cached_input, p.cache_write, Some(p.output)];
            if all.into_iter().flatten().any(|v| !v.is_finite() || v < 0.0) {
                return bad(format!("price of `{k}`: USD per million tokens, >= 0"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_resolve_most_specific_first() {
        let mut prices = IndexMap::new();
        prices.insert("gpt-5".to_string(), p(9.0, 9.0, 9.0, 9.0));
        prices.insert("gw/gpt-5".to_string(), p(1.0, 1.0, 1.0, 1.0));
        assert_eq!(
            price_of(&prices, "gw", None, Some("gpt-5")).unwrap().input,
            1.0
        );
        assert_eq!(
            price_of(&prices, "other", None, Some("gpt-5"))
                .unwrap()
                .input,
            9.0
        );
        let none = IndexMap::new();
        let dated = price_of(&none, "c", None, Some("claude-sonnet-4-5-20250929")).unwrap();
        assert_eq!(dated.output, 15.0);
        assert_eq!(
            price_of(&none, "c", None, Some("gpt-5-mini"))
                .unwrap()
                .output,
            2.0
        );
        assert!(price_of(&none, "c", None, Some("llama-3")).is_none());
    }

    #[test]
    fn dispatch_config_parses_and_validates() {
        let c = crate::config::Config::parse(
            r#"
[providers.claude]
kind = "claude"
model = "claude-sonnet-4-5"
max_cost_usd = 2.5

[providers.local]
kind = "openai"
base_url = "http://127.0.0.1:8080/v1"
model = "qwen"
api_key_env = "LOCAL_KEY"
price = { input = 0.1, output = 0.2 }

[dispatch]
providers = ["claude", "local"]

[budgets.dev]
day_usd = 20
on_exceeded = "fallback"
[budgets.dev.providers.claude]
hour_usd = 3
"#,
        )
        .unwrap();
        assert_eq!(c.providers["claude"].ceiling_micros(), 2_500_000);
        assert_eq!(c.budgets["dev"].total.day_usd, Some(20.0));
        assert_eq!(c.budgets["dev"].providers["claude"].hour_usd, Some(3.0));
        assert_eq!(c.budgets["dev"].on_exceeded, OnExceeded::Fallback);
        for (text, needle) in [
            ("[dispatch]\nproviders = [\"x\"]", "no [providers.x]"),
            ("[providers.c]\nkind = \"command\"", "needs `command`"),
            (
                "[providers.o]\nkind = \"openai\"\nmodel = \"m\"",
                "base_url",
            ),
            (
                "[providers.o]\nkind = \"claude\"\napi_key_env = \"sk-ant-123 x\"",
                "never by value",
            ),
            (
                "[budgets.dev.providers.nope]\nday_usd = 1",
                "no [providers.nope]",
            ),
            (
                "[providers.c]\nkind = \"claude\"\nsecret = \"x\"",
                "unknown field",
            ),
        ] {
            let e = crate::config::Config::parse(text).unwrap_err();
            assert!(e.message.contains(needle), "{text}: {}", e.message);
        }
    }
}
