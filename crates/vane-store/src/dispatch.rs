//! Dispatch in the store: attempts (which are the cost ledger), provider
//! health and budget alerts.
//!
//! Why the budget check is here: several runners (threads or processes) start
//! attempts at once, and "a run never starts that the remaining budget cannot
//! cover" only holds if the check and the reservation are one transaction.
//! A running attempt reserves its ceiling; a finished one counts what it cost.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vane_core::dispatch::{Outcome, ProviderHealth, Usage};
use vane_core::{ErrorCode, VaneError};

use crate::sql::{one, one_opt, p, Row, Sql, Val};
use crate::store::{iso, Result, Store};

/// One budget limit an attempt must fit in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetCheck {
    /// `total`, or the provider's name
    pub scope: String,
    /// hour | day | month
    pub window: String,
    pub window_start_ms: i64,
    pub limit_micros: i64,
}

/// What `attempt_start` records.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub task_id: String,
    pub runner: String,
    pub runner_pid: i64,
    pub env: String,
    pub provider: String,
    pub model: Option<String>,
    pub started_at_ms: i64,
    pub ceiling_micros: i64,
    pub budgets: Vec<BudgetCheck>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Default)]
pub struct AttemptEnd {
    pub id: i64,
    pub outcome: Option<Outcome>,
    pub finished_at_ms: i64,
    pub exit_status: Option<i32>,
    pub model: Option<String>,
    pub session_id: Option<String>,
    pub usage: Usage,
    pub estimate_micros: i64,
    pub reported_micros: Option<i64>,
    pub priced: bool,
    pub num_turns: Option<i64>,
    pub transcript_artifact: Option<i64>,
    pub error: Option<String>,
    pub detail: Value,
}

/// A row of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Attempt {
    pub id: i64,
    pub task_id: String,
    pub runner: String,
    pub env: String,
    pub provider: String,
    pub model: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub outcome: Outcome,
    pub exit_status: Option<i64>,
    pub session_id: Option<String>,
    pub usage: Usage,
    pub estimate_micros: i64,
    pub reported_micros: Option<i64>,
    pub cost_micros: i64,
    pub ceiling_micros: i64,
    pub priced: bool,
    pub num_turns: Option<i64>,
    pub transcript_artifact: Option<i64>,
    pub error: Option<String>,
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub detail: Value,
    /// the agent's process group (its runner's host), while it may run
    pub agent_pgid: Option<i64>,
}

const ATTEMPT_COLS: &str = "id, task_id, runner, env, provider, model, started_at_ms, finished_at_ms, outcome, exit_status, session_id, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, estimate_micros, reported_micros, cost_micros, ceiling_micros, priced, num_turns, transcript_artifact, error, detail, agent_pgid";

fn attempt_row(r: &Row) -> Result<Attempt> {
    let started: i64 = r.get(6)?;
    let finished: Option<i64> = r.get(7)?;
    let outcome = r.str(8);
    let detail = r.str(23);
    let u = |i: usize| -> Result<u64> { Ok(r.get::<i64>(i)?.max(0) as u64) };
    Ok(Attempt {
        id: r.get(0)?,
        task_id: r.get(1)?,
        runner: r.get(2)?,
        env: r.get(3)?,
        provider: r.get(4)?,
        model: r.get(5)?,
        started_at: iso(started),
        finished_at: finished.map(iso),
        duration_ms: finished.map(|f| f - started),
        outcome: Outcome::parse(outcome).unwrap_or(Outcome::Interrupted),
        exit_status: r.get(9)?,
        session_id: r.get(10)?,
        usage: Usage {
            input_tokens: u(11)?,
            cached_input_tokens: u(12)?,
            cache_write_tokens: u(13)?,
            output_tokens: u(14)?,
        },
        estimate_micros: r.get(15)?,
        reported_micros: r.get(16)?,
        cost_micros: r.get(17)?,
        ceiling_micros: r.get(18)?,
        priced: r.get(19)?,
        num_turns: r.get(20)?,
        transcript_artifact: r.get(21)?,
        error: r.get(22)?,
        detail: serde_json::from_str(detail).unwrap_or(Value::Null),
        agent_pgid: r.get(24)?,
    })
}

/// What is spent in a window: finished attempts' cost, running ones' ceilings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spent {
    pub spent_micros: i64,
    pub reserved_micros: i64,
}

fn spent_tx(db: &mut dyn Sql, env: &str, provider: Option<&str>, since_ms: i64) -> Result<Spent> {
    // the provider filter is two statements, not `(?3 IS NULL OR …)`:
    // PostgreSQL cannot infer the type of a parameter that is only NULL-tested
    let r = match provider {
        None => db.query_row(
            "SELECT CAST(coalesce(sum(CASE WHEN outcome = 'running' THEN 0 ELSE cost_micros END), 0) AS BIGINT),
                    CAST(coalesce(sum(CASE WHEN outcome = 'running' THEN ceiling_micros ELSE 0 END), 0) AS BIGINT)
             FROM dispatch_attempts
             WHERE env = ?1 AND started_at_ms >= ?2",
            p![env, since_ms],
        )?,
        Some(provider) => db.query_row(
            "SELECT CAST(coalesce(sum(CASE WHEN outcome = 'running' THEN 0 ELSE cost_micros END), 0) AS BIGINT),
                    CAST(coalesce(sum(CASE WHEN outcome = 'running' THEN ceiling_micros ELSE 0 END), 0) AS BIGINT)
             FROM dispatch_attempts
             WHERE env = ?1 AND started_at_ms >= ?2 AND provider = ?3",
            p![env, since_ms, provider],
        )?,
    };
    Ok(Spent {
        spent_micros: r.get(0)?,
        reserved_micros: r.get(1)?,
    })
}

/// How `cost_summary` groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostBy {
    Provider,
    Model,
    Task,
    Day,
    Outcome,
}

impl CostBy {
    pub fn parse(s: &str) -> Option<CostBy> {
        Some(match s {
            "provider" => CostBy::Provider,
            "model" => CostBy::Model,
            "task" => CostBy::Task,
            "day" => CostBy::Day,
            "outcome" => CostBy::Outcome,
            _ => return None,
        })
    }
    fn expr(self) -> &'static str {
        match self {
            CostBy::Provider => "provider",
            CostBy::Model => "coalesce(model, '(unknown)')",
            CostBy::Task => "task_id",
            // the day's number; named in Rust (strftime per row costs a third more)
            CostBy::Day => "started_at_ms / 86400000",
            CostBy::Outcome => "outcome",
        }
    }
}

/// One line of `vane cost summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CostRow {
    pub key: String,
    pub attempts: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_tokens: i64,
    pub output_tokens: i64,
    pub cost_micros: i64,
    pub estimate_micros: i64,
    /// the providers' own figures, where they gave one
    pub reported_micros: i64,
    /// attempts whose model had no price (their estimate is 0)
    pub unpriced: i64,
}

/// A budget alert (recorded once per env, scope, window and level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BudgetAlert {
    pub env: String,
    pub scope: String,
    pub window: String,
    pub window_start_ms: i64,
    /// warning (80 %) | critical (100 %)
    pub level: String,
    pub at_ms: i64,
    pub spent_micros: i64,
    pub limit_micros: i64,
}

impl Store {
    /// Starts an attempt if every budget it falls under can still cover its
    /// ceiling (spent + reserved + ceiling ≤ limit), in one transaction;
    /// else `budget_exceeded` naming the first limit that cannot.
    pub fn attempt_start(&self, a: &NewAttempt) -> Result<i64> {
        self.write(&[], |db| {
            for b in &a.budgets {
                let provider = (b.scope != "total").then_some(b.scope.as_str());
                let s = spent_tx(db, &a.env, provider, b.window_start_ms)?;
                if s.spent_micros + s.reserved_micros + a.ceiling_micros > b.limit_micros {
                    return Err(VaneError::new(
                        ErrorCode::BudgetExceeded,
                        format!(
                            "the {} budget of env `{}` ({}) per {} cannot cover another attempt: spent {}, reserved by running attempts {}, this attempt's ceiling {}",
                            b.scope,
                            a.env,
                            vane_core::dispatch::usd(b.limit_micros),
                            b.window,
                            vane_core::dispatch::usd(s.spent_micros),
                            vane_core::dispatch::usd(s.reserved_micros),
                            vane_core::dispatch::usd(a.ceiling_micros)
                        ),
                    )
                    .with_details(json!({
                        "env": a.env, "scope": b.scope, "window": b.window,
                        "limit_micros": b.limit_micros, "spent_micros": s.spent_micros,
                        "reserved_micros": s.reserved_micros, "ceiling_micros": a.ceiling_micros,
                    })));
                }
            }
            one(
                db,
                "INSERT INTO dispatch_attempts(task_id, runner, runner_pid, env, provider, model, started_at_ms, ceiling_micros)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8) RETURNING id",
                p![a.task_id, a.runner, a.runner_pid, a.env, a.provider, a.model, a.started_at_ms, a.ceiling_micros],
            )
        })
    }

    /// Records the agent's process group once it started.
    pub fn attempt_agent_started(&self, id: i64, pgid: i64) -> Result<()> {
        self.write(&[], |db| {
            db.exec(
                "UPDATE dispatch_attempts SET agent_pgid = ?2 WHERE id = ?1",
                p![id, pgid],
            )?;
            Ok(())
        })
    }

    /// Records how an attempt ended. An attempt that is no longer running
    /// (another process marked it interrupted) keeps its outcome, but its
    /// usage and cost are still recorded: no finished attempt's cost is lost.
    pub fn attempt_finish(&self, e: &AttemptEnd) -> Result<Attempt> {
        self.write(&[], |db| {
            let cost = e.reported_micros.unwrap_or(e.estimate_micros);
            let n = db
                .exec(
                    "UPDATE dispatch_attempts SET
                       finished_at_ms = ?2,
                       outcome = CASE WHEN outcome = 'running' THEN ?3 ELSE outcome END,
                       exit_status = ?4, model = coalesce(?5, model), session_id = ?6,
                       input_tokens = ?7, cached_input_tokens = ?8, cache_write_tokens = ?9, output_tokens = ?10,
                       estimate_micros = ?11, reported_micros = ?12, cost_micros = ?13, priced = ?14,
                       num_turns = ?15, transcript_artifact = ?16, error = ?17, detail = ?18
                     WHERE id = ?1",
                    p![
                        e.id,
                        e.finished_at_ms,
                        e.outcome.unwrap_or(Outcome::Interrupted).as_str(),
                        e.exit_status,
                        e.model,
                        e.session_id,
                        e.usage.input_tokens as i64,
                        e.usage.cached_input_tokens as i64,
                        e.usage.cache_write_tokens as i64,
                        e.usage.output_tokens as i64,
                        e.estimate_micros,
                        e.reported_micros,
                        cost,
                        e.priced,
                        e.num_turns,
                        e.transcript_artifact,
                        e.error,
                        e.detail.to_string()
                    ],
                )?;
            if n == 0 {
                return Err(VaneError::new(ErrorCode::NotFound, format!("no attempt {}", e.id)));
            }
            get_attempt(db, e.id)
        })
    }

    /// Marks the running attempts whose runner is gone (`alive` says no) as
    /// interrupted, and ends those runners' claims on their tasks so the
    /// tasks can be taken again at once. Returns the attempts it marked.
    pub fn interrupt_orphans(
        &self,
        alive: &dyn Fn(&str, i64) -> bool,
        now: i64,
    ) -> Result<Vec<Attempt>> {
        let running: Vec<(i64, String, i64)> = self
            .read(|db| {
                db.query(
                    "SELECT id, runner, runner_pid FROM dispatch_attempts WHERE outcome = 'running'",
                    p![],
                )
            })?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .collect::<Result<_>>()?;
        let dead: Vec<(i64, String)> = running
            .into_iter()
            .filter(|(_, runner, pid)| !alive(runner, *pid))
            .map(|(id, runner, _)| (id, runner))
            .collect();
        if dead.is_empty() {
            return Ok(Vec::new());
        }
        self.write(&[crate::ExportKind::Roadmap], |db| {
            let mut out = Vec::new();
            for (id, runner) in &dead {
                let n = db
                    .exec(
                        "UPDATE dispatch_attempts SET outcome = 'interrupted', finished_at_ms = ?2,
                           error = coalesce(error, 'its runner stopped before the attempt ended')
                         WHERE id = ?1 AND outcome = 'running'",
                        p![id, now],
                    )?;
                if n == 1 {
                    db.exec(
                        "UPDATE tasks SET lease_expires_ms = ?2 WHERE claimed_by = ?1 AND status = 'in_progress'",
                        p![runner, now],
                    )?;
                    out.push(get_attempt(db, *id)?);
                }
            }
            Ok(out)
        })
    }

    /// Attempts, newest first (of one task when given).
    pub fn attempts(&self, task_id: Option<&str>, limit: usize) -> Result<Vec<Attempt>> {
        let rows = self.read(|db| match task_id {
            Some(t) => db.query(
                &format!("SELECT {ATTEMPT_COLS} FROM dispatch_attempts WHERE task_id = ?1 ORDER BY id DESC LIMIT ?2"),
                p![t, limit],
            ),
            None => db.query(
                &format!("SELECT {ATTEMPT_COLS} FROM dispatch_attempts ORDER BY id DESC LIMIT ?1"),
                p![limit],
            ),
        })?;
        rows.iter().map(attempt_row).collect()
    }

    /// Finished attempts of `task_id` whose agent ran and did not finish it.
    pub fn task_failures(&self, task_id: &str) -> Result<i64> {
        self.read(|db| {
            one(
                db,
                "SELECT count(*) FROM dispatch_attempts WHERE task_id = ?1 AND outcome = 'task_failed'",
                p![task_id],
            )
        })
    }

    /// Spent and reserved since `since_ms` (of one provider when given).
    pub fn spent(&self, env: &str, provider: Option<&str>, since_ms: i64) -> Result<Spent> {
        self.read(|db| spent_tx(db, env, provider, since_ms))
    }

    /// The ledger grouped by `by` (newest keys first for days; else by cost).
    pub fn cost_summary(
        &self,
        env: Option<&str>,
        since_ms: Option<i64>,
        by: CostBy,
    ) -> Result<Vec<CostRow>> {
        let order = if by == CostBy::Day {
            "key DESC"
        } else {
            "cost DESC, key"
        };
        let sql = format!(
            "SELECT {} AS key, count(*), CAST(sum(input_tokens) AS BIGINT), CAST(sum(cached_input_tokens) AS BIGINT),
                    CAST(sum(cache_write_tokens) AS BIGINT), CAST(sum(output_tokens) AS BIGINT),
                    CAST(sum(cost_micros) AS BIGINT) AS cost, CAST(sum(estimate_micros) AS BIGINT),
                    CAST(coalesce(sum(reported_micros), 0) AS BIGINT),
                    CAST(sum(CASE WHEN priced <> 0 THEN 0 ELSE 1 END) AS BIGINT)
             FROM dispatch_attempts
             WHERE {} started_at_ms >= ?1
             GROUP BY key ORDER BY {order}",
            by.expr(),
            if env.is_some() { "env = ?2 AND" } else { "" }
        );
        let since = since_ms.unwrap_or(i64::MIN);
        let rows = self.read(|db| match env {
            Some(env) => db.query(&sql, p![since, env]),
            None => db.query(&sql, p![since]),
        })?;
        rows.iter()
            .map(|r| {
                let key = match &r.0[0] {
                    Val::Int(day) => chrono::DateTime::from_timestamp(day * 86_400, 0)
                        .map(|t| t.format("%Y-%m-%d").to_string())
                        .unwrap_or_else(|| day.to_string()),
                    Val::Text(t) => t.clone(),
                    _ => String::new(),
                };
                Ok(CostRow {
                    key,
                    attempts: r.get(1)?,
                    input_tokens: r.get(2)?,
                    cached_input_tokens: r.get(3)?,
                    cache_write_tokens: r.get(4)?,
                    output_tokens: r.get(5)?,
                    cost_micros: r.get(6)?,
                    estimate_micros: r.get(7)?,
                    reported_micros: r.get(8)?,
                    unpriced: r.get(9)?,
                })
            })
            .collect()
    }

    /// Every provider's recorded health.
    pub fn provider_health(&self) -> Result<Vec<ProviderHealth>> {
        let rows =
            self.read(|db| db.query("SELECT data FROM provider_health ORDER BY provider", p![]))?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str(r.str(0)).ok())
            .collect())
    }

    /// Applies `f` to a provider's health (a fresh one if none is recorded)
    /// and stores the result, in one transaction; returns it.
    pub fn update_provider_health(
        &self,
        provider: &str,
        now: i64,
        f: impl FnOnce(ProviderHealth) -> ProviderHealth,
    ) -> Result<ProviderHealth> {
        self.write(&[], |db| {
            let cur = read_health(db, provider)?.unwrap_or_else(|| ProviderHealth::new(provider, now));
            let next = f(cur);
            db.exec(
                "INSERT INTO provider_health(provider, data, updated_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(provider) DO UPDATE SET data = excluded.data, updated_at_ms = excluded.updated_at_ms",
                p![provider, serde_json::to_string(&next).unwrap_or_default(), now],
            )?;
            Ok(next)
        })
    }

    /// Records a budget alert unless one of the same env, scope, window and
    /// level is recorded already; true when this call recorded it.
    pub fn alert_once(&self, a: &BudgetAlert) -> Result<bool> {
        self.write(&[], |db| {
            let n = db.exec(
                    "INSERT INTO budget_alerts(env, scope, \"window\", window_start_ms, level, at_ms, spent_micros, limit_micros)
                     VALUES (?1,?2,?3,?4,?5,?6,?7,?8) ON CONFLICT DO NOTHING",
                    p![a.env, a.scope, a.window, a.window_start_ms, a.level, a.at_ms, a.spent_micros, a.limit_micros],
                )?;
            Ok(n == 1)
        })
    }

    /// Alerts recorded since `since_ms`, newest first.
    pub fn budget_alerts(&self, since_ms: i64) -> Result<Vec<BudgetAlert>> {
        let rows = self.read(|db| {
            db.query(
                "SELECT env, scope, \"window\", window_start_ms, level, at_ms, spent_micros, limit_micros
                 FROM budget_alerts WHERE at_ms >= ?1 ORDER BY at_ms DESC",
                p![since_ms],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(BudgetAlert {
                    env: r.get(0)?,
                    scope: r.get(1)?,
                    window: r.get(2)?,
                    window_start_ms: r.get(3)?,
                    level: r.get(4)?,
                    at_ms: r.get(5)?,
                    spent_micros: r.get(6)?,
                    limit_micros: r.get(7)?,
                })
            })
            .collect()
    }
}

fn get_attempt(db: &mut dyn Sql, id: i64) -> Result<Attempt> {
    let r = db.query_row(
        &format!("SELECT {ATTEMPT_COLS} FROM dispatch_attempts WHERE id = ?1"),
        p![id],
    )?;
    attempt_row(&r)
}

fn read_health(db: &mut dyn Sql, provider: &str) -> Result<Option<ProviderHealth>> {
    let data: Option<String> = one_opt(
        db,
        "SELECT data FROM provider_health WHERE provider = ?1",
        p![provider],
    )?;
    Ok(data.and_then(|d| serde_json::from_str(&d).ok()))
}
