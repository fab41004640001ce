//! The MCP server of a worker: tools from the [`Registry`], resources from the
//! store. Runs alone over stdio (`vane worker` / `vane serve`), and is the
//! process a front drives in the blue/green runtime.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{json, Value};
use vane_core::{ErrorCode, VaneError};
use vane_telemetry::event::{content_hash, ToolCall};
use vane_telemetry::otel::SpanHandle;

use crate::ctx::{ToolCtx, VERSION};
use crate::registry::{Registry, ToolDef};

pub const INSTRUCTIONS: &str = "vane orchestrates work on this repository's roadmap. Start with `status` (progress, \
last checkpoint) and `plan_next` (ready tasks; pass claim: {agent} to take one). Record progress with `plan_update`, \
keep notes with `context_write`, and call `context_snapshot` before you stop. Read and write files with `fs_read`/`fs_write` \
and run commands with `cmd_run` — all confined to the workspace. A task whose exit criteria name critics can be marked \
done only after `critics_run` passes them. Errors are results with structuredContent.error.code.";

#[derive(Clone)]
pub struct VaneServer {
    pub ctx: Arc<ToolCtx>,
    pub registry: Arc<Registry>,
    tools: Arc<Vec<Tool>>,
}

/// A tool as `tools/list` publishes it (the front renders its own tools
/// with this too).
pub fn to_tool(def: &ToolDef) -> Tool {
    // the title once, on the tool (the 2025-06-18 place); not again in
    // the annotations: every byte of tools/list is paid in every context
    // and only the hints a client acts on: read-only, or for a tool that
    // writes whether it destroys (the spec's default is yes: said either
    // way) and whether repeating it is harmless; open-world either way
    let h = def.hints;
    let mut ann = ToolAnnotations::new();
    if h.read_only {
        ann = ann.read_only(true);
    } else {
        ann = ann.destructive(h.destructive);
        if h.idempotent {
            ann = ann.idempotent(true);
        }
    }
    ann = ann.open_world(h.open_world);
    // the description alone: the notes (error codes, exports) are in
    // `tool_manifest`, and every error names its code and a hint anyway
    let t = Tool::new(def.name, def.description, def.input_schema.clone())
        .with_title(def.title)
        .with_raw_output_schema(def.output_schema.clone())
        .with_annotations(ann);
    let mut m = serde_json::Map::new();
    if let Some(f) = def.mutates_when {
        m.insert(vane_core::contract::meta::MUTATES_WHEN.into(), json!(f));
    }
    if def.admin {
        m.insert(vane_core::contract::meta::ADMIN.into(), json!(true));
    }
    if m.is_empty() {
        t
    } else {
        t.with_meta(rmcp::model::MetaObject(m))
    }
}

/// An `isError` result carrying `{"error": {code, message, details}}`.
/// Messages and details pass through redaction: an error never repeats a
/// secret (an id, a path or a command line may hold one).
pub fn error_result(e: &VaneError) -> CallToolResult {
    let mut wire = e.to_json();
    vane_core::redact::redact_value(&mut wire);
    let message = vane_core::redact::redact(&e.message).into_owned();
    let mut r = CallToolResult::structured_error(wire);
    r.content = vec![ContentBlock::text(format!("error {}: {message}", e.code))];
    r
}

impl VaneServer {
    pub fn new(ctx: Arc<ToolCtx>) -> VaneServer {
        let registry = Arc::new(crate::handlers::registry());
        let tools = Arc::new(registry.tools().iter().map(to_tool).collect());
        VaneServer {
            ctx,
            registry,
            tools,
        }
    }

    /// Runs a tool call through the pipeline and shapes the MCP result.
    pub async fn call(
        &self,
        name: &str,
        args: Option<serde_json::Map<String, Value>>,
    ) -> CallToolResult {
        let outcome = self.registry.call(&self.ctx, name, args).await;
        match outcome.result {
            Ok(v) => self.success(name, v),
            Err(e) => error_result(&e),
        }
    }

    fn success(&self, name: &str, v: Value) -> CallToolResult {
        let render = self.registry.get(name).and_then(|d| d.text);
        let text = if self.ctx.flags().verbose_output {
            serde_json::to_string_pretty(&v).unwrap_or_default()
        } else if let Some(render) = render {
            render(&v)
        } else {
            serde_json::to_string(&v).unwrap_or_default()
        };
        let mut r = CallToolResult::structured(v);
        r.content = vec![ContentBlock::text(text)];
        r
    }

    /// A call with an optional idempotency key. For a mutating tool the key
    /// is reserved in the store before the call and its result recorded
    /// after; a repeat of the key returns the recorded result without running
    /// the tool again, and the same key with other arguments is
    /// `idempotency_key_reused`. Read-only tools (and dry runs) ignore keys.
    pub async fn call_idempotent(
        &self,
        name: &str,
        args: Option<serde_json::Map<String, Value>>,
        key: Option<&str>,
    ) -> CallToolResult {
        let mutating = self
            .registry
            .get(name)
            .is_some_and(|d| d.mutates(args.as_ref()));
        let Some(key) = key.filter(|_| mutating && !self.ctx.dry_run()) else {
            #[cfg(feature = "failpoints")]
            if let Some(r) = crate::faults::before_call(name).await {
                return r;
            }
            #[allow(unused_mut)]
            let mut r = self.call(name, args).await;
            #[cfg(feature = "failpoints")]
            crate::faults::after_call(&mut r);
            return r;
        };
        let body =
            serde_json::to_vec(&json!({ "tool": name, "arguments": args })).unwrap_or_default();
        let hash = vane_telemetry::event::content_hash(&body);
        let alive = |pid: u32| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
                && !is_zombie(pid)
        };
        let owner = vane_store::KeyOwner::this_process();
        match self
            .ctx
            .store
            .idempotency_begin(key, name, &hash, &owner, &alive)
        {
            Err(e) => error_result(&e),
            Ok(vane_store::Idempotency::Replay { result, is_error }) => {
                let mut r = if is_error {
                    let mut r = CallToolResult::structured_error(result.clone());
                    let msg = result["error"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let code = result["error"]["code"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    r.content = vec![ContentBlock::text(format!("error {code}: {msg}"))];
                    r
                } else {
                    self.success(name, result)
                };
                let mut meta = serde_json::Map::new();
                meta.insert("vane/idempotent_replay".into(), json!(true));
                r.meta = Some(rmcp::model::MetaObject(meta));
                r
            }
            Ok(run @ (vane_store::Idempotency::Run | vane_store::Idempotency::Resume { .. })) => {
                #[cfg(feature = "failpoints")]
                if let Some(r) = crate::faults::before_call(name).await {
                    let _ = self.ctx.store.idempotency_release(key);
                    return r;
                }
                let replay = match run {
                    vane_store::Idempotency::Resume { journal } => journal,
                    _ => Vec::new(),
                };
                let journal = vane_store::journal::new(key, replay);
                // the lease is renewed while the call runs: another front
                // (another host) takes the key over only once it lapses
                let heartbeat = {
                    let (store, key, owner) =
                        (self.ctx.store.clone(), key.to_string(), owner.clone());
                    tokio::spawn(async move {
                        let every = std::time::Duration::from_millis(
                            (vane_store::IDEMPOTENCY_LEASE_MS / 3) as u64,
                        );
                        loop {
                            tokio::time::sleep(every).await;
                            match store.idempotency_heartbeat(&key, &owner) {
                                Ok(true) => {}
                                Ok(false) => break,
                                Err(e) => {
                                    tracing::warn!(error = %e, key, "could not renew an idempotency lease")
                                }
                            }
                        }
                    })
                };
                let r = vane_store::journal::scope(Some(journal), self.call(name, args)).await;
                heartbeat.abort();
                let internal = r.is_error == Some(true)
                    && r.structured_content
                        .as_ref()
                        .and_then(|v| v["error"]["code"].as_str())
                        == Some("internal");
                // A fault, not an answer: when none of the call's writes
                // committed, the key is freed and a retry runs it afresh.
                if internal && self.ctx.store.idempotency_release(key).unwrap_or(false) {
                    return r;
                }
                #[cfg(feature = "failpoints")]
                crate::faults::before_finish(name);
                let recorded = r.structured_content.clone().unwrap_or(Value::Null);
                if let Err(e) =
                    self.ctx
                        .store
                        .idempotency_finish(key, &recorded, r.is_error == Some(true))
                {
                    tracing::warn!(error = %e, key, "could not record the idempotent result");
                }
                r
            }
        }
    }

    fn read(&self, uri: &str) -> Result<ReadResourceResult, VaneError> {
        let store = &self.ctx.store;
        let text = |t: String, mime: &str| {
            Ok(ReadResourceResult::new(vec![ResourceContents::text(
                t, uri,
            )
            .with_mime_type(mime)]))
        };
        match uri {
            "vane://roadmap" => text(
                vane_core::roadmap::to_yaml(&store.load_roadmap()?),
                "application/yaml",
            ),
            "vane://context" => {
                let mut md = String::from("# Running context\n");
                for s in store.context_sections()? {
                    md.push_str(&format!("\n## {}\n\n{}\n", s.name, s.content));
                }
                for d in store.decisions(50)?.iter().rev() {
                    md.push_str(&format!("\n- decision: **{}** — {}\n", d.title, d.summary));
                }
                text(md, "text/markdown")
            }
            "vane://checkpoint/latest" => text(
                serde_json::to_string_pretty(&store.latest_checkpoint()?).unwrap_or_default(),
                "application/json",
            ),
            "vane://status" => text(
                serde_json::to_string_pretty(&crate::handlers::status_sync(&self.ctx, true)?)
                    .unwrap_or_default(),
                "application/json",
            ),
            _ => {
                if let Some(id) = uri.strip_prefix("vane://artifacts/") {
                    let id: i64 = id.parse().map_err(|_| {
                        VaneError::invalid_input(format!("bad artifact id in `{uri}`"))
                    })?;
                    let a = store.get_artifact(id)?;
                    let body = match store.artifact_content(&a)? {
                        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                        None => serde_json::to_string_pretty(&a).unwrap_or_default(),
                    };
                    return text(body, "text/plain");
                }
                if let Some(id) = uri.strip_prefix("vane://tasks/") {
                    let t = store.get_task(id)?;
                    let events = store.task_events(id, 50)?;
                    return text(
                        serde_json::to_string_pretty(&json!({ "task": t, "events": events }))
                            .unwrap_or_default(),
                        "application/json",
                    );
                }
                Err(VaneError::new(
                    vane_core::ErrorCode::NotFound,
                    format!("no resource `{uri}`"),
                ))
            }
        }
    }
}

/// A process that died but was not reaped yet still answers `kill(pid, 0)`.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')').and_then(|(_, rest)| {
                rest.split_whitespace()
                    .next()
                    .map(|st| st == "Z" || st == "X")
            })
        })
        .unwrap_or(false)
}

/// Runs a call until it finishes or the client cancels it
/// (`notifications/cancelled`); a cancelled call is dropped, which aborts its
/// handler, and answers `timeout`-free `internal` "cancelled" (the client
/// has stopped listening anyway).
async fn cancellable(
    call: impl std::future::Future<Output = CallToolResult>,
    context: &RequestContext<RoleServer>,
) -> CallToolResult {
    tokio::select! {
        r = call => r,
        _ = context.ct.cancelled() => error_result(&VaneError::internal("cancelled by the client")),
    }
}

/// What a span needs from a request's context.
/// The environment variable through which a front gives its worker the
/// secret that marks the front's own readiness probes.
pub const SELF_CHECK_ENV: &str = "VANE_SELF_CHECK_TOKEN";

fn self_check_secret() -> Option<&'static str> {
    static SECRET: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    SECRET
        .get_or_init(|| std::env::var(SELF_CHECK_ENV).ok().filter(|s| s.len() >= 16))
        .as_deref()
}

fn request_facts(
    context: &RequestContext<RoleServer>,
    request_meta: Option<&Value>,
) -> (String, Option<String>, Option<String>) {
    let id = match serde_json::to_value(&context.id) {
        Ok(Value::String(s)) => s,
        Ok(v) => v.to_string(),
        Err(_) => String::new(),
    };
    let meta = serde_json::to_value(&context.meta).ok();
    let traceparent = [meta.as_ref(), request_meta]
        .into_iter()
        .flatten()
        .find_map(|m| {
            m.get("traceparent")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let protocol = context
        .peer
        .peer_info()
        .and_then(|p| serde_json::to_value(&p.protocol_version).ok())
        .and_then(|v| v.as_str().map(str::to_string));
    // Behind a front, the facts of the client's own request (its id,
    // protocol version, session) arrive in `_meta["vane/client"]`.
    if let Some(c) = forwarded(&meta, request_meta) {
        let id = c["request_id"].as_str().map(str::to_string).unwrap_or(id);
        let protocol = c["protocol_version"]
            .as_str()
            .map(str::to_string)
            .or(protocol);
        return (id, traceparent, protocol);
    }
    (id, traceparent, protocol)
}

fn forwarded<'a>(meta: &'a Option<Value>, request_meta: Option<&'a Value>) -> Option<&'a Value> {
    [meta.as_ref(), request_meta]
        .into_iter()
        .flatten()
        .find_map(|m| m.get("vane/client"))
}

impl VaneServer {
    fn span(&self, method: &str, context: &RequestContext<RoleServer>) -> SpanHandle {
        let (id, tp, proto) = request_facts(context, None);
        let t = &self.ctx.telemetry;
        t.otel.start(
            method,
            None,
            tp.as_deref(),
            &id,
            &t.session_id,
            proto.as_deref(),
        )
    }
}

impl ServerHandler for VaneServer {
    async fn initialize(
        &self,
        request: rmcp::model::InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::InitializeResult, McpError> {
        let t = &self.ctx.telemetry;
        let (id, tp, _) = request_facts(&context, None);
        let proto = serde_json::to_value(&request.protocol_version)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        let span = t.otel.start(
            "initialize",
            None,
            tp.as_deref(),
            &id,
            &t.session_id,
            proto.as_deref(),
        );
        context.peer.set_peer_info(request.clone());
        let r = self.negotiate_initialize(&request);
        t.otel.end(span, r.is_err(), None);
        r
    }

    async fn ping(&self, context: RequestContext<RoleServer>) -> Result<(), McpError> {
        let span = self.span("ping", &context);
        self.ctx.telemetry.otel.end(span, false, None);
        Ok(())
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("vane", VERSION).with_title("vane orchestrator"))
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let span = self.span("tools/list", &context);
        let visible: Vec<Tool> = self
            .registry
            .tools()
            .iter()
            .zip(self.tools.iter())
            .filter(|(def, _)| self.ctx.offers(def.name, def.admin))
            .map(|(_, t)| t.clone())
            .collect();
        let r = ListToolsResult::with_all_items(visible);
        self.ctx.telemetry.otel.end(span, false, None);
        Ok(r)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let t = self.ctx.telemetry.clone();
        let req_meta = request
            .meta
            .as_ref()
            .and_then(|m| serde_json::to_value(m).ok());
        let ctx_meta = serde_json::to_value(&context.meta).ok();
        let idem_key = [req_meta.as_ref(), ctx_meta.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|m| {
                m.get("vane/idempotency_key")
                    .or_else(|| m.get("idempotency_key"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
        // a front's readiness probe is not traffic: no log, metrics or span —
        // recognised by the front's secret, never by a client's say-so
        let self_check = self_check_secret().is_some_and(|secret| {
            [req_meta.as_ref(), ctx_meta.as_ref()]
                .into_iter()
                .flatten()
                .any(|m| m.get("vane/self_check").and_then(Value::as_str) == Some(secret))
        });
        // `[tools]`: a tool the workspace does not offer is refused (the
        // front's own probes excepted: they check the worker, not the client)
        if !self_check
            && self.registry.get(&request.name).is_some()
            && !self.ctx.config.tools.enabled(&request.name)
        {
            let e = VaneError::new(
                ErrorCode::ToolDisabled,
                format!(
                    "`{}` is not offered in this workspace ([tools] in vane.toml: preset, enable, disable)",
                    request.name
                ),
            )
            .with_details(json!({ "tool": request.name, "preset": self.ctx.config.tools.preset }));
            return Ok(error_result(&e).into());
        }
        // rate limits per client session and tool (never the front's probes)
        if !self_check {
            let session = forwarded(&ctx_meta, req_meta.as_ref())
                .and_then(|c| c["session_id"].as_str())
                .unwrap_or(&t.session_id);
            let admin = self.registry.get(&request.name).is_some_and(|d| d.admin);
            if let Err(wait) = self.ctx.rate.check(session, &request.name, admin) {
                let ms = wait.as_millis().max(1) as u64;
                let e = VaneError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "`{}` is over this session's rate limit ([rate_limits]); retry in {ms} ms",
                        request.name
                    ),
                )
                .with_details(json!({ "tool": request.name, "retry_after_ms": ms }));
                return Ok(error_result(&e).into());
            }
        }
        if !t.enabled || self_check {
            let call = self.call_idempotent(&request.name, request.arguments, idem_key.as_deref());
            return Ok(cancellable(call, &context).await.into());
        }
        let (request_id, traceparent, protocol) = request_facts(&context, req_meta.as_ref());
        let session_id = forwarded(&ctx_meta, req_meta.as_ref())
            .and_then(|c| c["session_id"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| t.session_id.clone());
        let span = t.otel.start(
            "tools/call",
            Some(&request.name),
            traceparent.as_deref(),
            &request_id,
            &session_id,
            protocol.as_deref(),
        );
        t.metrics.call_started();
        let args_bytes = request
            .arguments
            .as_ref()
            .map(|a| serde_json::to_vec(a).unwrap_or_default())
            .unwrap_or_default();
        let task_id = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("task_id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let result = cancellable(
            self.call_idempotent(&request.name, request.arguments, idem_key.as_deref()),
            &context,
        )
        .await;
        let elapsed = span.start.elapsed();
        let is_error = result.is_error == Some(true);
        let error = if is_error {
            result.structured_content.as_ref().map(|v| &v["error"])
        } else {
            None
        };
        let code = error.and_then(|e| e["code"].as_str()).map(str::to_string);
        let result_text = result
            .content
            .first()
            .and_then(|c| c.as_text())
            .map(|t| t.text.as_bytes())
            .unwrap_or_default();
        t.metrics
            .call_finished(&request.name, !is_error, code.as_deref(), elapsed);
        t.emit_tool_call(ToolCall {
            tool: request.name.to_string(),
            ok: !is_error,
            error_message: error
                .and_then(|e| e["message"].as_str())
                .map(str::to_string),
            error_code: code.clone(),
            duration_us: elapsed.as_micros() as u64,
            request_id,
            session_id,
            task_id: task_id.or_else(|| {
                result
                    .structured_content
                    .as_ref()
                    .and_then(|v| v["claimed"]["id"].as_str().or(v["task"]["id"].as_str()))
                    .map(str::to_string)
            }),
            trace_id: span.trace_id.clone(),
            span_id: span.span_id.clone(),
            args_bytes: args_bytes.len(),
            args_hash: content_hash(&args_bytes),
            result_bytes: result_text.len(),
            result_hash: content_hash(result_text),
        });
        t.otel.end(span, is_error, code.as_deref());
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let span = self.span("resources/list", &context);
        let r = self.resources();
        self.ctx.telemetry.otel.end(span, r.is_err(), None);
        r
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let span = self.span("resources/templates/list", &context);
        let r = ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("vane://artifacts/{id}", "artifact")
                .with_description("A recorded artifact (full text of truncated outputs included)"),
            ResourceTemplate::new("vane://tasks/{id}", "task")
                .with_description("A task with its runtime state and history"),
        ]);
        self.ctx.telemetry.otel.end(span, false, None);
        Ok(r)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let span = self.span("resources/read", &context);
        let r = match self.read(&request.uri) {
            Ok(r) => Ok(r.into()),
            Err(e)
                if matches!(
                    e.code,
                    vane_core::ErrorCode::NotFound
                        | vane_core::ErrorCode::TaskNotFound
                        | vane_core::ErrorCode::InvalidInput
                ) =>
            {
                Err(McpError::resource_not_found(
                    e.message.clone(),
                    Some(e.to_json()),
                ))
            }
            Err(e) => Err(McpError::internal_error(
                e.message.clone(),
                Some(e.to_json()),
            )),
        };
        self.ctx.telemetry.otel.end(span, r.is_err(), None);
        r
    }
}

impl VaneServer {
    fn resources(&self) -> Result<ListResourcesResult, McpError> {
        let mut res = vec![
            Resource::new("vane://roadmap", "roadmap")
                .with_description("The roadmap in the upstream YAML format")
                .with_mime_type("application/yaml"),
            Resource::new("vane://context", "context")
                .with_description("Running context and decisions")
                .with_mime_type("text/markdown"),
            Resource::new("vane://checkpoint/latest", "checkpoint")
                .with_description("The latest checkpoint")
                .with_mime_type("application/json"),
            Resource::new("vane://status", "status")
                .with_description("Workspace status")
                .with_mime_type("application/json"),
        ];
        let artifacts = self
            .ctx
            .store
            .list_artifacts(100)
            .map_err(|e| McpError::internal_error(e.message, None))?;
        for a in artifacts {
            res.push(
                Resource::new(a.uri.clone(), format!("artifact {} ({})", a.id, a.kind))
                    .with_description(a.path.clone().unwrap_or_else(|| a.kind.clone()))
                    .with_mime_type("text/plain"),
            );
        }
        Ok(ListResourcesResult::with_all_items(res))
    }
}
