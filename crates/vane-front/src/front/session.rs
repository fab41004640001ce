//! The client's session: who the client is (protocol version, request ids
//! passed on in `_meta`), the tool list it sees and its change
//! notifications, and the rmcp handler it talks to.

use super::*;

impl Front {
    /// The client's request id, protocol version and the front's session go
    /// along in `_meta["vane/client"]`; a progress token does not (progress
    /// is not relayed).
    pub(crate) fn annotate(&self, request: &mut CallToolRequestParams, request_id: String) {
        let protocol = self
            .client_protocol
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let meta = request.meta.get_or_insert_with(Default::default);
        meta.0.remove(meta::PROGRESS_TOKEN);
        meta.0.insert(
            meta::CLIENT.into(),
            json!({ "request_id": request_id, "protocol_version": protocol, "session_id": self.ctx.telemetry.session_id }),
        );
    }

    pub(crate) fn visible_tools(&self, worker_tools: &[Tool]) -> Vec<Tool> {
        let mut tools = worker_tools.to_vec();
        if self.admin() {
            let offered = &self.ctx.config.tools;
            tools.extend(
                self.front_tools()
                    .into_iter()
                    .filter(|t| offered.enabled(&t.name)),
            );
        }
        tools
    }

    /// Tells the client when the tool set it sees changed (a switch, or the
    /// active worker's own `list_changed`).
    pub(crate) async fn tools_maybe_changed(&self) {
        let Some(w) = self.active_tx.borrow().clone() else {
            return;
        };
        let mut names: Vec<String> = self
            .visible_tools(&w.tools().tools)
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        names.sort();
        let changed = {
            let mut l = self.listed.lock().unwrap_or_else(|e| e.into_inner());
            let changed = !l.is_empty() && *l != names;
            *l = names;
            changed
        };
        if changed {
            let peer = self
                .client
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(p) = peer {
                let _ = p.notify_tool_list_changed().await;
            }
        }
    }
}

/// The rmcp server the client talks to.
#[derive(Clone)]
pub struct FrontServer(pub Arc<Front>);

fn meta_from_context(
    params: &mut CallToolRequestParams,
    ctx_meta: &rmcp::model::RequestMetaObject,
) {
    let Ok(Value::Object(m)) = serde_json::to_value(ctx_meta) else {
        return;
    };
    for (k, v) in m {
        if k == meta::PROGRESS_TOKEN {
            continue;
        }
        let meta = params.meta.get_or_insert_with(Default::default);
        meta.0.entry(k).or_insert(v);
    }
}

impl ServerHandler for FrontServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .enable_resources_list_changed()
                .build(),
        )
        .with_server_info(
            Implementation::new("vane", vane_tools::ctx::VERSION).with_title("vane orchestrator"),
        )
        .with_instructions(INSTRUCTIONS)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let protocol = context
            .peer
            .peer_info()
            .and_then(|p| serde_json::to_value(&p.protocol_version).ok())
            .unwrap_or(Value::Null);
        *self.0.client_meta.lock().unwrap_or_else(|e| e.into_inner()) =
            client_meta(&protocol, &self.0.ctx.telemetry.session_id);
        *self
            .0
            .client_protocol
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = protocol;
        *self.0.client.lock().unwrap_or_else(|e| e.into_inner()) = Some(context.peer.clone());
        self.0
            .initialized
            .store(true, std::sync::atomic::Ordering::Release);
    }

    async fn ping(&self, _context: RequestContext<RoleServer>) -> Result<(), McpError> {
        Ok(())
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let r = self
            .0
            .forward(
                || {
                    ClientRequest::ListToolsRequest(rmcp::model::ListToolsRequest {
                        method: Default::default(),
                        params: request.clone(),
                        extensions: Default::default(),
                    })
                },
                &context.ct,
            )
            .await?;
        let ServerResult::ListToolsResult(list) = r else {
            return Err(McpError::internal_error(
                "unexpected answer to tools/list",
                None,
            ));
        };
        let mut tools = self.0.visible_tools(&list.tools);
        tools.dedup_by(|a, b| a.name == b.name);
        let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
        names.sort();
        *self.0.listed.lock().unwrap_or_else(|e| e.into_inner()) = names;
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        meta_from_context(&mut request, &context.meta);
        let id = match serde_json::to_value(&context.id) {
            Ok(Value::String(s)) => s,
            Ok(v) => v.to_string(),
            Err(_) => String::new(),
        };
        Ok(self
            .0
            .handle_call(request, context.ct.clone(), id)
            .await
            .into_result()
            .into())
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        match self
            .0
            .forward(
                || {
                    ClientRequest::ListResourcesRequest(ListResourcesRequest {
                        method: Default::default(),
                        params: request.clone(),
                        extensions: Default::default(),
                    })
                },
                &context.ct,
            )
            .await?
        {
            ServerResult::ListResourcesResult(r) => Ok(r),
            _ => Err(McpError::internal_error(
                "unexpected answer to resources/list",
                None,
            )),
        }
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        match self
            .0
            .forward(
                || {
                    ClientRequest::ListResourceTemplatesRequest(ListResourceTemplatesRequest {
                        method: Default::default(),
                        params: request.clone(),
                        extensions: Default::default(),
                    })
                },
                &context.ct,
            )
            .await?
        {
            ServerResult::ListResourceTemplatesResult(r) => Ok(r),
            _ => Err(McpError::internal_error(
                "unexpected answer to resources/templates/list",
                None,
            )),
        }
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        match self
            .0
            .forward(
                || ClientRequest::ReadResourceRequest(ReadResourceRequest::new(request.clone())),
                &context.ct,
            )
            .await?
        {
            ServerResult::ReadResourceResult(r) => Ok(r.into()),
            _ => Err(McpError::internal_error(
                "unexpected answer to resources/read",
                None,
            )),
        }
    }
}
