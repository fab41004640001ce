//! `vane audit`, the built-in `security` critic and preflight's audit check,
//! on a workspace seeded with one secret of each kind.
//!
//! The secrets are assembled with `concat!` so that this file itself does not
//! read as a leak to the audit (vane's own self-upgrade runs it on this
//! repository).

mod common;

use std::path::Path;

use common::{git, json_of, vane, BIN};
use serde_json::{json, Value};

const ROADMAP: &str = "epics:
  - id: E1
    title: Ship
    tasks:
      - id: REL-1
        title: Release without leaking
        exit_criteria:
          - critic: security
";

const AWS: &str = concat!("AKIA", "Z3MQ7XW4P2KQRT5N");
const GITHUB: &str = concat!("ghp_", "Z9yX8wV7uT6sR5qP4oN3mL2kJ1iH0gF9eD8c");
const ANTHROPIC: &str = concat!(
    "sk-ant-",
    "api03-Zq9xVbT3kLmN8pQrStUvWxYz0123456789abcdefghijklmnopqrstuvwxAA"
);
const OPENAI: &str = concat!("sk-", "proj-Xy7Qz2Lm9Np4Rs8Tu1Vw6Yb3Cd5Ef0Gh");
const SLACK: &str = concat!("xox", "b-2045678901-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx");
const GENERIC: &str = concat!("Tr0ub4dor", "&3xQ9zLkW");
const KEY_BEGIN: &str = concat!("-----BEGIN OPENSSH ", "PRIVATE KEY-----");
const KEY_BODY: &str = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW";
const HISTORIC: &str = concat!("ghp_", "H1st0ryH1st0ryH1st0ryH1st0ryH1st0ryA");
const IN_STATE: &str = concat!("sk-", "proj-StAtEdIrStAtEdIr0123456789abcd");
const IN_ENV: &str = concat!("xox", "p-9876543210-ENVENVENVENV-abcdefabcdef");

fn seeded() -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    std::fs::create_dir_all(ws.join("deploy")).unwrap();
    std::fs::write(ws.join("roadmap.yaml"), ROADMAP).unwrap();
    std::fs::write(ws.join("vane.toml"), "[commands]\nenv_allow = [\"MY_*\"]\n").unwrap();
    git(&ws, &["init", "-q"]);
    // one secret only in history: committed, then removed
    std::fs::write(ws.join("old.txt"), format!("token {HISTORIC}\n")).unwrap();
    git(&ws, &["add", "-A"]);
    git(&ws, &["commit", "-qm", "old"]);
    git(&ws, &["rm", "-q", "old.txt"]);
    let files: [(&str, String); 7] = [
        ("deploy/aws.sh", format!("export AWS_ACCESS_KEY_ID={AWS}\n")),
        ("src/gh.rs", format!("const T: &str = \"{GITHUB}\";\n")),
        (".env", format!("ANTHROPIC_API_KEY={ANTHROPIC}\n")),
        (
            "tools/openai.py",
            format!("client = OpenAI(api_key=\"{OPENAI}\")\n"),
        ),
        ("ci/slack.yml", format!("slack: {SLACK}\n")),
        ("settings.toml", format!("db_password = \"{GENERIC}\"\n")),
        (
            "keys/deploy_ed25519",
            format!("{KEY_BEGIN}\n{KEY_BODY}\n-----END OPENSSH PRIVATE KEY-----\n"),
        ),
    ];
    for (p, body) in &files {
        let p = ws.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    git(&ws, &["add", "-A"]);
    git(&ws, &["commit", "-qm", "seeded"]);
    let out = vane(&ws, &["init", "--roadmap", "roadmap.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // a secret in vane's state (as an artifact file would hold one)
    std::fs::create_dir_all(ws.join(".vane/artifacts")).unwrap();
    std::fs::write(
        ws.join(".vane/artifacts/notes.txt"),
        format!("key {IN_STATE}\n"),
    )
    .unwrap();
    (d, ws)
}

fn audit(ws: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("--workspace")
        .arg(ws)
        .arg("audit")
        .args(args)
        .env("MY_SLACK_TOKEN", IN_ENV)
        .output()
        .unwrap()
}

const ALL: [&str; 10] = [
    AWS, GITHUB, ANTHROPIC, OPENAI, SLACK, GENERIC, KEY_BODY, HISTORIC, IN_STATE, IN_ENV,
];

#[test]
fn audit_finds_every_kind_and_prints_none() {
    let (_d, ws) = seeded();
    let out = audit(&ws, &["--history", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    let f = v["findings"].as_array().unwrap();
    let has = |rule: &str, loc: &str| {
        f.iter()
            .any(|x| x["rule"] == rule && x["location"].as_str().unwrap().contains(loc))
    };
    for (rule, loc) in [
        ("aws-access-key-id", "deploy/aws.sh:1"),
        ("github-token", "src/gh.rs:1"),
        ("anthropic-api-key", ".env:1"),
        ("openai-api-key", "tools/openai.py:1"),
        ("slack-token", "ci/slack.yml:1"),
        ("generic-secret", "settings.toml:1"),
        ("private-key", "keys/deploy_ed25519:1"),
        ("github-token", ":old.txt:1"),
        ("openai-api-key", "state:artifacts/notes.txt:1"),
        ("env-secret-passed", "env:MY_SLACK_TOKEN"),
        ("credential-file-tracked", ".env"),
    ] {
        assert!(has(rule, loc), "no {rule} at {loc}: {v:#}");
    }
    assert!(v["counts"]["critical"].as_u64().unwrap() >= 7, "{v}");
    // not one secret in full, in JSON or in text
    let text = audit(&ws, &["--history"]);
    for shown in [&out.stdout, &text.stdout, &out.stderr, &text.stderr] {
        let shown = String::from_utf8_lossy(shown);
        for s in ALL {
            assert!(!shown.contains(s), "printed a secret in full: {s}\n{shown}");
        }
    }
    // the repository's ways of running programs, as the user's git would
    std::fs::write(ws.join(".git/hooks/pre-commit"), "#!/bin/sh\ntrue\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            ws.join(".git/hooks/pre-commit"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    git(&ws, &["config", "core.fsmonitor", "touch /tmp/x"]);
    std::fs::write(ws.join(".git/commondir"), "../elsewhere\n").unwrap();
    let v = json_of(&audit(&ws, &["--json"]));
    std::fs::remove_file(ws.join(".git/commondir")).unwrap();
    let f = v["findings"].as_array().unwrap();
    for rule in ["git-hook", "git-config-runs-program", "git-config-redirect"] {
        assert!(f.iter().any(|x| x["rule"] == rule), "no {rule}: {v:#}");
    }
    // without --history the removed one is not seen
    let v = json_of(&audit(&ws, &["--json"]));
    assert!(!v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["location"].as_str().unwrap().contains("old.txt")));
    // allow-lists: paths and known values
    std::fs::write(
        ws.join("vane.toml"),
        format!(
            "[audit]\nallow_paths = [\"deploy/**\"]\nallow = [\"^{}\"]\n",
            &GITHUB[..12]
        ),
    )
    .unwrap();
    let v = json_of(&audit(&ws, &["--json"]));
    let f = v["findings"].as_array().unwrap();
    assert!(
        !f.iter()
            .any(|x| x["location"].as_str().unwrap().starts_with("deploy/")),
        "{v}"
    );
    assert!(!f.iter().any(|x| x["rule"] == "github-token"), "{v}");
}

#[tokio::test]
async fn the_security_critic_gates_done_and_preflight_refuses() {
    let (_d, ws) = seeded();
    let c = common::serve(&ws, &[]).await;
    c.call_ok(
        "plan_update",
        json!({ "task_id": "REL-1", "status": "in_progress" }),
    )
    .await
    .unwrap();
    let e = c
        .call_err(
            "plan_update",
            json!({ "task_id": "REL-1", "status": "done" }),
        )
        .await
        .unwrap();
    assert_eq!(e["code"], "exit_criteria_unmet", "{e}");
    let r = c
        .call_ok("critics_run", json!({ "critics": ["security"] }))
        .await
        .unwrap();
    let run = &r["runs"][0];
    assert_eq!(run["name"], "security", "{r}");
    assert_eq!(run["status"], "fail", "{r}");
    assert_eq!(run["remediation_task"], "CRITIC-security", "{r}");
    let tail = run["output_tail"].as_str().unwrap();
    assert!(tail.contains("anthropic-api-key"), "{tail}");
    for s in ALL {
        assert!(
            !tail.contains(s),
            "the critic's output holds a secret: {tail}"
        );
    }
    // preflight fails closed on it
    let out = vane(&ws, &["preflight", "--json"]);
    let p: Value = json_of(&out);
    let check = p["checks"]
        .as_array()
        .or_else(|| p.as_array())
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "audit")
        .cloned()
        .unwrap_or_else(|| panic!("no audit check: {p}"));
    assert_eq!(check["ok"], false, "{check}");
    assert!(!out.status.success());
    // the secrets removed (and the history rewritten away from them): passes
    for p in ["deploy", "src", "tools", "ci", "keys"] {
        std::fs::remove_dir_all(ws.join(p)).unwrap();
    }
    for p in [".env", "settings.toml", ".vane/artifacts/notes.txt"] {
        std::fs::remove_file(ws.join(p)).unwrap();
    }
    git(&ws, &["add", "-A"]);
    git(&ws, &["commit", "-qm", "rotate and remove"]);
    let r = c
        .call_ok("critics_run", json!({ "critics": ["security"] }))
        .await
        .unwrap();
    assert_eq!(r["runs"][0]["status"], "pass", "{r}");
    c.call_ok(
        "plan_update",
        json!({ "task_id": "REL-1", "status": "done" }),
    )
    .await
    .unwrap();
    c.close().await;
}
