//! The client's session: who the client is (protocol version, request ids
//! passed on in `_meta`), the tool list it sees and its change
//! notifications, and the rmcp handler it talks to.

use super::*;

/// One client's MCP session with the front: stdio has exactly one; over
/// HTTP there is one per client session (and one per request for
/// stateless clients). Every session reaches the same workers; what is its
/// own is who the client is and what it was last shown.
pub struct Session {
    /// what the workers log as the client's session
    /// (`_meta["vane/client"].session_id`)
    pub id: String,
    /// what the client may call (HTTP: its token's scopes)
    pub access: Access,
    peer: Mutex<Option<Peer<RoleServer>>>,
    protocol: Mutex<Value>,
    /// the tail of `_meta["vane/client"]` as JSON text:
    /// `,"protocol_version":…,"session_id":…}`
    client_meta: Mutex<String>,
    /// the client finished the handshake: `tools/call` may take the direct path
    pub initialized: std::sync::atomic::AtomicBool,
    /// the tool names the client was last shown
    listed: Mutex<Vec<String>>,
}

/// What a session's client may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// everything the flags allow (stdio: the client is the process that
    /// started vane)
    Local,
    /// over HTTP with a token: tools, and admin tools only with the admin scope
    Remote { admin: bool },
}

impl Access {
    /// Whether admin tools may be called at all (the ADMIN_TOOLS flag still
    /// decides besides).
    pub fn admin(self) -> bool {
        matches!(self, Access::Local | Access::Remote { admin: true })
    }
}

fn client_meta(protocol: &Value, session_id: &str) -> String {
    let v = json!({ "protocol_version": protocol, "session_id": session_id });
    // `{"protocol_version":…,"session_id":…}` → `,"protocol_version":…}`
    let s = v.to_string();
    format!(",{}", &s[1..])
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Session {
    fn new(id: String, access: Access) -> Session {
        Session {
            client_meta: Mutex::new(client_meta(&Value::Null, &id)),
            id,
            access,
            peer: Mutex::new(None),
            protocol: Mutex::new(Value::Null),
            initialized: std::sync::atomic::AtomicBool::new(false),
            listed: Mutex::new(Vec::new()),
        }
    }

    /// The tail of `_meta["vane/client"]` (see the field).
    pub(crate) fn client_meta(&self) -> String {
        lock(&self.client_meta).clone()
    }

    /// The client's request id, protocol version and its session go along
    /// in `_meta["vane/client"]`; a progress token does not (progress is
    /// not relayed).
    pub(crate) fn annotate(&self, request: &mut CallToolRequestParams, request_id: String) {
        let protocol = lock(&self.protocol).clone();
        let meta = request.meta.get_or_insert_with(Default::default);
        meta.0.remove(meta::PROGRESS_TOKEN);
        meta.0.insert(
            meta::CLIENT.into(),
            json!({ "request_id": request_id, "protocol_version": protocol, "session_id": self.id }),
        );
    }

    fn handshake_done(&self, peer: Peer<RoleServer>) {
        let protocol = peer
            .peer_info()
            .and_then(|p| serde_json::to_value(&p.protocol_version).ok())
            .unwrap_or(Value::Null);
        *lock(&self.client_meta) = client_meta(&protocol, &self.id);
        *lock(&self.protocol) = protocol;
        *lock(&self.peer) = Some(peer);
        self.initialized
            .store(true, std::sync::atomic::Ordering::Release);
    }

    fn peer(&self) -> Option<Peer<RoleServer>> {
        lock(&self.peer).clone()
    }
}

impl Front {
    /// A new client session; `stdio`: the one the stdio transport serves.
    pub fn open_session(self: &Arc<Self>, access: Access, stdio: bool) -> Arc<Session> {
        let n = self.session_seq.fetch_add(1, Ordering::Relaxed);
        let base = &self.ctx.telemetry.session_id;
        // the stdio client is the front's own session, as before; other
        // clients get theirs, so the workers log and rate-limit each apart
        let id = if stdio {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let s = Arc::new(Session::new(id, access));
        let mut all = lock(&self.sessions);
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&s));
        drop(all);
        if stdio {
            let _ = self.stdio.set(s.clone());
        }
        s
    }

    /// The stdio client's session, once its transport opened it.
    pub(crate) fn stdio_session(&self) -> Option<&Arc<Session>> {
        self.stdio.get()
    }

    /// The live sessions.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        lock(&self.sessions)
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect()
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

    /// Tells each client whose tool set changed (a switch, or the active
    /// worker's own `list_changed`).
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
        for s in self.sessions() {
            let changed = {
                let mut l = lock(&s.listed);
                let changed = !l.is_empty() && *l != names;
                *l = names.clone();
                changed
            };
            if changed {
                if let Some(p) = s.peer() {
                    let _ = p.notify_tool_list_changed().await;
                }
            }
        }
    }

    /// Tells every client that the resources changed.
    pub(crate) async fn resources_changed(&self) {
        for s in self.sessions() {
            if let Some(p) = s.peer() {
                let _ = p.notify_resource_list_changed().await;
            }
        }
    }
}

/// The rmcp server one client session talks to.
#[derive(Clone)]
pub struct FrontServer {
    pub front: Arc<Front>,
    pub session: Arc<Session>,
}

/// What one request may call: over HTTP, what its token granted (decided
/// per request, never per connection); otherwise the session's own access.
fn access_of(session: &Session, ext: &rmcp::model::Extensions) -> Access {
    match ext
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<crate::auth::Granted>())
    {
        Some(g) => Access::Remote { admin: g.admin },
        None => session.access,
    }
}

/// The session a request is served as: its MCP session, or — for a
/// stateless request (no `Mcp-Session-Id`), which gets a handler of its
/// own — the client its token names, so what is kept per client (rate
/// limits, the workers' logs) follows the client, not the request.
fn session_for(session: &Arc<Session>, ext: &rmcp::model::Extensions) -> Arc<Session> {
    let Some(parts) = ext.get::<http::request::Parts>() else {
        return session.clone();
    };
    if parts.headers.contains_key("mcp-session-id") {
        return session.clone();
    }
    let client = parts
        .extensions
        .get::<crate::auth::Granted>()
        .and_then(|g| g.client.clone());
    let id = match client {
        Some(c) => format!("http-{c}"),
        None => "http-anonymous".to_string(),
    };
    let protocol = parts
        .headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .map(|v| Value::String(v.to_string()))
        .unwrap_or(Value::Null);
    let s = Session::new(id, session.access);
    *lock(&s.client_meta) = client_meta(&protocol, &s.id);
    *lock(&s.protocol) = protocol;
    Arc::new(s)
}

impl FrontServer {
    /// A handler for a new session of `front`.
    pub fn new(front: Arc<Front>, access: Access, stdio: bool) -> FrontServer {
        let session = front.open_session(access, stdio);
        FrontServer { front, session }
    }
}

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
        self.session.handshake_done(context.peer.clone());
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
            .front
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
        let mut tools = self.front.visible_tools(&list.tools);
        tools.dedup_by(|a, b| a.name == b.name);
        if !access_of(&self.session, &context.extensions).admin() {
            // a client without the admin scope is not shown what it cannot call
            tools.retain(|t| {
                let marked = t
                    .meta
                    .as_ref()
                    .and_then(|m| m.0.get(meta::ADMIN))
                    .and_then(Value::as_bool);
                marked != Some(true)
            });
        }
        let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
        names.sort();
        *lock(&self.session.listed) = names;
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
        let session = session_for(&self.session, &context.extensions);
        Ok(self
            .front
            .handle_call(
                &session,
                access_of(&self.session, &context.extensions),
                request,
                context.ct.clone(),
                id,
            )
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
            .front
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
            .front
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
            .front
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
