//! The front's pause before retrying a call (a key still in progress on
//! another worker, an `internal` answer handed to another worker): jittered
//! exponential backoff from `backon` — 20 ms, then doubling up to 1 s, each
//! step plus a random share of itself (so 20–40 ms, 40–80 ms, … at most 2 s),
//! so calls that failed together do not come back together.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// A fresh sequence of delays for one call's retries.
pub fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(20))
        .with_max_delay(Duration::from_secs(1))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
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
}
