//! `[http]`: `vane serve --http` — the Streamable HTTP endpoint, its
//! DNS-rebinding protection, limits and bearer tokens.

use serde::{Deserialize, Serialize};

use crate::{ErrorCode, VaneError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Where `vane serve --http` listens when the flag gives no address.
    pub listen: String,
    /// The MCP endpoint's path.
    pub path: String,
    /// `Host` values accepted besides the loopback names and the listen
    /// address (anything else is refused: DNS-rebinding protection).
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed besides loopback pages (`http://localhost:*`,
    /// `http://127.0.0.1:*`, `http://[::1]:*`), e.g. `"https://app.example.com:443"`;
    /// a request carrying any other `Origin` is refused (403). Requests
    /// without an `Origin` (CLIs, SDKs) pass.
    pub allowed_origins: Vec<String>,
    /// An environment variable holding bearer tokens: `TOKEN` or
    /// `TOKEN:tools+admin`, separated by commas or whitespace. Only their
    /// SHA-256 is kept in memory.
    pub tokens_env: Option<String>,
    /// A file of hashed tokens, one per line: `sha256:HEX tools,admin`
    /// (`vane http-token new` writes them). Relative to the workspace.
    pub tokens_file: Option<String>,
    /// The largest request body (413 above it).
    pub max_body_bytes: u64,
    /// Authorization servers named in the protected-resource metadata
    /// (RFC 9728) at `/.well-known/oauth-protected-resource`.
    pub authorization_servers: Vec<String>,
    /// The resource identifier clients use (default `http://LISTEN/PATH`).
    pub resource: Option<String>,
    /// Sessions idle this long are closed.
    pub session_idle_s: u64,
    /// Listening on a non-loopback address must be asked for, and needs tokens.
    pub allow_remote: bool,
    /// `[http.jwt]`: JWT access tokens from an authorization server.
    pub jwt: Option<Jwt>,
}

/// JWT access tokens (RFC 9068): signature by one of the issuer's keys,
/// `iss`, `exp`, and `aud` naming this resource (RFC 8707) are checked;
/// `scope` (or `scp`) holding `admin` grants admin tools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    /// The issuer (`iss`) tokens must name.
    pub issuer: String,
    /// The issuer's public keys as a JWKS document (relative to the workspace).
    pub jwks_file: String,
    /// The audience tokens must name (default: `[http] resource`).
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp`/`nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_s: u64,
}

fn default_leeway() -> u64 {
    30
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: "127.0.0.1:8731".into(),
            path: "/mcp".into(),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            tokens_env: None,
            tokens_file: None,
            max_body_bytes: 4 << 20,
            authorization_servers: Vec::new(),
            resource: None,
            session_idle_s: 300,
            allow_remote: false,
            jwt: None,
        }
    }
}

impl Http {
    pub fn validate(&self) -> Result<(), VaneError> {
        let bad = |m: &str| {
            Err(VaneError::new(
                ErrorCode::ConfigInvalid,
                format!("http: {m}"),
            ))
        };
        if !self.path.starts_with('/') || self.path.len() < 2 {
            return bad("path must start with `/` and name the endpoint, e.g. \"/mcp\"");
        }
        if self.max_body_bytes < 1024 {
            return bad("max_body_bytes must be at least 1024");
        }
        if self.session_idle_s == 0 {
            return bad("session_idle_s must be at least 1");
        }
        if let Some(o) = self
            .allowed_origins
            .iter()
            .find(|o| *o != "null" && !o.contains("://"))
        {
            return bad(&format!(
                "allowed_origins: `{o}` needs a scheme, e.g. \"http://localhost:*\""
            ));
        }
        Ok(())
    }
}
