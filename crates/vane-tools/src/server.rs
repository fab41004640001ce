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
use vane_core::VaneError;

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

fn to_tool(def: &ToolDef) -> Tool {
    let ann = ToolAnnotations::with_title(def.title)
        .read_only(def.hints.read_only)
        .destructive(def.hints.destructive)
        .idempotent(def.hints.idempotent)
        .open_world(def.hints.open_world);
    let description = if def.notes.is_empty() {
        def.description.to_string()
    } else {
        format!("{} {}", def.description, def.notes)
    };
    Tool::new(def.name, description, def.input_schema.clone())
        .with_title(def.title)
        .with_raw_output_schema(def.output_schema.clone())
        .with_annotations(ann)
}

/// An `isError` result carrying `{"error": {code, message, details}}`.
pub fn error_result(e: &VaneError) -> CallToolResult {
    let mut r = CallToolResult::structured_error(e.to_json());
    r.content = vec![ContentBlock::text(format!(
        "error {}: {}",
        e.code, e.message
    ))];
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
            Ok(v) => {
                let text = serde_json::to_string(&v).unwrap_or_default();
                let mut r = CallToolResult::structured(v);
                r.content = vec![ContentBlock::text(text)];
                r
            }
            Err(e) => error_result(&e),
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
                serde_json::to_string_pretty(&crate::handlers::status_sync(&self.ctx)?)
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

impl ServerHandler for VaneServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("vane", VERSION).with_title("vane orchestrator"))
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items((*self.tools).clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        Ok(self.call(&request.name, request.arguments).await.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
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

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("vane://artifacts/{id}", "artifact")
                .with_description("A recorded artifact (full text of truncated outputs included)"),
            ResourceTemplate::new("vane://tasks/{id}", "task")
                .with_description("A task with its runtime state and history"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        match self.read(&request.uri) {
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
        }
    }
}
