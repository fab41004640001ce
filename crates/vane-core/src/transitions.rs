//! The task state machine.
//!
//! ```text
//! pending     → in_progress | blocked | cancelled
//! in_progress → review | done | blocked | pending | cancelled
//! blocked     → pending | in_progress | cancelled
//! review      → done | in_progress | blocked
//! done        → in_progress            (reopen)
//! cancelled   → pending                (restore)
//! ```
//! Setting a task to the status it already has is a no-op, not an error.

use serde_json::json;

use crate::error::{ErrorCode, VaneError};
use crate::model::Status;

/// The states a task in `from` may move to.
pub fn allowed_next(from: Status) -> &'static [Status] {
    use Status::*;
    match from {
        Pending => &[InProgress, Blocked, Cancelled],
        InProgress => &[Review, Done, Blocked, Pending, Cancelled],
        Blocked => &[Pending, InProgress, Cancelled],
        Review => &[Done, InProgress, Blocked],
        Done => &[InProgress],
        Cancelled => &[Pending],
    }
}

/// Checks a move; the error lists the allowed next states.
pub fn check(task_id: &str, from: Status, to: Status) -> Result<(), VaneError> {
    if from == to || allowed_next(from).contains(&to) {
        return Ok(());
    }
    let allowed: Vec<&str> = allowed_next(from).iter().map(|s| s.as_str()).collect();
    Err(VaneError::new(
        ErrorCode::InvalidTransition,
        format!(
            "task `{task_id}` cannot go from {from} to {to}; allowed next states: {}",
            allowed.join(", ")
        ),
    )
    .with_details(json!({ "task_id": task_id, "from": from, "to": to, "allowed": allowed })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_is_decided_by_the_table() {
        for from in Status::ALL {
            for to in Status::ALL {
                let ok = check("T", from, to).is_ok();
                assert_eq!(
                    ok,
                    from == to || allowed_next(from).contains(&to),
                    "{from}->{to}"
                );
            }
        }
    }

    #[test]
    fn error_lists_allowed_states() {
        let e = check("T1", Status::Done, Status::Pending).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidTransition);
        assert_eq!(e.details["allowed"], json!(["in_progress"]));
    }
}
