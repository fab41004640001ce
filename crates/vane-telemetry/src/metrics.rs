//! Prometheus metrics and the recent-window view used by `status`.

use std::collections::VecDeque;
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
    window: Mutex<VecDeque<(Instant, u32, bool)>>,
}

const WINDOW: Duration = Duration::from_secs(300);
const WINDOW_CAP: usize = 200_000;

/// The last minutes of calls, for `status`.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct RecentCalls {
    pub window_s: u64,
    pub calls: usize,
    pub calls_per_min: f64,
    pub error_rate: f64,
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
            window: Mutex::new(VecDeque::new()),
        }
    }

    pub fn call_started(&self) {
        self.in_flight.inc();
    }

    pub fn call_finished(&self, tool: &str, ok: bool, error_code: Option<&str>, elapsed: Duration) {
        self.in_flight.dec();
        self.calls
            .get_or_create(&CallLabels {
                tool: tool.into(),
                outcome: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
        if let Some(code) = error_code {
            self.errors
                .get_or_create(&ErrorLabels {
                    tool: tool.into(),
                    code: code.into(),
                })
                .inc();
        }
        self.duration
            .get_or_create(&ToolLabel { tool: tool.into() })
            .observe(elapsed.as_secs_f64());
        let now = Instant::now();
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        w.push_back((now, elapsed.as_micros().min(u32::MAX as u128) as u32, ok));
        while w.len() > WINDOW_CAP
            || w.front()
                .is_some_and(|(t, _, _)| now.duration_since(*t) > WINDOW)
        {
            w.pop_front();
        }
    }

    /// Call rate, error rate and p95 over the last five minutes.
    pub fn recent(&self) -> RecentCalls {
        let now = Instant::now();
        let w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let mut durs: Vec<u32> = Vec::with_capacity(w.len());
        let mut errors = 0usize;
        let mut oldest = now;
        for (t, d, ok) in w
            .iter()
            .filter(|(t, _, _)| now.duration_since(*t) <= WINDOW)
        {
            durs.push(*d);
            if !ok {
                errors += 1;
            }
            oldest = oldest.min(*t);
        }
        drop(w);
        let n = durs.len();
        let span_min = (now.duration_since(oldest).as_secs_f64() / 60.0).max(1.0 / 60.0);
        RecentCalls {
            window_s: WINDOW.as_secs(),
            calls: n,
            calls_per_min: if n == 0 {
                0.0
            } else {
                round(n as f64 / span_min)
            },
            error_rate: if n == 0 {
                0.0
            } else {
                round(errors as f64 / n as f64)
            },
            p95_ms: if n == 0 {
                0.0
            } else {
                round(percentile_u32(&mut durs, 0.95) as f64 / 1000.0)
            },
        }
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
