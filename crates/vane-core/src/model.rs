//! The roadmap model: groups (epics, milestones, task sets), tasks, statuses,
//! priorities and exit criteria. Unknown fields are kept in `extra` so that an
//! import followed by an export loses nothing.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ErrorCode, VaneError};

/// Task status. See [`crate::transitions`] for the allowed moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    InProgress,
    Blocked,
    Review,
    Done,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Pending,
        Status::InProgress,
        Status::Blocked,
        Status::Review,
        Status::Done,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::InProgress => "in_progress",
            Status::Blocked => "blocked",
            Status::Review => "review",
            Status::Done => "done",
            Status::Cancelled => "cancelled",
        }
    }

    /// Parses a status, accepting the spellings seen in real roadmaps.
    pub fn parse(s: &str) -> Option<Status> {
        let norm = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        Some(match norm.as_str() {
            "pending" | "todo" | "open" | "not_started" | "planned" => Status::Pending,
            "in_progress" | "inprogress" | "active" | "wip" | "started" => Status::InProgress,
            "blocked" => Status::Blocked,
            "review" | "in_review" | "needs_review" => Status::Review,
            "done" | "complete" | "completed" | "closed" => Status::Done,
            "cancelled" | "canceled" | "dropped" | "wontfix" => Status::Cancelled,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = VaneError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::parse(s).ok_or_else(|| {
            VaneError::new(ErrorCode::InvalidInput, format!("unknown status `{s}`")).with_details(
                serde_json::json!({ "allowed": Status::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>() }),
            )
        })
    }
}

/// Task priority: `critical` (0), `high` (1), `medium` (2), `low` (3).
/// Numbers are accepted on input; a lower number is more urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u8);

impl Priority {
    pub const CRITICAL: Priority = Priority(0);
    pub const HIGH: Priority = Priority(1);
    pub const MEDIUM: Priority = Priority(2);
    pub const LOW: Priority = Priority(3);
    pub const NAMES: [&'static str; 4] = ["critical", "high", "medium", "low"];

    pub fn rank(self) -> u8 {
        self.0
    }

    pub fn from_rank(rank: u8) -> Option<Priority> {
        (rank <= 3).then_some(Priority(rank))
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self.0 as usize]
    }

    pub fn parse_str(s: &str) -> Option<Priority> {
        let norm = s.trim().to_ascii_lowercase();
        Some(match norm.as_str() {
            "critical" | "p0" | "urgent" => Priority(0),
            "high" | "p1" => Priority(1),
            "medium" | "p2" | "normal" => Priority(2),
            "low" | "p3" => Priority(3),
            other => return other.parse::<u8>().ok().and_then(Priority::from_rank),
        })
    }

    pub fn from_value(v: &Value) -> Option<Priority> {
        match v {
            Value::String(s) => Priority::parse_str(s),
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .and_then(Priority::from_rank),
            _ => None,
        }
    }

    pub fn invalid(v: impl std::fmt::Display) -> VaneError {
        VaneError::invalid_input(format!(
            "invalid priority `{v}`: use critical, high, medium, low (or 0-3, 0 = critical)"
        ))
        .with_details(serde_json::json!({ "allowed": Priority::NAMES }))
    }
}

impl Serialize for Priority {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Priority::from_value(&v)
            .ok_or_else(|| serde::de::Error::custom(Priority::invalid(&v).message))
    }
}

impl JsonSchema for Priority {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Priority".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "critical | high | medium | low, or 0-3 (0 = critical)",
            "oneOf": [
                { "type": "string", "enum": ["critical", "high", "medium", "low"] },
                { "type": "integer", "minimum": 0, "maximum": 3 }
            ]
        })
    }
}

/// One exit criterion of a task, in the upstream roadmap's forms.
#[derive(Debug, Clone, PartialEq)]
pub enum ExitCriterion {
    /// `critic: NAME` — a critic run must pass before `done`.
    Critic(String),
    /// `doc: PATH`
    Doc(String),
    /// `artifact: PATH`
    Artifact(String),
    /// free text
    Text(String),
    /// any other mapping (`tests: path`, …), kept as written
    Other(IndexMap<String, Value>),
}

impl ExitCriterion {
    pub fn from_value(v: &Value) -> ExitCriterion {
        match v {
            Value::String(s) => ExitCriterion::Text(s.clone()),
            Value::Object(map) if map.len() == 1 => {
                let (k, val) = map.iter().next().expect("len checked");
                match (k.as_str(), val) {
                    ("critic", Value::String(s)) => ExitCriterion::Critic(s.clone()),
                    ("doc", Value::String(s)) => ExitCriterion::Doc(s.clone()),
                    ("artifact", Value::String(s)) => ExitCriterion::Artifact(s.clone()),
                    _ => ExitCriterion::Other(
                        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    ),
                }
            }
            Value::Object(map) => {
                ExitCriterion::Other(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }
            other => ExitCriterion::Text(match other {
                Value::Null => String::new(),
                v => v.to_string(),
            }),
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            ExitCriterion::Critic(s) => serde_json::json!({ "critic": s }),
            ExitCriterion::Doc(s) => serde_json::json!({ "doc": s }),
            ExitCriterion::Artifact(s) => serde_json::json!({ "artifact": s }),
            ExitCriterion::Text(s) => Value::String(s.clone()),
            ExitCriterion::Other(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }
        }
    }

    pub fn critic(&self) -> Option<&str> {
        match self {
            ExitCriterion::Critic(s) => Some(s),
            _ => None,
        }
    }
}

impl Serialize for ExitCriterion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl JsonSchema for ExitCriterion {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ExitCriterion".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`{critic: NAME}`, `{doc: PATH}`, `{artifact: PATH}`, free text, or another mapping kept as written",
            "anyOf": [ { "type": "string" }, { "type": "object" } ]
        })
    }
}

impl<'de> Deserialize<'de> for ExitCriterion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ExitCriterion::from_value(&Value::deserialize(d)?))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    Epic,
    Milestone,
    Set,
}

impl GroupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::Epic => "epic",
            GroupKind::Milestone => "milestone",
            GroupKind::Set => "set",
        }
    }
    pub fn parse(s: &str) -> Option<GroupKind> {
        Some(match s {
            "epic" => GroupKind::Epic,
            "milestone" => GroupKind::Milestone,
            "set" => GroupKind::Set,
            _ => return None,
        })
    }
}

/// An epic, a milestone or a task set. `parent` indexes `Roadmap::groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub kind: GroupKind,
    pub id: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub status: Option<String>,
    pub parent: Option<usize>,
    /// every other field, in document order
    pub extra: IndexMap<String, Value>,
}

/// A task as the roadmap describes it (runtime state such as claims and
/// versions lives in the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub status: Status,
    pub priority: Option<Priority>,
    pub owner: Option<String>,
    pub estimate_hours: Option<f64>,
    pub dependencies: Vec<String>,
    pub exit_criteria: Vec<ExitCriterion>,
    /// Index into `Roadmap::groups` of the group that holds the task; `None`
    /// for a top-level task.
    pub parent: Option<usize>,
    /// every other field, in document order
    pub extra: IndexMap<String, Value>,
}

impl Task {
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Task {
        Task {
            id: id.into(),
            title: title.into(),
            description: None,
            status: Status::Pending,
            priority: None,
            owner: None,
            estimate_hours: None,
            dependencies: Vec::new(),
            exit_criteria: Vec::new(),
            parent: None,
            extra: IndexMap::new(),
        }
    }

    /// The priority used for ordering: unspecified counts as medium.
    pub fn effective_priority(&self) -> Priority {
        self.priority.unwrap_or(Priority::MEDIUM)
    }

    pub fn critics(&self) -> impl Iterator<Item = &str> {
        self.exit_criteria.iter().filter_map(ExitCriterion::critic)
    }
}

/// A whole roadmap: groups and tasks in document order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Roadmap {
    pub groups: Vec<Group>,
    pub tasks: Vec<Task>,
    /// top-level keys other than `epics` and `tasks`
    pub extra: IndexMap<String, Value>,
}

impl Roadmap {
    /// The epic and milestone ids that hold a task (walking up its groups).
    pub fn lineage(&self, task: &Task) -> (Option<String>, Option<String>) {
        let mut epic = None;
        let mut milestone = None;
        let mut cur = task.parent;
        while let Some(i) = cur {
            let Some(g) = self.groups.get(i) else { break };
            match g.kind {
                GroupKind::Epic if epic.is_none() => epic = Some(g.id.clone()),
                GroupKind::Milestone if milestone.is_none() => milestone = Some(g.id.clone()),
                _ => {}
            }
            cur = g.parent;
        }
        if epic.is_none() {
            // Top-level tasks of newer roadmaps name their epic in a field.
            for key in ["epic_id", "epic"] {
                if let Some(Value::String(s)) = task.extra.get(key) {
                    epic = Some(s.clone());
                    break;
                }
            }
        }
        (epic, milestone)
    }
}
