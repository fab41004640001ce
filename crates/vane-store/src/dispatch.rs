//! Dispatch in the store: attempts (which are the cost ledger), provider
//! health and budget alerts.
//!
//! Why the budget check is here: several runners (threads or processes) start
//! attempts at once, and "a run never starts that the remaining budget cannot
//! cover" only holds if the check and the reservation are one transaction.
//! A running attempt reserves its ceiling; a finished one counts what it cost.

use rusqlite::{params, OptionalExtension, Transaction};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vane_core::dispatch::{Outcome, ProviderHealth, Usage};
use vane_core::{ErrorCode, VaneError};

use crate::store::{db_err, iso, Result, Store};

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

fn attempt_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Attempt> {
    let started: i64 = r.get(6)?;
    let finished: Option<i64> = r.get(7)?;
    let outcome: String = r.get(8)?;
    let detail: String = r.get(23)?;
    let u = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
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
        outcome: Outcome::parse(&outcome).unwrap_or(Outcome::Interrupted),
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
        detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
        agent_pgid: r.get(24)?,
    })
}

/// What is spent in a window: finished attempts' cost, running ones' ceilings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spent {
    pub spent_micros: i64,
    pub reserved_micros: i64,
}

fn spent_tx(
    tx: &rusqlite::Connection,
    env: &str,
    provider: Option<&str>,
    since_ms: i64,
) -> Result<Spent> {
    let mut q = tx
        .prepare_cached(
            "SELECT coalesce(sum(CASE WHEN outcome = 'running' THEN 0 ELSE cost_micros END), 0),
                    coalesce(sum(CASE WHEN outcome = 'running' THEN ceiling_micros ELSE 0 END), 0)
             FROM dispatch_attempts
             WHERE env = ?1 AND started_at_ms >= ?2 AND (?3 IS NULL OR provider = ?3)",
        )
        .map_err(db_err)?;
    q.query_row(params![env, since_ms, provider], |r| {
        Ok(Spent {
            spent_micros: r.get(0)?,
            reserved_micros: r.get(1)?,
        })
    })
    .map_err(db_err)
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
        self.write(&[], |tx| {
            for b in &a.budgets {
                let provider = (b.scope != "total").then_some(b.scope.as_str());
                let s = spent_tx(tx, &a.env, provider, b.window_start_ms)?;
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
            tx.execute(
                "INSERT INTO dispatch_attempts(task_id, runner, runner_pid, env, provider, model, started_at_ms, ceiling_micros)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
                params![a.task_id, a.runner, a.runner_pid, a.env, a.provider, a.model, a.started_at_ms, a.ceiling_micros],
            )
            .map_err(db_err)?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Records the agent's process group once it started.
    pub fn attempt_agent_started(&self, id: i64, pgid: i64) -> Result<()> {
        self.write(&[], |tx| {
            tx.execute(
                "UPDATE dispatch_attempts SET agent_pgid = ?2 WHERE id = ?1",
                params![id, pgid],
            )
            .map_err(db_err)?;
            Ok(())
        })
    }

    /// Records how an attempt ended. An attempt that is no longer running
    /// (another process marked it interrupted) keeps its outcome, but its
    /// usage and cost are still recorded: no finished attempt's cost is lost.
    pub fn attempt_finish(&self, e: &AttemptEnd) -> Result<Attempt> {
        self.write(&[], |tx| {
            let cost = e.reported_micros.unwrap_or(e.estimate_micros);
            let n = tx
                .execute(
                    "UPDATE dispatch_attempts SET
                       finished_at_ms = ?2,
                       outcome = CASE WHEN outcome = 'running' THEN ?3 ELSE outcome END,
                       exit_status = ?4, model = coalesce(?5, model), session_id = ?6,
                       input_tokens = ?7, cached_input_tokens = ?8, cache_write_tokens = ?9, output_tokens = ?10,
                       estimate_micros = ?11, reported_micros = ?12, cost_micros = ?13, priced = ?14,
                       num_turns = ?15, transcript_artifact = ?16, error = ?17, detail = ?18
                     WHERE id = ?1",
                    params![
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
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(VaneError::new(ErrorCode::NotFound, format!("no attempt {}", e.id)));
            }
            get_attempt(tx, e.id)
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
        let running: Vec<(i64, String, i64)> = {
            let conn = self.conn();
            let mut q = conn
                .prepare_cached("SELECT id, runner, runner_pid FROM dispatch_attempts WHERE outcome = 'running'")
                .map_err(db_err)?;
            let rows = q
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(db_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db_err)?
        };
        let dead: Vec<(i64, String)> = running
            .into_iter()
            .filter(|(_, runner, pid)| !alive(runner, *pid))
            .map(|(id, runner, _)| (id, runner))
            .collect();
        if dead.is_empty() {
            return Ok(Vec::new());
        }
        self.write(&[crate::ExportKind::Roadmap], |tx| {
            let mut out = Vec::new();
            for (id, runner) in &dead {
                let n = tx
                    .execute(
                        "UPDATE dispatch_attempts SET outcome = 'interrupted', finished_at_ms = ?2,
                           error = coalesce(error, 'its runner stopped before the attempt ended')
                         WHERE id = ?1 AND outcome = 'running'",
                        params![id, now],
                    )
                    .map_err(db_err)?;
                if n == 1 {
                    tx.execute(
                        "UPDATE tasks SET lease_expires_ms = ?2 WHERE claimed_by = ?1 AND status = 'in_progress'",
                        params![runner, now],
                    )
                    .map_err(db_err)?;
                    out.push(get_attempt(tx, *id)?);
                }
            }
            Ok(out)
        })
    }

    /// Attempts, newest first (of one task when given).
    pub fn attempts(&self, task_id: Option<&str>, limit: usize) -> Result<Vec<Attempt>> {
        let conn = self.conn();
        let mut q = conn
            .prepare_cached(&format!(
                "SELECT {ATTEMPT_COLS} FROM dispatch_attempts WHERE (?1 IS NULL OR task_id = ?1) ORDER BY id DESC LIMIT ?2"
            ))
            .map_err(db_err)?;
        let rows = q
            .query_map(params![task_id, limit as i64], attempt_row)
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err)
    }

    /// Finished attempts of `task_id` whose agent ran and did not finish it.
    pub fn task_failures(&self, task_id: &str) -> Result<i64> {
        self.conn()
            .query_row(
                "SELECT count(*) FROM dispatch_attempts WHERE task_id = ?1 AND outcome = 'task_failed'",
                params![task_id],
                |r| r.get(0),
            )
            .map_err(db_err)
    }

    /// Spent and reserved since `since_ms` (of one provider when given).
    pub fn spent(&self, env: &str, provider: Option<&str>, since_ms: i64) -> Result<Spent> {
        spent_tx(&self.conn(), env, provider, since_ms)
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
            "SELECT {} AS key, count(*), sum(input_tokens), sum(cached_input_tokens), sum(cache_write_tokens),
                    sum(output_tokens), sum(cost_micros) AS cost, sum(estimate_micros), coalesce(sum(reported_micros), 0),
                    sum(CASE WHEN priced THEN 0 ELSE 1 END)
             FROM dispatch_attempts
             WHERE (?1 IS NULL OR env = ?1) AND started_at_ms >= ?2
             GROUP BY key ORDER BY {order}",
            by.expr()
        );
        let conn = self.conn();
        let mut q = conn.prepare_cached(&sql).map_err(db_err)?;
        let rows = q
            .query_map(params![env, since_ms.unwrap_or(i64::MIN)], |r| {
                let key = match r.get::<_, rusqlite::types::Value>(0)? {
                    rusqlite::types::Value::Integer(day) => {
                        chrono::DateTime::from_timestamp(day * 86_400, 0)
                            .map(|t| t.format("%Y-%m-%d").to_string())
                            .unwrap_or_else(|| day.to_string())
                    }
                    rusqlite::types::Value::Text(t) => t,
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
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err)
    }

    /// Every provider's recorded health.
    pub fn provider_health(&self) -> Result<Vec<ProviderHealth>> {
        let conn = self.conn();
        let mut q = conn
            .prepare_cached("SELECT data FROM provider_health ORDER BY provider")
            .map_err(db_err)?;
        let rows = q.query_map([], |r| r.get::<_, String>(0)).map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            if let Ok(h) = serde_json::from_str(&row.map_err(db_err)?) {
                out.push(h);
            }
        }
        Ok(out)
    }

    /// Applies `f` to a provider's health (a fresh one if none is recorded)
    /// and stores the result, in one transaction; returns it.
    pub fn update_provider_health(
        &self,
        provider: &str,
        now: i64,
        f: impl FnOnce(ProviderHealth) -> ProviderHealth,
    ) -> Result<ProviderHealth> {
        self.write(&[], |tx| {
            let cur = read_health(tx, provider)?.unwrap_or_else(|| ProviderHealth::new(provider, now));
            let next = f(cur);
            tx.execute(
                "INSERT INTO provider_health(provider, data, updated_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(provider) DO UPDATE SET data = excluded.data, updated_at_ms = excluded.updated_at_ms",
                params![provider, serde_json::to_string(&next).unwrap_or_default(), now],
            )
            .map_err(db_err)?;
            Ok(next)
        })
    }

    /// Records a budget alert unless one of the same env, scope, window and
    /// level is recorded already; true when this call recorded it.
    pub fn alert_once(&self, a: &BudgetAlert) -> Result<bool> {
        self.write(&[], |tx| {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO budget_alerts(env, scope, window, window_start_ms, level, at_ms, spent_micros, limit_micros)
                     VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
                    params![a.env, a.scope, a.window, a.window_start_ms, a.level, a.at_ms, a.spent_micros, a.limit_micros],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
    }

    /// Alerts recorded since `since_ms`, newest first.
    pub fn budget_alerts(&self, since_ms: i64) -> Result<Vec<BudgetAlert>> {
        let conn = self.conn();
        let mut q = conn
            .prepare_cached(
                "SELECT env, scope, window, window_start_ms, level, at_ms, spent_micros, limit_micros
                 FROM budget_alerts WHERE at_ms >= ?1 ORDER BY at_ms DESC",
            )
            .map_err(db_err)?;
        let rows = q
            .query_map(params![since_ms], |r| {
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
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err)
    }
}

fn get_attempt(tx: &Transaction<'_>, id: i64) -> Result<Attempt> {
    tx.query_row(
        &format!("SELECT {ATTEMPT_COLS} FROM dispatch_attempts WHERE id = ?1"),
        params![id],
        attempt_row,
    )
    .map_err(db_err)
}

fn read_health(tx: &Transaction<'_>, provider: &str) -> Result<Option<ProviderHealth>> {
    let data: Option<String> = tx
        .query_row(
            "SELECT data FROM provider_health WHERE provider = ?1",
            params![provider],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?;
    Ok(data.and_then(|d| serde_json::from_str(&d).ok()))
}
