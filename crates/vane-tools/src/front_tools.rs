//! The front's own tools (`worker_health`, `route_switch`, `upgrade_start`,
//! `upgrade_status`), declared like every other tool: typed input and
//! output, generated schemas, and the registry's one pipeline (unknown
//! fields, schemas, the admin flag, output checks) — so they are listed in
//! `tool_manifest` and checked exactly as the workers' tools are. Only the
//! front can answer them (they act on its workers), so their handlers reach
//! it through [`FrontOps`], which `vane-front` implements; a registry built
//! without a front (a worker's manifest) answers them with `not_found`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use vane_core::contract::health::HealthView;
use vane_core::{ErrorCode, VaneError};

use crate::ctx::ToolCtx;
use crate::handlers::Empty;
use crate::registry::{tool, Hints, Registry, ToolDef, READ, WRITE};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the front's tools ask of the front.
pub trait FrontOps: Send + Sync {
    fn health(&self) -> HealthView;
    fn route_switch(&self, action: SwitchAction) -> BoxFuture<Result<Value, VaneError>>;
    fn upgrade_start(&self, req: UpgradeStartIn) -> Result<UpgradeStarted, VaneError>;
    fn upgrade_status(&self) -> Result<Value, VaneError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SwitchAction {
    /// start a live worker from the canary's binary and route to it
    Promote,
    /// route back to the standby at once
    Rollback,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteSwitchIn {
    pub action: SwitchAction,
}

/// A switch the front made: the workers it moved traffic between, and the
/// facts of the decision (the rollback's metric and limit, timings).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Switch {
    /// the worker traffic left
    pub from: Option<u64>,
    /// the worker traffic goes to
    pub to: u64,
    pub pid: u32,
    pub version: String,
    pub actor: String,
    #[serde(flatten)]
    pub facts: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeStartIn {
    /// an executable to upgrade to
    pub binary: Option<String>,
    /// a revision to build and test in a worktree
    pub git: Option<String>,
    /// a patch file applied to HEAD, then built and tested
    pub patch: Option<String>,
    /// the shadow window, e.g. "60s", "10m"
    pub shadow: Option<String>,
    /// the observation window after the promote
    pub observe: Option<String>,
    /// shadow samples needed to promote
    #[schemars(range(min = 0))]
    pub min_samples: Option<u64>,
    /// live flags to flip with the promote, "KEY=VALUE"
    pub flips: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct UpgradeStarted {
    pub started: bool,
    /// the `vane upgrade` process
    pub pid: Option<u32>,
    /// which of binary / git / patch, and its value
    pub source: Map<String, Value>,
    pub next: String,
}

/// An upgrade's progress or report, as `vane upgrade` writes it.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct UpgradeReport(pub Map<String, Value>);

fn front_of(front: &Option<Weak<dyn FrontOps>>) -> Result<Arc<dyn FrontOps>, VaneError> {
    front.as_ref().and_then(Weak::upgrade).ok_or_else(|| {
        VaneError::new(
            ErrorCode::NotFound,
            "this tool is the front's (`vane serve`); a worker cannot answer it",
        )
    })
}

/// The front's tools, answered by `front` (`None`: described only).
pub fn front_tools(front: Option<Weak<dyn FrontOps>>) -> Vec<ToolDef> {
    let (f1, f2, f3, f4) = (front.clone(), front.clone(), front.clone(), front);
    vec![
        tool("worker_health", "Worker health",
            "The front's workers (role, version, pid, memory, calls, errors, circuit, shadow counts), the rollback watch and the latest routing decisions.",
            "Admin tool: listed and callable only with ADMIN_TOOLS=1. Answered by the front.", READ,
            move |_ctx: Arc<ToolCtx>, _: Empty| {
                let f = front_of(&f1);
                async move { Ok(f?.health()) }
            })
        .admin(),
        tool("route_switch", "Switch route",
            "Move traffic between workers: `promote` routes to a live worker from the canary's binary (the current one stays as hot standby); `rollback` routes back to the standby.",
            "Admin tool. Errors: invalid_input (no canary / no standby / not healthy), admin_disabled.",
            WRITE,
            move |_ctx: Arc<ToolCtx>, i: RouteSwitchIn| {
                let f = front_of(&f2);
                async move {
                    let v = f?.route_switch(i.action).await?;
                    serde_json::from_value::<Switch>(v)
                        .map_err(|e| VaneError::internal(format!("route_switch answer: {e}")))
                }
            })
        .admin(),
        tool("upgrade_start", "Start an upgrade",
            "Start `vane upgrade` in the background: exactly one of `binary`, `git` or `patch`; optional shadow/observe windows, min_samples, flips. Poll `upgrade_status`.",
            "Admin tool. Errors: invalid_input (not exactly one source, an upgrade already running), io_error, admin_disabled.",
            Hints { open_world: true, ..WRITE },
            move |_ctx: Arc<ToolCtx>, i: UpgradeStartIn| {
                let f = front_of(&f3);
                async move { f?.upgrade_start(i) }
            })
        .admin(),
        tool("upgrade_status", "Upgrade status",
            "The running upgrade's progress (steps, gates, shadow samples), or the newest upgrade's report: decision and reason.",
            "Admin tool. Errors: not_found (no upgrade has run), admin_disabled.", READ,
            move |_ctx: Arc<ToolCtx>, _: Empty| {
                let f = front_of(&f4);
                async move {
                    match f?.upgrade_status()? {
                        Value::Object(m) => Ok(UpgradeReport(m)),
                        other => Err(VaneError::internal(format!("unreadable upgrade report: {other}"))),
                    }
                }
            })
        .admin(),
    ]
}

/// The front's registry: its own tools, answered by `front`.
pub fn registry(front: Weak<dyn FrontOps>) -> Registry {
    Registry::new(front_tools(Some(front)))
}

/// The names of the front's tools (what `[tools]` may name besides the
/// workers' tools).
pub fn names() -> Vec<&'static str> {
    front_tools(None).iter().map(|d| d.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Caller;
    use serde_json::json;

    /// A stand-in front: what the tools' pipeline does around the front is
    /// under test here, not the front (the runtime tests drive the real one).
    struct Fake;

    impl FrontOps for Fake {
        fn health(&self) -> HealthView {
            serde_json::from_value(json!({
                "front": {"pid": 1, "version": "v", "uptime_s": 0.0, "rss_bytes": 0, "restarts": 0},
            }))
            .unwrap()
        }
        fn route_switch(&self, action: SwitchAction) -> BoxFuture<Result<Value, VaneError>> {
            Box::pin(async move {
                match action {
                    SwitchAction::Promote => {
                        Ok(json!({"from": 1, "to": 2, "pid": 9, "version": "v2",
                        "actor": "admin-tool", "switch_us": 40}))
                    }
                    SwitchAction::Rollback => Err(VaneError::invalid_input(
                        "no standby worker to roll back to",
                    )),
                }
            })
        }
        fn upgrade_start(&self, _: UpgradeStartIn) -> Result<UpgradeStarted, VaneError> {
            Err(VaneError::invalid_input("give exactly one"))
        }
        fn upgrade_status(&self) -> Result<Value, VaneError> {
            Ok(json!({"decision": "stable"}))
        }
    }

    fn ctx() -> (tempfile::TempDir, Arc<ToolCtx>) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(".git")).unwrap();
        let ctx = ToolCtx::open(d.path(), None).unwrap();
        (d, Arc::new(ctx))
    }

    #[tokio::test]
    async fn front_tools_take_the_registrys_pipeline() {
        let (_d, ctx) = ctx();
        let fake: Arc<dyn FrontOps> = Arc::new(Fake);
        let reg = registry(Arc::downgrade(&fake));
        let call = |name: &'static str, args: Value, caller: Caller| {
            let (reg, ctx) = (&reg, ctx.clone());
            async move {
                let Value::Object(m) = args else { panic!() };
                reg.call_as(&ctx, name, Some(m), caller).await.result
            }
        };
        // the admin flag is off: an agent is refused, the operator is not
        let e = call("worker_health", json!({}), Caller::Agent)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::AdminDisabled);
        let h = call("worker_health", json!({}), Caller::Operator)
            .await
            .unwrap();
        assert_eq!(h["front"]["pid"], 1);
        crate::handlers::set_flag(&ctx, "ADMIN_TOOLS", Some("1"), "test").unwrap();
        // unknown fields and values outside the schema, named
        let e = call("worker_health", json!({"x": 1}), Caller::Agent)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput);
        assert!(e.message.contains('x'), "{}", e.message);
        let e = call("route_switch", json!({"action": "sideways"}), Caller::Agent)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput);
        let e = call("upgrade_start", json!({"min_samples": -1}), Caller::Agent)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput);
        // answers typed, the front's errors kept
        let s = call("route_switch", json!({"action": "promote"}), Caller::Agent)
            .await
            .unwrap();
        assert_eq!(
            (s["to"].as_u64(), s["switch_us"].as_u64()),
            (Some(2), Some(40))
        );
        let e = call("route_switch", json!({"action": "rollback"}), Caller::Agent)
            .await
            .unwrap_err();
        assert!(e.message.contains("no standby"));
        let u = call("upgrade_status", json!({}), Caller::Agent)
            .await
            .unwrap();
        assert_eq!(u["decision"], "stable");
        // gone front: a typed error, not a panic
        drop(fake);
        let e = call("worker_health", json!({}), Caller::Agent)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
    }

    #[test]
    fn the_manifest_describes_the_front_tools_with_full_schemas() {
        let m = crate::handlers::registry().manifest();
        assert!(
            m.iter().all(|t| t["name"] != "worker_health"),
            "the worker registry does not serve them"
        );
        let front = Registry::new(front_tools(None)).manifest();
        let wh = front.iter().find(|t| t["name"] == "worker_health").unwrap();
        assert_eq!(wh["admin"], true);
        let props = &wh["outputSchema"]["properties"];
        for k in ["front", "workers", "watch", "decisions"] {
            assert!(props.get(k).is_some(), "{k} in {props}");
        }
        assert_eq!(
            names(),
            [
                "worker_health",
                "route_switch",
                "upgrade_start",
                "upgrade_status"
            ]
        );
    }
}
