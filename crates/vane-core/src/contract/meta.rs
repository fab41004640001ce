//! `_meta` keys on MCP messages between a front and its workers (and the
//! tool list's own `_meta`). Clients may send the idempotency key; the other
//! request keys are the front's, and a worker trusts `SELF_CHECK` only with
//! the front's secret.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// On a forwarded request: who the client is ([`ClientMeta`]), so the worker
/// logs and traces the client's request, not the front's.
pub const CLIENT: &str = "vane/client";
/// On a mutating request: the key that makes a retry a replay.
pub const IDEMPOTENCY_KEY: &str = "vane/idempotency_key";
/// The same, as clients outside vane spell it.
pub const IDEMPOTENCY_KEY_PLAIN: &str = "idempotency_key";
/// On an answer: it was replayed from the idempotency record, not run again.
pub const IDEMPOTENT_REPLAY: &str = "vane/idempotent_replay";
/// On the front's readiness probe: the front's secret (not traffic).
pub const SELF_CHECK: &str = "vane/self_check";
/// On a tool in `tools/list`: the argument values that make a call mutate.
pub const MUTATES_WHEN: &str = "vane/mutates_when";
/// On a tool in `tools/list`: an admin tool (the ADMIN_TOOLS flag, and over
/// HTTP the admin scope, gate it).
pub const ADMIN: &str = "vane/admin";
/// The client's progress token, which the front does not relay.
pub const PROGRESS_TOKEN: &str = "progressToken";

/// The value of [`CLIENT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ClientMeta {
    /// the client's JSON-RPC request id: a string as it is, a number as its digits
    #[serde(default)]
    pub request_id: Option<String>,
    /// the protocol version the client negotiated with the front
    #[serde(default)]
    pub protocol_version: Value,
    /// the front's session (one per client connection)
    #[serde(default)]
    pub session_id: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_meta_reads_what_older_fronts_wrote() {
        let m: ClientMeta = serde_json::from_str(
            r#"{"request_id":"7","protocol_version":"2025-06-18","session_id":"s1"}"#,
        )
        .unwrap();
        assert_eq!(m.request_id.as_deref(), Some("7"));
        assert_eq!(m.protocol_version, "2025-06-18");
        let partial: ClientMeta = serde_json::from_str(r#"{"session_id":"s1"}"#).unwrap();
        assert_eq!(partial.request_id, None);
        assert!(serde_json::from_str::<ClientMeta>(r#"{"request_id":7}"#).is_err());
    }
}
