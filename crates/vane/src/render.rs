//! Readable output for people. Machines use `--json`.

use std::fmt::Write;

use serde_json::Value;
use vane_core::VaneError;

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn cut(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(n - 1).collect::<String>())
    }
}

/// Prints an error with its code and, where useful, a hint.
pub fn print_error(e: &VaneError) {
    eprintln!("error[{}]: {}", e.code, e.message);
    if !e.details.as_object().is_none_or(|m| m.is_empty()) {
        eprintln!("  details: {}", e.details);
    }
    let hint = match e.code {
        vane_core::ErrorCode::VersionConflict => {
            Some("re-read the task (vane task show ID) and retry with its current version")
        }
        vane_core::ErrorCode::ExitCriteriaUnmet => {
            Some("run the critics (vane critics run NAME), or pass --force --reason \"…\"")
        }
        vane_core::ErrorCode::ConfigInvalid => {
            Some("fix vane.toml; `vane init` in an empty directory writes a commented example")
        }
        vane_core::ErrorCode::RoadmapInvalid => {
            Some("fix the roadmap file at the place named above")
        }
        vane_core::ErrorCode::NotAWorkspace => {
            Some("run `vane init` here to make it one (or pass --workspace DIR / --state-dir DIR)")
        }
        _ => None,
    };
    if let Some(h) = hint {
        eprintln!("  hint: {h}");
    }
}

pub fn init(v: &Value) -> String {
    let mut o = format!(
        "workspace  {}\nconfig     {}{}\nstate      {}\n",
        s(&v["workspace"]),
        s(&v["config"]),
        if v["config_created"] == true {
            " (created)"
        } else {
            " (kept)"
        },
        s(&v["state_dir"])
    );
    if !v["import"].is_null() {
        o.push_str(&import(&v["import"]));
    }
    o
}

pub fn status(v: &Value) -> String {
    let mut o = String::new();
    let r = &v["roadmap"];
    let _ = writeln!(
        o,
        "vane {}  workspace {}",
        s(&v["version"]),
        s(&v["workspace"])
    );
    let _ = writeln!(
        o,
        "tasks {}  done {:.0}%  ready {}",
        s(&r["tasks"]),
        r["done_ratio"].as_f64().unwrap_or(0.0) * 100.0,
        s(&v["ready"])
    );
    if let Some(m) = r["by_status"].as_object() {
        let parts: Vec<String> = m
            .iter()
            .filter(|(_, n)| n.as_u64() != Some(0))
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(o, "  {}", parts.join("  "));
    }
    for c in r["claims"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "claim {} by {} until {}{}",
            s(&c["task_id"]),
            s(&c["agent"]),
            s(&c["lease_expires_at"]),
            if c["expired"] == true {
                " (expired)"
            } else {
                ""
            }
        );
    }
    let d = &v["dispatch"];
    for p in d["providers"].as_array().into_iter().flatten() {
        let until = p["cooling_until_ms"]
            .as_i64()
            .filter(|_| p["state"] != "ok" && p["state"] != "disabled");
        let _ = writeln!(
            o,
            "provider {} {}{}{}",
            s(&p["provider"]),
            s(&p["state"]),
            until
                .map(|t| format!(" until {}", ms_iso(t)))
                .unwrap_or_default(),
            p["last_error"]
                .as_str()
                .map(|e| format!(" — {e}"))
                .unwrap_or_default()
        );
    }
    if d["spent_24h_micros"].as_i64().unwrap_or(0) > 0 {
        let _ = writeln!(
            o,
            "spent (24 h) {}",
            vane_core::dispatch::usd(d["spent_24h_micros"].as_i64().unwrap_or(0))
        );
    }
    for a in d["budget_alerts"].as_array().into_iter().flatten().take(5) {
        let _ = writeln!(
            o,
            "budget {} ({} {} per {}): {} of {}",
            s(&a["level"]),
            s(&a["env"]),
            s(&a["scope"]),
            s(&a["window"]),
            vane_core::dispatch::usd(a["spent_micros"].as_i64().unwrap_or(0)),
            vane_core::dispatch::usd(a["limit_micros"].as_i64().unwrap_or(0))
        );
    }
    for t in v["next"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "next  {:<28} {:<8} {}",
            s(&t["id"]),
            s(&t["priority"]),
            cut(&s(&t["title"]), 60)
        );
    }
    match v["last_checkpoint"].as_object() {
        Some(c) => {
            let _ = writeln!(
                o,
                "checkpoint {} at {}: {}",
                s(&c["id"].clone()),
                s(&c["created_at"].clone()),
                s(&c["reason"].clone())
            );
        }
        None => o.push_str("checkpoint none\n"),
    }
    for f in v["failing_critics"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "critic {} {} at {}",
            s(&f["name"]),
            s(&f["status"]),
            s(&f["finished_at"])
        );
    }
    let r = &v["recent_calls"];
    if !r.is_null() {
        let _ = writeln!(
            o,
            "last {} min: {} calls ({}/min), error rate {:.1}%, p95 {} ms",
            r["window_s"].as_u64().unwrap_or(300) / 60,
            s(&r["calls"]),
            s(&r["calls_per_min"]),
            r["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
            s(&r["p95_ms"])
        );
    }
    let _ = writeln!(o, "sandbox {}", sandbox_line(&v["sandbox"]));
    let l = &v["sandbox"]["limits"];
    if l.is_object() {
        let _ = writeln!(
            o,
            "limits  per command {} MiB, {} processes ({}); {} at once",
            s(&l["memory_mb"]),
            s(&l["processes"]),
            s(&l["enforced_by"]),
            s(&l["concurrent"])
        );
    }
    o
}

/// The sandbox in words: what confines a command (or that nothing does).
fn sandbox_line(sb: &Value) -> String {
    let mode = s(&sb["mode"]);
    let network = if sb["network"] == true { "on" } else { "off" };
    match (mode.as_str(), sb["bwrap_available"] == true) {
        ("off", _) => "OFF: commands run UNCONFINED (sandbox = \"off\")".into(),
        (_, true) => format!("bubblewrap (mode {mode}, network {network})"),
        ("auto", false) => {
            "none: bubblewrap is not usable here, commands run UNCONFINED (install bubblewrap)"
                .into()
        }
        (m, false) => format!("{m}: bubblewrap is not usable, so commands are refused"),
    }
}

pub fn summary(v: &Value, out: &std::path::Path) -> String {
    let mut o = String::new();
    let t = &v["totals"];
    let _ = writeln!(
        o,
        "{} events ({} tool calls, {} errors) from {} to {}",
        s(&t["events"]),
        s(&t["tool_calls"]),
        s(&t["errors"]),
        s(&v["window"]["first_event"]),
        s(&v["window"]["last_event"])
    );
    let _ = writeln!(
        o,
        "{:<18} {:>8} {:>7} {:>7} {:>9} {:>9} {:>9}",
        "TOOL", "CALLS", "ERRORS", "ERR%", "P50 ms", "P95 ms", "P99 ms"
    );
    let row = |o: &mut String, name: &str, x: &Value| {
        let _ = writeln!(
            o,
            "{:<18} {:>8} {:>7} {:>6.2}% {:>9} {:>9} {:>9}",
            cut(name, 18),
            s(&x["calls"]),
            s(&x["errors"]),
            x["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
            s(&x["p50_ms"]),
            s(&x["p95_ms"]),
            s(&x["p99_ms"])
        );
    };
    for (name, x) in v["tools"].as_object().into_iter().flatten() {
        row(&mut o, name, x);
    }
    row(&mut o, "(all)", &t["all_tools"]);
    if let Some(vs) = v["versions"].as_object() {
        for (name, x) in vs {
            row(&mut o, &format!("v{name}"), x);
        }
    }
    for a in v["alerts"].as_array().into_iter().flatten().rev().take(10) {
        let _ = writeln!(
            o,
            "alert {} {}: {}",
            s(&a["ts"]),
            s(&a["alert"]),
            s(&a["message"])
        );
    }
    let _ = writeln!(o, "written to {}", out.display());
    o
}

pub fn next(v: &Value) -> String {
    let mut o = String::new();
    if let Some(c) = v["claimed"].as_object() {
        let _ = writeln!(
            o,
            "claimed {} (lease until {})",
            s(&c["id"].clone()),
            s(&c["lease_expires_at"].clone())
        );
    }
    let _ = writeln!(
        o,
        "{:<32} {:<9} {:>8}  TITLE",
        "READY", "PRIORITY", "UNBLOCKS"
    );
    for t in v["tasks"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "{:<32} {:<9} {:>8}  {}",
            cut(&s(&t["id"]), 32),
            s(&t["priority"]),
            s(&t["unblocks"]),
            cut(&s(&t["title"]), 70)
        );
    }
    let _ = writeln!(o, "({} ready)", s(&v["total"]));
    let blocked = v["blocked"].as_array().cloned().unwrap_or_default();
    if !blocked.is_empty() {
        o.push_str("\nwaiting:\n");
        for b in blocked {
            let reasons: Vec<String> = b["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| match r["kind"].as_str() {
                    Some("dependency") => format!("needs {} ({})", s(&r["id"]), s(&r["status"])),
                    Some("missing_dependency") => format!("missing dependency {}", s(&r["id"])),
                    Some("claimed") => format!("claimed by {}", s(&r["agent"])),
                    Some("marked_blocked") => "marked blocked".into(),
                    _ => r.to_string(),
                })
                .collect();
            let _ = writeln!(
                o,
                "  {:<30} {}",
                cut(&s(&b["id"]), 30),
                cut(&reasons.join("; "), 90)
            );
        }
    }
    o
}

pub fn update(v: &Value) -> String {
    let t = &v["task"];
    format!(
        "{}: {} → {} (version {}){}\nallowed next: {}\n",
        s(&t["id"]),
        s(&v["previous_status"]),
        s(&t["status"]),
        s(&t["version"]),
        if v["forced"] == true { " [forced]" } else { "" },
        v["allowed_next"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    )
}

pub fn task(v: &Value) -> String {
    let t = &v["task"];
    let mut o = format!(
        "{}  {}\nstatus {}  priority {}  version {}  owner {}  claimed by {}\n",
        s(&t["id"]),
        s(&t["title"]),
        s(&t["status"]),
        s(&t["priority"]),
        s(&t["version"]),
        s(&t["owner"]),
        s(&t["claimed_by"])
    );
    if let Some(d) = t["description"].as_str() {
        let _ = writeln!(o, "\n{}\n", d.trim());
    }
    let _ = writeln!(o, "dependencies: {}", t["dependencies"]);
    let _ = writeln!(o, "exit criteria: {}", t["exit_criteria"]);
    for e in v["events"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "  {} {} {} → {} by {}{}",
            s(&e["at"]),
            s(&e["kind"]),
            s(&e["from"]),
            s(&e["to"]),
            s(&e["actor"]),
            if e["forced"] == true {
                format!(" forced: {}", s(&e["reason"]))
            } else {
                String::new()
            }
        );
    }
    o
}

pub fn critics(v: &Value) -> String {
    let mut o = String::new();
    let runs = v["runs"].as_array().cloned().unwrap_or_default();
    if runs.is_empty() {
        let sel = &v["selection"];
        let files: Vec<String> = sel["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        let why = match sel["mode"].as_str() {
            Some("git_changes") if files.is_empty() => "no file changed in git".to_string(),
            Some("git_changes") | Some("paths") => {
                format!("none matches {}", cut(&files.join(", "), 120))
            }
            Some("all") => "none configured".to_string(),
            _ => "none named".to_string(),
        };
        let _ = writeln!(o, "no critic selected: {why}");
    }
    for r in runs {
        let _ = writeln!(
            o,
            "{:<20} {:<8} exit {:<4} {:>7} ms{}",
            s(&r["name"]),
            s(&r["status"]),
            s(&r["exit_code"]),
            s(&r["duration_ms"]),
            r["remediation_task"]
                .as_str()
                .map(|t| format!("  → {t}"))
                .unwrap_or_default()
        );
        if r["status"] != "pass" {
            for line in s(&r["output_tail"])
                .lines()
                .rev()
                .take(8)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                let _ = writeln!(o, "    {line}");
            }
        }
    }
    let _ = writeln!(o, "{} passed, {} failed", s(&v["passed"]), s(&v["failed"]));
    o
}

pub fn import(v: &Value) -> String {
    let r = &v["report"];
    let m = &v["summary"];
    let mut o = format!(
        "imported {}: {} epics, {} milestones, {} sets, {} tasks\n  created {}  updated {}  unchanged {}  removed {}  kept (not in file) {}\n",
        s(&v["file"]), s(&r["epics"]), s(&r["milestones"]), s(&r["sets"]), s(&r["tasks"]),
        s(&m["created"]), s(&m["updated"]), s(&m["unchanged"]), s(&m["removed"]), s(&m["kept_not_in_file"])
    );
    if let Some(b) = r["by_status"].as_object() {
        let parts: Vec<String> = b.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(o, "  {}", parts.join("  "));
    }
    for d in r["dangling_dependencies"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "  dangling dependency: {} → {}",
            s(&d["task_id"]),
            cut(&s(&d["dependency"]), 80)
        );
    }
    for c in r["cycles"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "  dependency cycle: {}",
            c.as_array()
                .map(|a| a.iter().map(s).collect::<Vec<_>>().join(" → "))
                .unwrap_or_default()
        );
    }
    for w in r["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(o, "  warning: {}", s(w));
    }
    o
}

pub fn roadmap(v: &Value) -> String {
    let mut o = format!(
        "{:<40} {:<12} {:<9} {:<6} {}\n",
        "TASK", "STATUS", "PRIORITY", "READY", "TITLE"
    );
    for t in v["tasks"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "{:<40} {:<12} {:<9} {:<6} {}",
            cut(&s(&t["id"]), 40),
            s(&t["status"]),
            s(&t["priority"]),
            if t["ready"] == true { "yes" } else { "" },
            cut(&s(&t["title"]), 60)
        );
    }
    o
}

pub fn tools(v: &Value) -> String {
    let mut o = String::new();
    for t in v["tools"].as_array().into_iter().flatten() {
        let a = &t["annotations"];
        let flags: Vec<&str> = [
            ("readOnlyHint", "read-only"),
            ("destructiveHint", "destructive"),
            ("idempotentHint", "idempotent"),
            ("openWorldHint", "open-world"),
        ]
        .iter()
        .filter(|(k, _)| a[*k] == true)
        .map(|(_, n)| *n)
        .collect();
        let _ = writeln!(
            o,
            "{:<18} [{}]\n    {}",
            s(&t["name"]),
            flags.join(", "),
            s(&t["description"])
        );
    }
    o
}

pub fn flags(v: &Value) -> String {
    let mut o = String::new();
    if v["kill_switch"] == true {
        o.push_str("KILL SWITCH ON (DISABLE_NEW=1): every flag is at its safe value\n");
    }
    let _ = writeln!(
        o,
        "{:<16} {:<10} {:<10} {:<22} LAST CHANGE",
        "FLAG", "EFFECTIVE", "STORED", "ALLOWED"
    );
    for f in v["flags"].as_array().into_iter().flatten() {
        let allowed: Vec<String> = f["allowed"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        let _ = writeln!(
            o,
            "{:<16} {:<10} {:<10} {:<22} {} {}",
            s(&f["key"]),
            s(&f["effective"]),
            s(&f["stored"]),
            allowed.join("|"),
            s(&f["updated_at"]),
            s(&f["updated_by"])
        );
    }
    o
}

/// `vane workers`: one block per front.
pub fn workers(v: &Value) -> String {
    let mut o = String::new();
    for f in v["fronts"].as_array().into_iter().flatten() {
        let Some(h) = f.get("result") else {
            let _ = writeln!(
                o,
                "front {}: error {}",
                s(&f["pid"]),
                s(&f["error"]["message"])
            );
            continue;
        };
        let fr = &h["front"];
        let _ = writeln!(
            o,
            "front pid {}  version {}  up {:.0} s  rss {:.1} MiB  restarts {}  DISABLE_NEW {}",
            s(&fr["pid"]),
            s(&fr["version"]),
            fr["uptime_s"].as_f64().unwrap_or(0.0),
            fr["rss_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
            s(&fr["restarts"]),
            s(&fr["disable_new"]),
        );
        let _ = writeln!(
            o,
            "  {:<4} {:<9} {:>7} {:>8} {:>9} {:>7} {:>7} {:>6} {:<7} binary / note",
            "id", "role", "pid", "up (s)", "rss MiB", "calls", "errors", "fails", "circuit",
        );
        for w in h["workers"].as_array().into_iter().flatten() {
            let _ = writeln!(
                o,
                "  {:<4} {:<9} {:>7} {:>8.0} {:>9.1} {:>7} {:>7} {:>6} {:<7} {}{}",
                s(&w["id"]),
                s(&w["role"]),
                s(&w["pid"]),
                w["uptime_s"].as_f64().unwrap_or(0.0),
                w["rss_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
                s(&w["calls"]),
                s(&w["errors"]),
                s(&w["failures"]),
                s(&w["circuit"]),
                cut(&s(&w["binary"]), 50),
                match (&w["note"], &w["exit"]) {
                    (Value::String(n), _) => format!("  ({n})"),
                    (_, Value::String(e)) => format!("  ({e})"),
                    _ => String::new(),
                }
            );
            if let Some(sh) = w["shadow"].as_object() {
                let _ = writeln!(
                    o,
                    "       shadow: compared {} matched {} differed {} errors {} timeouts {} skipped {}",
                    s(&sh["compared"]), s(&sh["matched"]), s(&sh["differed"]),
                    s(&sh["errors"]), s(&sh["timeouts"]), s(&sh["skipped"])
                );
            }
        }
        if let Some(w) = h["watch"].as_object() {
            let _ = writeln!(
                o,
                "  watching worker {} for another {} s: {}",
                s(&w["worker"]),
                s(&w["remaining_s"]),
                w.get("window").map(|x| x.to_string()).unwrap_or_default()
            );
        }
        for d in h["decisions"]
            .as_array()
            .into_iter()
            .flatten()
            .rev()
            .take(5)
        {
            let _ = writeln!(
                o,
                "  {} {} {}",
                s(&d["at"]),
                s(&d["action"]),
                cut(&d.to_string(), 160)
            );
        }
    }
    o
}

/// `vane route …` / `vane canary …`
pub fn control_result(v: &Value) -> String {
    let mut o = String::new();
    for f in v["fronts"].as_array().into_iter().flatten() {
        match f.get("result") {
            Some(r) => {
                let _ = writeln!(o, "front {}: ok {}", s(&f["pid"]), r);
            }
            None => {
                let _ = writeln!(
                    o,
                    "front {}: error {}",
                    s(&f["pid"]),
                    s(&f["error"]["message"])
                );
            }
        }
    }
    o
}

/// `vane preflight`
pub fn preflight(v: &Value) -> String {
    let mut o = String::new();
    for c in v["checks"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "{} {:<16} {:>8.1} ms  {}",
            if c["ok"] == true { "ok  " } else { "FAIL" },
            s(&c["name"]),
            c["duration_ms"].as_f64().unwrap_or(0.0),
            s(&c["detail"])
        );
    }
    let _ = writeln!(
        o,
        "{} (written to {}/preflight.json)",
        if v["ok"] == true {
            "preflight passed"
        } else {
            "preflight FAILED"
        },
        s(&v["dir"])
    );
    o
}

/// `vane upgrade` / `vane upgrade status`
pub fn upgrade_report(v: &Value) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "upgrade {}: {} — {}",
        s(&v["id"]),
        s(&v["decision"]),
        s(&v["reason"])
    );
    let _ = writeln!(
        o,
        "  from {} ({})",
        s(&v["old"]["binary"]),
        s(&v["old"]["version"])
    );
    let _ = writeln!(
        o,
        "  to   {} ({})",
        s(&v["new"]["binary"]),
        s(&v["new"]["version"])
    );
    for g in ["build", "unit", "canary_ready", "selfchecks"] {
        let gv = &v["gates"][g];
        let _ = writeln!(
            o,
            "  gate {:<13} {:<8} {}",
            g,
            s(&gv["status"]),
            cut(&s(&gv["detail"]), 100)
        );
    }
    let m = &v["migrations"];
    if !m.is_null() {
        let names = |k: &str| -> String {
            let l: Vec<String> = m[k]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| format!("{} {}", x["version"], s(&x["name"])))
                .collect();
            if l.is_empty() {
                "none".into()
            } else {
                l.join(", ")
            }
        };
        let _ = writeln!(
            o,
            "  schema: store {} → new version knows {}; checked on a copy: {}; expand applied live: {}; contract deferred: {}",
            s(&m["store_version"]),
            s(&m["new_version_knows"]),
            names("applied_on_copy"),
            names("expand_live"),
            names("contract_deferred")
        );
    }
    if !v["shadow"].is_null() {
        let _ = writeln!(
            o,
            "  shadow: {} samples ({} probes), {} differences",
            s(&v["shadow"]["samples"]),
            s(&v["shadow"]["probes"]),
            s(&v["shadow"]["differed"])
        );
    }
    if !v["rollback"].is_null() {
        let _ = writeln!(o, "  rollback: {}", cut(&v["rollback"].to_string(), 200));
    }
    let _ = writeln!(o, "  report: {}/report.json", s(&v["dir"]));
    o
}

/// `vane migrate`
pub fn migrate(v: &Value) -> String {
    let mut o = String::new();
    let info = if v["mode"] == "status" {
        v
    } else {
        &v["after"]
    };
    let _ = writeln!(
        o,
        "store {}: schema {} (floor {}), this vane knows {}",
        s(&v["db"]),
        info["store_version"],
        info["floor"],
        info["supported"]
    );
    for a in v["applied"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "applied {:>3} {:<28} {:<8} {:>8.1} ms",
            a["version"],
            s(&a["name"]),
            s(&a["phase"]),
            a["ms"].as_f64().unwrap_or(0.0)
        );
    }
    for p in info["pending"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "pending {:>3} {:<28} {}",
            p["version"],
            s(&p["name"]),
            s(&p["phase"])
        );
    }
    for p in info["unknown"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "newer   {:>3} {:<28} {} (a newer vane's)",
            p["version"],
            s(&p["name"]),
            s(&p["phase"])
        );
    }
    if let Some(why) = info["incompatible"].as_str() {
        let _ = writeln!(o, "INCOMPATIBLE: {why}");
    }
    if v["mode"] == "check" {
        let _ = writeln!(
            o,
            "integrity {}, foreign key violations {}, read back {}",
            s(&v["integrity"]),
            v["foreign_key_violations"],
            if v["smoke"]["ok"] == true {
                "ok"
            } else {
                "FAILED"
            }
        );
    }
    o
}

fn ms_iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}
