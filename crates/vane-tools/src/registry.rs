//! The tool registry and the pipeline every call goes through.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};
use vane_core::{ErrorCode, VaneError};

use crate::ctx::ToolCtx;

type BoxFut = Pin<Box<dyn Future<Output = Result<Value, VaneError>> + Send>>;
type Handler = Arc<dyn Fn(Arc<ToolCtx>, Value) -> BoxFut + Send + Sync>;

/// Behaviour hints published with the tool (MCP annotations).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Hints {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
}

pub const READ: Hints = Hints {
    read_only: true,
    destructive: false,
    idempotent: true,
    open_world: false,
};
pub const WRITE: Hints = Hints {
    read_only: false,
    destructive: false,
    idempotent: false,
    open_world: false,
};

pub struct ToolDef {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub notes: &'static str,
    pub hints: Hints,
    /// listed and callable only with the ADMIN_TOOLS flag
    pub admin: bool,
    /// the handler itself decides what it may do in dry-run mode
    pub dry_run_aware: bool,
    /// mutating only when this argument is present (see [`ToolDef::mutates_when`])
    pub mutates_when: Option<&'static str>,
    /// keeps free text in the store: its arguments pass through redaction
    pub stores_text: bool,
    /// the answer's text block, when not its JSON (see [`ToolDef::text`])
    pub text: Option<fn(&Value) -> String>,
    /// what `tools/list` publishes: [`crate::schema::for_models`] of the full one
    pub input_schema: Arc<Map<String, Value>>,
    /// every call's arguments are checked against this; `tool_manifest` publishes it
    pub input_schema_full: Arc<Map<String, Value>>,
    /// what `tools/list` publishes: [`crate::schema::shallow`] of the full one
    pub output_schema: Arc<Map<String, Value>>,
    /// every answer is checked against this; `tool_manifest` publishes it
    pub output_schema_full: Arc<Map<String, Value>>,
    input_validator: OnceLock<Option<jsonschema::Validator>>,
    output_validator: OnceLock<Option<jsonschema::Validator>>,
    handler: Handler,
    decode: fn(&Value) -> Result<(), VaneError>,
}

/// How deep a published output schema describes an answer (see
/// [`crate::schema::shallow`]): its fields and their types.
pub const OUTPUT_DEPTH: usize = 1;

fn schema_of<T: JsonSchema>(purpose: crate::schema::Purpose) -> Map<String, Value> {
    let mut v = serde_json::to_value(schemars::schema_for!(T))
        .unwrap_or_else(|_| json!({"type": "object"}));
    if let Value::Object(m) = &mut v {
        m.remove("$schema");
        if !m.contains_key("type") {
            m.insert("type".into(), json!("object"));
        }
        crate::schema::portable(m);
        crate::schema::compact(m, purpose);
        return m.clone();
    }
    Map::new()
}

/// Declares a tool from a typed handler.
pub fn tool<I, O, F, Fut>(
    name: &'static str,
    title: &'static str,
    description: &'static str,
    notes: &'static str,
    hints: Hints,
    f: F,
) -> ToolDef
where
    I: DeserializeOwned + JsonSchema + Send + 'static,
    O: Serialize + JsonSchema + 'static,
    F: Fn(Arc<ToolCtx>, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, VaneError>> + Send + 'static,
{
    let input_full = schema_of::<I>(crate::schema::Purpose::Input);
    let output_full = schema_of::<O>(crate::schema::Purpose::Output);
    let f = Arc::new(f);
    let handler: Handler = Arc::new(move |ctx, args| {
        let f = f.clone();
        Box::pin(async move {
            let input: I = serde_json::from_value(args)
                .map_err(|e| VaneError::invalid_input(format!("arguments: {e}")))?;
            let out = f(ctx, input).await?;
            serde_json::to_value(out)
                .map_err(|e| VaneError::internal(format!("output not serialisable: {e}")))
        })
    });
    ToolDef {
        name,
        title,
        description,
        notes,
        hints,
        admin: false,
        dry_run_aware: false,
        mutates_when: None,
        stores_text: false,
        text: None,
        input_schema: Arc::new(crate::schema::for_models(&input_full)),
        input_schema_full: Arc::new(input_full),
        output_schema: Arc::new(crate::schema::shallow(&output_full, OUTPUT_DEPTH)),
        output_schema_full: Arc::new(output_full),
        input_validator: OnceLock::new(),
        output_validator: OnceLock::new(),
        handler,
        decode: |v| {
            I::deserialize(v)
                .map(|_| ())
                .map_err(|e| VaneError::invalid_input(format!("arguments: {e}")))
        },
    }
}

impl ToolDef {
    /// Steps 4–5 of the pipeline: unknown fields (naming the allowed ones),
    /// then the input schema. The arguments as one JSON value.
    pub fn check_args(&self, args: Map<String, Value>) -> Result<Value, VaneError> {
        // Unknown fields first, with the allowed names: the clearest message.
        if self.input_schema.get("additionalProperties") == Some(&Value::Bool(false)) {
            let allowed: Vec<&str> = self
                .input_schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let unknown: Vec<&str> = args
                .keys()
                .map(String::as_str)
                .filter(|k| !allowed.contains(k))
                .collect();
            if !unknown.is_empty() {
                return Err(VaneError::invalid_input(format!(
                    "{}: unknown field(s) {}; allowed: {}",
                    self.name,
                    unknown
                        .iter()
                        .map(|u| format!("`{u}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ))
                .with_details(json!({ "unknown": unknown, "allowed": allowed })));
            }
        }
        let args = Value::Object(args);
        if let Some(v) = validator(&self.input_validator, &self.input_schema_full) {
            let problems: Vec<Value> = v
                .iter_errors(&args)
                .take(10)
                .map(|e| json!({ "path": e.instance_path().to_string(), "problem": e.to_string() }))
                .collect();
            if !problems.is_empty() {
                let first = problems[0]["problem"]
                    .as_str()
                    .unwrap_or("invalid")
                    .to_string();
                let at = problems[0]["path"].as_str().unwrap_or("").to_string();
                return Err(VaneError::invalid_input(format!(
                    "{}: {first}{}",
                    self.name,
                    if at.is_empty() {
                        String::new()
                    } else {
                        format!(" (at {at})")
                    }
                ))
                .with_details(json!({ "problems": problems, "schema": "see tool_manifest" })));
            }
        }
        Ok(args)
    }

    /// The typed decode a handler starts with, without running it.
    pub fn decode(&self, args: &Value) -> Result<(), VaneError> {
        (self.decode)(args)
    }

    /// Marks a tool that keeps its free text (context, notes, decisions,
    /// reasons, metadata) in the store: secrets in its arguments are masked
    /// before the handler sees them, so they never reach the store, the
    /// exports or the answers. (`fs_write` and `cmd_run` are not marked:
    /// writing a file or running a command is the agent's own act.)
    pub fn stores_text(mut self) -> ToolDef {
        self.stores_text = true;
        self
    }

    /// Renders the text block of a successful answer from its structured
    /// content: the compact form a model reads best, carrying the same
    /// facts (tests check that the two agree). Without it, the text block
    /// is the structured content as JSON.
    pub fn text(mut self, render: fn(&Value) -> String) -> ToolDef {
        self.text = Some(render);
        self
    }

    /// Marks a mutating tool that handles dry-run mode itself.
    pub fn dry_run_aware(mut self) -> ToolDef {
        self.dry_run_aware = true;
        self
    }

    /// A tool annotated as mutating that only changes state when `field` is
    /// in its arguments (`plan_next` with `claim`); without it the call is a
    /// read: no idempotency record, and a front may shadow it to a canary.
    /// Published as `_meta["vane/mutates_when"]` on the tool.
    pub fn mutates_when(mut self, field: &'static str) -> ToolDef {
        self.mutates_when = Some(field);
        self
    }

    /// Does this call change state?
    pub fn mutates(&self, args: Option<&Map<String, Value>>) -> bool {
        if self.hints.read_only {
            return false;
        }
        match self.mutates_when {
            Some(f) => args.is_some_and(|a| a.get(f).is_some_and(|v| !v.is_null())),
            None => true,
        }
    }

    /// Marks an admin tool.
    pub fn admin(mut self) -> ToolDef {
        self.admin = true;
        self
    }
}

/// The error a dry-run worker returns for a mutation.
pub fn dry_run_refusal(what: &str) -> VaneError {
    VaneError::new(
        ErrorCode::DryRunNoMutation,
        format!("`{what}` would change state, and this worker is a dry run (VANE_DRY_RUN=1): nothing was changed"),
    )
}

fn validator<'a>(
    cell: &'a OnceLock<Option<jsonschema::Validator>>,
    schema: &Map<String, Value>,
) -> Option<&'a jsonschema::Validator> {
    cell.get_or_init(|| jsonschema::validator_for(&Value::Object(schema.clone())).ok())
        .as_ref()
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The outcome of one call: structured content or a typed error.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    pub result: Result<Value, VaneError>,
    /// set when the output budget cut the result
    pub truncated: Option<Value>,
}

pub struct Registry {
    tools: Vec<ToolDef>,
}

/// Who makes a call. An agent (an MCP client) gets admin tools only while
/// the ADMIN_TOOLS flag is on; the operator (the CLI, run by the owner of
/// the state directory on this machine) may use them whatever the flag —
/// every other step of the pipeline is the same for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Agent,
    Operator,
}

impl Registry {
    pub fn new(tools: Vec<ToolDef>) -> Registry {
        Registry { tools }
    }

    pub fn tools(&self) -> &[ToolDef] {
        &self.tools
    }

    /// Everything the pipeline checks about a call's arguments before a
    /// handler runs (tool known, unknown fields, schema, typed decode) —
    /// nothing is executed. What the fuzz target of argument decoding drives.
    pub fn validate(&self, name: &str, args: Map<String, Value>) -> Result<(), VaneError> {
        let def = self.get(name).ok_or_else(|| {
            VaneError::new(ErrorCode::NotFound, format!("no tool named `{name}`"))
        })?;
        let v = def.check_args(args)?;
        def.decode(&v)
    }

    pub fn get(&self, name: &str) -> Option<&ToolDef> {
        self.tools.iter().find(|t| t.name == name)
    }

    /// The pipeline: validate input, run the handler (panics caught), validate
    /// output, apply the size budget.
    pub async fn call(
        &self,
        ctx: &Arc<ToolCtx>,
        name: &str,
        args: Option<Map<String, Value>>,
    ) -> CallOutcome {
        self.call_as(ctx, name, args, Caller::Agent).await
    }

    /// [`Registry::call`] on behalf of `caller`.
    pub async fn call_as(
        &self,
        ctx: &Arc<ToolCtx>,
        name: &str,
        args: Option<Map<String, Value>>,
        caller: Caller,
    ) -> CallOutcome {
        let result = self.call_inner(ctx, name, args, caller).await;
        match result {
            Ok(v) => {
                let (v, truncated) = budget(ctx, name, v);
                CallOutcome {
                    result: Ok(v),
                    truncated,
                }
            }
            Err(e) => CallOutcome {
                result: Err(e),
                truncated: None,
            },
        }
    }

    async fn call_inner(
        &self,
        ctx: &Arc<ToolCtx>,
        name: &str,
        args: Option<Map<String, Value>>,
        caller: Caller,
    ) -> Result<Value, VaneError> {
        let Some(def) = self.get(name) else {
            let names: Vec<&str> = self.tools.iter().map(|t| t.name).collect();
            return Err(
                VaneError::new(ErrorCode::NotFound, format!("no tool named `{name}`"))
                    .with_details(json!({ "tools": names })),
            );
        };
        if def.admin && caller == Caller::Agent && !ctx.flags().admin_tools {
            return Err(VaneError::new(
                ErrorCode::AdminDisabled,
                format!("`{name}` is an admin tool; admin tools are off (set ADMIN_TOOLS=1 with `vane flags set ADMIN_TOOLS 1`)"),
            ));
        }
        if ctx.dry_run() && !def.hints.read_only && !def.dry_run_aware {
            return Err(dry_run_refusal(name));
        }
        let mut args = def.check_args(args.unwrap_or_default())?;
        if def.stores_text {
            vane_core::redact::redact_value(&mut args);
        }
        let handler = def.handler.clone();
        let ctx2 = ctx.clone();
        // A spawned task turns a panic into a JoinError instead of unwinding
        // through the server.
        // a keyed call's journal follows the handler into its task
        let journal = vane_store::journal::current();
        let task = tokio::spawn(vane_store::journal::scope(journal, async move {
            handler(ctx2, args).await
        }));
        // If this call is dropped (the client cancelled it, or the front's
        // timeout did), the handler is aborted with it: a command it runs is
        // killed (kill_on_drop) instead of running on unobserved.
        let _abort = AbortOnDrop(task.abort_handle());
        let out = task.await.map_err(|e| {
            VaneError::internal(format!("tool `{name}` failed unexpectedly: {e}"))
        })??;
        if let Some(v) = validator(&def.output_validator, &def.output_schema_full) {
            if let Some(err) = v.iter_errors(&out).next() {
                return Err(VaneError::internal(format!(
                    "tool `{name}` produced output that violates its schema: {err} at {}",
                    err.instance_path()
                )));
            }
        }
        Ok(out)
    }

    /// Every tool as `tool_manifest` publishes it.
    pub fn manifest(&self) -> Vec<Value> {
        self.tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "title": t.title,
                    "description": t.description,
                    "notes": t.notes,
                    "admin": t.admin,
                    "annotations": {
                        "readOnlyHint": t.hints.read_only,
                        "destructiveHint": t.hints.destructive,
                        "idempotentHint": t.hints.idempotent,
                        "openWorldHint": t.hints.open_world,
                    },
                    "inputSchema": Value::Object((*t.input_schema_full).clone()),
                    "outputSchema": Value::Object((*t.output_schema_full).clone()),
                })
            })
            .collect()
    }
}

/// Cuts results larger than the output budget: the longest strings are
/// shortened (head and tail kept) until the result fits, and the full result
/// is stored as an artifact the truncated one links to.
fn budget(ctx: &Arc<ToolCtx>, tool: &str, v: Value) -> (Value, Option<Value>) {
    let limit = ctx.config.limits.output_token_budget.saturating_mul(4);
    let full = v.to_string();
    if full.len() <= limit {
        return (v, None);
    }
    if ctx.dry_run() {
        // a dry run keeps nothing, not even the full text of a long result
        let mut cut = v;
        if let Value::Object(m) = &mut cut {
            for (_, val) in m.iter_mut() {
                if let Value::String(s) = val {
                    if s.len() > limit / 2 {
                        let keep = floor_char(s, limit / 2);
                        s.truncate(keep);
                    }
                }
            }
            m.insert("truncated_output".into(), json!({ "notice": "output exceeded the budget; a dry run does not keep the full text", "original_bytes": full.len() }));
        }
        return (cut, None);
    }
    let artifact = ctx.store.record_artifact(
        "tool_output",
        None,
        &json!({ "tool": tool, "bytes": full.len() }),
        None,
        // the kept copy of a long answer is an artifact like any other: masked
        Some(vane_core::redact::redact(&full).as_bytes()),
    );
    let mut cut = v;
    let mut size = full.len();
    // shorten the largest string leaf repeatedly
    for _ in 0..64 {
        if size <= limit {
            break;
        }
        let Some(ptr) = largest_string(&cut, String::new()) else {
            break;
        };
        let Some(Value::String(s)) = cut.pointer_mut(&ptr) else {
            break;
        };
        let excess = size - limit + 200;
        let keep = s.len().saturating_sub(excess);
        let head_len = floor_char(s, keep / 2);
        let tail_start = ceil_char(s, s.len() - (keep - keep / 2));
        let omitted = tail_start.saturating_sub(head_len);
        let new = format!(
            "{}\n…[{omitted} bytes cut by the output budget]…\n{}",
            &s[..head_len],
            &s[tail_start..]
        );
        *s = new;
        size = cut.to_string().len();
    }
    let notice = match &artifact {
        Ok(a) => json!({
            "notice": format!("output exceeded the budget of {} tokens; the full result is the resource {}", ctx.config.limits.output_token_budget, a.uri),
            "artifact_uri": a.uri, "original_bytes": full.len()
        }),
        Err(e) => {
            json!({ "notice": format!("output exceeded the budget; keeping the full text failed: {}", e.message), "original_bytes": full.len() })
        }
    };
    if let Value::Object(m) = &mut cut {
        m.insert("truncated_output".into(), notice.clone());
    }
    (cut, Some(notice))
}

fn floor_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

fn largest_string(v: &Value, at: String) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    fn walk(v: &Value, at: String, best: &mut Option<(usize, String)>) {
        match v {
            Value::String(s) if best.as_ref().is_none_or(|(n, _)| s.len() > *n) => {
                *best = Some((s.len(), at));
            }
            Value::String(_) => {}
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, c)| walk(c, format!("{at}/{i}"), best)),
            Value::Object(m) => m.iter().for_each(|(k, c)| {
                walk(
                    c,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    best,
                )
            }),
            _ => {}
        }
    }
    walk(v, at, &mut best);
    best.filter(|(n, _)| *n > 400).map(|(_, p)| p)
}
