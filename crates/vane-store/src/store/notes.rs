//! What agents leave besides task states: context sections, checkpoints,
//! critic runs, artifacts and decisions.

use std::path::Path;

use serde_json::{json, Value};
use vane_core::{ErrorCode, VaneError};

use super::tasks::{get_task, remediate};
use super::{iso, now_ms, Result, Store};
use super::{
    Artifact, Checkpoint, ContextSection, CriticRun, CriticStatus, Decision, NewCriticRun,
};
use crate::exports::{self, ExportKind};
use crate::sql::{one, one_opt, p, Row, Sql};

impl Store {
    /// Replaces (or appends to) one context section, within a word budget.
    pub fn context_write(
        &self,
        section: &str,
        content: &str,
        append: bool,
        word_budget: usize,
    ) -> Result<ContextSection> {
        let now = now_ms();
        self.write(&[ExportKind::Context], |db| {
            let prev: Option<String> = one_opt(
                db,
                "SELECT content FROM context_sections WHERE name=?1",
                p![section],
            )?;
            let text = match (&prev, append) {
                (Some(p), true) if !p.is_empty() => format!("{p}\n{content}"),
                _ => content.to_string(),
            };
            let words = text.split_whitespace().count();
            // a budget of words is also one of bytes: one long "word" must
            // not carry a section past it (16 bytes a word is generous)
            let max_bytes = word_budget.saturating_mul(16);
            if text.len() > max_bytes {
                return Err(VaneError::new(
                    ErrorCode::ContextBudgetExceeded,
                    format!(
                        "section `{section}` would hold {} bytes; the budget is {max_bytes} ({word_budget} words × 16). Summarise it, or split it into sections",
                        text.len()
                    ),
                )
                .with_details(json!({ "section": section, "bytes": text.len(), "max_bytes": max_bytes, "budget": word_budget })));
            }
            if words > word_budget {
                return Err(VaneError::new(
                    ErrorCode::ContextBudgetExceeded,
                    format!(
                        "section `{section}` would hold {words} words; the budget is {word_budget}. Summarise it, or split it into sections"
                    ),
                )
                .with_details(json!({ "section": section, "words": words, "budget": word_budget, "existing_words": prev.as_deref().map(|p| p.split_whitespace().count()) })));
            }
            let ord: i64 = one(
                db,
                "SELECT coalesce((SELECT ord FROM context_sections WHERE name=?1), (SELECT coalesce(max(ord),0)+1 FROM context_sections))",
                p![section],
            )?;
            db.exec(
                "INSERT INTO context_sections(name, content, words, updated_at_ms, ord) VALUES (?1,?2,?3,?4,?5)
                 ON CONFLICT(name) DO UPDATE SET content=excluded.content, words=excluded.words, updated_at_ms=excluded.updated_at_ms",
                p![section, text, words, now, ord],
            )?;
            Ok(ContextSection { name: section.to_string(), content: text, words, updated_at: iso(now) })
        })
    }

    pub fn context_sections(&self) -> Result<Vec<ContextSection>> {
        self.read(context_sections)
    }

    pub fn write_checkpoint(&self, reason: &str, data: Value) -> Result<Checkpoint> {
        let now = now_ms();
        self.write(&[ExportKind::Checkpoint], |db| {
            let id: i64 = one(
                db,
                "INSERT INTO checkpoints(created_at_ms, reason, data) VALUES (?1,?2,?3) RETURNING id",
                p![now, reason, data.to_string()],
            )?;
            Ok(Checkpoint {
                id,
                created_at: iso(now),
                reason: reason.to_string(),
                data,
            })
        })
    }

    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>> {
        self.read(latest_checkpoint)
    }

    /// Records a critic run; a failing run opens or updates the remediation
    /// task `CRITIC-<name>` (reopening it when it was closed).
    pub fn record_critic_run(&self, run: &NewCriticRun) -> Result<CriticRun> {
        let failed = run.status != CriticStatus::Pass;
        let kinds: &[ExportKind] = if failed {
            &[ExportKind::Critics, ExportKind::Roadmap]
        } else {
            &[ExportKind::Critics]
        };
        self.write(kinds, |db| {
            let id: i64 = one(
                db,
                "INSERT INTO critic_runs(name, status, exit_code, command, started_at_ms, finished_at_ms, duration_ms, output_tail, trigger) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9) RETURNING id",
                p![
                    run.name,
                    run.status.as_str(),
                    run.exit_code,
                    run.command,
                    run.started_at_ms,
                    run.finished_at_ms,
                    run.finished_at_ms - run.started_at_ms,
                    run.output_tail,
                    run.trigger.to_string()
                ],
            )?;
            let remediation = if failed { Some(remediate(db, run)?) } else { None };
            Ok(CriticRun {
                id,
                name: run.name.clone(),
                status: run.status,
                exit_code: run.exit_code,
                command: run.command.clone(),
                started_at: iso(run.started_at_ms),
                finished_at: iso(run.finished_at_ms),
                duration_ms: run.finished_at_ms - run.started_at_ms,
                output_tail: run.output_tail.clone(),
                trigger: run.trigger.clone(),
                remediation_task: remediation,
                finished_at_ms: run.finished_at_ms,
            })
        })
    }

    /// The latest run of every critic.
    pub fn latest_critic_runs(&self) -> Result<Vec<CriticRun>> {
        self.read(latest_critic_runs)
    }

    /// Records an artifact. `content`, when given, is kept in the state
    /// directory and served as the resource `vane://artifacts/{id}`.
    pub fn record_artifact(
        &self,
        kind: &str,
        path: Option<&str>,
        metadata: &Value,
        task_id: Option<&str>,
        content: Option<&[u8]>,
    ) -> Result<Artifact> {
        let now = now_ms();
        if let Some(t) = task_id {
            self.get_task(t)?;
        }
        // Content goes to disk first (outside the transaction), under a unique name.
        let content_file = match content {
            Some(bytes) => {
                let dir = self.paths.artifacts_dir();
                std::fs::create_dir_all(&dir).map_err(|e| {
                    VaneError::new(ErrorCode::IoError, format!("create {}: {e}", dir.display()))
                })?;
                let name = format!("{}-{}.txt", now, std::process::id());
                let name = unique_name(&dir, &name);
                exports::write_atomic(&dir.join(&name), bytes)?;
                Some(name)
            }
            None => None,
        };
        let size = content.map(|c| c.len() as i64);
        self.write(&[], |db| {
            let id: i64 = one(
                db,
                "INSERT INTO artifacts(kind, path, metadata, task_id, created_at_ms, content_file, size) VALUES (?1,?2,?3,?4,?5,?6,?7) RETURNING id",
                p![kind, path, metadata.to_string(), task_id, now, content_file, size],
            )?;
            Ok(Artifact {
                id,
                uri: format!("vane://artifacts/{id}"),
                kind: kind.to_string(),
                path: path.map(str::to_string),
                metadata: metadata.clone(),
                task_id: task_id.map(str::to_string),
                created_at: iso(now),
                size,
                content_file: content_file.clone(),
            })
        })
    }

    pub fn get_artifact(&self, id: i64) -> Result<Artifact> {
        let row = self.read(|db| {
            db.query_opt(
                "SELECT id, kind, path, metadata, task_id, created_at_ms, size, content_file FROM artifacts WHERE id=?1",
                p![id],
            )
        })?;
        match row {
            Some(r) => artifact_from_row(&r),
            None => Err(VaneError::new(
                ErrorCode::NotFound,
                format!("no artifact {id}"),
            )),
        }
    }

    /// The stored content of an artifact, if it has any.
    pub fn artifact_content(&self, a: &Artifact) -> Result<Option<Vec<u8>>> {
        match &a.content_file {
            Some(f) => std::fs::read(self.paths.artifacts_dir().join(f))
                .map(Some)
                .map_err(|e| {
                    VaneError::new(
                        ErrorCode::IoError,
                        format!("artifact {} content: {e}", a.id),
                    )
                }),
            None => Ok(None),
        }
    }

    pub fn list_artifacts(&self, limit: usize) -> Result<Vec<Artifact>> {
        let rows = self.read(|db| {
            db.query(
                "SELECT id, kind, path, metadata, task_id, created_at_ms, size, content_file FROM artifacts ORDER BY id DESC LIMIT ?1",
                p![limit],
            )
        })?;
        rows.iter().map(artifact_from_row).collect()
    }

    pub fn record_decision(
        &self,
        title: &str,
        summary: &str,
        impact: Option<&str>,
        task_id: Option<&str>,
    ) -> Result<Decision> {
        let now = now_ms();
        self.write(&[ExportKind::Context], |db| {
            if let Some(t) = task_id {
                get_task(db, t)?;
            }
            let id: i64 = one(
                db,
                "INSERT INTO decisions(title, summary, impact, task_id, created_at_ms) VALUES (?1,?2,?3,?4,?5) RETURNING id",
                p![title, summary, impact, task_id, now],
            )?;
            Ok(Decision {
                id,
                title: title.into(),
                summary: summary.into(),
                impact: impact.map(str::to_string),
                task_id: task_id.map(str::to_string),
                created_at: iso(now),
            })
        })
    }

    pub fn decisions(&self, limit: usize) -> Result<Vec<Decision>> {
        self.read(|db| decisions(db, limit))
    }
}

fn unique_name(dir: &Path, name: &str) -> String {
    let mut candidate = name.to_string();
    let mut n = 1;
    while dir.join(&candidate).exists() {
        candidate = format!("{n}-{name}");
        n += 1;
    }
    candidate
}

fn artifact_from_row(r: &Row) -> Result<Artifact> {
    let id: i64 = r.get(0)?;
    Ok(Artifact {
        id,
        uri: format!("vane://artifacts/{id}"),
        kind: r.get(1)?,
        path: r.get(2)?,
        metadata: serde_json::from_str(r.str(3)).unwrap_or(Value::Null),
        task_id: r.get(4)?,
        created_at: iso(r.get(5)?),
        size: r.get(6)?,
        content_file: r.get(7)?,
    })
}

pub(crate) fn latest_critic_runs(db: &mut dyn Sql) -> Result<Vec<CriticRun>> {
    let rows = db.query(
        "SELECT id, name, status, exit_code, command, started_at_ms, finished_at_ms, duration_ms, output_tail, trigger FROM critic_runs
         WHERE id IN (SELECT max(id) FROM critic_runs GROUP BY name) ORDER BY name",
        p![],
    )?;
    rows.iter()
        .map(|r| {
            Ok(CriticRun {
                id: r.get(0)?,
                name: r.get(1)?,
                status: CriticStatus::parse(r.str(2)),
                exit_code: r.get(3)?,
                command: r.get(4)?,
                started_at: iso(r.get(5)?),
                finished_at: iso(r.get(6)?),
                duration_ms: r.get(7)?,
                output_tail: r.get(8)?,
                trigger: serde_json::from_str(r.str(9)).unwrap_or(Value::Null),
                remediation_task: None,
                finished_at_ms: r.get(6)?,
            })
        })
        .collect()
}

pub(crate) fn context_sections(db: &mut dyn Sql) -> Result<Vec<ContextSection>> {
    let rows = db.query(
        "SELECT name, content, words, updated_at_ms FROM context_sections ORDER BY ord",
        p![],
    )?;
    rows.iter()
        .map(|r| {
            Ok(ContextSection {
                name: r.get(0)?,
                content: r.get(1)?,
                words: r.get::<i64>(2)? as usize,
                updated_at: iso(r.get(3)?),
            })
        })
        .collect()
}

pub(crate) fn decisions(db: &mut dyn Sql, limit: usize) -> Result<Vec<Decision>> {
    let rows = db.query(
        "SELECT id, title, summary, impact, task_id, created_at_ms FROM decisions ORDER BY id DESC LIMIT ?1",
        p![limit],
    )?;
    rows.iter()
        .map(|r| {
            Ok(Decision {
                id: r.get(0)?,
                title: r.get(1)?,
                summary: r.get(2)?,
                impact: r.get(3)?,
                task_id: r.get(4)?,
                created_at: iso(r.get(5)?),
            })
        })
        .collect()
}

pub(crate) fn latest_checkpoint(db: &mut dyn Sql) -> Result<Option<Checkpoint>> {
    match db.query_opt(
        "SELECT id, created_at_ms, reason, data FROM checkpoints ORDER BY id DESC LIMIT 1",
        p![],
    )? {
        Some(r) => Ok(Some(Checkpoint {
            id: r.get(0)?,
            created_at: iso(r.get(1)?),
            reason: r.get(2)?,
            data: serde_json::from_str(r.str(3)).unwrap_or(Value::Null),
        })),
        None => Ok(None),
    }
}
