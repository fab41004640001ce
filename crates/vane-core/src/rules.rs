//! The domain decisions a store carries out inside its transactions, as
//! pure functions: whether a task update is allowed and what it changes
//! (version check, the state machine, the critic gate on `done`, forced
//! completions), what a claim sets, and what a critic's failure does to its
//! remediation task. A store reads the facts, asks here, and writes the
//! answer — so every backend decides exactly the same way, and each rule is
//! tested without a database.

use serde_json::{json, Value};

use crate::error::{ErrorCode, VaneError};
use crate::model::{ExitCriterion, Status};
use crate::transitions;

/// The facts of a task a decision reads.
#[derive(Debug, Clone, Copy)]
pub struct TaskFacts<'a> {
    pub id: &'a str,
    pub status: Status,
    pub version: i64,
    /// when its current piece of work started (critic runs must be newer)
    pub started_at_ms: Option<i64>,
    pub exit_criteria: &'a [ExitCriterion],
    /// the agent holding its claim, if any (a lease may have expired)
    pub claimed_by: Option<&'a str>,
}

/// A requested change to a task (`plan_update`), as far as the rules see it.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpdateRequest<'a> {
    pub expected_version: Option<i64>,
    pub status: Option<Status>,
    pub notes: bool,
    pub owner: bool,
    pub priority: bool,
    pub force: bool,
    pub reason: Option<&'a str>,
}

/// What a store knows of one critic for the gate.
#[derive(Debug, Clone, PartialEq)]
pub struct CriticHistory {
    /// a passing run started at or after the task's start
    pub passed_since_start: bool,
    /// the newest run: status and when it finished (ms)
    pub last: Option<(String, i64)>,
}

/// What an allowed update does.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdatePlan {
    pub status: Status,
    /// the fields that change, in the order the task events record them
    pub changed: Vec<String>,
    /// `done` without its critics, with a recorded reason
    pub forced: bool,
    pub started_at_ms: Option<i64>,
    /// the task leaves `in_progress`: its claim and lease are released
    pub release_claim: bool,
}

/// Decides an update of `prev`. `history` answers, for a critic named by an
/// exit criterion, what the store knows of its runs (asked only when the
/// task moves to `done`); `iso` formats a timestamp for the error details.
pub fn plan_update(
    prev: &TaskFacts<'_>,
    u: &UpdateRequest<'_>,
    now: i64,
    mut history: impl FnMut(&str) -> Result<CriticHistory, VaneError>,
    iso: impl Fn(i64) -> String,
) -> Result<UpdatePlan, VaneError> {
    if let Some(expected) = u.expected_version {
        if expected != prev.version {
            return Err(VaneError::new(
                ErrorCode::VersionConflict,
                format!(
                    "task `{}` is at version {}, not {expected}: someone changed it; re-read and retry",
                    prev.id, prev.version
                ),
            )
            .with_details(json!({ "task_id": prev.id, "expected_version": expected, "current_version": prev.version, "current_status": prev.status })));
        }
    }
    let mut changed = Vec::new();
    let mut forced = false;
    let mut status = prev.status;
    if let Some(to) = u.status {
        transitions::check(prev.id, prev.status, to)?;
        if to == Status::Done && prev.status != Status::Done {
            let unmet = unmet_critics(prev, &mut history, &iso)?;
            if !unmet.is_empty() {
                if !u.force {
                    let names: Vec<&str> =
                        unmet.iter().filter_map(|v| v["critic"].as_str()).collect();
                    return Err(VaneError::new(
                        ErrorCode::ExitCriteriaUnmet,
                        format!(
                            "task `{}` needs a passing run of critic(s) {} since it started; run critics_run, or pass force with a reason",
                            prev.id,
                            names.join(", ")
                        ),
                    )
                    .with_details(json!({ "task_id": prev.id, "unmet": unmet })));
                }
                if u.reason.is_none_or(|r| r.trim().is_empty()) {
                    return Err(VaneError::invalid_input(
                        "force needs a non-empty reason, which is recorded",
                    ));
                }
                forced = true;
            }
        }
        if to != prev.status {
            status = to;
            changed.push("status".to_string());
        }
    }
    let release_claim = prev.status == Status::InProgress && status != Status::InProgress;
    let entering_progress = status == Status::InProgress && prev.status != Status::InProgress;
    let started_at_ms = if entering_progress && prev.status != Status::Review {
        Some(now)
    } else {
        prev.started_at_ms
    };
    for (present, name) in [
        (u.notes, "notes"),
        (u.owner, "owner"),
        (u.priority, "priority"),
    ] {
        if present {
            changed.push(name.to_string());
        }
    }
    Ok(UpdatePlan {
        status,
        changed,
        forced,
        started_at_ms,
        release_claim,
    })
}

/// The critics a task's exit criteria name that have not passed since it
/// started, each with its newest run.
pub fn unmet_critics(
    t: &TaskFacts<'_>,
    mut history: impl FnMut(&str) -> Result<CriticHistory, VaneError>,
    iso: impl Fn(i64) -> String,
) -> Result<Vec<Value>, VaneError> {
    let since = t.started_at_ms.unwrap_or(0);
    let mut unmet = Vec::new();
    for ec in t.exit_criteria {
        let Some(name) = ec.critic() else { continue };
        let h = history(name)?;
        if !h.passed_since_start {
            unmet.push(json!({
                "critic": name,
                "last_run": h.last.map(|(s, at)| json!({ "status": s, "finished_at": iso(at), "before_task_started": at < since })),
            }));
        }
    }
    Ok(unmet)
}

/// What a claim of `prev` by an agent sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimPlan {
    pub lease_expires_ms: i64,
    /// a task already in progress keeps its start (a takeover of an
    /// expired lease continues the same piece of work)
    pub started_at_ms: i64,
    /// another agent's (expired) claim is taken over
    pub takeover: bool,
}

pub fn plan_claim(prev: &TaskFacts<'_>, ttl_s: u64, now: i64) -> ClaimPlan {
    ClaimPlan {
        lease_expires_ms: now + (ttl_s as i64) * 1000,
        started_at_ms: if prev.status == Status::InProgress {
            prev.started_at_ms.unwrap_or(now)
        } else {
            now
        },
        takeover: prev.claimed_by.is_some(),
    }
}

/// A finished critic run, as the remediation rule reads it.
#[derive(Debug, Clone, Copy)]
pub struct CriticOutcome<'a> {
    pub name: &'a str,
    pub status: &'a str,
    pub exit_code: Option<i32>,
    pub command: &'a str,
    pub output_tail: &'a str,
    pub finished_at_ms: i64,
}

/// What a failing critic does to its remediation task `CRITIC-<name>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Remediation {
    /// the task does not exist: create it, pending, gated by the critic
    Create {
        id: String,
        title: String,
        description: String,
        exit_criteria: Vec<ExitCriterion>,
        extra: Value,
        reason: String,
    },
    /// it exists: refresh its description; reopen it when it was closed
    Refresh {
        id: String,
        description: String,
        reopen: bool,
        from: Status,
        to: Status,
        reason: String,
    },
}

/// The remediation task's id for critic `name`.
pub fn remediation_id(name: &str) -> String {
    format!("CRITIC-{name}")
}

/// Decides the remediation of a failed run; `existing`: the status of
/// `CRITIC-<name>` if it exists.
pub fn remediation(
    run: &CriticOutcome<'_>,
    existing: Option<Status>,
    iso: impl Fn(i64) -> String,
) -> Remediation {
    let id = remediation_id(run.name);
    let tail: String = run
        .output_tail
        .chars()
        .rev()
        .take(2000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let description = format!(
        "Critic `{}` reported {} (exit code {}) at {}.\nCommand: {}\n\nOutput tail:\n{}",
        run.name,
        run.status,
        run.exit_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "none".into()),
        iso(run.finished_at_ms),
        run.command,
        tail
    );
    let reason = format!("critic {} {}", run.name, run.status);
    match existing {
        None => Remediation::Create {
            title: format!("Fix failing critic `{}`", run.name),
            description,
            exit_criteria: vec![ExitCriterion::Critic(run.name.to_string())],
            extra: json!({ "source": "critic", "critic": run.name }),
            reason,
            id,
        },
        Some(from) => {
            let reopen = matches!(from, Status::Done | Status::Cancelled);
            Remediation::Refresh {
                id,
                description,
                reopen,
                from,
                to: if reopen { Status::Pending } else { from },
                reason,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(ms: i64) -> String {
        format!("t{ms}")
    }

    fn facts<'a>(status: Status, criteria: &'a [ExitCriterion]) -> TaskFacts<'a> {
        TaskFacts {
            id: "T1",
            status,
            version: 4,
            started_at_ms: Some(1_000),
            exit_criteria: criteria,
            claimed_by: Some("a1"),
        }
    }

    fn passed(ok: bool) -> impl FnMut(&str) -> Result<CriticHistory, VaneError> {
        move |_| {
            Ok(CriticHistory {
                passed_since_start: ok,
                last: Some(("fail".into(), 900)),
            })
        }
    }

    #[test]
    fn a_stale_version_is_a_conflict_naming_the_current_one() {
        let t = facts(Status::Pending, &[]);
        let u = UpdateRequest {
            expected_version: Some(3),
            status: Some(Status::InProgress),
            ..Default::default()
        };
        let e = plan_update(&t, &u, 5_000, passed(true), iso).unwrap_err();
        assert_eq!(e.code, ErrorCode::VersionConflict);
        assert_eq!(e.details["current_version"], 4);
    }

    #[test]
    fn done_is_earned_by_critics_or_forced_with_a_reason() {
        let gate = [
            ExitCriterion::Critic("tests".into()),
            ExitCriterion::Text("x".into()),
        ];
        let t = facts(Status::InProgress, &gate);
        let done = UpdateRequest {
            status: Some(Status::Done),
            ..Default::default()
        };
        let e = plan_update(&t, &done, 5_000, passed(false), iso).unwrap_err();
        assert_eq!(e.code, ErrorCode::ExitCriteriaUnmet);
        let unmet = &e.details["unmet"][0];
        assert_eq!(unmet["critic"], "tests");
        assert_eq!(unmet["last_run"]["before_task_started"], true);
        assert_eq!(unmet["last_run"]["finished_at"], "t900");
        let no_reason = UpdateRequest {
            force: true,
            ..done
        };
        assert_eq!(
            plan_update(&t, &no_reason, 5_000, passed(false), iso)
                .unwrap_err()
                .code,
            ErrorCode::InvalidInput
        );
        let forced = UpdateRequest {
            force: true,
            reason: Some("flaky runner"),
            ..done
        };
        let p = plan_update(&t, &forced, 5_000, passed(false), iso).unwrap();
        assert!(p.forced && p.release_claim);
        assert_eq!(p.status, Status::Done);
        let p = plan_update(&t, &done, 5_000, passed(true), iso).unwrap();
        assert!(!p.forced);
        assert_eq!(p.changed, ["status"]);
    }

    #[test]
    fn starting_work_sets_the_start_and_leaving_it_releases_the_claim() {
        let t = facts(Status::Pending, &[]);
        let start = UpdateRequest {
            status: Some(Status::InProgress),
            notes: true,
            ..Default::default()
        };
        let p = plan_update(&t, &start, 7_000, passed(true), iso).unwrap();
        assert_eq!(p.started_at_ms, Some(7_000));
        assert!(!p.release_claim);
        assert_eq!(p.changed, ["status", "notes"]);
        // back from review keeps the start: the critics already run count
        let r = facts(Status::Review, &[]);
        let p = plan_update(&r, &start, 7_000, passed(true), iso).unwrap();
        assert_eq!(p.started_at_ms, Some(1_000));
        let e = plan_update(
            &facts(Status::Done, &[]),
            &UpdateRequest {
                status: Some(Status::Blocked),
                ..Default::default()
            },
            7_000,
            passed(true),
            iso,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidTransition);
    }

    #[test]
    fn a_claim_keeps_an_in_progress_start_and_marks_takeovers() {
        let t = facts(Status::InProgress, &[]);
        let c = plan_claim(&t, 60, 10_000);
        assert_eq!(c.lease_expires_ms, 70_000);
        assert_eq!(c.started_at_ms, 1_000);
        assert!(c.takeover);
        let fresh = TaskFacts {
            claimed_by: None,
            ..facts(Status::Pending, &[])
        };
        let c = plan_claim(&fresh, 60, 10_000);
        assert_eq!((c.started_at_ms, c.takeover), (10_000, false));
    }

    #[test]
    fn a_failing_critic_opens_or_reopens_its_remediation_task() {
        let run = CriticOutcome {
            name: "lint",
            status: "fail",
            exit_code: Some(2),
            command: "cargo clippy",
            output_tail: &"x".repeat(3000),
            finished_at_ms: 42,
        };
        let Remediation::Create {
            id,
            description,
            exit_criteria,
            ..
        } = remediation(&run, None, iso)
        else {
            panic!("a new task")
        };
        assert_eq!(id, "CRITIC-lint");
        assert!(description.contains("exit code 2") && description.contains("at t42"));
        assert!(
            description.len() < 2_200,
            "the tail is cut to 2,000 characters"
        );
        assert_eq!(exit_criteria, [ExitCriterion::Critic("lint".into())]);
        let Remediation::Refresh { reopen, to, .. } = remediation(&run, Some(Status::Done), iso)
        else {
            panic!("a refresh")
        };
        assert!(reopen);
        assert_eq!(to, Status::Pending);
        let Remediation::Refresh { reopen, to, .. } =
            remediation(&run, Some(Status::InProgress), iso)
        else {
            panic!("a refresh")
        };
        assert!(!reopen);
        assert_eq!(to, Status::InProgress);
    }
}
