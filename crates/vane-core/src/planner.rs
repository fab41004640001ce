//! The planner behind `plan_next`: which tasks are ready, in what order, and
//! why the others are not.
//!
//! A task is **ready** when it is `pending` (or `in_progress` with an expired
//! lease, which returns it to the pool), every dependency exists and is
//! `done`, and nobody holds a live claim on it. Ready tasks are ordered by
//! priority (critical first; unspecified counts as medium), then by how many
//! open tasks each one transitively unblocks, then by roadmap order.
//!
//! The graph is built once per store revision and queried many times; queries
//! never allocate per task beyond their result.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};

use schemars::JsonSchema;
use serde::Serialize;

use crate::flags::SchedulerMode;
use crate::model::{Priority, Status};

/// The planner's view of one task.
#[derive(Debug, Clone)]
pub struct PlanItem {
    pub id: String,
    pub title: String,
    pub status: Status,
    pub priority: Priority,
    pub epic: Option<String>,
    pub milestone: Option<String>,
    pub owner: Option<String>,
    pub dependencies: Vec<String>,
    pub claimed_by: Option<String>,
    /// lease end, milliseconds since the Unix epoch
    pub lease_expires_ms: Option<i64>,
    pub estimate_hours: Option<f64>,
    pub version: i64,
}

impl PlanItem {
    fn has_live_claim(&self, now_ms: i64) -> bool {
        self.claimed_by.is_some() && self.lease_expires_ms.is_none_or(|e| e > now_ms)
    }
    fn lease_expired(&self, now_ms: i64) -> bool {
        self.claimed_by.is_some() && self.lease_expires_ms.is_some_and(|e| e <= now_ms)
    }
}

#[derive(Debug, Clone, Default)]
pub struct PlanQuery {
    pub limit: usize,
    pub epic: Option<String>,
    pub milestone: Option<String>,
    pub owner: Option<String>,
    /// list tasks in this status instead of the ready ones
    pub status: Option<Status>,
    /// how many blocked tasks to explain
    pub explain_blocked: usize,
    /// ordering (the SCHEDULER_MODE flag)
    pub mode: Option<SchedulerMode>,
}

/// Weighted shortest job first: cost of delay (priority value plus the open
/// tasks it unblocks) divided by job size (estimate_hours, 4 when unknown).
pub fn wsjf(priority: Priority, unblocks: usize, estimate_hours: Option<f64>) -> f64 {
    let value = [8.0, 5.0, 3.0, 1.0][priority.rank() as usize];
    let size = estimate_hours
        .filter(|h| h.is_finite() && *h > 0.0)
        .unwrap_or(4.0)
        .max(0.5);
    (value + unblocks as f64) / size
}

#[derive(Debug, Clone, Serialize, PartialEq, JsonSchema)]
pub struct PlanEntry {
    pub id: String,
    pub title: String,
    pub status: Status,
    pub priority: Priority,
    pub ready: bool,
    /// open tasks that (transitively) wait on this one
    pub unblocks: usize,
    pub epic: Option<String>,
    pub milestone: Option<String>,
    pub owner: Option<String>,
    pub version: i64,
    /// true when the task was claimed but the lease ran out
    pub lease_expired: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BlockReason {
    /// a dependency is not done yet
    Dependency { id: String, status: Status },
    /// a dependency names no task in the roadmap
    MissingDependency { id: String },
    /// another agent holds a live claim
    Claimed {
        agent: String,
        lease_expires_ms: Option<i64>,
    },
    /// the task is marked blocked
    MarkedBlocked,
}

#[derive(Debug, Clone, Serialize, PartialEq, JsonSchema)]
pub struct BlockedEntry {
    pub id: String,
    pub title: String,
    pub status: Status,
    pub priority: Priority,
    pub reasons: Vec<BlockReason>,
}

#[derive(Debug, Clone, Serialize, PartialEq, JsonSchema)]
pub struct Plan {
    pub tasks: Vec<PlanEntry>,
    /// how many tasks matched before `limit`
    pub total: usize,
    pub blocked: Vec<BlockedEntry>,
}

/// A dependency graph over [`PlanItem`]s.
#[derive(Debug, Default)]
pub struct PlanGraph {
    items: Vec<PlanItem>,
    index: HashMap<String, usize>,
    dependents: Vec<Vec<usize>>,
    /// every dependency exists and is done (fixed for the graph's lifetime)
    deps_done: Vec<bool>,
    /// memoised transitive unblock counts; `u32::MAX` = not computed yet
    unblocks_memo: Vec<AtomicU32>,
}

impl PlanGraph {
    /// Every task, in roadmap order.
    pub fn items(&self) -> &[PlanItem] {
        &self.items
    }

    /// Items must be in roadmap order.
    pub fn new(items: Vec<PlanItem>) -> PlanGraph {
        let index: HashMap<String, usize> = items
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        let mut deps = vec![Vec::new(); items.len()];
        let mut dangling = vec![false; items.len()];
        let mut dependents = vec![Vec::new(); items.len()];
        for (i, t) in items.iter().enumerate() {
            for d in &t.dependencies {
                match index.get(d) {
                    Some(&j) => {
                        deps[i].push(j);
                        dependents[j].push(i);
                    }
                    None => dangling[i] = true,
                }
            }
        }
        let deps_done = (0..items.len())
            .map(|i| !dangling[i] && deps[i].iter().all(|&j| items[j].status == Status::Done))
            .collect();
        let unblocks_memo = (0..items.len()).map(|_| AtomicU32::new(u32::MAX)).collect();
        PlanGraph {
            items,
            index,
            dependents,
            deps_done,
            unblocks_memo,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&PlanItem> {
        self.index.get(id).map(|&i| &self.items[i])
    }

    /// Whether the task could be claimed right now.
    pub fn is_ready(&self, id: &str, now_ms: i64) -> bool {
        self.index.get(id).is_some_and(|&i| self.ready(i, now_ms))
    }

    fn ready(&self, i: usize, now_ms: i64) -> bool {
        let t = &self.items[i];
        let open = match t.status {
            Status::Pending => !t.has_live_claim(now_ms),
            Status::InProgress => t.lease_expired(now_ms),
            _ => false,
        };
        open && self.deps_done[i]
    }

    fn matches(&self, t: &PlanItem, q: &PlanQuery) -> bool {
        fn eq(filter: &Option<String>, v: &Option<String>) -> bool {
            filter
                .as_ref()
                .is_none_or(|f| v.as_deref() == Some(f.as_str()))
        }
        eq(&q.epic, &t.epic) && eq(&q.milestone, &t.milestone) && eq(&q.owner, &t.owner)
    }

    /// Open tasks reachable through "is depended on by" edges.
    fn unblocks(&self, i: usize, stamp: &mut Vec<u32>, gen: u32, stack: &mut Vec<usize>) -> usize {
        let memo = self.unblocks_memo[i].load(AtomicOrdering::Relaxed);
        if memo != u32::MAX {
            return memo as usize;
        }
        if stamp.is_empty() {
            stamp.resize(self.items.len(), 0);
        }
        let mut count = 0;
        stack.clear();
        stack.push(i);
        stamp[i] = gen;
        while let Some(v) = stack.pop() {
            for &w in &self.dependents[v] {
                if stamp[w] != gen {
                    stamp[w] = gen;
                    if !matches!(self.items[w].status, Status::Done | Status::Cancelled) {
                        count += 1;
                    }
                    stack.push(w);
                }
            }
        }
        self.unblocks_memo[i].store(
            count.min(u32::MAX as usize - 1) as u32,
            AtomicOrdering::Relaxed,
        );
        count
    }

    fn reasons(&self, i: usize, now_ms: i64) -> Vec<BlockReason> {
        let t = &self.items[i];
        let mut out = Vec::new();
        if t.status == Status::Blocked {
            out.push(BlockReason::MarkedBlocked);
        }
        if t.has_live_claim(now_ms) {
            out.push(BlockReason::Claimed {
                agent: t.claimed_by.clone().unwrap_or_default(),
                lease_expires_ms: t.lease_expires_ms,
            });
        }
        for d in &t.dependencies {
            match self.index.get(d) {
                None => out.push(BlockReason::MissingDependency { id: d.clone() }),
                Some(&j) if self.items[j].status != Status::Done => {
                    out.push(BlockReason::Dependency {
                        id: d.clone(),
                        status: self.items[j].status,
                    })
                }
                Some(_) => {}
            }
        }
        out
    }

    fn entry(&self, i: usize, unblocks: usize, now_ms: i64) -> PlanEntry {
        let t = &self.items[i];
        PlanEntry {
            id: t.id.clone(),
            title: t.title.clone(),
            status: t.status,
            priority: t.priority,
            ready: self.ready(i, now_ms),
            unblocks,
            epic: t.epic.clone(),
            milestone: t.milestone.clone(),
            owner: t.owner.clone(),
            version: t.version,
            lease_expired: t.lease_expired(now_ms),
        }
    }

    /// Ready (or, with `status`, matching) tasks in plan order, plus the
    /// reasons the most urgent non-ready tasks are waiting.
    pub fn plan(&self, q: &PlanQuery, now_ms: i64) -> Plan {
        let mut stamp = Vec::new();
        let mut stack = Vec::new();
        let mut gen = 0u32;
        let mut picked: Vec<(usize, usize)> = Vec::new();
        for (i, t) in self.items.iter().enumerate() {
            let wanted = match q.status {
                Some(s) => t.status == s,
                None => self.ready(i, now_ms),
            };
            if wanted && self.matches(t, q) {
                gen += 1;
                picked.push((i, self.unblocks(i, &mut stamp, gen, &mut stack)));
            }
        }
        match q.mode.unwrap_or(SchedulerMode::Priority) {
            SchedulerMode::Priority => picked.sort_by(|a, b| {
                self.items[a.0]
                    .priority
                    .cmp(&self.items[b.0].priority)
                    .then(b.1.cmp(&a.1))
                    .then(a.0.cmp(&b.0))
            }),
            SchedulerMode::Wsjf => {
                let score = |&(i, u): &(usize, usize)| {
                    wsjf(self.items[i].priority, u, self.items[i].estimate_hours)
                };
                picked.sort_by(|a, b| score(b).total_cmp(&score(a)).then(a.0.cmp(&b.0)))
            }
        }
        let total = picked.len();
        let tasks = picked
            .iter()
            .take(q.limit)
            .map(|&(i, u)| self.entry(i, u, now_ms))
            .collect();

        let mut blocked = Vec::new();
        if q.explain_blocked > 0 {
            let mut waiting: Vec<usize> = (0..self.items.len())
                .filter(|&i| {
                    let t = &self.items[i];
                    matches!(t.status, Status::Pending | Status::Blocked)
                        && !self.ready(i, now_ms)
                        && self.matches(t, q)
                })
                .collect();
            waiting.sort_by(|&a, &b| {
                self.items[a]
                    .priority
                    .cmp(&self.items[b].priority)
                    .then(a.cmp(&b))
            });
            blocked = waiting
                .into_iter()
                .take(q.explain_blocked)
                .map(|i| {
                    let t = &self.items[i];
                    BlockedEntry {
                        id: t.id.clone(),
                        title: t.title.clone(),
                        status: t.status,
                        priority: t.priority,
                        reasons: self.reasons(i, now_ms),
                    }
                })
                .collect();
        }
        Plan {
            tasks,
            total,
            blocked,
        }
    }

    /// The first ready task in plan order that satisfies `filter`, for claims.
    pub fn first_ready(&self, q: &PlanQuery, now_ms: i64) -> Option<&PlanItem> {
        let q = PlanQuery {
            limit: 1,
            status: None,
            explain_blocked: 0,
            ..q.clone()
        };
        let plan = self.plan(&q, now_ms);
        plan.tasks.first().and_then(|e| self.get(&e.id))
    }

    /// Ready tasks in plan order (ids), for claimers that must retry.
    pub fn ready_ids(&self, q: &PlanQuery, now_ms: i64, max: usize) -> Vec<String> {
        let q = PlanQuery {
            limit: max,
            status: None,
            explain_blocked: 0,
            ..q.clone()
        };
        self.plan(&q, now_ms)
            .tasks
            .into_iter()
            .map(|e| e.id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, status: Status, prio: Priority, deps: &[&str]) -> PlanItem {
        PlanItem {
            id: id.into(),
            title: id.into(),
            status,
            priority: prio,
            epic: None,
            milestone: None,
            owner: None,
            dependencies: deps.iter().map(|s| s.to_string()).collect(),
            claimed_by: None,
            lease_expires_ms: None,
            estimate_hours: None,
            version: 1,
        }
    }

    #[test]
    fn readiness_respects_dependencies_and_order() {
        use Status::*;
        let g = PlanGraph::new(vec![
            item("A", Done, Priority::MEDIUM, &[]),
            item("B", Pending, Priority::MEDIUM, &["A"]),
            item("C", Pending, Priority::MEDIUM, &[]),
            item("D", Pending, Priority::MEDIUM, &["C"]),
            item("E", Pending, Priority::MEDIUM, &["D"]),
            item("F", Pending, Priority::CRITICAL, &["GHOST"]),
            item("G", Pending, Priority::LOW, &[]),
            item("H", Pending, Priority::HIGH, &["B"]),
        ]);
        let q = PlanQuery {
            limit: 10,
            explain_blocked: 10,
            ..Default::default()
        };
        let p = g.plan(&q, 0);
        let ids: Vec<&str> = p.tasks.iter().map(|e| e.id.as_str()).collect();
        // C unblocks D and E (2), B unblocks H (1): C first; G is low priority.
        assert_eq!(ids, vec!["C", "B", "G"]);
        assert_eq!(p.tasks[0].unblocks, 2);
        let f = p.blocked.iter().find(|b| b.id == "F").unwrap();
        assert_eq!(
            f.reasons,
            vec![BlockReason::MissingDependency { id: "GHOST".into() }]
        );
        assert_eq!(
            p.blocked[0].id, "F",
            "most urgent blocked task explained first"
        );
    }

    #[test]
    fn claims_hide_tasks_until_the_lease_expires() {
        let mut a = item("A", Status::InProgress, Priority::MEDIUM, &[]);
        a.claimed_by = Some("agent-1".into());
        a.lease_expires_ms = Some(1000);
        let g = PlanGraph::new(vec![a]);
        assert!(!g.is_ready("A", 999));
        assert!(g.is_ready("A", 1000));
        let p = g.plan(
            &PlanQuery {
                limit: 5,
                ..Default::default()
            },
            2000,
        );
        assert!(p.tasks[0].lease_expired);
    }

    #[test]
    fn wsjf_prefers_small_valuable_jobs() {
        let mut big = item("BIG", Status::Pending, Priority::CRITICAL, &[]);
        big.estimate_hours = Some(40.0);
        let mut small = item("SMALL", Status::Pending, Priority::MEDIUM, &[]);
        small.estimate_hours = Some(1.0);
        let g = PlanGraph::new(vec![big, small]);
        let by = |mode| {
            let q = PlanQuery {
                limit: 5,
                mode: Some(mode),
                ..Default::default()
            };
            g.plan(&q, 0)
                .tasks
                .iter()
                .map(|t| t.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(by(SchedulerMode::Priority), vec!["BIG", "SMALL"]);
        assert_eq!(
            by(SchedulerMode::Wsjf),
            vec!["SMALL", "BIG"],
            "3/1 beats 8/40"
        );
    }

    #[test]
    fn filters_and_status_listing() {
        let mut a = item("A", Status::Pending, Priority::MEDIUM, &[]);
        a.epic = Some("E1".into());
        let b = item("B", Status::Blocked, Priority::MEDIUM, &[]);
        let g = PlanGraph::new(vec![a, b]);
        let q = PlanQuery {
            limit: 5,
            epic: Some("E2".into()),
            ..Default::default()
        };
        assert!(g.plan(&q, 0).tasks.is_empty());
        let q = PlanQuery {
            limit: 5,
            status: Some(Status::Blocked),
            ..Default::default()
        };
        assert_eq!(g.plan(&q, 0).tasks[0].id, "B");
    }
}
