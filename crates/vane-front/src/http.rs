//! Streamable HTTP (`vane serve --http`): many clients at once through the
//! same front. rmcp's Streamable HTTP server speaks the protocol (sessions
//! for clients of revisions before 2026-07-28, stateless requests for those
//! after, SSE streams, `Host` and `Origin` checks, the body limit); every
//! session it opens gets a [`FrontServer`] of its own — a [`Session`] of the
//! one front — so all clients reach the same workers and keep working across
//! worker swaps, restarts, canaries and upgrades.
//!
//! In front of it: bearer tokens (`auth.rs`) and the RFC 9728
//! protected-resource metadata. What a request may call is decided per
//! request from its token's scopes ([`Access`]), never per connection.
//!
//! [`Session`]: crate::front::Session

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use vane_core::config::http::Http;
use vane_core::{ErrorCode, VaneError};

use crate::auth::{Granted, Tokens};
use crate::front::{Access, Front, FrontServer};

/// What the HTTP endpoint serves, resolved from `[http]` and the flag.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub path: String,
    /// the resource identifier (RFC 8707/9728)
    pub resource: String,
    pub cfg: Http,
}

impl Endpoint {
    /// `listen`: the `--http` address, else `[http] listen`.
    pub fn resolve(cfg: &Http, listen: Option<&str>) -> Result<Endpoint, VaneError> {
        let text = listen.unwrap_or(&cfg.listen);
        let addr: SocketAddr = text.parse().map_err(|e| {
            VaneError::new(
                ErrorCode::ConfigInvalid,
                format!("http: `{text}` is not an address like 127.0.0.1:8731 ({e})"),
            )
        })?;
        if !addr.ip().is_loopback() && !cfg.allow_remote {
            return Err(VaneError::new(
                ErrorCode::ConfigInvalid,
                format!("http: {addr} is not a loopback address; set [http] allow_remote = true (and tokens) to serve other machines"),
            ));
        }
        let resource = cfg
            .resource
            .clone()
            .unwrap_or_else(|| format!("http://{addr}{}", cfg.path));
        Ok(Endpoint {
            addr,
            path: cfg.path.clone(),
            resource,
            cfg: cfg.clone(),
        })
    }

    /// The protected-resource metadata document's URL.
    pub fn metadata_url(&self) -> String {
        let base = self
            .resource
            .strip_suffix(&self.path)
            .unwrap_or(&self.resource);
        format!("{base}/.well-known/oauth-protected-resource{}", self.path)
    }

    /// `Host` values accepted: loopback names (with and without the port),
    /// the listen address, and `[http] allowed_hosts`.
    fn allowed_hosts(&self) -> Vec<String> {
        let port = self.addr.port();
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]", "::1"]
            .iter()
            .flat_map(|h| [h.to_string(), format!("{h}:{port}")])
            .collect();
        hosts.push(self.addr.to_string());
        hosts.push(self.addr.ip().to_string());
        hosts.extend(self.cfg.allowed_hosts.iter().cloned());
        hosts
    }
}

impl Endpoint {
    /// Browser origins accepted: loopback pages (any port) and
    /// `[http] allowed_origins`; a request from any other origin is refused.
    fn allowed_origins(&self) -> Vec<String> {
        let mut o: Vec<String> = ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        o.extend(self.cfg.allowed_origins.iter().cloned());
        o
    }
}

#[derive(Clone)]
struct AuthState {
    tokens: Arc<Tokens>,
    metadata_url: Arc<str>,
}

/// Bearer tokens, when any are configured: a request without a valid one
/// gets 401 with `WWW-Authenticate` naming the resource metadata. With no
/// tokens configured (loopback only), requests pass with the tools scope.
async fn authenticate(State(s): State<AuthState>, mut req: Request, next: Next) -> Response {
    if s.tokens.is_empty() {
        req.extensions_mut().insert(Granted {
            admin: false,
            client: None,
        });
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let (granted, error) = match presented {
        None => (None, None),
        Some(t) => match s.tokens.check(t) {
            Some(g) => (Some(g), None),
            None => (None, Some("invalid_token")),
        },
    };
    match granted {
        Some(g) => {
            req.extensions_mut().insert(g);
            next.run(req).await
        }
        None => unauthorized(&s.metadata_url, error),
    }
}

fn unauthorized(metadata_url: &str, error: Option<&str>) -> Response {
    let mut challenge = format!("Bearer resource_metadata=\"{metadata_url}\"");
    if let Some(e) = error {
        challenge.push_str(&format!(", error=\"{e}\""));
    }
    let body = json!({
        "error": error.unwrap_or("unauthorized"),
        "error_description": "this endpoint needs a bearer token ([http] tokens_env / tokens_file)",
    });
    let mut r = (StatusCode::UNAUTHORIZED, body.to_string()).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The RFC 9728 protected-resource metadata.
fn metadata(ep: &Endpoint) -> serde_json::Value {
    let mut servers = ep.cfg.authorization_servers.clone();
    if let Some(j) = &ep.cfg.jwt {
        if !servers.contains(&j.issuer) {
            servers.push(j.issuer.clone());
        }
    }
    json!({
        "resource": ep.resource,
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["tools", "admin"],
        "resource_name": "vane",
    })
}

/// The HTTP application: the MCP endpoint behind authentication, and the
/// metadata documents.
pub fn router(front: Arc<Front>, ep: &Endpoint, tokens: Tokens, ct: CancellationToken) -> Router {
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(Duration::from_secs(ep.cfg.session_idle_s));
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(ep.allowed_hosts())
        .with_allowed_origins(ep.allowed_origins())
        .enforce_origin_validation()
        .with_max_request_body_bytes(usize::try_from(ep.cfg.max_body_bytes).unwrap_or(usize::MAX))
        .with_cancellation_token(ct);
    config.sse_keep_alive = Some(Duration::from_secs(15));
    let f = front.clone();
    let mcp = StreamableHttpService::new(
        move || {
            Ok(FrontServer::new(
                f.clone(),
                Access::Remote { admin: false },
                false,
            ))
        },
        Arc::new(sessions),
        config,
    );
    let state = AuthState {
        tokens: Arc::new(tokens),
        metadata_url: ep.metadata_url().into(),
    };
    let doc = Arc::new(metadata(ep));
    let well_known = {
        let doc = doc.clone();
        axum::routing::get(move || {
            let doc = doc.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    doc.to_string(),
                )
            }
        })
    };
    let protected = Router::new()
        .route_service(&ep.path, mcp)
        .layer(axum::middleware::from_fn_with_state(state, authenticate));
    Router::new()
        .route("/.well-known/oauth-protected-resource", well_known.clone())
        .route(
            &format!("/.well-known/oauth-protected-resource{}", ep.path),
            well_known,
        )
        .merge(protected)
}

/// Opens the endpoint's port; the endpoint as bound (port 0 resolved, and
/// the default resource identifier with it).
pub async fn bind(mut ep: Endpoint) -> Result<(tokio::net::TcpListener, Endpoint), VaneError> {
    let listener = tokio::net::TcpListener::bind(ep.addr).await.map_err(|e| {
        VaneError::new(
            ErrorCode::IoError,
            format!("cannot listen on {}: {e}", ep.addr),
        )
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| VaneError::internal(e.to_string()))?;
    if bound != ep.addr {
        if ep.cfg.resource.is_none() {
            ep.resource = format!("http://{bound}{}", ep.path);
        }
        ep.addr = bound;
    }
    Ok((listener, ep))
}

/// Serves `front` over HTTP on `listener` until `ct` is cancelled, then
/// stops taking connections, closes the sessions and lets open requests
/// finish.
pub async fn serve(
    front: Arc<Front>,
    listener: tokio::net::TcpListener,
    ep: Endpoint,
    tokens: Tokens,
    ct: CancellationToken,
) -> Result<(), VaneError> {
    tracing::info!(target: "vane::front", "serving MCP over HTTP at http://{}{}", ep.addr, ep.path);
    let app = router(front, &ep, tokens, ct.child_token());
    let stop = ct.clone();
    // answers go out in several writes (headers, SSE events): without
    // TCP_NODELAY, Nagle's algorithm waits for the client's delayed ACK
    // (~40 ms) before the last of them
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .map_err(|e| VaneError::new(ErrorCode::IoError, format!("HTTP server: {e}")))
}
