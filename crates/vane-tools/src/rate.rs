//! Rate limits per client session and tool (`[rate_limits]`), with the
//! `governor` crate (GCRA: a sustained rate plus a burst, no background
//! task, a few atomics per check).
//!
//! Tiers come from what a tool is, not from a list kept in sync elsewhere:
//! an admin tool (the registry's `admin` mark, the front's tools) is `admin`;
//! `status` and `tool_manifest`, which agents and monitors poll, are
//! `health`; everything else is `tools`. `[rate_limits.per_tool]` overrides a
//! tool. The front's own readiness probes are never limited.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota as GQuota};
use indexmap::IndexMap;
use vane_core::config::{Quota, RateLimits};

/// A limiter per quota, keyed by (session, tool).
pub struct Limiter {
    enabled: bool,
    tools: DefaultKeyedRateLimiter<(String, String)>,
    admin: DefaultKeyedRateLimiter<(String, String)>,
    health: DefaultKeyedRateLimiter<(String, String)>,
    per_tool: IndexMap<String, DefaultKeyedRateLimiter<String>>,
    /// checks since the last sweep of idle keys
    checks: Mutex<u64>,
}

fn quota(q: &Quota) -> GQuota {
    let one = NonZeroU32::MIN;
    GQuota::per_second(NonZeroU32::new(q.per_second).unwrap_or(one))
        .allow_burst(NonZeroU32::new(q.burst).unwrap_or(one))
}

pub const HEALTH_TOOLS: [&str; 2] = ["status", "tool_manifest"];

impl Limiter {
    pub fn new(cfg: &RateLimits) -> Limiter {
        Limiter {
            enabled: cfg.enabled,
            tools: DefaultKeyedRateLimiter::keyed(quota(&cfg.tools)),
            admin: DefaultKeyedRateLimiter::keyed(quota(&cfg.admin)),
            health: DefaultKeyedRateLimiter::keyed(quota(&cfg.health)),
            per_tool: cfg
                .per_tool
                .iter()
                .map(|(k, q)| (k.clone(), DefaultKeyedRateLimiter::keyed(quota(q))))
                .collect(),
            checks: Mutex::new(0),
        }
    }

    /// `Ok` when `session` may call `tool` now; else how long to wait.
    pub fn check(&self, session: &str, tool: &str, admin: bool) -> Result<(), Duration> {
        if !self.enabled {
            return Ok(());
        }
        self.sweep();
        let clock = DefaultClock::default();
        let verdict = if let Some(l) = self.per_tool.get(tool) {
            l.check_key(&format!("{session}\u{0}{tool}"))
        } else {
            let key = (session.to_string(), tool.to_string());
            let l = if admin {
                &self.admin
            } else if HEALTH_TOOLS.contains(&tool) {
                &self.health
            } else {
                &self.tools
            };
            l.check_key(&key)
        };
        verdict.map_err(|not_until| not_until.wait_time_from(clock.now()))
    }

    /// Forgets keys whose quota is full again (sessions come and go).
    fn sweep(&self) {
        let mut n = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        if (*n).is_multiple_of(4096) {
            self.tools.retain_recent();
            self.admin.retain_recent();
            self.health.retain_recent();
            for l in self.per_tool.values() {
                l.retain_recent();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_per_session_and_tool() {
        let cfg = RateLimits {
            tools: Quota {
                per_second: 1,
                burst: 3,
            },
            ..RateLimits::default()
        };
        let l = Limiter::new(&cfg);
        for _ in 0..3 {
            assert!(l.check("s1", "fs_read", false).is_ok());
        }
        let wait = l.check("s1", "fs_read", false).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // another tool, another session: their own quotas
        assert!(l.check("s1", "fs_write", false).is_ok());
        assert!(l.check("s2", "fs_read", false).is_ok());
        // health and admin tiers
        assert!(l.check("s1", "status", false).is_ok());
        let off = Limiter::new(&RateLimits {
            enabled: false,
            ..cfg
        });
        for _ in 0..10 {
            assert!(off.check("s1", "fs_read", false).is_ok());
        }
    }
}
