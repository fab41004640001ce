//! The front's control socket protocol: one JSON request per line, one JSON
//! answer per line. Requests carry the front's token beside their `op`;
//! answers are `{"ok": true, "result": …}` or `{"ok": false, "error":
//! {code, message, details}}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::VaneError;

/// What the operator (the CLI, `vane upgrade`) asks a front.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    /// the health view ([`super::health::HealthView`])
    Workers,
    /// start a live worker from the canary's binary and route to it
    Promote,
    /// route back to the standby
    Rollback,
    /// start a dry-run canary from an executable
    CanaryStart {
        binary: String,
    },
    CanaryStop,
    /// a read-only call on the active worker and on the canary, compared
    Probe {
        tool: String,
        #[serde(default)]
        arguments: Map<String, Value>,
    },
    /// a read-only call on the active worker
    Call {
        tool: String,
        #[serde(default)]
        arguments: Map<String, Value>,
    },
    /// a call on the canary alone (a dry run)
    CanaryCall {
        tool: String,
        #[serde(default)]
        arguments: Map<String, Value>,
    },
}

impl ControlRequest {
    /// Every `op`, for the error that names the allowed ones.
    pub const OPS: [&'static str; 8] = [
        "workers",
        "promote",
        "rollback",
        "canary_start",
        "canary_stop",
        "probe",
        "call",
        "canary_call",
    ];
}

/// A request as it travels: the operation and the front's token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlEnvelope {
    #[serde(flatten)]
    pub request: ControlRequest,
    #[serde(default)]
    pub token: String,
}

/// A front's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlAnswer {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

impl From<Result<Value, VaneError>> for ControlAnswer {
    fn from(r: Result<Value, VaneError>) -> Self {
        match r {
            Ok(v) => ControlAnswer {
                ok: true,
                result: Some(v),
                error: None,
            },
            Err(e) => ControlAnswer {
                ok: false,
                result: None,
                error: Some(e.to_json()["error"].clone()),
            },
        }
    }
}

impl ControlAnswer {
    /// The result, or the front's error as the same typed error.
    pub fn into_result(self) -> Result<Value, VaneError> {
        if self.ok {
            Ok(self.result.unwrap_or(Value::Null))
        } else {
            Err(VaneError::from_wire(&self.error.unwrap_or(Value::Null)))
        }
    }
}

/// What the canary answered to [`ControlRequest::Probe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeSide {
    pub worker: u64,
    pub is_error: bool,
}

/// The answer to [`ControlRequest::Probe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeAnswer {
    pub tool: String,
    pub active: ProbeSide,
    pub canary: ProbeSide,
    pub same: bool,
    #[serde(default)]
    pub difference: Option<Value>,
    /// every read pair saw a different store revision (clients were
    /// writing) and differed beyond it: not compared (`same` stays true —
    /// nothing was found to differ — and the canary's shadow counts it as
    /// skipped)
    #[serde(default)]
    pub moved: bool,
}

/// The answer to [`ControlRequest::Call`] and [`ControlRequest::CanaryCall`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallAnswer {
    pub is_error: bool,
    #[serde(default)]
    pub result: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::json;

    #[test]
    fn requests_keep_their_wire_shape() {
        let e = ControlEnvelope {
            request: ControlRequest::CanaryStart {
                binary: "/x/vane".into(),
            },
            token: "t".into(),
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"op": "canary_start", "binary": "/x/vane", "token": "t"})
        );
        let p: ControlEnvelope =
            serde_json::from_value(json!({"op": "probe", "tool": "status", "token": "t"})).unwrap();
        assert!(
            matches!(p.request, ControlRequest::Probe { ref tool, ref arguments } if tool == "status" && arguments.is_empty())
        );
        let w: ControlEnvelope = serde_json::from_value(json!({"op": "workers"})).unwrap();
        assert_eq!(w.request, ControlRequest::Workers);
        assert!(serde_json::from_value::<ControlEnvelope>(json!({"op": "explode"})).is_err());
        assert!(serde_json::from_value::<ControlEnvelope>(json!({"op": "canary_start"})).is_err());
        for op in ControlRequest::OPS {
            let v = match op {
                "canary_start" => json!({"op": op, "binary": "b"}),
                "probe" | "call" | "canary_call" => json!({"op": op, "tool": "status"}),
                _ => json!({"op": op}),
            };
            assert!(serde_json::from_value::<ControlRequest>(v).is_ok(), "{op}");
        }
    }

    #[test]
    fn answers_carry_typed_errors() {
        let a: ControlAnswer = Err(VaneError::new(ErrorCode::Unauthorized, "no")).into();
        let wire = serde_json::to_string(&a).unwrap();
        let back: ControlAnswer = serde_json::from_str(&wire).unwrap();
        assert_eq!(
            back.into_result().unwrap_err().code,
            ErrorCode::Unauthorized
        );
        let ok: ControlAnswer = Ok(json!({"x": 1})).into();
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            json!({"ok": true, "result": {"x": 1}})
        );
    }
}
