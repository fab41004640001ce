//! A small MCP client over a child process's stdio (the rmcp client), used by
//! `vane demo`, the end-to-end tests and the benchmarks: they all talk to a
//! real `vane` process exactly as Claude Code or Codex would.

use std::path::Path;
use std::process::Stdio;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientConfig, ReadResourceRequestParams, Tool,
};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;

/// A client handler that counts `notifications/tools/list_changed`.
#[derive(Debug, Clone, Default)]
pub struct PlainClient {
    pub tool_list_changes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl rmcp::ClientHandler for PlainClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::default()
    }

    async fn on_tool_list_changed(&self, _context: rmcp::service::NotificationContext<RoleClient>) {
        self.tool_list_changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

pub type ClientError = Box<dyn std::error::Error + Send + Sync>;

pub struct Client {
    pub service: RunningService<RoleClient, PlainClient>,
    pub pid: Option<u32>,
    /// how many `notifications/tools/list_changed` arrived
    pub tool_list_changes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Client {
    /// Starts `bin args…` and completes the MCP handshake. The child's stderr
    /// is inherited unless `quiet`.
    pub async fn spawn(
        bin: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        quiet: bool,
    ) -> Result<Client, ClientError> {
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (transport, _stderr) = TokioChildProcess::builder(cmd)
            .stderr(if quiet {
                Stdio::null()
            } else {
                Stdio::inherit()
            })
            .spawn()?;
        let pid = transport.id();
        let handler = PlainClient::default();
        let tool_list_changes = handler.tool_list_changes.clone();
        let service = handler.serve(transport).await?;
        Ok(Client {
            service,
            pid,
            tool_list_changes,
        })
    }

    pub async fn call(&self, name: &str, args: Value) -> Result<CallToolResult, ClientError> {
        let mut p = CallToolRequestParams::new(name.to_string());
        if let Value::Object(m) = args {
            p = p.with_arguments(m);
        }
        Ok(self.service.call_tool(p).await?)
    }

    /// Calls a tool with `_meta` entries (e.g. an idempotency key).
    pub async fn call_with_meta(
        &self,
        name: &str,
        args: Value,
        meta: Value,
    ) -> Result<CallToolResult, ClientError> {
        let mut p = CallToolRequestParams::new(name.to_string());
        if let Value::Object(m) = args {
            p = p.with_arguments(m);
        }
        if let Value::Object(m) = meta {
            p.meta = Some(rmcp::model::RequestMetaObject(rmcp::model::MetaObject(m)));
        }
        Ok(self.service.call_tool(p).await?)
    }

    /// Calls a tool and returns its structured content; an `isError` result
    /// becomes an error carrying the error object.
    pub async fn call_ok(&self, name: &str, args: Value) -> Result<Value, ClientError> {
        let r = self.call(name, args).await?;
        let sc = r.structured_content.clone().unwrap_or(Value::Null);
        if r.is_error == Some(true) {
            return Err(format!("{name} failed: {sc}").into());
        }
        Ok(sc)
    }

    /// Calls a tool that must fail and returns its `error` object.
    pub async fn call_err(&self, name: &str, args: Value) -> Result<Value, ClientError> {
        let r = self.call(name, args).await?;
        if r.is_error != Some(true) {
            return Err(
                format!("{name} unexpectedly succeeded: {:?}", r.structured_content).into(),
            );
        }
        Ok(r.structured_content
            .and_then(|v| v.get("error").cloned())
            .unwrap_or(Value::Null))
    }

    pub async fn tools(&self) -> Result<Vec<Tool>, ClientError> {
        Ok(self.service.list_all_tools().await?)
    }

    pub async fn read_text(&self, uri: &str) -> Result<String, ClientError> {
        let r = self
            .service
            .read_resource(ReadResourceRequestParams::new(uri))
            .await?;
        let v = serde_json::to_value(&r.contents)?;
        Ok(v.get(0)
            .and_then(|c| c.get("text"))
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string())
    }

    pub async fn close(self) {
        let _ = self.service.cancel().await;
    }
}
