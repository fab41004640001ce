//! Live feature flags: typed, validated, with a kill switch.
//!
//! Flags live in the store (`settings`, with a change history) and every
//! running process sees a change on its next call: the store keeps a flags
//! revision that is one indexed read to check. `DISABLE_NEW=1` is the kill
//! switch: while it is on, every flag takes its documented safe value.

use serde::Serialize;
use serde_json::json;

use crate::error::{ErrorCode, VaneError};

/// One flag's definition.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FlagDef {
    pub key: &'static str,
    pub allowed: &'static [&'static str],
    pub default: &'static str,
    /// value while the kill switch is on
    pub safe: &'static str,
    pub doc: &'static str,
}

pub const FLAGS: &[FlagDef] = &[
    FlagDef {
        key: "SCHEDULER_MODE",
        allowed: &["priority", "wsjf"],
        default: "priority",
        safe: "priority",
        doc: "plan_next ordering: priority (then unblock count, roadmap order) or wsjf (weighted shortest job first: cost of delay from priority and unblock count, divided by estimate_hours)",
    },
    FlagDef {
        key: "SANDBOX_MODE",
        allowed: &["auto", "bwrap", "off"],
        default: "auto",
        safe: "auto",
        doc: "overrides [commands] sandbox: auto (bubblewrap when installed), bwrap (required), off",
    },
    FlagDef {
        key: "OUTPUT_MODE",
        allowed: &["compact", "verbose"],
        default: "compact",
        safe: "compact",
        doc: "tool result text: compact JSON, or verbose (indented JSON)",
    },
    FlagDef {
        key: "ADMIN_TOOLS",
        allowed: &["0", "1"],
        default: "0",
        safe: "0",
        doc: "1: the admin tools (flags_list, flags_set, panic_disable_new) are listed and callable",
    },
    FlagDef {
        key: "PROMPT_MODE",
        allowed: &["compact", "verbose"],
        default: "compact",
        safe: "compact",
        doc: "prompts `vane run` gives agents: compact (the task, its exit criteria, dependencies' outcomes, the context's section names and the last checkpoint's summary) or verbose (every context section and the whole checkpoint)",
    },
    FlagDef {
        key: "SELECTIVE_TESTS",
        allowed: &["0", "1"],
        default: "0",
        safe: "0",
        doc: "critics `vane run` runs after an agent finished a task without critic exit criteria: 0 every configured critic, 1 only those whose paths match the files the run changed",
    },
    FlagDef {
        key: "DISABLE_NEW",
        allowed: &["0", "1"],
        default: "0",
        safe: "1",
        doc: "the kill switch: 1 makes every flag fall back to its safe value at once",
    },
];

pub fn def(key: &str) -> Option<&'static FlagDef> {
    FLAGS.iter().find(|f| f.key == key)
}

/// Normalises and validates `key=value`; the error lists what is allowed.
pub fn validate(key: &str, value: &str) -> Result<(&'static FlagDef, String), VaneError> {
    let Some(d) = def(key) else {
        return Err(VaneError::new(
            ErrorCode::InvalidInput,
            format!(
                "unknown flag `{key}`; flags: {}",
                FLAGS.iter().map(|f| f.key).collect::<Vec<_>>().join(", ")
            ),
        )
        .with_details(json!({ "flags": FLAGS.iter().map(|f| f.key).collect::<Vec<_>>() })));
    };
    let v = value.trim().to_ascii_lowercase();
    let v = match (d.allowed, v.as_str()) {
        (["0", "1"], "true" | "on" | "yes") => "1".to_string(),
        (["0", "1"], "false" | "off" | "no") => "0".to_string(),
        _ => v,
    };
    if !d.allowed.contains(&v.as_str()) {
        return Err(VaneError::new(
            ErrorCode::InvalidInput,
            format!(
                "flag `{key}` cannot be `{value}`; allowed: {}",
                d.allowed.join(", ")
            ),
        )
        .with_details(json!({ "flag": key, "allowed": d.allowed })));
    }
    Ok((d, v))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerMode {
    Priority,
    Wsjf,
}

/// The effective flags of a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flags {
    pub scheduler_mode: SchedulerMode,
    /// `auto` | `bwrap` | `off`, or None to follow vane.toml
    pub sandbox_mode: Option<String>,
    pub verbose_output: bool,
    pub admin_tools: bool,
    /// `PROMPT_MODE=verbose`
    pub verbose_prompt: bool,
    /// `SELECTIVE_TESTS=1`
    pub selective_tests: bool,
    pub disable_new: bool,
}

impl Default for Flags {
    fn default() -> Self {
        Flags::resolve(&[])
    }
}

impl Flags {
    /// Effective flags from stored `(key, value)` pairs (unknown keys ignored).
    pub fn resolve(stored: &[(String, String)]) -> Flags {
        let get = |k: &str| -> Option<&str> {
            stored
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let kill = get("DISABLE_NEW") == Some("1");
        let value = |k: &str| -> String {
            let d = def(k).expect("known flag");
            if kill && k != "DISABLE_NEW" {
                return d.safe.to_string();
            }
            get(k)
                .filter(|v| d.allowed.contains(v))
                .unwrap_or(d.default)
                .to_string()
        };
        Flags {
            scheduler_mode: if value("SCHEDULER_MODE") == "wsjf" {
                SchedulerMode::Wsjf
            } else {
                SchedulerMode::Priority
            },
            sandbox_mode: {
                let set = get("SANDBOX_MODE").is_some() && !kill;
                set.then(|| value("SANDBOX_MODE"))
            },
            verbose_output: value("OUTPUT_MODE") == "verbose",
            admin_tools: value("ADMIN_TOOLS") == "1",
            verbose_prompt: value("PROMPT_MODE") == "verbose",
            selective_tests: value("SELECTIVE_TESTS") == "1",
            disable_new: kill,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kill_switch_forces_safe_values() {
        let on = kv(&[
            ("SCHEDULER_MODE", "wsjf"),
            ("ADMIN_TOOLS", "1"),
            ("OUTPUT_MODE", "verbose"),
            ("SANDBOX_MODE", "off"),
        ]);
        let f = Flags::resolve(&on);
        assert_eq!(f.scheduler_mode, SchedulerMode::Wsjf);
        assert!(f.admin_tools && f.verbose_output);
        assert_eq!(f.sandbox_mode.as_deref(), Some("off"));
        let mut killed = on.clone();
        killed.push(("DISABLE_NEW".into(), "1".into()));
        let k = Flags::resolve(&killed);
        assert_eq!(k.scheduler_mode, SchedulerMode::Priority);
        assert!(!k.admin_tools && !k.verbose_output && k.disable_new);
        assert_eq!(k.sandbox_mode, None);
    }

    #[test]
    fn validation_lists_what_is_allowed() {
        assert_eq!(validate("ADMIN_TOOLS", "on").unwrap().1, "1");
        let e = validate("SCHEDULER_MODE", "random").unwrap_err();
        assert_eq!(e.details["allowed"], json!(["priority", "wsjf"]));
        let e = validate("NOPE", "1").unwrap_err();
        assert!(e.message.contains("SCHEDULER_MODE"));
    }
}
