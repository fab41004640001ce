//! Budgets: which limits an attempt must fit in, and the alerts at 80 % and
//! 100 % of a window.
//!
//! Windows are calendar windows in UTC (this hour, today, this month), so
//! "the day budget" means the same thing in every process and after a
//! restart. The check itself is the store's: `attempt_start` adds spent,
//! reserved (running attempts' ceilings) and this attempt's ceiling in the
//! transaction that records the attempt, so runners racing for the last
//! dollars never overspend together.

use chrono::{Datelike, TimeZone, Timelike, Utc};
use vane_core::config::{Budget, BudgetLimits, Config};
use vane_core::dispatch::MICROS;
use vane_store::dispatch::{BudgetAlert, BudgetCheck};
use vane_store::Store;

/// The start (ms) of the hour, day and month that hold `now_ms`.
pub fn window_start(window: &str, now_ms: i64) -> i64 {
    let t = Utc
        .timestamp_millis_opt(now_ms)
        .single()
        .unwrap_or_else(Utc::now);
    let start = match window {
        "hour" => t
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0)),
        "day" => Utc
            .with_ymd_and_hms(t.year(), t.month(), t.day(), 0, 0, 0)
            .single(),
        _ => Utc
            .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
            .single(),
    };
    start.map_or(now_ms, |s| s.timestamp_millis())
}

fn limits(l: &BudgetLimits) -> impl Iterator<Item = (&'static str, f64)> + '_ {
    [
        ("hour", l.hour_usd),
        ("day", l.day_usd),
        ("month", l.month_usd),
    ]
    .into_iter()
    .filter_map(|(w, v)| v.map(|v| (w, v)))
}

/// The environment's budget, if any.
pub fn budget<'a>(config: &'a Config, env: &str) -> Option<&'a Budget> {
    config.budgets.get(env)
}

/// Every limit an attempt of `provider` must fit in now.
pub fn checks(config: &Config, env: &str, provider: &str, now_ms: i64) -> Vec<BudgetCheck> {
    let Some(b) = budget(config, env) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut add = |scope: &str, l: &BudgetLimits| {
        for (w, usd) in limits(l) {
            out.push(BudgetCheck {
                scope: scope.to_string(),
                window: w.to_string(),
                window_start_ms: window_start(w, now_ms),
                limit_micros: (usd * MICROS as f64).round() as i64,
            });
        }
    };
    add("total", &b.total);
    if let Some(l) = b.providers.get(provider) {
        add(provider, l);
    }
    out
}

/// What the tightest of `checks` leaves, micro-dollars (None: no limit).
pub fn remaining(
    store: &Store,
    env: &str,
    checks: &[BudgetCheck],
) -> vane_store::Result<Option<i64>> {
    let mut least: Option<i64> = None;
    for c in checks {
        let provider = (c.scope != "total").then_some(c.scope.as_str());
        let s = store.spent(env, provider, c.window_start_ms)?;
        let left = c.limit_micros - s.spent_micros - s.reserved_micros;
        least = Some(least.map_or(left, |l: i64| l.min(left)));
    }
    Ok(least)
}

/// Raises the alerts the spending so far crosses (80 % warning, 100 %
/// critical), each once per window and level; returns the new ones.
pub fn raise_alerts(
    store: &Store,
    config: &Config,
    env: &str,
    provider: &str,
    now_ms: i64,
) -> vane_store::Result<Vec<BudgetAlert>> {
    let mut raised = Vec::new();
    for c in checks(config, env, provider, now_ms) {
        let scope_provider = (c.scope != "total").then_some(c.scope.as_str());
        let s = store.spent(env, scope_provider, c.window_start_ms)?;
        let spent = s.spent_micros;
        let level = if spent >= c.limit_micros {
            "critical"
        } else if spent * 10 >= c.limit_micros * 8 {
            "warning"
        } else {
            continue;
        };
        // crossing 100 % also means 80 % was crossed: both are recorded
        let levels: &[&str] = if level == "critical" {
            &["warning", "critical"]
        } else {
            &["warning"]
        };
        for l in levels {
            let a = BudgetAlert {
                env: env.to_string(),
                scope: c.scope.clone(),
                window: c.window.clone(),
                window_start_ms: c.window_start_ms,
                level: l.to_string(),
                at_ms: now_ms,
                spent_micros: spent,
                limit_micros: c.limit_micros,
            };
            if store.alert_once(&a)? {
                raised.push(a);
            }
        }
    }
    Ok(raised)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_utc_calendar_windows() {
        // 2026-12-02T13:45:10.500Z
        let t = Utc
            .with_ymd_and_hms(2026, 12, 2, 13, 45, 10)
            .unwrap()
            .timestamp_millis()
            + 500;
        let at = |y, mo, d, h| {
            Utc.with_ymd_and_hms(y, mo, d, h, 0, 0)
                .unwrap()
                .timestamp_millis()
        };
        assert_eq!(window_start("hour", t), at(2026, 12, 2, 13));
        assert_eq!(window_start("day", t), at(2026, 12, 2, 0));
        assert_eq!(window_start("month", t), at(2026, 12, 1, 0));
    }
}
