//! The prompt a dispatched agent starts from.
//!
//! Everything in it comes from the store, so a prompt is reproducible from
//! the state it was built at: the task (title, description, notes of earlier
//! attempts), its exit criteria, what its dependencies ended with, the
//! running context, the last checkpoint. `PROMPT_MODE=compact` (default)
//! gives the context's section names and short sections whole and the
//! checkpoint's reason; `verbose` gives every section and the whole
//! checkpoint. The agent reaches the rest through vane's tools.

use std::fmt::Write;

use vane_core::model::ExitCriterion;
use vane_store::{Store, TaskRecord};

/// A section of the context this short (words) is included whole in compact mode.
const COMPACT_SECTION_WORDS: usize = 120;

pub fn assemble(store: &Store, task: &TaskRecord, verbose: bool) -> vane_store::Result<String> {
    let mut p = String::new();
    let _ = writeln!(
        p,
        "You are working on one task of this repository's roadmap, dispatched by vane. \
         Use vane's MCP tools (server `vane`) for everything: fs_read / fs_write / cmd_run \
         for files and commands in the workspace, critics_run to check your work, \
         context_write to leave notes for whoever comes next. When the task is done, \
         stop and say what you did in two or three sentences; vane runs the critics and \
         moves the task on. Do not change the task's status yourself.\n"
    );
    let _ = writeln!(p, "## Task {}: {}", task.id, task.title);
    if let Some(e) = task.epic.as_deref() {
        let _ = writeln!(p, "epic: {e}");
    }
    if let Some(m) = task.milestone.as_deref() {
        let _ = writeln!(p, "milestone: {m}");
    }
    let _ = writeln!(p, "priority: {}", task.priority.as_str());
    if let Some(d) = task.description.as_deref().filter(|d| !d.trim().is_empty()) {
        let _ = writeln!(p, "\n{}", d.trim());
    }
    if !task.exit_criteria.is_empty() {
        let _ = writeln!(p, "\n### Exit criteria");
        for c in &task.exit_criteria {
            let line = match c {
                ExitCriterion::Critic(n) => format!("critic `{n}` passes (vane runs it)"),
                ExitCriterion::Doc(d) => format!("doc: {d}"),
                ExitCriterion::Artifact(a) => format!("artifact: {a}"),
                ExitCriterion::Text(t) => t.clone(),
                ExitCriterion::Other(m) => serde_json::to_string(m).unwrap_or_default(),
            };
            let _ = writeln!(p, "- {line}");
        }
    }
    if let Some(n) = task.notes.as_deref().filter(|n| !n.trim().is_empty()) {
        let _ = writeln!(p, "\n### Notes (earlier attempts included)\n{}", n.trim());
    }
    if !task.dependencies.is_empty() {
        let _ = writeln!(p, "\n### Dependencies");
        for d in &task.dependencies {
            match store.get_task(d) {
                Ok(t) => {
                    let notes = t
                        .notes
                        .as_deref()
                        .map(|n| first_words(n, if verbose { 200 } else { 40 }))
                        .unwrap_or_default();
                    let _ = writeln!(
                        p,
                        "- {} ({}): {}{}",
                        t.id,
                        t.status.as_str(),
                        t.title,
                        if notes.is_empty() {
                            String::new()
                        } else {
                            format!(" — {notes}")
                        }
                    );
                }
                Err(_) => {
                    let _ = writeln!(p, "- {d} (unknown)");
                }
            }
        }
    }
    let sections = store.context_sections()?;
    if !sections.is_empty() {
        let _ = writeln!(p, "\n### Running context");
        for s in &sections {
            if verbose || s.words <= COMPACT_SECTION_WORDS {
                let _ = writeln!(p, "#### {}\n{}", s.name, s.content.trim());
            } else {
                let _ = writeln!(
                    p,
                    "#### {} ({} words; read it with the context tools)\n{}",
                    s.name,
                    s.words,
                    first_words(&s.content, 60)
                );
            }
        }
    }
    if let Some(c) = store.latest_checkpoint()? {
        let _ = writeln!(p, "\n### Last checkpoint ({}, {})", c.created_at, c.reason);
        if verbose {
            let _ = writeln!(
                p,
                "{}",
                serde_json::to_string_pretty(&c.data).unwrap_or_default()
            );
        } else {
            for k in ["branch", "commit", "summary"] {
                if let Some(v) = c.data.get(k).and_then(|v| v.as_str()) {
                    let _ = writeln!(p, "{k}: {}", first_words(v, 60));
                }
            }
        }
    }
    Ok(p)
}

fn first_words(s: &str, n: usize) -> String {
    let words: Vec<&str> = s.split_whitespace().collect();
    if words.len() <= n {
        words.join(" ")
    } else {
        format!("{} …", words[..n].join(" "))
    }
}
