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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub admin: bool,
    /// who the client is, for what is kept per client across requests
    /// (rate limits, logs) when a request has no session: a short digest
    /// of its token (or of a JWT's subject); `None` without tokens
    pub client: Option<std::sync::Arc<str>>,
}

fn label(prefix: &str, digest: &[u8; 32]) -> Option<std::sync::Arc<str>> {
    Some(format!("{prefix}-{}", hex::encode(&digest[..6])).into())
}

/// The known tokens: opaque ones by hash, and JWT access tokens of a
/// configured issuer.
#[derive(Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], Granted)>,
    jwt: Option<JwtCheck>,
}

/// JWT access tokens of one issuer: signature by one of its keys (JWKS),
/// `iss`, `exp`/`nbf`, and `aud` naming this resource (RFC 8707).
pub struct JwtCheck {
    keys: Vec<(
        Option<String>,
        jsonwebtoken::DecodingKey,
        jsonwebtoken::Algorithm,
    )>,
    validation: jsonwebtoken::Validation,
}

#[derive(serde::Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<Vec<String>>,
}

impl JwtCheck {
    /// The issuer's keys from its JWKS document; `resource`: the audience
    /// when `[http.jwt] audience` does not name one.
    pub fn load(
        cfg: &vane_core::config::http::Jwt,
        ws: &Path,
        resource: &str,
    ) -> Result<JwtCheck, VaneError> {
        use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm};
        use jsonwebtoken::Algorithm;
        let p = ws.join(&cfg.jwks_file);
        let text = std::fs::read_to_string(&p)
            .map_err(|e| bad(format!("http.jwt: jwks_file {}: {e}", p.display())))?;
        let set: JwkSet = serde_json::from_str(&text).map_err(|e| {
            bad(format!(
                "http.jwt: {} is not a JWKS document: {e}",
                p.display()
            ))
        })?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
                (Some(KeyAlgorithm::EdDSA), _) | (None, AlgorithmParameters::OctetKeyPair(_)) => {
                    Algorithm::EdDSA
                }
                (Some(KeyAlgorithm::ES256), _) | (None, AlgorithmParameters::EllipticCurve(_)) => {
                    Algorithm::ES256
                }
                (Some(KeyAlgorithm::ES384), _) => Algorithm::ES384,
                (Some(KeyAlgorithm::RS384), _) => Algorithm::RS384,
                (Some(KeyAlgorithm::RS512), _) => Algorithm::RS512,
                (Some(KeyAlgorithm::PS256), _) => Algorithm::PS256,
                (Some(KeyAlgorithm::RS256), _) | (None, AlgorithmParameters::RSA(_)) => {
                    Algorithm::RS256
                }
                (other, _) => {
                    return Err(bad(format!(
                        "http.jwt: key {:?}: algorithm {other:?} is not accepted (asymmetric signatures only)",
                        jwk.common.key_id
                    )))
                }
            };
            let key = jsonwebtoken::DecodingKey::from_jwk(jwk)
                .map_err(|e| bad(format!("http.jwt: key {:?}: {e}", jwk.common.key_id)))?;
            keys.push((jwk.common.key_id.clone(), key, alg));
        }
        if keys.is_empty() {
            return Err(bad(format!("http.jwt: {} holds no keys", p.display())));
        }
        let mut validation = jsonwebtoken::Validation::new(keys[0].2);
        validation.set_issuer(&[&cfg.issuer]);
        validation.set_audience(&[cfg.audience.as_deref().unwrap_or(resource)]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = cfg.leeway_s;
        validation.validate_nbf = true;
        Ok(JwtCheck { keys, validation })
    }

    /// What a JWT grants, if one of the issuer's keys signed it for this
    /// audience and it has not expired.
    pub fn check(&self, token: &str) -> Option<Granted> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let candidates = self.keys.iter().filter(|(kid, _, alg)| {
            *alg == header.alg && (header.kid.is_none() || kid.as_ref() == header.kid.as_ref())
        });
        for (_, key, alg) in candidates {
            let mut v = self.validation.clone();
            v.algorithms = vec![*alg];
            if let Ok(data) = jsonwebtoken::decode::<Claims>(token, key, &v) {
                let c = data.claims;
                let admin = c
                    .scope
                    .iter()
                    .flat_map(|s| s.split_whitespace())
                    .chain(c.scp.iter().flatten().map(String::as_str))
                    .any(|s| s == "admin");
                let who = c.sub.as_deref().unwrap_or(token);
                return Some(Granted {
                    admin,
                    client: label("jwt", &sha256(who)),
                });
            }
        }
        None
    }
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn bad(m: String) -> VaneError {
    VaneError::new(ErrorCode::ConfigInvalid, m)
}

fn scopes(text: &str, at: &str) -> Result<Granted, VaneError> {
    let mut g = Granted {
        admin: false,
        client: None,
    };
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
    pub fn load(cfg: &Http, ws: &Path, resource: &str) -> Result<Tokens, VaneError> {
        let mut t = Tokens::default();
        if let Some(j) = &cfg.jwt {
            t.jwt = Some(JwtCheck::load(j, ws, resource)?);
        }
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
        self.entries.is_empty() && self.jwt.is_none()
    }

    /// What `presented` grants: a JWT checked against the issuer's keys,
    /// any other token against every known hash in constant time (no early
    /// exit).
    pub fn check(&self, presented: &str) -> Option<Granted> {
        if let Some(j) = &self.jwt {
            if presented.matches('.').count() == 2 {
                return j.check(presented);
            }
        }
        let h = sha256(presented);
        let mut found = None;
        for (known, g) in &self.entries {
            let diff = known.iter().zip(&h).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(Granted {
                    admin: g.admin,
                    client: label("token", &h),
                });
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
    use base64::Engine;
    use ring::signature::KeyPair;

    fn keypair() -> (Vec<u8>, String) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(kp.public_key().as_ref());
        (pkcs8.as_ref().to_vec(), x)
    }

    fn sign(pkcs8: &[u8], kid: &str, claims: serde_json::Value) -> String {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_ed_der(pkcs8)).unwrap()
    }

    /// JWT access tokens: the issuer's signature, `iss`, `exp` and the
    /// audience (this resource, RFC 8707) are all checked; `admin` in
    /// `scope` grants admin tools.
    #[test]
    fn jwt_access_tokens_need_the_issuer_the_key_and_this_audience() {
        let d = tempfile::tempdir().unwrap();
        let (pkcs8, x) = keypair();
        let (other, _) = keypair();
        std::fs::write(
            d.path().join("jwks.json"),
            serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "alg": "EdDSA", "use": "sig"}]}).to_string(),
        )
        .unwrap();
        let cfg = Http {
            jwt: Some(vane_core::config::http::Jwt {
                issuer: "https://auth.example".into(),
                jwks_file: "jwks.json".into(),
                audience: None,
                leeway_s: 0,
            }),
            ..Http::default()
        };
        let resource = "http://127.0.0.1:8731/mcp";
        let t = Tokens::load(&cfg, d.path(), resource).unwrap();
        assert!(!t.is_empty());
        let exp = (std::time::SystemTime::now() + std::time::Duration::from_secs(600))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = |iss: &str, aud: &str, exp: u64, scope: &str| serde_json::json!({"iss": iss, "aud": aud, "exp": exp, "sub": "agent", "scope": scope});
        let ok = sign(
            &pkcs8,
            "k1",
            claims("https://auth.example", resource, exp, "tools"),
        );
        assert_eq!(t.check(&ok).map(|g| g.admin), Some(false));
        let admin = sign(
            &pkcs8,
            "k1",
            claims("https://auth.example", resource, exp, "tools admin"),
        );
        assert_eq!(t.check(&admin).map(|g| g.admin), Some(true));
        // another audience (a token minted for another server), another
        // issuer, an expired token, another key: refused
        let aud = sign(
            &pkcs8,
            "k1",
            claims("https://auth.example", "http://other/mcp", exp, "tools"),
        );
        assert_eq!(t.check(&aud).map(|g| g.admin), None);
        let iss = sign(
            &pkcs8,
            "k1",
            claims("https://evil.example", resource, exp, "tools"),
        );
        assert_eq!(t.check(&iss).map(|g| g.admin), None);
        let old = sign(
            &pkcs8,
            "k1",
            claims("https://auth.example", resource, 1_000, "tools"),
        );
        assert_eq!(t.check(&old).map(|g| g.admin), None);
        let forged = sign(
            &other,
            "k1",
            claims("https://auth.example", resource, exp, "admin"),
        );
        assert_eq!(t.check(&forged).map(|g| g.admin), None);
        assert_eq!(t.check("a.b.c").map(|g| g.admin), None);
        // a JWKS file that is missing or empty is a configuration error
        std::fs::write(d.path().join("jwks.json"), r#"{"keys": []}"#).unwrap();
        assert!(Tokens::load(&cfg, d.path(), resource).is_err());
    }

    #[test]
    fn tokens_are_checked_by_hash_with_their_scopes() {
        let mut t = Tokens::default();
        t.add_plain(
            "reader-token-0123456789, admin-token-0123456789:tools+admin",
            "env",
        )
        .unwrap();
        assert_eq!(
            t.check("reader-token-0123456789").map(|g| g.admin),
            Some(false)
        );
        assert_eq!(
            t.check("admin-token-0123456789").map(|g| g.admin),
            Some(true)
        );
        assert_eq!(t.check("reader-token-012345678").map(|g| g.admin), None);
        // a client's label: the same for its token every time, another for
        // another token, never the token itself
        let label = |tok: &str| t.check(tok).unwrap().client.unwrap();
        assert_eq!(
            label("reader-token-0123456789"),
            label("reader-token-0123456789")
        );
        assert_ne!(
            label("reader-token-0123456789"),
            label("admin-token-0123456789")
        );
        assert!(!label("reader-token-0123456789").contains("0123456789"));
        assert_eq!(t.check("").map(|g| g.admin), None);
        let (token, line) = Tokens::generate(true).unwrap();
        assert!(!line.contains(&token), "only the hash is stored");
        let mut f = Tokens::default();
        f.add_hashed(&format!("# team tokens\n{line}\n"), "file")
            .unwrap();
        assert_eq!(f.check(&token).map(|g| g.admin), Some(true));
        assert!(f.add_hashed("sha256:zz tools", "file").is_err());
        assert!(f.add_hashed("plain-token tools", "file").is_err());
        assert!(t.add_plain("short", "env").is_err());
        assert!(t.add_plain("long-enough-token-000:root", "env").is_err());
    }
}
