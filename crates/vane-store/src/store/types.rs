//! The store's records: what its methods take and return, engine-free.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vane_core::model::{ExitCriterion, Priority, Status};

/// How long idempotency keys are kept.
pub const IDEMPOTENCY_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// How long a key's owner holds it without renewing (its call renews it
/// every third of this while it runs).
pub const IDEMPOTENCY_LEASE_MS: i64 = 30_000;

/// Who runs a keyed call: a process on some host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    /// `HOST:PID:START_MS`, unique across hosts and pid reuse
    pub id: String,
    pub host: String,
    pub pid: u32,
}

impl KeyOwner {
    /// This process.
    pub fn this_process() -> KeyOwner {
        static ME: std::sync::OnceLock<KeyOwner> = std::sync::OnceLock::new();
        ME.get_or_init(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into());
            let pid = std::process::id();
            KeyOwner {
                id: format!("{host}:{pid}:{}", crate::now_ms()),
                host,
                pid,
            }
        })
        .clone()
    }
}

/// Who holds a key, as the store recorded it.
pub(crate) struct KeyHolder {
    pub pid: u32,
    /// `None`: recorded by a vane before leases (pid only, this host)
    pub id: Option<String>,
    pub lease_expires_ms: Option<i64>,
}

impl KeyHolder {
    /// May `me` take the key over at `now`?
    pub(crate) fn gone(&self, me: &KeyOwner, now: i64, alive: &dyn Fn(u32) -> bool) -> bool {
        match &self.id {
            Some(id) if *id == me.id => true,
            Some(id) => {
                let same_host = id.rsplitn(3, ':').nth(2) == Some(me.host.as_str());
                self.lease_expires_ms.is_some_and(|l| l <= now) || (same_host && !alive(self.pid))
            }
            None => self.pid == me.pid || !alive(self.pid),
        }
    }
}

/// What to do with a call that carries an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum Idempotency {
    /// run it; the key is reserved for this process
    Run,
    /// return the recorded result instead of running again
    Replay { result: Value, is_error: bool },
    /// the owner died after some of the call's writes committed: run the
    /// call again with these journaled write results replayed
    /// (see [`crate::journal`])
    Resume { journal: Vec<Value> },
}

/// A task with its runtime state, as tools return it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct TaskRecord {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub status: Status,
    pub priority: Priority,
    pub owner: Option<String>,
    pub estimate_hours: Option<f64>,
    pub dependencies: Vec<String>,
    pub exit_criteria: Vec<ExitCriterion>,
    pub epic: Option<String>,
    pub milestone: Option<String>,
    pub version: i64,
    pub claimed_by: Option<String>,
    pub lease_expires_at: Option<String>,
    pub started_at: Option<String>,
    pub updated_at: String,
    pub notes: Option<String>,
    #[serde(skip)]
    pub started_at_ms: Option<i64>,
}

/// A change to one task (`plan_update`).
#[derive(Debug, Clone, Default)]
pub struct TaskUpdate {
    pub task_id: String,
    pub status: Option<Status>,
    pub notes: Option<String>,
    pub owner: Option<String>,
    pub priority: Option<Priority>,
    pub expected_version: Option<i64>,
    pub force: bool,
    pub reason: Option<String>,
    pub actor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct UpdateOutcome {
    pub task: TaskRecord,
    pub previous_status: Status,
    pub changed: Vec<String>,
    pub forced: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct ImportSummary {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    pub kept_not_in_file: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct ContextSection {
    pub name: String,
    pub content: String,
    pub words: usize,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Checkpoint {
    pub id: i64,
    pub created_at: String,
    pub reason: String,
    #[serde(flatten)]
    pub data: Value,
}

/// Outcome of one critic run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CriticStatus {
    Pass,
    Fail,
    Error,
    Timeout,
}

impl CriticStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CriticStatus::Pass => "pass",
            CriticStatus::Fail => "fail",
            CriticStatus::Error => "error",
            CriticStatus::Timeout => "timeout",
        }
    }
    pub(crate) fn parse(s: &str) -> CriticStatus {
        match s {
            "pass" => CriticStatus::Pass,
            "fail" => CriticStatus::Fail,
            "timeout" => CriticStatus::Timeout,
            _ => CriticStatus::Error,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct CriticRun {
    pub id: i64,
    pub name: String,
    pub status: CriticStatus,
    pub exit_code: Option<i32>,
    pub command: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: i64,
    pub output_tail: String,
    pub trigger: Value,
    /// task opened or updated because this run failed
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remediation_task: Option<String>,
    #[serde(skip)]
    pub finished_at_ms: i64,
}

/// What a finished critic run reports, before it is recorded.
#[derive(Debug, Clone)]
pub struct NewCriticRun {
    pub name: String,
    pub status: CriticStatus,
    pub exit_code: Option<i32>,
    pub command: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub output_tail: String,
    pub trigger: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Artifact {
    pub id: i64,
    pub uri: String,
    pub kind: String,
    pub path: Option<String>,
    pub metadata: Value,
    pub task_id: Option<String>,
    pub created_at: String,
    pub size: Option<i64>,
    #[serde(skip)]
    pub content_file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Decision {
    pub id: i64,
    pub title: String,
    pub summary: String,
    pub impact: Option<String>,
    pub task_id: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, JsonSchema)]
pub struct FlagRecord {
    pub key: String,
    pub value: String,
    pub updated_at: String,
    pub updated_by: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, JsonSchema)]
pub struct Claim {
    pub task_id: String,
    pub agent: String,
    pub lease_expires_at: Option<String>,
    pub expired: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, JsonSchema)]
pub struct StoreStatus {
    pub tasks: usize,
    pub by_status: IndexMap<String, usize>,
    pub done_ratio: f64,
    pub claims: Vec<Claim>,
    pub revision: i64,
    pub schema_version: i64,
}
