//! Fault injection for the runtime's tests, with the `fail` crate. Compiled in
//! only with the `failpoints` feature (test builds); configured per process by
//! the `FAILPOINTS` environment variable, e.g.
//! `FAILPOINTS='worker_error=30%return;worker_delay=return(200)'`.
//!
//! | point          | action `return(ARG)` does                                  |
//! |----------------|------------------------------------------------------------|
//! | `worker_crash` | abort the process in the middle of a tool call             |
//! | `worker_error` | answer the call with an `internal` error (nothing applied) |
//! | `worker_delay` | wait ARG ms (default 100) before running the call          |
//! | `worker_leak`  | allocate and never free ARG MiB (default 4)                |
//! | `worker_diff`  | add `injected_difference: true` to a successful answer     |
//! | `worker_crash_before_finish` | abort after a keyed call's writes committed, before its result is recorded |

use rmcp::model::CallToolResult;
use serde_json::Value;
use vane_core::VaneError;

/// Reads `FAILPOINTS` once at process start.
pub fn setup() {
    std::mem::forget(fail::FailScenario::setup());
}

fn num(arg: Option<String>, default: u64) -> u64 {
    arg.and_then(|s| s.trim().parse().ok()).unwrap_or(default)
}

pub async fn before_call(tool: &str) -> Option<CallToolResult> {
    if fail::eval("worker_crash", |_| ()).is_some() {
        eprintln!("failpoint worker_crash: aborting during `{tool}`");
        std::process::abort();
    }
    if let Some(ms) = fail::eval("worker_delay", |a| num(a, 100)) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if let Some(mb) = fail::eval("worker_leak", |a| num(a, 4)) {
        let v = vec![7u8; (mb as usize) << 20];
        std::mem::forget(v);
    }
    if fail::eval("worker_error", |_| ()).is_some() {
        return Some(crate::server::error_result(&VaneError::internal(format!(
            "injected fault in `{tool}`"
        ))));
    }
    None
}

pub fn after_call(r: &mut CallToolResult) {
    if fail::eval("worker_diff", |_| ()).is_some() {
        if let Some(Value::Object(m)) = r.structured_content.as_mut() {
            m.insert("injected_difference".into(), Value::Bool(true));
        }
    }
}

/// The narrowest crash window of a keyed call: its writes committed, its
/// result not yet recorded.
pub fn before_finish(tool: &str) {
    if fail::eval("worker_crash_before_finish", |_| ()).is_some() {
        eprintln!("failpoint worker_crash_before_finish: aborting after `{tool}` committed");
        std::process::abort();
    }
}
