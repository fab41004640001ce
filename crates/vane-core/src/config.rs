//! `vane.toml`: the workspace configuration. Unknown keys are errors (a typo
//! must not silently turn a safety setting off). Every field has a default, so
//! an empty file — or no file — is a valid configuration.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{ErrorCode, VaneError};

pub mod dispatch;
pub use dispatch::{
    Budget, BudgetLimits, Dispatch, OnExceeded, OnSuccess, ProviderConfig, ProviderKind,
};

pub mod http;
pub mod store;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// State directory, relative to the workspace (default `.vane`).
    pub state_dir: Option<String>,
    pub limits: Limits,
    pub commands: Commands,
    pub telemetry: Telemetry,
    /// `[runtime]`: the front and its workers.
    pub runtime: Runtime,
    /// `[upgrade]`: preflight and the upgrade pipeline.
    pub upgrade: Upgrade,
    /// `[audit]`: what `vane audit` (and the `security` critic) ignores.
    pub audit: Audit,
    /// `[rate_limits]`: calls per client session and tool.
    pub rate_limits: RateLimits,
    /// `[tools]`: which tools MCP clients (and the openai provider) get.
    pub tools: ToolsConfig,
    /// `[http]`: `vane serve --http`.
    pub http: http::Http,
    /// `[store]`: SQLite (default) or a shared PostgreSQL database.
    pub store: store::Store,
    /// `[critics.NAME]` tables.
    pub critics: IndexMap<String, CriticConfig>,
    /// `[providers.NAME]`: the agents `vane run` dispatches to.
    pub providers: IndexMap<String, ProviderConfig>,
    /// `[dispatch]`: order of providers, retries, the circuit breaker.
    pub dispatch: Dispatch,
    /// `[budgets.ENV]`: spending limits per environment (`VANE_ENV`).
    pub budgets: IndexMap<String, Budget>,
    /// `[prices."PROVIDER/MODEL"]` or `[prices.MODEL]`: USD per million tokens.
    pub prices: IndexMap<String, crate::dispatch::Price>,
}

/// `[tools] preset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolPreset {
    /// every tool (admin tools still need ADMIN_TOOLS=1)
    #[default]
    All,
    /// what an agent working a roadmap uses: [`CORE_TOOLS`]
    Core,
}

/// The `core` preset.
pub const CORE_TOOLS: &[&str] = &[
    "plan_next",
    "plan_update",
    "context_write",
    "fs_read",
    "fs_write",
    "cmd_run",
    "critics_run",
    "status",
];

/// `[tools]`: a team loads only what its agents use. The preset, plus
/// `enable`, minus `disable`. Applies to what MCP clients see and may call
/// (and to the functions the openai provider offers); vane's own CLI and
/// `vane run` keep every tool. Names are checked against the tools vane has
/// when a server starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    pub preset: ToolPreset,
    pub enable: Vec<String>,
    pub disable: Vec<String>,
}

impl ToolsConfig {
    /// Offered to clients? (Admin tools also need the ADMIN_TOOLS flag.)
    pub fn enabled(&self, name: &str) -> bool {
        if self.disable.iter().any(|d| d == name) {
            return false;
        }
        if self.enable.iter().any(|e| e == name) {
            return true;
        }
        match self.preset {
            ToolPreset::All => true,
            ToolPreset::Core => CORE_TOOLS.contains(&name),
        }
    }

    /// The names in `enable`/`disable` that are not in `known`.
    pub fn unknown<'a>(&'a self, known: &[&str]) -> Vec<&'a str> {
        self.enable
            .iter()
            .chain(&self.disable)
            .map(String::as_str)
            .filter(|n| !known.contains(n))
            .collect()
    }
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
    /// Memory one command may use, with everything it starts (MiB; 0: no limit).
    pub cmd_max_memory_mb: u64,
    /// Processes one command may have at once (0: no limit).
    pub cmd_max_processes: u64,
    /// Commands (and critics) one worker runs at once; more wait their turn.
    pub cmd_max_concurrent: usize,
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
            cmd_max_memory_mb: 8192,
            cmd_max_processes: 1024,
            cmd_max_concurrent: 4,
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
    /// Environment variables a command receives from vane's own environment,
    /// besides the always-passed basics (`PATH`, `HOME`, `LANG`, `LC_*`,
    /// `TERM`, `USER`, `LOGNAME`, `SHELL`, `TZ`). Names, or prefixes ending in `*`.
    /// Everything else — API keys above all — stays out.
    pub env_allow: Vec<String>,
    /// Extra paths the sandbox hides from commands (an empty directory or
    /// file in their place), besides the built-in credential locations.
    pub hide: Vec<String>,
}

impl Default for Commands {
    fn default() -> Self {
        Commands {
            sandbox: SandboxMode::Auto,
            network: true,
            deny: Vec::new(),
            builtin_deny: true,
            env_allow: Vec::new(),
            hide: Vec::new(),
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

/// `[runtime]`: how the front (`vane serve`) runs, watches and replaces its
/// workers. Durations are milliseconds unless the name says otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    /// Run a front with workers (`false`: `vane serve` is a single worker).
    pub front: bool,
    /// Timeout of an ordinary tool call; the client gets `timeout` and the
    /// worker is told to cancel.
    pub call_timeout_ms: u64,
    /// Timeout of `cmd_run` and `critics_run` (they carry their own limits too).
    pub long_call_timeout_ms: u64,
    /// Per-tool overrides, e.g. `{ plan_next = 5000 }`.
    pub tool_timeouts_ms: IndexMap<String, u64>,
    /// A worker must finish the MCP handshake and its self-check within this.
    pub ready_timeout_ms: u64,
    /// Liveness: MCP `ping` every this often …
    pub ping_interval_ms: u64,
    /// … each answered within this …
    pub ping_timeout_ms: u64,
    /// … and this many failures in a row open the worker's circuit.
    pub ping_failures_to_open: u32,
    /// After a switch, the old worker's in-flight calls may run this long
    /// before it is stopped (SIGTERM, then SIGKILL after `term_grace_ms`).
    pub drain_timeout_ms: u64,
    pub term_grace_ms: u64,
    /// How long the previous worker stays as a hot standby after a switch.
    pub standby_ttl_s: u64,
    /// How many times one call is retried on another (or restarted) worker.
    pub max_retries: u32,
    /// The longest request line a client may send; a longer one is answered
    /// with a JSON-RPC error (-32600) and skipped, never buffered whole.
    pub max_request_bytes: u64,
    pub shadow: Shadow,
    pub rollback: Rollback,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            front: true,
            call_timeout_ms: 30_000,
            long_call_timeout_ms: 3_600_000,
            tool_timeouts_ms: IndexMap::new(),
            ready_timeout_ms: 10_000,
            ping_interval_ms: 2_000,
            ping_timeout_ms: 1_000,
            ping_failures_to_open: 3,
            drain_timeout_ms: 30_000,
            term_grace_ms: 2_000,
            standby_ttl_s: 1_800,
            max_retries: 3,
            max_request_bytes: 32 << 20,
            shadow: Shadow::default(),
            rollback: Rollback::default(),
        }
    }
}

/// One quota: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub per_second: u32,
    pub burst: u32,
}

/// `[rate_limits]`: how many calls one client session may make of one tool,
/// by tier — `health` (`status`, `tool_manifest`), `admin` (the admin
/// tools), `tools` (the rest) — with per-tool overrides. A call over its
/// quota is answered `rate_limited` with `retry_after_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    pub enabled: bool,
    pub tools: Quota,
    pub admin: Quota,
    pub health: Quota,
    /// e.g. `{ cmd_run = { per_second = 5, burst = 20 } }`
    pub per_tool: IndexMap<String, Quota>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            enabled: true,
            tools: Quota {
                per_second: 200,
                burst: 1000,
            },
            admin: Quota {
                per_second: 5,
                burst: 20,
            },
            health: Quota {
                per_second: 500,
                burst: 2000,
            },
            per_tool: IndexMap::new(),
        }
    }
}

/// `[audit]`: the secret scan's allow-lists and threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// Paths (globs, relative to the workspace) never scanned, e.g. test fixtures.
    pub allow_paths: Vec<String>,
    /// Regular expressions: a match that one of them matches is not a finding
    /// (e.g. a documented example key).
    pub allow: Vec<String>,
    /// The lowest severity that fails `vane audit`, the `security` critic
    /// and preflight: `critical`, `high`, `medium` or `low`.
    pub fail_on: String,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            allow_paths: Vec::new(),
            allow: Vec::new(),
            fail_on: "high".into(),
        }
    }
}

/// `[upgrade]`: what `vane preflight` checks and how `vane upgrade` proves a
/// new version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upgrade {
    /// Free space the state directory's volume must have.
    pub min_free_mb: u64,
    /// Environment variables that must be set and non-empty (values never printed).
    pub required_secrets: Vec<String>,
    /// Shadow window (seconds) and the samples it must collect; fewer means hold.
    pub shadow_s: u64,
    pub min_shadow_samples: u64,
    /// Observation window after promotion (seconds).
    pub observe_s: u64,
    /// Build and test commands of the build and unit gates (`--git` / `--patch`),
    /// run with `sh -c` in a separate git worktree, each within `gate_timeout_s`.
    pub build_command: String,
    pub test_command: String,
    pub gate_timeout_s: u64,
    /// How long the new binary may take to migrate and check the private
    /// copy of the store (and the live store's expand migrations).
    pub migration_timeout_s: u64,
    /// Where the build leaves the vane executable, relative to the worktree.
    pub binary: String,
}

impl Default for Upgrade {
    fn default() -> Self {
        Upgrade {
            min_free_mb: 500,
            required_secrets: Vec::new(),
            shadow_s: 60,
            min_shadow_samples: 50,
            observe_s: 600,
            build_command: "cargo build --release".into(),
            test_command: "cargo test --workspace".into(),
            gate_timeout_s: 3600,
            migration_timeout_s: 300,
            binary: "target/release/vane".into(),
        }
    }
}

/// `[runtime.shadow]`: read-only calls copied to a dry-run canary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shadow {
    pub enabled: bool,
    /// A canary answer slower than this counts as a shadow timeout.
    pub timeout_ms: u64,
    /// Shadow calls in flight at most; beyond this a call is not shadowed
    /// (counted as skipped) so a slow canary never piles up work.
    pub max_in_flight: usize,
    /// Fields left out of the comparison: names at any depth (exact,
    /// `prefix*` or `*suffix`), or one place as a JSON pointer (`/version`:
    /// the vane version `status` reports, which differs by design).
    pub ignore_fields: Vec<String>,
}

impl Default for Shadow {
    fn default() -> Self {
        Shadow {
            enabled: true,
            timeout_ms: 5_000,
            max_in_flight: 32,
            ignore_fields: [
                "recent_calls",
                "uptime_s",
                "*_at",
                "*_at_ms",
                "*_ms",
                "*_us",
                "generated",
                "now",
                "session_id",
                "pid",
                "/version",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// `[runtime.rollback]`: when the front routes back to the standby after a
/// switch, by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rollback {
    pub enabled: bool,
    /// How long after a switch the new worker is watched.
    pub watch_s: u64,
    /// Failed calls (transport, timeout, `internal`) over all calls …
    pub error_budget: f64,
    /// … in this sliding window …
    pub error_window_s: u64,
    /// … once at least this many calls were made.
    pub min_calls: u64,
    /// p95 latency of the new worker's calls (`cmd_run`/`critics_run` not
    /// counted) above this …
    pub p95_slo_ms: u64,
    /// … over at least this many calls.
    pub min_latency_samples: u64,
    /// Resident memory above this times the old worker's …
    pub rss_factor: f64,
    /// … for this long.
    pub rss_window_s: u64,
    /// Set `DISABLE_NEW=1` when rolling back by itself.
    pub set_disable_new: bool,
}

impl Default for Rollback {
    fn default() -> Self {
        Rollback {
            enabled: true,
            watch_s: 1_800,
            error_budget: 0.05,
            error_window_s: 120,
            min_calls: 20,
            p95_slo_ms: 2_000,
            min_latency_samples: 20,
            rss_factor: 1.5,
            rss_window_s: 60,
            set_disable_new: true,
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
        let quotas = [
            ("tools", &self.rate_limits.tools),
            ("admin", &self.rate_limits.admin),
            ("health", &self.rate_limits.health),
        ];
        for (name, q) in quotas.into_iter().chain(
            self.rate_limits
                .per_tool
                .iter()
                .map(|(k, q)| (k.as_str(), q)),
        ) {
            if q.per_second == 0 || q.burst == 0 {
                return bad(format!(
                    "rate_limits.{name}: per_second and burst must be at least 1 (enabled = false turns limits off)"
                ));
            }
        }
        if !["critical", "high", "medium", "low"].contains(&self.audit.fail_on.as_str()) {
            return bad(format!(
                "audit: fail_on `{}`: use critical, high, medium or low",
                self.audit.fail_on
            ));
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
        let r = &self.runtime;
        if r.call_timeout_ms == 0
            || r.long_call_timeout_ms == 0
            || r.ready_timeout_ms == 0
            || r.ping_interval_ms == 0
            || r.ping_timeout_ms == 0
            || r.ping_failures_to_open == 0
            || r.tool_timeouts_ms.values().any(|t| *t == 0)
        {
            return bad(
                "runtime: timeouts, intervals and ping_failures_to_open must be > 0".into(),
            );
        }
        let rb = &r.rollback;
        if !(0.0..=1.0).contains(&rb.error_budget) || rb.rss_factor < 1.0 || rb.error_window_s == 0
        {
            return bad(
                "runtime.rollback: need 0 <= error_budget <= 1, rss_factor >= 1, error_window_s > 0"
                    .into(),
            );
        }
        for rule in &self.commands.deny {
            if rule.split_whitespace().next().is_none() {
                return bad("commands.deny: empty rule".into());
            }
        }
        self.http.validate()?;
        self.store.validate()?;
        dispatch::validate(self)
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
cmd_max_memory_mb = 8192         # per command with all it starts (a cgroup where possible, else RLIMIT_AS); 0 = none
cmd_max_processes = 1024         # per command (pids cgroup, else RLIMIT_NPROC); 0 = none
cmd_max_concurrent = 4           # commands and critics one worker runs at once; more wait

[commands]
sandbox = "auto"                 # auto (bubblewrap when installed) | bwrap (required) | off
network = true                   # false: sandboxed commands get no network
builtin_deny = true              # privilege escalation, rm -rf / or the workspace, git reset --hard, force-push, deleting .git …
env_allow = []                   # variables commands get besides PATH, HOME, LANG, LC_*, TERM, USER, SHELL, TZ (e.g. ["CARGO_*", "RUSTFLAGS"])
hide = []                        # more paths the sandbox hides (credentials in ~ are hidden already)
deny = []                        # extra rules: a command and words among its arguments, e.g. ["npm publish", "git push origin main"]

[telemetry]
enabled = true                   # operations log (.vane/telemetry/operations.jsonl) and metrics
# otlp_endpoint = "http://localhost:4318"   # OTLP/HTTP export of spans and metrics (or OTEL_EXPORTER_OTLP_ENDPOINT)
service_name = "vane"
log_max_bytes = 33554432         # rotate the operations log past 32 MiB
log_retention = 5                # rotated files kept
queue_capacity = 8192            # events buffered for the background writer; overflow is counted and reported

[runtime]                        # `vane serve` is a front that keeps workers behind it
front = true                     # false: `vane serve` is a single worker (no restarts, no switches)
call_timeout_ms = 30000          # then the client gets `timeout` and the worker is told to cancel
long_call_timeout_ms = 3600000   # cmd_run and critics_run (they have their own limits too)
tool_timeouts_ms = {}            # per tool, e.g. { plan_next = 5000 }
ready_timeout_ms = 10000         # handshake + self-check of a new worker
ping_interval_ms = 2000          # liveness ping …
ping_timeout_ms = 1000
ping_failures_to_open = 3        # … failures in a row that open a worker's circuit
drain_timeout_ms = 30000         # in-flight calls of a replaced worker may finish …
term_grace_ms = 2000             # … then SIGTERM, then SIGKILL after this
standby_ttl_s = 1800             # the previous worker stays a hot standby this long
max_retries = 3                  # retries of one call after a crash or a worker fault
max_request_bytes = 33554432     # longer request lines get a JSON-RPC error, never buffered whole

[runtime.shadow]                 # read-only calls copied to a dry-run canary and compared
enabled = true
timeout_ms = 5000
max_in_flight = 32
ignore_fields = ["recent_calls", "uptime_s", "*_at", "*_at_ms", "*_ms", "*_us", "generated", "now", "session_id", "pid", "/version"]

[runtime.rollback]               # automatic rollback after a switch
enabled = true
watch_s = 1800                   # how long the new worker is watched
error_budget = 0.05              # failed calls / calls …
error_window_s = 120             # … over this window …
min_calls = 20                   # … once this many calls were made
p95_slo_ms = 2000                # p95 latency (cmd_run/critics_run excluded) …
min_latency_samples = 20
rss_factor = 1.5                 # resident memory above 1.5x the old worker's …
rss_window_s = 60                # … for this long
set_disable_new = true           # an automatic rollback also sets DISABLE_NEW=1

[rate_limits]                    # per client session and tool; over it: rate_limited + retry_after_ms
enabled = true
tools = { per_second = 200, burst = 1000 }
admin = { per_second = 5, burst = 20 }      # flags_*, panic_disable_new, worker_health, route_switch, upgrade_*
health = { per_second = 500, burst = 2000 } # status, tool_manifest
per_tool = {}                    # e.g. { cmd_run = { per_second = 5, burst = 20 } }

[http]                           # vane serve --http: Streamable HTTP for many clients at once
listen = "127.0.0.1:8731"        # when --http gives no address; loopback unless allow_remote
path = "/mcp"
allowed_hosts = []               # Host values accepted besides loopback and the listen address
allowed_origins = []             # browser origins allowed besides loopback pages; others get 403
# tokens_env = "VANE_HTTP_TOKENS"  # "TOKEN:tools+admin, TOKEN2" — with tokens, every request needs one
# tokens_file = ".vane/http-tokens" # "sha256:HEX tools,admin" per line (vane http-token new)
max_body_bytes = 4194304         # larger requests get 413
authorization_servers = []       # named in /.well-known/oauth-protected-resource (RFC 9728)
session_idle_s = 300             # idle sessions are closed
allow_remote = false             # a non-loopback listen address must be asked for (and needs tokens)
# [http.jwt]                     # JWT access tokens: signature, iss, exp, aud = this endpoint
# issuer = "https://auth.example"
# jwks_file = "jwks.json"        # the issuer's public keys

[store]                          # where the store is: unset url = vane.db in the state directory (SQLite)
# url = "postgres://vane@db.internal:5432/vane"  # a PostgreSQL database fronts on several hosts share (VANE_STORE_URL overrides)
# password_file = ".vane-db-password"           # its password (or VANE_STORE_PASSWORD); never in the URL
max_connections = 8              # connections one vane process keeps to PostgreSQL at most
# ca_file = "db-ca.pem"          # CA certificates for the server's TLS certificate, besides the system's (TLS: the URL's sslmode = prefer | require | disable)

[audit]                          # vane audit, the built-in `security` critic, preflight
allow_paths = []                 # globs never scanned (e.g. "tests/fixtures/**")
allow = []                       # regexes of known non-secrets (e.g. a documented example key)
fail_on = "high"                 # critical | high | medium | low

[upgrade]                        # vane preflight / vane upgrade
min_free_mb = 500                # free space needed on the state directory's volume
required_secrets = []            # environment variables that must be set (values never printed)
shadow_s = 60                    # shadow window before promotion …
min_shadow_samples = 50          # … and the compared answers it needs (fewer: hold, never promote)
observe_s = 600                  # observation window after promotion
build_command = "cargo build --release"   # build gate (--git / --patch), in a separate worktree
test_command = "cargo test --workspace"   # unit gate
gate_timeout_s = 3600
migration_timeout_s = 300        # the new version migrates a private copy of the store within this
binary = "target/release/vane"   # where the build leaves the executable

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
