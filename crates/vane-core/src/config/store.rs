//! `[store]`: where the store is — the SQLite file in the state directory
//! (the default, nothing to install), or a PostgreSQL database that fronts
//! on several hosts share.

use serde::{Deserialize, Serialize};

use crate::{ErrorCode, VaneError};

/// The environment variable that overrides `[store] url`.
pub const URL_ENV: &str = "VANE_STORE_URL";
/// The environment variable holding the database password.
pub const PASSWORD_ENV: &str = "VANE_STORE_PASSWORD";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Store {
    /// `postgres://USER@HOST:PORT/DB`: the shared PostgreSQL database.
    /// Unset: `vane.db` in the state directory. `VANE_STORE_URL` overrides
    /// it. It must not hold a password (vane.toml is committed): give that
    /// in `VANE_STORE_PASSWORD` or `password_file`.
    pub url: Option<String>,
    /// A file whose first line is the database password (relative to the
    /// workspace; keep it out of git). `VANE_STORE_PASSWORD` overrides it.
    pub password_file: Option<String>,
    /// Connections one vane process keeps to PostgreSQL at most.
    pub max_connections: u32,
    /// PEM file of CA certificates trusted for the server's TLS certificate,
    /// besides the system's (relative to the workspace). TLS is the URL's
    /// `sslmode`: `prefer` (default), `require`, `disable`.
    pub ca_file: Option<String>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            url: None,
            password_file: None,
            max_connections: 8,
            ca_file: None,
        }
    }
}

impl Store {
    pub fn validate(&self) -> Result<(), VaneError> {
        if let Some(url) = &self.url {
            check_url(url, "store.url")?;
            if url_has_password(url) {
                return Err(VaneError::new(
                    ErrorCode::ConfigInvalid,
                    "store.url holds a password, and vane.toml is usually committed: remove it from the URL and give it in VANE_STORE_PASSWORD or store.password_file",
                ));
            }
        }
        if self.max_connections == 0 || self.max_connections > 1000 {
            return Err(VaneError::new(
                ErrorCode::ConfigInvalid,
                "store.max_connections: from 1 to 1000",
            ));
        }
        Ok(())
    }
}

/// A store URL must name PostgreSQL.
pub fn check_url(url: &str, what: &str) -> Result<(), VaneError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(())
    } else {
        Err(VaneError::new(
            ErrorCode::ConfigInvalid,
            format!("{what}: vane stores in PostgreSQL (`postgres://USER@HOST:PORT/DB`) or, when unset, in SQLite; `{}` is neither", redact_url(url)),
        ))
    }
}

/// Does `postgres://user:secret@host/db` carry a password?
pub fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
        || url.contains("password=")
}

/// The URL with any password masked, for messages.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some((userinfo, host)) = rest[..end].rsplit_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                out = format!("{scheme}://{user}:***@{host}{}", &rest[end..]);
            }
        }
    }
    if let Some(i) = out.find("password=") {
        let tail = &out[i + 9..];
        let end = tail.find('&').unwrap_or(tail.len());
        out = format!("{}password=***{}", &out[..i], &tail[end..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_found_and_masked() {
        assert!(url_has_password("postgres://u:s3cret@h:5432/db"));
        assert!(url_has_password("postgres://u@h/db?password=x"));
        assert!(!url_has_password("postgres://u@h:5432/db"));
        assert!(!url_has_password("postgres://h/db"));
        assert_eq!(
            redact_url("postgres://u:s3cret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=disable&password=x&a=b"),
            "postgres://u@h/db?sslmode=disable&password=***&a=b"
        );
        let e = Store {
            url: Some("postgres://u:pw@h/db".into()),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(!e.message.contains("pw@"), "{}", e.message);
        assert!(check_url("mysql://h/db", "x").is_err());
        assert!(check_url("postgresql://h/db", "x").is_ok());
    }
}
