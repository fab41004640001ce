//! Keyed records: idempotency keys and live flags.

use serde_json::{json, Value};
use vane_core::{ErrorCode, VaneError};

use super::{iso, json_err, now_ms, Result, Store};
use super::{
    FlagRecord, Idempotency, KeyHolder, KeyOwner, IDEMPOTENCY_LEASE_MS, IDEMPOTENCY_RETENTION_MS,
};
use crate::pg::FLAGS_CHANNEL;
use crate::sql::{one, one_opt, p, Engine};

impl Store {
    /// Starts a call under an idempotency key. Returns what to do: run it
    /// (the key is now leased to `owner` for [`IDEMPOTENCY_LEASE_MS`], renewed
    /// by [`Store::idempotency_heartbeat`] while the call runs), replay a
    /// recorded result, or fail because the key was used for different
    /// arguments or is held by a live owner. A key whose lease expired (its
    /// owner, on whatever host, stopped renewing it) is taken over — at once
    /// when the owner was a process of this host that is gone (`alive`
    /// says no). Keys are kept for 24 hours.
    pub fn idempotency_begin(
        &self,
        key: &str,
        tool: &str,
        args_hash: &str,
        owner: &KeyOwner,
        alive: &dyn Fn(u32) -> bool,
    ) -> Result<Idempotency> {
        let now = now_ms();
        let lease = now + IDEMPOTENCY_LEASE_MS;
        self.write_bookkeeping(|db| {
            db.exec(
                "DELETE FROM idempotency WHERE created_at_ms < ?1",
                p![now - IDEMPOTENCY_RETENTION_MS],
            )?;
            let row = db.query_opt(
                "SELECT tool, args_hash, state, owner_pid, result, is_error, journal, owner, lease_expires_ms FROM idempotency WHERE key = ?1",
                p![key],
            )?;
            let Some(r) = row else {
                db.exec(
                    "INSERT INTO idempotency(key, tool, args_hash, state, owner_pid, created_at_ms, owner, lease_expires_ms) VALUES (?1,?2,?3,'pending',?4,?5,?6,?7)",
                    p![key, tool, args_hash, owner.pid, now, owner.id, lease],
                )?;
                return Ok(Idempotency::Run);
            };
            let (t, h) = (r.str(0), r.str(1));
            if t != tool || h != args_hash {
                return Err(VaneError::new(
                    ErrorCode::IdempotencyKeyReused,
                    format!("idempotency key `{key}` was already used for a different call ({t}); use a new key"),
                )
                .with_details(json!({ "key": key, "tool": t })));
            }
            let result: Option<String> = r.get(4)?;
            if let (Some(result), "done") = (result, r.str(2)) {
                return Ok(Idempotency::Replay {
                    result: serde_json::from_str(&result).map_err(json_err)?,
                    is_error: r.get(5)?,
                });
            }
            let holder = KeyHolder {
                pid: r.get::<i64>(3)? as u32,
                id: r.get(7)?,
                lease_expires_ms: r.get(8)?,
            };
            if !holder.gone(owner, now, alive) {
                let who = holder.id.clone().unwrap_or_else(|| format!("process {}", holder.pid));
                return Err(VaneError::new(
                    ErrorCode::IdempotencyKeyInProgress,
                    format!("a call with idempotency key `{key}` is still running ({who}); retry shortly"),
                )
                .with_details(json!({ "key": key, "owner": who, "owner_pid": holder.pid, "lease_expires_ms": holder.lease_expires_ms, "retryable": true })));
            }
            // the owner is gone mid-call: take the key over
            db.exec(
                "UPDATE idempotency SET owner_pid = ?2, owner = ?3, lease_expires_ms = ?4 WHERE key = ?1",
                p![key, owner.pid, owner.id, lease],
            )?;
            let journal: Vec<Value> = match r.get::<Option<String>>(6)? {
                Some(j) => serde_json::from_str(&j).map_err(json_err)?,
                None => Vec::new(),
            };
            if journal.is_empty() {
                Ok(Idempotency::Run)
            } else {
                Ok(Idempotency::Resume { journal })
            }
        })
    }

    /// Renews `owner`'s lease on a key whose call still runs; false when the
    /// key is no longer `owner`'s (finished, released or taken over).
    pub fn idempotency_heartbeat(&self, key: &str, owner: &KeyOwner) -> Result<bool> {
        let lease = now_ms() + IDEMPOTENCY_LEASE_MS;
        self.write_bookkeeping(|db| {
            Ok(db.exec(
                "UPDATE idempotency SET lease_expires_ms = ?3 WHERE key = ?1 AND owner = ?2 AND state = 'pending'",
                p![key, owner.id, lease],
            )? == 1)
        })
    }

    /// Frees a key reserved by [`Store::idempotency_begin`] whose call
    /// faulted (`internal`): nothing was applied, so a retry runs afresh.
    /// Returns false (and keeps the key) when some of the call's writes had
    /// already committed: then its result must be recorded instead.
    pub fn idempotency_release(&self, key: &str) -> Result<bool> {
        self.write_bookkeeping(|db| {
            let n = db.exec(
                "DELETE FROM idempotency WHERE key = ?1 AND state = 'pending' AND journal IS NULL",
                p![key],
            )?;
            Ok(n > 0)
        })
    }

    /// Records the result of a call started with [`Store::idempotency_begin`].
    pub fn idempotency_finish(&self, key: &str, result: &Value, is_error: bool) -> Result<()> {
        let now = now_ms();
        self.write_bookkeeping(|db| {
            db.exec(
                "UPDATE idempotency SET state='done', result=?2, is_error=?3, finished_at_ms=?4 WHERE key=?1",
                p![key, result.to_string(), is_error, now],
            )?;
            Ok(())
        })
    }

    /// The flags revision: bumped by every flag change. One cached indexed
    /// read, cheap enough to check on every tool call.
    /// On PostgreSQL it is what the `LISTEN` connection last heard, with no
    /// round trip; while that connection is down, the database is asked.
    pub fn flags_revision(&self) -> Result<i64> {
        if let Some(rev) = self.heard_flags_revision() {
            return Ok(rev);
        }
        self.read(|db| one(db, "SELECT value FROM meta WHERE key = 'rev_flags'", p![]))
    }

    /// Stored flags `(key, value, updated_at, updated_by)`.
    pub fn flags(&self) -> Result<Vec<FlagRecord>> {
        let rows = self.read(|db| {
            db.query(
                "SELECT key, value, updated_at_ms, updated_by FROM settings ORDER BY key",
                p![],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(FlagRecord {
                    key: r.get(0)?,
                    value: r.get(1)?,
                    updated_at: iso(r.get(2)?),
                    updated_by: r.get(3)?,
                })
            })
            .collect()
    }

    /// Sets (`Some`) or unsets (`None`) a flag; the value must already be
    /// validated. Returns the previous value.
    pub fn set_flag(&self, key: &str, value: Option<&str>, actor: &str) -> Result<Option<String>> {
        let now = now_ms();
        let (old, rev) = self.write(&[], |db| {
            let old: Option<String> =
                one_opt(db, "SELECT value FROM settings WHERE key = ?1", p![key])?;
            match value {
                Some(v) => db.exec(
                    "INSERT INTO settings(key, value, updated_at_ms, updated_by) VALUES (?1,?2,?3,?4)
                     ON CONFLICT(key) DO UPDATE SET value=excluded.value, updated_at_ms=excluded.updated_at_ms, updated_by=excluded.updated_by",
                    p![key, v, now, actor],
                )?,
                None => db.exec("DELETE FROM settings WHERE key = ?1", p![key])?,
            };
            db.exec(
                "INSERT INTO settings_history(key, old_value, new_value, at_ms, actor) VALUES (?1,?2,?3,?4,?5)",
                p![key, old, value, now, actor],
            )?;
            let rev: i64 = one(
                db,
                "UPDATE meta SET value = value + 1 WHERE key = 'rev_flags' RETURNING value",
                p![],
            )?;
            if db.engine() == Engine::Postgres {
                // delivered to every listening front when this commits
                db.exec(
                    "SELECT pg_notify(?1, ?2)",
                    p![FLAGS_CHANNEL, rev.to_string()],
                )?;
            }
            Ok((old, rev))
        })?;
        self.saw_flags_revision(rev);
        Ok(old)
    }

    /// The latest flag changes, newest first.
    pub fn flag_history(&self, limit: usize) -> Result<Vec<Value>> {
        let rows = self.read(|db| {
            db.query(
                "SELECT key, old_value, new_value, at_ms, actor FROM settings_history ORDER BY seq DESC LIMIT ?1",
                p![limit],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(json!({ "key": r.get::<String>(0)?, "old": r.get::<Option<String>>(1)?, "new": r.get::<Option<String>>(2)?,
                           "at": iso(r.get(3)?), "actor": r.get::<Option<String>>(4)? }))
            })
            .collect()
    }
}
