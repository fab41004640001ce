//! The rollback verdict: what the watch over a newly promoted worker
//! decides from what it measured, as a pure function of the measurements
//! and `[runtime.rollback]` — no clock, no worker, no lock — so every
//! threshold is unit-tested here, and the front only gathers the numbers and
//! carries the decision out.

use std::time::Duration;

use serde_json::{json, Value};
use vane_core::config::Rollback;
use vane_core::contract::health::WindowStats;

/// Why the front rolled back by itself: the metric, its value and the limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub metric: &'static str,
    pub value: Value,
    pub threshold: Value,
    pub detail: String,
}

/// What the watch measured on the new worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watched {
    /// since the switch
    pub for_: Duration,
    /// its calls over the last `error_window_s`
    pub window: WindowStats,
    /// its resident memory now
    pub rss: u64,
    /// the old worker's, at the switch (0: unknown)
    pub baseline_rss: u64,
    /// how long its memory has been over the limit, if it was at the last look
    pub rss_over_for: Option<Duration>,
}

/// The watch's decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// the watch is over and the worker stays
    Passed,
    /// keep watching; `rss_over`: its memory is over the limit now (the
    /// front remembers since when)
    Watching { rss_over: bool },
    /// roll back, for this reason
    RollBack(Reason),
}

/// The verdict on `w` under `rb`.
pub fn verdict(w: &Watched, rb: &Rollback) -> Verdict {
    if w.for_ >= Duration::from_secs(rb.watch_s) {
        return Verdict::Passed;
    }
    if !rb.enabled {
        return Verdict::Watching { rss_over: false };
    }
    let ws = &w.window;
    if ws.calls >= rb.min_calls && ws.error_rate > rb.error_budget {
        return Verdict::RollBack(Reason {
            metric: "error_rate",
            value: json!(ws.error_rate),
            threshold: json!(rb.error_budget),
            detail: format!(
                "{} of {} calls failed in the last {} s",
                ws.failures, ws.calls, rb.error_window_s
            ),
        });
    }
    if ws.latency_samples >= rb.min_latency_samples && ws.p95_ms > rb.p95_slo_ms as f64 {
        return Verdict::RollBack(Reason {
            metric: "p95_ms",
            value: json!(ws.p95_ms),
            threshold: json!(rb.p95_slo_ms),
            detail: format!(
                "p95 over {} calls in the last {} s",
                ws.latency_samples, rb.error_window_s
            ),
        });
    }
    let limit = rss_limit(w.baseline_rss, rb);
    if w.baseline_rss > 0 && w.rss > limit {
        let over_for = w.rss_over_for.unwrap_or_default();
        if over_for >= Duration::from_secs(rb.rss_window_s) {
            return Verdict::RollBack(Reason {
                metric: "rss_bytes",
                value: json!(w.rss),
                threshold: json!(limit),
                detail: format!(
                    "above {}x the old worker's {} bytes for {} s",
                    rb.rss_factor, w.baseline_rss, rb.rss_window_s
                ),
            });
        }
        return Verdict::Watching { rss_over: true };
    }
    Verdict::Watching { rss_over: false }
}

/// The memory limit of a worker whose predecessor used `baseline` bytes.
pub fn rss_limit(baseline: u64, rb: &Rollback) -> u64 {
    (baseline as f64 * rb.rss_factor) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rb() -> Rollback {
        Rollback {
            enabled: true,
            watch_s: 60,
            error_budget: 0.05,
            error_window_s: 120,
            min_calls: 20,
            p95_slo_ms: 100,
            min_latency_samples: 50,
            rss_factor: 2.0,
            rss_window_s: 10,
            set_disable_new: true,
        }
    }

    fn calm() -> Watched {
        Watched {
            for_: Duration::from_secs(5),
            window: WindowStats {
                calls: 100,
                failures: 1,
                error_rate: 0.01,
                latency_samples: 100,
                p95_ms: 20.0,
            },
            rss: 10_000_000,
            baseline_rss: 10_000_000,
            rss_over_for: None,
        }
    }

    fn metric(v: Verdict) -> &'static str {
        match v {
            Verdict::RollBack(r) => r.metric,
            other => panic!("expected a rollback, got {other:?}"),
        }
    }

    #[test]
    fn a_healthy_worker_is_watched_then_passes() {
        assert_eq!(
            verdict(&calm(), &rb()),
            Verdict::Watching { rss_over: false }
        );
        let done = Watched {
            for_: Duration::from_secs(60),
            ..calm()
        };
        assert_eq!(verdict(&done, &rb()), Verdict::Passed);
    }

    #[test]
    fn errors_over_the_budget_roll_back_once_enough_calls_were_seen() {
        let mut w = calm();
        w.window.failures = 10;
        w.window.error_rate = 0.10;
        assert_eq!(metric(verdict(&w, &rb())), "error_rate");
        // exactly at the budget is within it
        w.window.error_rate = 0.05;
        assert!(matches!(verdict(&w, &rb()), Verdict::Watching { .. }));
        // too few calls to judge
        w.window.error_rate = 0.5;
        w.window.calls = 19;
        assert!(matches!(verdict(&w, &rb()), Verdict::Watching { .. }));
    }

    #[test]
    fn a_slow_p95_rolls_back_over_enough_samples() {
        let mut w = calm();
        w.window.p95_ms = 150.0;
        assert_eq!(metric(verdict(&w, &rb())), "p95_ms");
        w.window.latency_samples = 49;
        assert!(matches!(verdict(&w, &rb()), Verdict::Watching { .. }));
    }

    #[test]
    fn memory_over_the_factor_rolls_back_only_after_its_window() {
        let mut w = calm();
        w.rss = 25_000_000;
        assert_eq!(verdict(&w, &rb()), Verdict::Watching { rss_over: true });
        w.rss_over_for = Some(Duration::from_secs(9));
        assert_eq!(verdict(&w, &rb()), Verdict::Watching { rss_over: true });
        w.rss_over_for = Some(Duration::from_secs(10));
        let Verdict::RollBack(r) = verdict(&w, &rb()) else {
            panic!("expected a rollback")
        };
        assert_eq!((r.metric, r.threshold), ("rss_bytes", json!(20_000_000)));
        // an unknown baseline never judges memory
        w.baseline_rss = 0;
        assert_eq!(verdict(&w, &rb()), Verdict::Watching { rss_over: false });
    }

    #[test]
    fn disabled_rollback_only_watches_and_errors_come_before_latency() {
        let mut w = calm();
        w.window.error_rate = 0.9;
        w.window.p95_ms = 900.0;
        assert_eq!(metric(verdict(&w, &rb())), "error_rate");
        let off = Rollback {
            enabled: false,
            ..rb()
        };
        assert_eq!(verdict(&w, &off), Verdict::Watching { rss_over: false });
        w.for_ = Duration::from_secs(61);
        assert_eq!(verdict(&w, &off), Verdict::Passed);
    }
}
