//! `vane store …` and the store parts of `vane init`: choosing the engine,
//! moving a SQLite store into PostgreSQL.

use std::fmt::Write as _;
use std::path::Path;

use clap::Subcommand;
use serde_json::{json, Value};
use vane_core::config::store::{check_url, url_has_password, PASSWORD_ENV};
use vane_core::{ErrorCode, VaneError};

#[derive(Subcommand)]
pub enum StoreCmd {
    /// Copy this workspace's SQLite store into an empty PostgreSQL database, in one
    /// transaction, verified (row counts of every table, every revision); with
    /// --switch, then point vane.toml's [store] url at it. Stop the fronts first.
    Copy {
        /// postgres://USER@HOST:PORT/DB (its password: VANE_STORE_PASSWORD or [store] password_file)
        #[arg(long, value_name = "URL")]
        to: String,
        /// After a verified copy, set [store] url in vane.toml
        #[arg(long)]
        switch: bool,
        #[arg(long)]
        json: bool,
    },
    /// Where the store is: engine, location (never a password), server version, schema
    Info {
        #[arg(long)]
        json: bool,
    },
}

/// The password for a store URL given on the command line: the environment,
/// else `[store] password_file`.
fn password(ws: &Path, config: &vane_core::config::Config) -> Result<Option<String>, VaneError> {
    if let Some(p) = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()) {
        return Ok(Some(p));
    }
    match &config.store.password_file {
        Some(f) => {
            let p = ws.join(f);
            let text = std::fs::read_to_string(&p).map_err(|e| {
                VaneError::new(
                    ErrorCode::ConfigInvalid,
                    format!("store.password_file {}: {e}", p.display()),
                )
            })?;
            Ok(Some(
                text.lines().next().unwrap_or("").trim_end().to_string(),
            ))
        }
        None => Ok(None),
    }
}

/// A PostgreSQL target from a URL given on the command line.
pub fn target_of(
    url: &str,
    ws: &Path,
    config: &vane_core::config::Config,
) -> Result<vane_store::PgTarget, VaneError> {
    check_url(url, "--store/--to")?;
    let target = vane_store::PgTarget::parse(url, password(ws, config)?.as_deref())?
        .with_max_connections(config.store.max_connections);
    match &config.store.ca_file {
        Some(f) => target.with_ca_file(&ws.join(f)),
        None => Ok(target),
    }
}

/// Sets `[store] url` in the workspace's `vane.toml`, keeping the rest of
/// the file (comments included) as it is.
pub fn set_store_url(ws: &Path, url: &str) -> Result<bool, VaneError> {
    check_url(url, "the store URL")?;
    if url_has_password(url) {
        return Err(VaneError::new(
            ErrorCode::ConfigInvalid,
            "the store URL holds a password, and vane.toml is usually committed: give the URL without it and the password in VANE_STORE_PASSWORD or [store] password_file",
        ));
    }
    let path = ws.join("vane.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| VaneError::new(ErrorCode::IoError, format!("{}: {e}", path.display())))?;
    let current = vane_core::config::Config::parse(&text)?;
    if current.store.url.as_deref() == Some(url) {
        return Ok(false);
    }
    if let Some(other) = &current.store.url {
        return Err(VaneError::new(
            ErrorCode::AlreadyExists,
            format!(
                "vane.toml already names the store {other}; edit [store] url yourself to move it"
            ),
        ));
    }
    let line = format!("url = {}", toml_string(url));
    let mut out = String::new();
    let mut placed = false;
    for l in text.lines() {
        out.push_str(l);
        out.push('\n');
        if !placed && l.trim_start().starts_with("[store]") {
            out.push_str(&line);
            out.push('\n');
            placed = true;
        }
    }
    if !placed {
        let _ = write!(out, "\n[store]\n{line}\n");
    }
    vane_core::config::Config::parse(&out)?;
    vane_store::write_atomic(&path, out.as_bytes())?;
    Ok(true)
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

pub fn run(
    cmd: &StoreCmd,
    ws: &Path,
    state_dir: Option<&Path>,
) -> Result<(Value, bool), VaneError> {
    let config = vane_tools::ctx::load_config(ws)?;
    let paths = vane_tools::ctx::state_paths(ws, state_dir, &config)?;
    match cmd {
        StoreCmd::Copy { to, switch, .. } => {
            let target = target_of(to, ws, &config)?;
            let db = vane_store::StatePaths::new(&paths.workspace, &paths.state_dir).db();
            // the source at this vane's schema first (an older store is migrated)
            if db.is_file() {
                vane_store::migrate_at(
                    &vane_store::StatePaths::new(&paths.workspace, &paths.state_dir),
                    vane_store::Reach::Expand,
                )?;
            }
            let report = vane_store::copy_to_postgres(&db, &target)?;
            let mut v = serde_json::to_value(&report).unwrap_or_default();
            if *switch {
                v["switched"] = json!(set_store_url(ws, to)?);
            }
            let ok = report.ok;
            Ok((v, ok))
        }
        StoreCmd::Info { .. } => Ok((info(&paths)?, true)),
    }
}

/// Where the store is and what it runs on.
pub fn info(paths: &vane_store::StatePaths) -> Result<Value, VaneError> {
    let store = vane_store::Store::open_mode(paths, vane_store::OpenMode::Front)?;
    let schema = store.schema_info()?;
    Ok(json!({
        "engine": store.engine().as_str(),
        "location": store.location(),
        "server_version": store.server_version()?,
        "schema": schema,
        "revision": store.revision()?,
    }))
}

pub fn render_copy(v: &Value) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "copied {} → {}: {} rows, revision {}, {:.0} ms — {}",
        v["from"].as_str().unwrap_or(""),
        v["to"].as_str().unwrap_or(""),
        v["rows"],
        v["revision"],
        v["ms"].as_f64().unwrap_or(0.0),
        if v["ok"] == true {
            "verified"
        } else {
            "NOT verified"
        }
    );
    if let Some(t) = v["tables"].as_object() {
        for (name, c) in t {
            let _ = writeln!(
                o,
                "  {name:<20} {:>8} → {:>8}",
                c["source"], c["destination"]
            );
        }
    }
    match v.get("switched") {
        Some(Value::Bool(true)) => {
            let _ = writeln!(
                o,
                "vane.toml now names this store ([store] url); restart the fronts"
            );
        }
        Some(_) => {
            let _ = writeln!(o, "vane.toml already named this store");
        }
        None => {
            let _ = writeln!(
                o,
                "next: set [store] url = \"{}\" in vane.toml (or rerun with --switch), then restart the fronts",
                v["to"].as_str().unwrap_or("")
            );
        }
    }
    o
}

pub fn render_info(v: &Value) -> String {
    format!(
        "{} store at {} ({}), schema {} (this vane knows {}), revision {}\n",
        v["engine"].as_str().unwrap_or(""),
        v["location"].as_str().unwrap_or(""),
        v["server_version"].as_str().unwrap_or(""),
        v["schema"]["store_version"],
        v["schema"]["supported"],
        v["revision"]
    )
}
