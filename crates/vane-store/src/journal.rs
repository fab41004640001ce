//! The journal of a call made with an idempotency key.
//!
//! Every store write made while the call runs records what it returned in
//! the call's idempotency row, **in the same transaction as the write**. If
//! the process dies after a write committed but before the call's result was
//! recorded, the retry (in another process) runs the handler again in
//! *replay* mode: each write returns its journaled value instead of applying
//! again, so the handler rebuilds the very answer the first run would have
//! given and nothing is applied twice. Writes past the end of the journal
//! (the first run died before them) run for real and are journaled in turn.
//!
//! The journal travels with the task (a tokio task-local); code that spawns a
//! task for a keyed call carries it over with [`current`] + [`scope`].

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde_json::Value;

#[derive(Debug)]
pub struct JournalState {
    pub key: String,
    /// values still to hand back instead of writing (a resumed call)
    pub replay: VecDeque<Value>,
    /// every write's value so far (replayed ones included), as stored
    pub recorded: Vec<Value>,
}

pub type Journal = Arc<Mutex<JournalState>>;

tokio::task_local! {
    static JOURNAL: Journal;
}

/// A journal for a call with `key`, resuming from `replay` (empty: a fresh call).
pub fn new(key: &str, replay: Vec<Value>) -> Journal {
    Arc::new(Mutex::new(JournalState {
        key: key.to_string(),
        replay: replay.into(),
        recorded: Vec::new(),
    }))
}

/// Runs `f` with `journal` as the current task's journal (none: as is).
pub async fn scope<F: Future>(journal: Option<Journal>, f: F) -> F::Output {
    match journal {
        Some(j) => JOURNAL.scope(j, f).await,
        None => f.await,
    }
}

/// The current task's journal, if it runs a keyed call.
pub fn current() -> Option<Journal> {
    JOURNAL.try_with(|j| j.clone()).ok()
}
