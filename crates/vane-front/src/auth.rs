//! Bearer tokens for `vane serve --http`. Tokens are kept only as their
//! SHA-256 (a tokens file holds nothing but hashes; tokens from the
//! environment are hashed as they are read), and a presented token is
//! compared with every known hash in constant time, so neither the files
//! nor the timing tell anything about a token.
//!
//! Scopes: `tools` (every tool the flags allow, admin tools excepted) and
//! `admin` (admin tools too — the ADMIN_TOOLS flag still decides besides).

use std::path::Path;

use sha2::{Digest, Sha256};
use vane_core::config::http::Http;
use vane_core::{ErrorCode, VaneError};

/// What a request's token grants (an extension on the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub admin: bool,
}

/// The known tokens.
#[derive(Debug, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], Granted)>,
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn bad(m: String) -> VaneError {
    VaneError::new(ErrorCode::ConfigInvalid, m)
}

fn scopes(text: &str, at: &str) -> Result<Granted, VaneError> {
    let mut g = Granted { admin: false };
    for s in text
        .split(['+', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match s {
            "tools" => {}
            "admin" => g.admin = true,
            other => return Err(bad(format!("{at}: unknown scope `{other}` (tools, admin)"))),
        }
    }
    Ok(g)
}

impl Tokens {
    /// The tokens `[http]` names: `tokens_env` and `tokens_file` (relative
    /// to `ws`). A named variable or file that is missing is an error, so a
    /// typo never opens the endpoint.
    pub fn load(cfg: &Http, ws: &Path) -> Result<Tokens, VaneError> {
        let mut t = Tokens::default();
        if let Some(var) = &cfg.tokens_env {
            let v = std::env::var(var)
                .map_err(|_| bad(format!("http: tokens_env names `{var}`, which is not set")))?;
            t.add_plain(&v, &format!("${var}"))?;
        }
        if let Some(file) = &cfg.tokens_file {
            let p = ws.join(file);
            let text = std::fs::read_to_string(&p)
                .map_err(|e| bad(format!("http: tokens_file {}: {e}", p.display())))?;
            t.add_hashed(&text, &p.display().to_string())?;
        }
        Ok(t)
    }

    /// `TOKEN` or `TOKEN:tools+admin`, separated by commas or whitespace.
    pub fn add_plain(&mut self, text: &str, at: &str) -> Result<(), VaneError> {
        for entry in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            let (token, sc) = entry.split_once(':').unwrap_or((entry, "tools"));
            if token.len() < 16 {
                return Err(bad(format!(
                    "{at}: a token must have at least 16 characters"
                )));
            }
            self.entries.push((sha256(token), scopes(sc, at)?));
        }
        Ok(())
    }

    /// Lines `sha256:HEX [scopes]`; `#` starts a comment.
    pub fn add_hashed(&mut self, text: &str, at: &str) -> Result<(), VaneError> {
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let hash = parts.next().unwrap_or("");
            let hex = hash
                .strip_prefix("sha256:")
                .ok_or_else(|| bad(format!("{at}:{}: expected `sha256:HEX [scopes]`", i + 1)))?;
            let mut h = [0u8; 32];
            hex::decode_to_slice(hex, &mut h)
                .map_err(|_| bad(format!("{at}:{}: the hash is not 64 hex digits", i + 1)))?;
            let sc = parts.collect::<Vec<_>>().join(",");
            let sc = if sc.is_empty() {
                "tools".to_string()
            } else {
                sc
            };
            self.entries
                .push((h, scopes(&sc, &format!("{at}:{}", i + 1))?));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What `presented` grants, compared against every known hash in
    /// constant time (no early exit).
    pub fn check(&self, presented: &str) -> Option<Granted> {
        let h = sha256(presented);
        let mut found = None;
        for (known, g) in &self.entries {
            let diff = known.iter().zip(&h).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(*g);
            }
        }
        found
    }

    /// A new random token and the line that stores its hash.
    pub fn generate(admin: bool) -> Result<(String, String), VaneError> {
        use std::io::Read;
        let mut b = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .map_err(|e| VaneError::new(ErrorCode::IoError, format!("/dev/urandom: {e}")))?;
        let token = format!("vane_{}", hex::encode(b));
        let line = format!(
            "sha256:{} {}",
            hex::encode(sha256(&token)),
            if admin { "tools,admin" } else { "tools" }
        );
        Ok((token, line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_by_hash_with_their_scopes() {
        let mut t = Tokens::default();
        t.add_plain(
            "reader-token-0123456789, admin-token-0123456789:tools+admin",
            "env",
        )
        .unwrap();
        assert_eq!(
            t.check("reader-token-0123456789"),
            Some(Granted { admin: false })
        );
        assert_eq!(
            t.check("admin-token-0123456789"),
            Some(Granted { admin: true })
        );
        assert_eq!(t.check("reader-token-012345678"), None);
        assert_eq!(t.check(""), None);
        let (token, line) = Tokens::generate(true).unwrap();
        assert!(!line.contains(&token), "only the hash is stored");
        let mut f = Tokens::default();
        f.add_hashed(&format!("# team tokens\n{line}\n"), "file")
            .unwrap();
        assert_eq!(f.check(&token), Some(Granted { admin: true }));
        assert!(f.add_hashed("sha256:zz tools", "file").is_err());
        assert!(f.add_hashed("plain-token tools", "file").is_err());
        assert!(t.add_plain("short", "env").is_err());
        assert!(t.add_plain("long-enough-token-000:root", "env").is_err());
    }
}
