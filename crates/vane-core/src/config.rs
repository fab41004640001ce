//! `vane.toml`: the workspace configuration. Unknown keys are errors (a typo
//! must not silently turn a safety setting off). Every field has a default, so
//! an empty file — or no file — is a valid configuration.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{ErrorCode, VaneError};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// State directory, relative to the workspace (default `.vane`).
    pub state_dir: Option<String>,
    pub limits: Limits,
    pub commands: Commands,
    pub telemetry: Telemetry,
    /// `[critics.NAME]` tables.
    pub critics: IndexMap<String, CriticConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Word budget of one context section.
    pub context_word_budget: usize,
    /// Tool output budget in tokens (about 4 bytes each); larger outputs are
    /// truncated and the full text kept as an artifact.
    pub output_token_budget: usize,
    /// Largest file `fs_read` returns whole (bytes); larger files need a line range.
    pub fs_read_max_bytes: u64,
    /// Largest content `fs_write` accepts (bytes).
    pub fs_write_max_bytes: u64,
    /// stdout/stderr bytes kept per stream by `cmd_run` (head and tail).
    pub cmd_output_max_bytes: usize,
    pub cmd_default_timeout_s: u64,
    pub cmd_max_timeout_s: u64,
    /// Default lease of a claim (seconds).
    pub claim_ttl_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            context_word_budget: 1000,
            output_token_budget: 20_000,
            fs_read_max_bytes: 1024 * 1024,
            fs_write_max_bytes: 8 * 1024 * 1024,
            cmd_output_max_bytes: 64 * 1024,
            cmd_default_timeout_s: 120,
            cmd_max_timeout_s: 3600,
            claim_ttl_s: 1800,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// bubblewrap when installed, otherwise policy checks only
    #[default]
    Auto,
    /// bubblewrap required: commands fail with `sandbox_unavailable` without it
    Bwrap,
    /// policy checks only
    Off,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Commands {
    pub sandbox: SandboxMode,
    /// Allow network access from sandboxed commands.
    pub network: bool,
    /// Extra deny rules, each a command followed by words that must all
    /// appear among its arguments, e.g. `"npm publish"`, `"git push --force"`.
    pub deny: Vec<String>,
    /// Keep vane's built-in deny rules (privilege escalation, deleting the
    /// workspace or `/`, `git reset --hard`, force-push, deleting `.git`, …).
    pub builtin_deny: bool,
}

impl Default for Commands {
    fn default() -> Self {
        Commands {
            sandbox: SandboxMode::Auto,
            network: true,
            deny: Vec::new(),
            builtin_deny: true,
        }
    }
}

/// `[telemetry]`: the operations log, OpenTelemetry export, summaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Telemetry {
    /// Write the operations log and keep metrics (spans are exported only
    /// when an OTLP endpoint is set).
    pub enabled: bool,
    /// OTLP/HTTP base URL, e.g. `http://localhost:4318`; the standard
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is used when this is unset.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of exported telemetry.
    pub service_name: String,
    /// Rotate `operations.jsonl` when it grows past this many bytes.
    pub log_max_bytes: u64,
    /// How many rotated files to keep (`operations.jsonl.1` … `.N`).
    pub log_retention: usize,
    /// Events buffered for the background writer; beyond this, events are
    /// dropped, counted, and the drop is reported as an `alert` event.
    pub queue_capacity: usize,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            enabled: true,
            otlp_endpoint: None,
            service_name: "vane".into(),
            log_max_bytes: 32 * 1024 * 1024,
            log_retention: 5,
            queue_capacity: 8192,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriticConfig {
    /// Shell command line; exit code 0 means pass.
    pub command: String,
    /// Globs of the paths this critic cares about (used with `paths` / git changes).
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default = "default_critic_timeout")]
    pub timeout_s: u64,
    #[serde(default)]
    pub description: Option<String>,
}

fn default_critic_timeout() -> u64 {
    600
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, VaneError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            VaneError::new(
                ErrorCode::ConfigInvalid,
                format!("vane.toml: {}", e.message().trim()),
            )
            .with_details(json!({ "span": e.span().map(|s| [s.start, s.end]) }))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), VaneError> {
        let bad = |m: String| Err(VaneError::new(ErrorCode::ConfigInvalid, m));
        for (name, c) in &self.critics {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
            {
                return bad(format!(
                    "critic name `{name}`: use letters, digits, `_` and `-`"
                ));
            }
            if c.command.trim().is_empty() {
                return bad(format!("critic `{name}` has an empty command"));
            }
            if c.timeout_s == 0 {
                return bad(format!("critic `{name}`: timeout_s must be at least 1"));
            }
        }
        if self.limits.cmd_default_timeout_s == 0
            || self.limits.cmd_default_timeout_s > self.limits.cmd_max_timeout_s
        {
            return bad("limits: need 1 <= cmd_default_timeout_s <= cmd_max_timeout_s".into());
        }
        if self.limits.context_word_budget == 0 || self.limits.output_token_budget < 100 {
            return bad(
                "limits: context_word_budget must be > 0 and output_token_budget >= 100".into(),
            );
        }
        if self.telemetry.log_max_bytes < 4096 || self.telemetry.queue_capacity == 0 {
            return bad("telemetry: log_max_bytes must be >= 4096 and queue_capacity > 0".into());
        }
        for rule in &self.commands.deny {
            if rule.split_whitespace().next().is_none() {
                return bad("commands.deny: empty rule".into());
            }
        }
        Ok(())
    }
}

/// The commented `vane.toml` that `vane init` writes.
pub const DEFAULT_TOML: &str = r#"# vane.toml — configuration of this workspace for vane (https://github.com/vane-dev/vane)
# Every key is optional; the values below are the defaults unless marked "example".

# state_dir = ".vane"            # where the store and exports live (relative to the workspace)

[limits]
context_word_budget = 1000       # words per context section (context_write)
output_token_budget = 20000      # larger tool outputs are truncated; full text kept as an artifact
fs_read_max_bytes = 1048576      # larger files must be read by line range
fs_write_max_bytes = 8388608
cmd_output_max_bytes = 65536     # per stream; head and tail kept, `truncated` set
cmd_default_timeout_s = 120
cmd_max_timeout_s = 3600
claim_ttl_s = 1800               # default lease of plan_next claims

[commands]
sandbox = "auto"                 # auto (bubblewrap when installed) | bwrap (required) | off
network = true                   # false: sandboxed commands get no network
builtin_deny = true              # privilege escalation, rm -rf / or the workspace, git reset --hard, force-push, deleting .git …
deny = []                        # extra rules: a command and words among its arguments, e.g. ["npm publish", "git push origin main"]

[telemetry]
enabled = true                   # operations log (.vane/telemetry/operations.jsonl) and metrics
# otlp_endpoint = "http://localhost:4318"   # OTLP/HTTP export of spans and metrics (or OTEL_EXPORTER_OTLP_ENDPOINT)
service_name = "vane"
log_max_bytes = 33554432         # rotate the operations log past 32 MiB
log_retention = 5                # rotated files kept
queue_capacity = 8192            # events buffered for the background writer; overflow is counted and reported

# Critics gate `done`: a task whose exit criteria name `critic: NAME` can only be
# completed after NAME passed since the task started. Exit code 0 = pass.
# [critics.tests]                # example
# command = "cargo test"
# paths = ["**/*.rs", "Cargo.toml"]
# timeout_s = 900
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_template_parses_to_defaults() {
        assert_eq!(Config::parse(DEFAULT_TOML).unwrap(), Config::default());
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        for text in [
            "[limits]\ncontext_word_budgt = 3\n",
            "[commands]\nsandbox = \"maybe\"\n",
            "[critics.t]\npaths = []\n",
            "[critics.t]\ncommand = \" \"\n",
            "[critics.\"a b\"]\ncommand = \"x\"\n",
        ] {
            assert_eq!(
                Config::parse(text).unwrap_err().code,
                ErrorCode::ConfigInvalid,
                "{text}"
            );
        }
    }

    #[test]
    fn critics_parse() {
        let c =
            Config::parse("[critics.build]\ncommand = \"make\"\npaths = [\"src/**\"]\n").unwrap();
        assert_eq!(c.critics["build"].timeout_s, 600);
    }
}
