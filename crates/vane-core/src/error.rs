//! Typed errors. Every failure a tool can report has a stable, documented
//! `code`; clients branch on the code, people read the message, and `details`
//! carries the machine-readable specifics (allowed states, conflicting version…).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Stable error codes. The string form (snake_case) is part of the public API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidInput,
    PathOutsideWorkspace,
    PathProtected,
    NotFound,
    TaskNotFound,
    InvalidTransition,
    VersionConflict,
    ExitCriteriaUnmet,
    CommandDenied,
    Timeout,
    ContextBudgetExceeded,
    HashMismatch,
    AlreadyExists,
    FileTooLarge,
    BinaryFile,
    CriticNotFound,
    RoadmapInvalid,
    ConfigInvalid,
    StoreError,
    /// the database cannot be reached (down, restarting, network): retry
    StoreUnavailable,
    IoError,
    SandboxUnavailable,
    AdminDisabled,
    DryRunNoMutation,
    SchemaIncompatible,
    IdempotencyKeyReused,
    IdempotencyKeyInProgress,
    NotAWorkspace,
    Unauthorized,
    RateLimited,
    BudgetExceeded,
    NoProvider,
    /// the tool exists but `[tools]` in vane.toml does not offer it
    ToolDisabled,
    /// the client cancelled the request (no answer is due to it)
    Cancelled,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::PathOutsideWorkspace => "path_outside_workspace",
            ErrorCode::PathProtected => "path_protected",
            ErrorCode::NotFound => "not_found",
            ErrorCode::TaskNotFound => "task_not_found",
            ErrorCode::InvalidTransition => "invalid_transition",
            ErrorCode::VersionConflict => "version_conflict",
            ErrorCode::ExitCriteriaUnmet => "exit_criteria_unmet",
            ErrorCode::CommandDenied => "command_denied",
            ErrorCode::Timeout => "timeout",
            ErrorCode::ContextBudgetExceeded => "context_budget_exceeded",
            ErrorCode::HashMismatch => "hash_mismatch",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::FileTooLarge => "file_too_large",
            ErrorCode::BinaryFile => "binary_file",
            ErrorCode::CriticNotFound => "critic_not_found",
            ErrorCode::RoadmapInvalid => "roadmap_invalid",
            ErrorCode::ConfigInvalid => "config_invalid",
            ErrorCode::StoreError => "store_error",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::IoError => "io_error",
            ErrorCode::SandboxUnavailable => "sandbox_unavailable",
            ErrorCode::AdminDisabled => "admin_disabled",
            ErrorCode::DryRunNoMutation => "dry_run_no_mutation",
            ErrorCode::SchemaIncompatible => "schema_incompatible",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::IdempotencyKeyInProgress => "idempotency_key_in_progress",
            ErrorCode::NotAWorkspace => "not_a_workspace",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BudgetExceeded => "budget_exceeded",
            ErrorCode::NoProvider => "no_provider",
            ErrorCode::ToolDisabled => "tool_disabled",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a stable code, a human message and structured details.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct VaneError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Value,
}

impl VaneError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        VaneError {
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn task_not_found(id: &str) -> Self {
        Self::new(ErrorCode::TaskNotFound, format!("no task with id `{id}`"))
            .with_details(json!({ "task_id": id }))
    }

    /// The wire form: `{"error": {"code", "message", "details"}}`.
    pub fn to_json(&self) -> Value {
        json!({ "error": { "code": self.code.as_str(), "message": self.message, "details": self.details } })
    }

    /// Reads the inner object of the wire form (`{"code", "message",
    /// "details"}`), as another vane process wrote it. A code this build does
    /// not know (a newer process's) reads as `internal`, its text kept in
    /// the message, so nothing is lost.
    pub fn from_wire(e: &Value) -> VaneError {
        let text = e["code"].as_str().unwrap_or("internal");
        let message = e["message"].as_str().unwrap_or("failed").to_string();
        let details = e.get("details").cloned().unwrap_or_else(|| json!({}));
        match serde_json::from_value::<ErrorCode>(Value::String(text.to_string())) {
            Ok(code) => VaneError::new(code, message).with_details(details),
            Err(_) => VaneError::internal(format!("{text}: {message}")).with_details(details),
        }
    }
}

pub type Result<T, E = VaneError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The serde form and `as_str` are one spelling, and every error another
    /// process writes reads back as the same error.
    #[test]
    fn error_codes_round_trip_between_processes() {
        let codes = [
            ErrorCode::InvalidInput,
            ErrorCode::IdempotencyKeyInProgress,
            ErrorCode::Unauthorized,
            ErrorCode::ToolDisabled,
            ErrorCode::Cancelled,
            ErrorCode::Internal,
            ErrorCode::StoreError,
            ErrorCode::StoreUnavailable,
        ];
        for c in codes {
            assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
            let e = VaneError::new(c, "m").with_details(json!({"k": 1}));
            assert_eq!(VaneError::from_wire(&e.to_json()["error"]), e);
        }
        let newer = VaneError::from_wire(&json!({"code": "from_the_future", "message": "x"}));
        assert_eq!(newer.code, ErrorCode::Internal);
        assert!(
            newer.message.contains("from_the_future"),
            "{}",
            newer.message
        );
    }
}
