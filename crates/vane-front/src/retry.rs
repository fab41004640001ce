//! The front's one retry policy for a client's request, whichever path it
//! takes (the direct path's first attempt, the task path, a resume after a
//! worker died with the call). It holds everything that decides what follows
//! an attempt, so the rules exist once:
//!
//! - the **deadline** is the request's start plus its timeout — a call
//!   resumed after a fault elsewhere keeps the time it has left, never a
//!   fresh timeout;
//! - a worker that **faulted** (`internal`) gets the call retried on another
//!   healthy worker, at most `max_retries` times;
//! - a worker that **died** with the call gets it retried (its idempotency
//!   key makes the retry a replay), at most `max(max_retries, 10)` times in a
//!   row;
//! - an idempotency key still **in progress** elsewhere means wait and try
//!   again while time remains: jittered exponential backoff from `backon` —
//!   20 ms, then doubling up to 1 s, each step plus a random share of itself
//!   (so 20–40 ms, 40–80 ms, … at most 2 s), so calls that failed together do
//!   not come back together, and never past the deadline.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

/// A fresh sequence of delays for one call's retries.
pub fn backoff() -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(20))
        .with_max_delay(Duration::from_secs(1))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// One request's retry state (see the module docs).
pub struct CallPolicy {
    started: Instant,
    timeout: Duration,
    max_faults: u32,
    max_closed: u32,
    faults: u32,
    closed: u32,
    pause: Box<dyn Iterator<Item = Duration> + Send>,
}

/// What follows a worker's death with the call.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterClosed {
    /// try again on whichever worker is active next
    Retry,
    /// too many deaths in a row: answer `internal`
    GiveUp { closed: u32 },
}

impl CallPolicy {
    /// A request that started at `started` and may take `timeout` in all;
    /// `max_retries` from `[runtime]`.
    pub fn new(started: Instant, timeout: Duration, max_retries: u32) -> CallPolicy {
        CallPolicy {
            started,
            timeout,
            max_faults: max_retries,
            max_closed: max_retries.max(10),
            faults: 0,
            closed: 0,
            pause: Box::new(backoff()),
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// When the request's time is up, whatever path it took.
    pub fn deadline(&self) -> Instant {
        self.started + self.timeout
    }

    /// The time left at `now` (zero once past the deadline).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.deadline().saturating_duration_since(now)
    }

    /// A worker answered `internal`: whether another worker may take the
    /// call (`has_alternative`: a healthy one exists). Counts the retry.
    pub fn retry_fault(&mut self, has_alternative: bool) -> bool {
        if has_alternative && self.faults < self.max_faults {
            self.faults += 1;
            true
        } else {
            false
        }
    }

    /// Whether a fault could still be retried (the direct path asks before
    /// looking for another worker).
    pub fn may_retry_fault(&self) -> bool {
        self.faults < self.max_faults
    }

    /// The worker died with the call.
    pub fn after_closed(&mut self) -> AfterClosed {
        self.closed += 1;
        if self.closed > self.max_closed {
            AfterClosed::GiveUp {
                closed: self.closed,
            }
        } else {
            AfterClosed::Retry
        }
    }

    /// The call's idempotency key is still in progress on another worker:
    /// how long to wait before asking again, or `None` when the deadline has
    /// passed (the answer then stands).
    pub fn wait_busy(&mut self, now: Instant) -> Option<Duration> {
        let left = self.remaining(now);
        if left.is_zero() {
            return None;
        }
        let d = self
            .pause
            .next()
            .unwrap_or(Duration::from_millis(20))
            .min(left);
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_vary() {
        let d: Vec<Duration> = backoff().take(12).collect();
        assert_eq!(d.len(), 12);
        assert!(d.iter().all(|x| *x <= Duration::from_millis(2000)), "{d:?}");
        assert!(d[10] >= Duration::from_millis(500), "{d:?}");
        let again: Vec<Duration> = backoff().take(12).collect();
        assert_ne!(d, again, "jitter makes two sequences differ");
    }

    /// A call resumed after its first attempt (on the direct path, or on a
    /// worker that died) keeps its original deadline: 4 s of a 5 s timeout
    /// spent leaves 1 s, not another 5.
    #[test]
    fn the_deadline_is_the_start_plus_the_timeout_across_a_resume() {
        let now = Instant::now();
        let started = now - Duration::from_secs(4);
        let p = CallPolicy::new(started, Duration::from_secs(5), 3);
        assert_eq!(p.deadline(), started + Duration::from_secs(5));
        let left = p.remaining(now);
        assert!(left <= Duration::from_secs(1), "{left:?}");
        assert!(left > Duration::from_millis(900), "{left:?}");
        // past the deadline: nothing left, and a busy key is not waited for
        let mut late = CallPolicy::new(now - Duration::from_secs(6), Duration::from_secs(5), 3);
        assert_eq!(late.remaining(now), Duration::ZERO);
        assert_eq!(late.wait_busy(now), None);
    }

    #[test]
    fn a_busy_key_is_waited_for_but_never_past_the_deadline() {
        let now = Instant::now();
        let mut p = CallPolicy::new(
            now - Duration::from_millis(4_990),
            Duration::from_secs(5),
            3,
        );
        for _ in 0..20 {
            let d = p.wait_busy(now).expect("time is left");
            assert!(d <= Duration::from_millis(10), "{d:?}");
        }
        let mut fresh = CallPolicy::new(now, Duration::from_secs(60), 3);
        let waits: Vec<Duration> = (0..8).map(|_| fresh.wait_busy(now).unwrap()).collect();
        assert!(waits[0] >= Duration::from_millis(20), "{waits:?}");
        assert!(waits[7] > waits[0], "backoff grows: {waits:?}");
    }

    #[test]
    fn faults_are_retried_elsewhere_up_to_max_retries() {
        let mut p = CallPolicy::new(Instant::now(), Duration::from_secs(5), 2);
        assert!(!p.retry_fault(false), "nowhere else to go");
        assert!(p.may_retry_fault());
        assert!(p.retry_fault(true));
        assert!(p.retry_fault(true));
        assert!(!p.may_retry_fault());
        assert!(!p.retry_fault(true), "max_retries = 2");
        let mut none = CallPolicy::new(Instant::now(), Duration::from_secs(5), 0);
        assert!(!none.retry_fault(true), "max_retries = 0: never");
    }

    #[test]
    fn worker_deaths_are_retried_up_to_ten_in_a_row() {
        let mut p = CallPolicy::new(Instant::now(), Duration::from_secs(5), 3);
        for _ in 0..10 {
            assert_eq!(p.after_closed(), AfterClosed::Retry);
        }
        assert_eq!(p.after_closed(), AfterClosed::GiveUp { closed: 11 });
        let mut many = CallPolicy::new(Instant::now(), Duration::from_secs(5), 20);
        for _ in 0..20 {
            assert_eq!(many.after_closed(), AfterClosed::Retry);
        }
        assert!(matches!(many.after_closed(), AfterClosed::GiveUp { .. }));
    }
}
