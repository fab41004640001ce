//! Prometheus metrics and the recent-window view used by `status`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Serialize;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    tool: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    tool: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabel {
    tool: String,
}

/// Process-wide metrics.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<ToolLabel, Histogram>,
    in_flight: Gauge,
    rss: Gauge,
    dropped: Gauge,
    window: Mutex<Window>,
    /// per-tool handles, so the hot path looks up by `&str` without allocating labels
    handles: Mutex<std::collections::HashMap<String, ToolHandles>>,
}

#[derive(Clone)]
struct ToolHandles {
    ok: Counter,
    error: Counter,
    duration: Histogram,
}

const WINDOW_SECS: usize = 300;
/// latency buckets: 4 per power of two of microseconds, up to 2^28 µs
const LAT_BUCKETS: usize = 28 * 4;

fn lat_bucket(us: u64) -> usize {
    if us < 1 {
        return 0;
    }
    let octave = 63 - us.leading_zeros() as usize;
    let frac = if octave >= 2 {
        ((us >> (octave - 2)) & 3) as usize
    } else {
        0
    };
    (octave * 4 + frac).min(LAT_BUCKETS - 1)
}

/// Upper bound (µs) of a latency bucket.
fn lat_upper(i: usize) -> f64 {
    let octave = i / 4;
    let frac = (i % 4) as f64;
    (1u64 << octave) as f64 * (1.0 + (frac + 1.0) / 4.0)
}

/// Per-second buckets of the last five minutes plus running totals: memory is
/// constant, recording is O(1) amortised, and `recent()` costs the same at
/// 1 call/s and at 10,000 (expired seconds are subtracted, not re-summed).
struct Window {
    origin: Instant,
    secs: Vec<u64>,
    calls: Vec<u32>,
    errors: Vec<u32>,
    lat: Vec<[u32; LAT_BUCKETS]>,
    tot_calls: u64,
    tot_errors: u64,
    tot_lat: [u64; LAT_BUCKETS],
}

impl Window {
    fn new() -> Window {
        Window {
            origin: Instant::now(),
            secs: vec![u64::MAX; WINDOW_SECS],
            calls: vec![0; WINDOW_SECS],
            errors: vec![0; WINDOW_SECS],
            lat: vec![[0; LAT_BUCKETS]; WINDOW_SECS],
            tot_calls: 0,
            tot_errors: 0,
            tot_lat: [0; LAT_BUCKETS],
        }
    }

    /// Removes slot `i` from the totals and empties it.
    fn expire(&mut self, i: usize) {
        if self.secs[i] == u64::MAX {
            return;
        }
        self.tot_calls -= self.calls[i] as u64;
        self.tot_errors -= self.errors[i] as u64;
        for (t, n) in self.tot_lat.iter_mut().zip(self.lat[i].iter()) {
            *t -= *n as u64;
        }
        self.secs[i] = u64::MAX;
        self.calls[i] = 0;
        self.errors[i] = 0;
        self.lat[i] = [0; LAT_BUCKETS];
    }

    fn record(&mut self, elapsed: Duration, ok: bool) {
        let sec = self.origin.elapsed().as_secs();
        let i = (sec as usize) % WINDOW_SECS;
        if self.secs[i] != sec {
            self.expire(i);
            self.secs[i] = sec;
        }
        let b = lat_bucket(elapsed.as_micros() as u64);
        self.calls[i] += 1;
        self.lat[i][b] += 1;
        self.tot_calls += 1;
        self.tot_lat[b] += 1;
        if !ok {
            self.errors[i] += 1;
            self.tot_errors += 1;
        }
    }

    fn recent(&mut self) -> RecentCalls {
        let now = self.origin.elapsed().as_secs();
        let mut oldest = now;
        for i in 0..WINDOW_SECS {
            let s = self.secs[i];
            if s == u64::MAX {
                continue;
            }
            if now.saturating_sub(s) >= WINDOW_SECS as u64 {
                self.expire(i);
            } else {
                oldest = oldest.min(s);
            }
        }
        let calls = self.tot_calls;
        let p95 = if calls == 0 {
            0.0
        } else {
            let target = (calls as f64 * 0.95).ceil() as u64;
            let mut seen = 0;
            let mut at = 0;
            for (i, n) in self.tot_lat.iter().enumerate() {
                seen += n;
                if seen >= target {
                    at = i;
                    break;
                }
            }
            lat_upper(at) / 1000.0
        };
        let minutes = ((now - oldest + 1) as f64 / 60.0).max(1.0 / 60.0);
        RecentCalls {
            window_s: WINDOW_SECS as u64,
            calls: calls as usize,
            calls_per_min: if calls == 0 {
                0.0
            } else {
                round(calls as f64 / minutes)
            },
            error_rate: if calls == 0 {
                0.0
            } else {
                round(self.tot_errors as f64 / calls as f64)
            },
            p95_ms: round(p95),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct RecentCalls {
    pub window_s: u64,
    pub calls: usize,
    pub calls_per_min: f64,
    pub error_rate: f64,
    /// upper bound of the latency bucket holding the 95th percentile (±12 %)
    pub p95_ms: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let calls = Family::<CallLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ToolLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_025, 2.0, 22))
        });
        let in_flight = Gauge::default();
        let rss = Gauge::default();
        let dropped = Gauge::default();
        registry.register(
            "vane_tool_calls",
            "Tool calls by tool and outcome (ok | error)",
            calls.clone(),
        );
        registry.register(
            "vane_tool_errors",
            "Tool errors by tool and error code",
            errors.clone(),
        );
        registry.register(
            "vane_tool_call_duration_seconds",
            "Tool call latency",
            duration.clone(),
        );
        registry.register(
            "vane_tool_calls_in_flight",
            "Tool calls being handled now",
            in_flight.clone(),
        );
        registry.register(
            "vane_process_resident_memory_bytes",
            "Resident memory of this process",
            rss.clone(),
        );
        registry.register(
            "vane_telemetry_dropped_events",
            "Operations-log events dropped because the queue was full",
            dropped.clone(),
        );
        Metrics {
            registry,
            calls,
            errors,
            duration,
            in_flight,
            rss,
            dropped,
            window: Mutex::new(Window::new()),
            handles: Mutex::new(std::collections::HashMap::new()),
        }
    }

    pub fn call_started(&self) {
        self.in_flight.inc();
    }

    pub fn call_finished(&self, tool: &str, ok: bool, error_code: Option<&str>, elapsed: Duration) {
        self.in_flight.dec();
        let h = self.handles_for(tool);
        if ok {
            h.ok.inc()
        } else {
            h.error.inc()
        };
        h.duration.observe(elapsed.as_secs_f64());
        if let Some(code) = error_code {
            self.errors
                .get_or_create(&ErrorLabels {
                    tool: tool.into(),
                    code: code.into(),
                })
                .inc();
        }
        self.window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(elapsed, ok);
    }

    fn handles_for(&self, tool: &str) -> ToolHandles {
        let mut map = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = map.get(tool) {
            return h.clone();
        }
        // one statement per lookup: a `get_or_create` guard lives until the end
        // of its statement, and a second insert into the same family would
        // wait for it forever
        let ok = self
            .calls
            .get_or_create(&CallLabels {
                tool: tool.into(),
                outcome: "ok".into(),
            })
            .clone();
        let error = self
            .calls
            .get_or_create(&CallLabels {
                tool: tool.into(),
                outcome: "error".into(),
            })
            .clone();
        let duration = self
            .duration
            .get_or_create(&ToolLabel { tool: tool.into() })
            .clone();
        let h = ToolHandles {
            ok,
            error,
            duration,
        };
        map.insert(tool.to_string(), h.clone());
        h
    }

    /// Call rate, error rate and p95 over the last five minutes.
    pub fn recent(&self) -> RecentCalls {
        self.window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .recent()
    }

    /// Prometheus text exposition.
    pub fn render(&self, dropped_events: u64) -> String {
        self.rss.set(resident_bytes() as i64);
        self.dropped.set(dropped_events as i64);
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Nearest-rank percentile; sorts `v` in place.
pub fn percentile_u32(v: &mut [u32], q: f64) -> u32 {
    if v.is_empty() {
        return 0;
    }
    let k = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    let (_, x, _) = v.select_nth_unstable(k);
    *x
}

/// Resident memory of this process (Linux `/proc/self/statm`).
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// Serves `GET /metrics` on `addr` until the process ends.
pub async fn serve(
    addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    dropped: Arc<dyn Fn() -> u64 + Send + Sync>,
) -> std::io::Result<std::net::SocketAddr> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            let d = dropped.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.render(d()),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_window_counts_and_estimates_p95() {
        let m = Metrics::new();
        for i in 0..100u64 {
            m.call_started();
            m.call_finished(
                "t",
                i % 4 != 0,
                if i % 4 == 0 { Some("x") } else { None },
                Duration::from_micros(1000 + i * 10),
            );
        }
        let r = m.recent();
        assert_eq!(r.calls, 100);
        assert_eq!(r.error_rate, 0.25);
        // true p95 is 1.94 ms; the bucket bound is within 25 % above it
        assert!(r.p95_ms >= 1.94 && r.p95_ms <= 1.94 * 1.25, "{}", r.p95_ms);
        let text = m.render(0);
        assert!(
            text.contains("vane_tool_calls_total{tool=\"t\",outcome=\"error\"} 25"),
            "{text}"
        );
    }
}
