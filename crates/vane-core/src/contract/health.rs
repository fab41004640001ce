//! The front's health view: what `worker_health`, `vane workers`, the demo
//! and `vane upgrade`'s gates read. The front builds it, everyone else
//! deserializes it; the JSON shape is the one these processes always spoke.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A worker's place in the front's routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Active,
    Standby,
    Canary,
    /// rolled back from, kept for inspection
    Failed,
    /// being drained and stopped
    Retiring,
}

/// A worker's ping circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Circuit {
    Closed,
    Open,
}

/// The whole view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HealthView {
    pub front: FrontView,
    #[serde(default)]
    pub workers: Vec<WorkerView>,
    /// the rollback watch over a newly promoted worker, while it lasts
    #[serde(default)]
    pub watch: Option<WatchView>,
    /// the latest routing decisions, oldest first
    #[serde(default)]
    pub decisions: Vec<Decision>,
}

impl HealthView {
    /// The first worker in `role`.
    pub fn worker(&self, role: Role) -> Option<&WorkerView> {
        self.workers.iter().find(|w| w.role == role)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FrontView {
    pub pid: u32,
    pub version: String,
    pub uptime_s: f64,
    pub rss_bytes: u64,
    pub restarts: u64,
    /// the control socket
    #[serde(default)]
    pub socket: Option<String>,
    #[serde(default)]
    pub disable_new: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkerView {
    pub id: u64,
    pub role: Role,
    pub pid: u32,
    pub version: String,
    pub binary: String,
    pub dry_run: bool,
    pub started_at: String,
    pub uptime_s: f64,
    pub rss_bytes: u64,
    pub calls: u64,
    pub errors: u64,
    pub failures: u64,
    pub in_flight: i64,
    pub circuit: Circuit,
    pub ping_failures: u32,
    pub last_ping_us: u64,
    pub alive: bool,
    /// how it exited, once it has
    #[serde(default)]
    pub exit: Option<String>,
    /// why it is failed, or other notes for people
    #[serde(default)]
    pub note: Option<String>,
    /// shadow comparison counts (a dry-run canary only)
    #[serde(default)]
    pub shadow: Option<ShadowView>,
    /// a standby's time left before it is retired
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_expires_in_s: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShadowView {
    pub compared: u64,
    pub matched: u64,
    pub differed: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub skipped: u64,
    #[serde(default)]
    pub last_differences: Vec<Value>,
}

/// What the rollback watch reads over a window of a worker's calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WindowStats {
    pub calls: u64,
    pub failures: u64,
    pub error_rate: f64,
    pub latency_samples: u64,
    pub p95_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WatchView {
    pub worker: u64,
    pub for_s: u64,
    pub remaining_s: u64,
    pub baseline_rss_bytes: u64,
    #[serde(default)]
    pub window: Option<WindowStats>,
    pub limits: WatchLimits,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WatchLimits {
    pub error_budget: f64,
    pub p95_slo_ms: u64,
    pub rss_factor: f64,
}

/// One routing decision, automatic or an operator's: `promote`,
/// `rollback`, `restart`, `canary_started`, … with its facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    pub at: String,
    pub action: String,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_reads_back_and_tolerates_what_it_does_not_know() {
        let v = serde_json::json!({
            "front": {"pid": 1, "version": "0.1.0", "uptime_s": 1.5, "rss_bytes": 10, "restarts": 0,
                      "socket": null, "disable_new": false, "added_later": 1},
            "workers": [{"id": 2, "role": "canary", "pid": 3, "version": "0.1.0", "binary": "/b",
                "dry_run": true, "started_at": "t", "uptime_s": 0.1, "rss_bytes": 1, "calls": 0,
                "errors": 0, "failures": 0, "in_flight": 0, "circuit": "closed", "ping_failures": 0,
                "last_ping_us": 0, "alive": true, "exit": null, "note": null,
                "shadow": {"compared": 4, "matched": 4, "differed": 0, "errors": 0, "timeouts": 0,
                           "skipped": 0, "last_differences": []}}],
            "watch": null,
            "decisions": [{"at": "t", "action": "canary_started", "worker": 2}],
        });
        let h: HealthView = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(
            h.worker(Role::Canary)
                .unwrap()
                .shadow
                .as_ref()
                .unwrap()
                .compared,
            4
        );
        assert!(h.worker(Role::Active).is_none());
        assert_eq!(h.decisions[0].fields["worker"], 2);
        let back = serde_json::to_value(&h).unwrap();
        assert_eq!(back["workers"], v["workers"]);
        assert_eq!(back["decisions"], v["decisions"]);
        assert!(serde_json::from_value::<HealthView>(serde_json::json!({"workers": []})).is_err());
    }
}
