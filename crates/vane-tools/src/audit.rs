//! `vane audit`: secrets and credential hygiene of a workspace — and the
//! built-in `security` critic and a preflight check, which run the same scan.
//!
//! What is scanned: the workspace's files (tracked and untracked, through
//! vane's hardened git; every file when it is not a repository), with
//! `history` every line ever added in git history, vane's state directory
//! (operations log, exports, artifacts — never the store or the control
//! socket's token) and `vane.toml`. Also: credential files tracked by git,
//! permissions of the state directory and of credential files, and which
//! environment variables a command would receive.
//!
//! Rules follow gitleaks' (AWS, GitHub, Anthropic, OpenAI, Slack, Google,
//! Stripe, private keys, JWTs, and a generic `key = value` rule with a
//! Shannon-entropy floor and placeholder filter). A line with
//! `vane:allow-secret` or `gitleaks:allow` is skipped; `[audit] allow_paths`
//! and `[audit] allow` skip paths and known values. A secret is never printed
//! in full: a finding shows its first four characters and its length.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use globset::{Glob, GlobSetBuilder};
use regex::Regex;
use serde::Serialize;
use serde_json::{json, Value};
use vane_core::{ErrorCode, VaneError};

use vane_core::config::Config;

use crate::confine::Workspace;

/// How bad a finding is. Ordered: `Low < … < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub rule: &'static str,
    /// `path:line`, `commit:path:line`, `state:…`, `env:NAME`, …
    pub location: String,
    pub message: String,
    /// the secret's first characters and its length — never the secret
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

struct Rule {
    id: &'static str,
    severity: Severity,
    what: &'static str,
    re: Regex,
    /// the capture group holding the secret (0: the whole match)
    group: usize,
    /// minimum Shannon entropy (bits per character) of the secret
    entropy: f64,
}

fn rules() -> &'static [Rule] {
    static R: OnceLock<Vec<Rule>> = OnceLock::new();
    R.get_or_init(|| {
        let r = |id, severity, what, re: &str, group, entropy| Rule {
            id,
            severity,
            what,
            re: Regex::new(re).expect("audit rule"),
            group,
            entropy,
        };
        use Severity::*;
        vec![
            r("private-key", Critical, "a private key", r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY( BLOCK)?-----", 0, 0.0),
            r("aws-access-key-id", Critical, "an AWS access key id", r"\b((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})\b", 1, 3.0),
            r("aws-secret-access-key", Critical, "an AWS secret access key", r#"(?i)aws.{0,20}?(?:secret|sk).{0,20}?[=:]\s*["']?([A-Za-z0-9/+=]{40})\b"#, 1, 4.0),
            r("github-token", Critical, "a GitHub token", r"\b((?:ghp|gho|ghu|ghs|ghr)_[0-9a-zA-Z]{36}|github_pat_[0-9a-zA-Z_]{82})\b", 1, 3.0),
            r("anthropic-api-key", Critical, "an Anthropic API key", r"\b(sk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_\-]{40,})", 1, 3.5),
            r("openai-api-key", Critical, "an OpenAI API key", r"\b(sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}|sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})", 1, 3.5),
            r("slack-token", Critical, "a Slack token", r"\b(xox[baprs]-[0-9A-Za-z][0-9A-Za-z-]{9,})", 1, 3.0),
            r("slack-webhook", High, "a Slack webhook URL", r"(https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{20,})", 1, 3.0),
            r("google-api-key", High, "a Google API key", r"\b(AIza[0-9A-Za-z_\-]{35})\b", 1, 3.5),
            r("stripe-secret-key", Critical, "a Stripe secret key", r"\b((?:sk|rk)_live_[0-9a-zA-Z]{24,})\b", 1, 3.5),
            r("jwt", Medium, "a JSON Web Token", r"\b(eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,})", 1, 3.5),
            // a quoted value assigned to a secret-named key …
            r("generic-secret", High, "a secret-looking assignment", r#"(?i)(?:api[_\-.]?key|secret|token|passw(?:or)?d|credential|private[_\-.]?key|auth[_\-.]?key)[\w.\-]{0,20}["']?\s*(?:=|:|=>|:=)\s*["'`]([A-Za-z0-9_\-+/=.~!@#$%^&*]{12,})["'`]"#, 1, 3.5),
            // … or a bare one in a config-like line (`KEY=value`, `key: value`)
            r("generic-secret", High, "a secret-looking assignment", r#"(?i)^\s*(?:export\s+)?[\w.\-]{0,30}(?:api[_\-.]?key|secret|token|passw(?:or)?d|credential|auth[_\-.]?key)[\w.\-]{0,20}\s*[=:]\s*([A-Za-z0-9_\-+/=.~!@#$%^&*]{12,})\s*$"#, 1, 3.5),
        ]
    })
}

/// Shannon entropy of `s` in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0usize; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

fn placeholder(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    [
        "example",
        "xxxx",
        "changeme",
        "change_me",
        "your",
        "dummy",
        "placeholder",
        "redacted",
        "sample",
        "fake",
        "test",
        "****",
        "${",
        "{{",
        "<",
        "process.env",
        "os.environ",
    ]
    .iter()
    .any(|p| l.contains(p))
}

/// The first four characters and the length: enough to find it, not to use it.
pub fn preview(secret: &str) -> String {
    let head: String = secret.chars().take(4).collect();
    format!("{head}… ({} chars)", secret.chars().count())
}

/// Scans one text; `at(line)` names a line's location.
fn scan_text(text: &str, at: &dyn Fn(usize) -> String, allow: &[Regex], out: &mut Vec<Finding>) {
    for (i, line) in text.lines().enumerate() {
        if line.len() > 20_000
            || line.contains("vane:allow-secret")
            || line.contains("gitleaks:allow")
        {
            continue;
        }
        for rule in rules() {
            for caps in rule.re.captures_iter(line) {
                let Some(m) = caps.get(rule.group) else {
                    continue;
                };
                let secret = m.as_str();
                if rule.entropy > 0.0 && entropy(secret) < rule.entropy {
                    continue;
                }
                if rule.id == "generic-secret"
                    && (placeholder(secret)
                        || !secret.chars().any(|c| c.is_ascii_digit())
                        || !secret.chars().any(|c| c.is_ascii_alphabetic()))
                {
                    continue;
                }
                if allow.iter().any(|a| a.is_match(secret)) {
                    continue;
                }
                out.push(Finding {
                    severity: rule.severity,
                    rule: rule.id,
                    location: at(i + 1),
                    message: format!("{} in plain text", rule.what),
                    preview: Some(if rule.id == "private-key" {
                        "-----BEGIN … PRIVATE KEY-----".into()
                    } else {
                        preview(secret)
                    }),
                });
                break;
            }
        }
    }
}

const MAX_FILE: u64 = 2 << 20;

/// A file's text, when it is a small regular text file.
fn text_of(path: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return None;
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Names of files that hold credentials by their nature.
fn credential_file(name: &str) -> bool {
    let n = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
    let env_file = n == ".env"
        || (n.starts_with(".env.")
            && ![".env.example", ".env.sample", ".env.template", ".env.dist"]
                .contains(&n.as_str()));
    env_file
        || [
            "id_rsa",
            "id_dsa",
            "id_ecdsa",
            "id_ed25519",
            ".npmrc",
            ".pypirc",
            ".netrc",
            ".git-credentials",
            "credentials.json",
            "credentials",
            ".htpasswd",
        ]
        .contains(&n.as_str())
        || [
            ".pem",
            ".key",
            ".p12",
            ".pfx",
            ".jks",
            ".keystore",
            ".kdbx",
            ".ppk",
        ]
        .iter()
        .any(|x| n.ends_with(x))
        || (n.starts_with("service-account") && n.ends_with(".json"))
}

/// Options of one audit.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// also every line ever added in git history
    pub history: bool,
    /// overrides `[audit] fail_on`
    pub fail_on: Option<Severity>,
}

/// Runs the audit. Blocking (files and git): call from a blocking context.
pub fn run(ws: &Workspace, config: &Config, opts: &Options) -> Result<Value, VaneError> {
    let root = &ws.root;
    let cfg = &config.audit;
    let fail_on = match opts.fail_on {
        Some(s) => s,
        None => Severity::parse(&cfg.fail_on).unwrap_or(Severity::High),
    };
    let allow: Vec<Regex> = cfg
        .allow
        .iter()
        .map(|a| {
            Regex::new(a).map_err(|e| {
                VaneError::new(
                    ErrorCode::ConfigInvalid,
                    format!("[audit] allow `{a}`: {e}"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let mut gb = GlobSetBuilder::new();
    for g in &cfg.allow_paths {
        gb.add(Glob::new(g).map_err(|e| {
            VaneError::new(
                ErrorCode::ConfigInvalid,
                format!("[audit] allow_paths `{g}`: {e}"),
            )
        })?);
    }
    let skip = gb
        .build()
        .map_err(|e| VaneError::new(ErrorCode::ConfigInvalid, e.to_string()))?;
    let state_rel = ws
        .state_dir
        .strip_prefix(root)
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let mut findings = Vec::new();
    let (mut files, mut bytes) = (0usize, 0u64);

    // the workspace's files: tracked and untracked
    let git = |args: &[&str]| -> Option<Vec<u8>> {
        let out = crate::git::command(root).args(args).output().ok()?;
        out.status.success().then_some(out.stdout)
    };
    let is_repo = git(&["rev-parse", "--is-inside-work-tree"]).is_some();
    let listed: Vec<String> = match git(&["ls-files", "-z", "-co", "--exclude-standard"]) {
        Some(out) if is_repo => String::from_utf8_lossy(&out)
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => walk(root, &ws.state_dir),
    };
    let tracked: BTreeSet<String> = git(&["ls-files", "-z"])
        .map(|o| {
            String::from_utf8_lossy(&o)
                .split('\0')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for rel in &listed {
        if skip.is_match(rel)
            || state_rel
                .as_deref()
                .is_some_and(|s| rel.starts_with(&format!("{s}/")))
        {
            continue;
        }
        let path = root.join(rel);
        if credential_file(rel) {
            if tracked.contains(rel) {
                findings.push(Finding {
                    severity: Severity::High,
                    rule: "credential-file-tracked",
                    location: rel.clone(),
                    message: "a credential file is tracked by git (remove it from the index and rotate what it holds)".into(),
                    preview: None,
                });
            }
            if let Some(f) = loose_permissions(&path, 0o077) {
                findings.push(Finding {
                    severity: Severity::Medium,
                    rule: "credential-file-permissions",
                    location: rel.clone(),
                    message: format!("a credential file readable by others (mode {f:o}; use 0600)"),
                    preview: None,
                });
            }
        }
        if let Some(text) = text_of(&path) {
            files += 1;
            bytes += text.len() as u64;
            scan_text(&text, &|l| format!("{rel}:{l}"), &allow, &mut findings);
        }
    }

    // git history: every added line
    let mut commits = 0usize;
    if opts.history && is_repo {
        if let Some(log) = git(&[
            "log",
            "-p",
            "--all",
            "--no-color",
            "--unified=0",
            "--no-ext-diff",
            "--format=commit %H",
        ]) {
            let log = String::from_utf8_lossy(&log);
            let (mut commit, mut file, mut line) = (String::new(), String::new(), 0usize);
            for l in log.lines() {
                if let Some(c) = l.strip_prefix("commit ") {
                    commit = c.chars().take(10).collect();
                    commits += 1;
                } else if let Some(f) = l.strip_prefix("+++ b/") {
                    file = f.to_string();
                } else if let Some(h) = l.strip_prefix("@@ ") {
                    line = h
                        .split_whitespace()
                        .find_map(|p| p.strip_prefix('+'))
                        .and_then(|p| p.split(',').next()?.parse().ok())
                        .unwrap_or(0);
                } else if let Some(added) = l.strip_prefix('+') {
                    if !l.starts_with("+++") && !skip.is_match(&file) {
                        let loc = format!("{commit}:{file}:{line}");
                        scan_text(added, &|_| loc.clone(), &allow, &mut findings);
                    }
                    line += 1;
                }
            }
        }
    }

    // the repository's own ways to run programs: what an agent (or anyone)
    // may have left for the user's next `git commit`
    git_executables(root, &mut findings);

    // vane's state: what it wrote (never the store, never the run directory)
    let state = &ws.state_dir;
    for rel in walk(state, Path::new("/nonexistent")) {
        let top = rel.split('/').next().unwrap_or("");
        if top == "run" || rel.starts_with("vane.db") || top == "upgrades" && rel.ends_with("/vane")
        {
            continue;
        }
        if let Some(text) = text_of(&state.join(&rel)) {
            files += 1;
            bytes += text.len() as u64;
            scan_text(
                &text,
                &|l| format!("state:{rel}:{l}"),
                &allow,
                &mut findings,
            );
        }
    }
    if let Some(mode) = loose_permissions(state, 0o077) {
        findings.push(Finding {
            severity: Severity::Medium,
            rule: "state-dir-permissions",
            location: format!("state:{}", state.display()),
            message: format!(
                "vane's state directory is open to other users (mode {mode:o}; chmod 700)"
            ),
            preview: None,
        });
    }
    // vane.toml (already scanned when listed; scanned here when ignored by git)
    let toml = root.join(crate::confine::CONFIG_FILE);
    if !listed.iter().any(|l| l == crate::confine::CONFIG_FILE) {
        if let Some(text) = text_of(&toml) {
            scan_text(&text, &|l| format!("vane.toml:{l}"), &allow, &mut findings);
        }
    }

    // what a command would receive from this process's environment
    let passed = crate::sandbox::command_env(std::env::vars(), &config.commands.env_allow);
    let secretish = |k: &str| {
        let u = k.to_ascii_uppercase();
        [
            "KEY",
            "TOKEN",
            "SECRET",
            "PASSWORD",
            "PASSWD",
            "CREDENTIAL",
            "AUTH",
        ]
        .iter()
        .any(|w| u.contains(w))
    };
    for (k, v) in &passed {
        let mut hit = Vec::new();
        scan_text(v, &|_| format!("env:{k}"), &allow, &mut hit);
        if secretish(k) || !hit.is_empty() {
            findings.push(Finding {
                severity: Severity::High,
                rule: "env-secret-passed",
                location: format!("env:{k}"),
                message: format!(
                    "commands receive `{k}` ([commands] env_allow), which holds a secret"
                ),
                preview: Some(preview(v)),
            });
        }
    }
    let withheld: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| secretish(k) && !passed.iter().any(|(p, _)| p == k))
        .collect();

    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.location.cmp(&b.location))
    });
    findings.dedup_by(|a, b| a.rule == b.rule && a.location == b.location);
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let failed = findings.iter().any(|f| f.severity >= fail_on);
    Ok(json!({
        "findings": findings,
        "counts": {
            "critical": count(Severity::Critical),
            "high": count(Severity::High),
            "medium": count(Severity::Medium),
            "low": count(Severity::Low),
        },
        "scanned": { "files": files, "bytes": bytes, "commits": commits, "history": opts.history },
        "environment": {
            "passed_to_commands": passed.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            "withheld_secret_like": withheld,
        },
        "fail_on": fail_on.as_str(),
        "failed": failed,
    }))
}

/// Settings and files of `.git` that make git run a program: hooks,
/// `core.fsmonitor`, `core.hooksPath`, filters, external diff and textconv,
/// the pager, `core.sshCommand`, shell aliases — and a `commondir` or
/// `config.worktree` that moves git's configuration elsewhere. vane's own git
/// neutralises all of them; the user's git does not.
fn git_executables(root: &Path, out: &mut Vec<Finding>) {
    let git = root.join(".git");
    if !git.is_dir() {
        return;
    }
    for (f, why) in [
        (
            "commondir",
            "points git's configuration and hooks to another directory",
        ),
        ("config.worktree", "adds per-worktree configuration"),
    ] {
        if git.join(f).exists() {
            out.push(Finding {
                severity: Severity::High,
                rule: "git-config-redirect",
                location: format!(".git/{f}"),
                message: format!("`.git/{f}` {why} (a plain clone has none)"),
                preview: None,
            });
        }
    }
    if let Ok(rd) = std::fs::read_dir(git.join("hooks")) {
        use std::os::unix::fs::PermissionsExt;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let exec = e
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            if exec && !name.ends_with(".sample") {
                out.push(Finding {
                    severity: Severity::Medium,
                    rule: "git-hook",
                    location: format!(".git/hooks/{name}"),
                    message: "an executable git hook: it runs at the matching git command — check who wrote it".into(),
                    preview: None,
                });
            }
        }
    }
    let Ok(text) = std::fs::read_to_string(git.join("config")) else {
        return;
    };
    let mut section = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            section = l
                .trim_matches(|c| c == '[' || c == ']')
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        let runs = match (section.as_str(), k.as_str()) {
            ("core", "fsmonitor") => !matches!(v, "false" | "0" | ""),
            ("core", "hookspath" | "pager" | "sshcommand" | "editor" | "askpass") => !v.is_empty(),
            ("filter", "clean" | "smudge" | "process") => !v.is_empty(),
            ("diff", "external" | "textconv" | "command") => !v.is_empty(),
            ("alias", _) => v.starts_with('!'),
            _ => false,
        };
        if runs {
            out.push(Finding {
                severity: Severity::Medium,
                rule: "git-config-runs-program",
                location: format!(".git/config:{}", i + 1),
                message: format!("`{section}.{k}` makes git run `{}` (vane's own git ignores it; yours does not)", v.chars().take(60).collect::<String>()),
                preview: None,
            });
        }
    }
}

/// Permission bits of `p` that `mask` forbids, if any.
fn loose_permissions(p: &Path, mask: u32) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::symlink_metadata(p).ok()?.permissions().mode() & 0o777;
    (mode & mask != 0).then_some(mode)
}

/// Every file under `root` (relative paths), skipping `.git`, `skip_dir`
/// and build output.
fn walk(root: &Path, skip_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            let name = e.file_name();
            if ft.is_dir() {
                if p == skip_dir
                    || [".git", "target", "node_modules"].contains(&name.to_string_lossy().as_ref())
                {
                    continue;
                }
                stack.push(p);
            } else if ft.is_file() {
                if let Ok(rel) = p.strip_prefix(root) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
    }
    out.sort();
    out
}

/// The report as text for people (and for a critic's output).
pub fn render(v: &Value) -> String {
    let mut o = String::new();
    let c = &v["counts"];
    o.push_str(&format!(
        "{} critical, {} high, {} medium, {} low — {} files scanned{}\n",
        c["critical"],
        c["high"],
        c["medium"],
        c["low"],
        v["scanned"]["files"],
        if v["scanned"]["history"] == true {
            format!(", {} commits", v["scanned"]["commits"])
        } else {
            String::new()
        }
    ));
    for f in v["findings"].as_array().into_iter().flatten() {
        o.push_str(&format!(
            "{:<8} {:<26} {}  {}{}\n",
            f["severity"].as_str().unwrap_or(""),
            f["rule"].as_str().unwrap_or(""),
            f["location"].as_str().unwrap_or(""),
            f["message"].as_str().unwrap_or(""),
            f["preview"]
                .as_str()
                .map(|p| format!(" [{p}]"))
                .unwrap_or_default()
        ));
    }
    let names = |k: &str| {
        v["environment"][k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    o.push_str(&format!(
        "commands receive: {}\n",
        names("passed_to_commands")
    ));
    let w = names("withheld_secret_like");
    if !w.is_empty() {
        o.push_str(&format!("withheld from commands: {w}\n"));
    }
    o.push_str(&format!(
        "{} (fails at {} and above)\n",
        if v["failed"] == true {
            "FAILED"
        } else {
            "passed"
        },
        v["fail_on"].as_str().unwrap_or("high")
    ));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_finds_its_secret_and_prints_none() {
        // split with concat! so that this file does not read as leaking them
        let samples = [
            (
                "aws-access-key-id",
                concat!("id = AKIA", "Z3MQ7XW4P2KQRT5N"),
            ),
            (
                "github-token",
                concat!("GH=ghp_", "Z9yX8wV7uT6sR5qP4oN3mL2kJ1iH0gF9eD8c"),
            ),
            (
                "anthropic-api-key",
                concat!(
                    "sk-ant-",
                    "api03-Zq9xVbT3kLmN8pQrStUvWxYz0123456789abcdefghijklmnopqrstuvwxAA"
                ),
            ),
            (
                "openai-api-key",
                concat!("OPENAI=sk-", "proj-Xy7Qz2Lm9Np4Rs8Tu1Vw6Yb3Cd5Ef0Gh"),
            ),
            (
                "slack-token",
                concat!("xox", "b-2045678901-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
            ),
            (
                "private-key",
                concat!("-----BEGIN OPENSSH ", "PRIVATE KEY-----"),
            ),
            (
                "generic-secret",
                concat!("db_password = \"", "Tr0ub4dor&3xQ9zLk\""),
            ),
            (
                "generic-secret",
                concat!("export API_TOKEN", "=Zx81kQ0pLm4vB7nR2tY6"),
            ),
        ];
        for (rule, line) in samples {
            let mut out = Vec::new();
            scan_text(line, &|l| format!("f:{l}"), &[], &mut out);
            assert!(out.iter().any(|f| f.rule == rule), "{rule}: {out:?}");
            let shown = serde_json::to_string(&out).unwrap();
            if rule != "private-key" {
                let secret_tail: String = line.chars().rev().take(12).collect();
                assert!(
                    !shown.contains(&secret_tail.chars().rev().collect::<String>()),
                    "{shown}"
                );
            }
        }
        for benign in [
            "password = \"changeme\"",
            "token: ${GITHUB_TOKEN}",
            "api_key = os.environ['KEY']",
            "let x = 1; // plain code",
            "password = \"aaaaaaaaaaaaaaaa\"",
            concat!("AKIA", "Z3MQ7XW4P2KQRT5N vane:allow-secret"),
            "    let token = NEXT.fetch_add(1, Ordering::Relaxed);",
            "api_key: String,",
        ] {
            let mut out = Vec::new();
            scan_text(benign, &|l| format!("f:{l}"), &[], &mut out);
            assert!(out.is_empty(), "{benign}: {out:?}");
        }
    }
}
