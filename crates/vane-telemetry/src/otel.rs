//! OpenTelemetry: a span per MCP request (`{mcp.method.name} {tool}`, kind
//! server, the MCP semantic-convention attributes) and the
//! `mcp.server.operation.duration` histogram, exported over OTLP/HTTP when an
//! endpoint is configured. Without an endpoint no SDK is started; trace and
//! span ids are still generated (or taken from `traceparent`) so the
//! operations log can be joined with traces.

use std::time::Instant;

use opentelemetry::metrics::{Histogram, MeterProvider as _};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider};

pub struct Otel {
    tracer: Option<SdkTracer>,
    provider: Option<SdkTracerProvider>,
    meters: Option<SdkMeterProvider>,
    duration: Option<Histogram<f64>>,
    ids: RandomIdGenerator,
}

/// An MCP request in flight.
pub struct SpanHandle {
    span: Option<opentelemetry_sdk::trace::Span>,
    pub trace_id: String,
    pub span_id: String,
    pub start: Instant,
    method: String,
    tool: Option<String>,
}

/// Parses a W3C `traceparent` header value.
pub fn parse_traceparent(tp: &str) -> Option<SpanContext> {
    let parts: Vec<&str> = tp.trim().split('-').collect();
    if parts.len() < 4
        || parts[0].len() != 2
        || parts[1].len() != 32
        || parts[2].len() != 16
        || parts[3].len() != 2
    {
        return None;
    }
    let trace = TraceId::from_hex(parts[1]).ok()?;
    let span = SpanId::from_hex(parts[2]).ok()?;
    if trace == TraceId::INVALID || span == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(parts[3], 16).ok()?;
    Some(SpanContext::new(
        trace,
        span,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    ))
}

impl Otel {
    pub fn disabled() -> Otel {
        Otel {
            tracer: None,
            provider: None,
            meters: None,
            duration: None,
            ids: RandomIdGenerator::default(),
        }
    }

    /// Starts OTLP/HTTP export when `endpoint` (a base URL) or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Must be called outside an async
    /// runtime (the exporter's HTTP client is blocking and runs on the SDK's
    /// own threads).
    pub fn init(
        endpoint: Option<&str>,
        service: &str,
        version: &str,
        role: &str,
    ) -> Result<Otel, String> {
        let env = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|s| !s.is_empty());
        if endpoint.is_none() && env.is_none() {
            return Ok(Otel::disabled());
        }
        let base = endpoint.map(|e| e.trim_end_matches('/').to_string());
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service.to_string())
            .with_attributes([
                KeyValue::new("service.version", version.to_string()),
                KeyValue::new("vane.process.role", role.to_string()),
                KeyValue::new("process.pid", std::process::id() as i64),
            ])
            .build();
        let mut spans = opentelemetry_otlp::SpanExporter::builder().with_http();
        if let Some(b) = &base {
            spans = spans.with_endpoint(format!("{b}/v1/traces"));
        }
        let spans = spans
            .build()
            .map_err(|e| format!("OTLP span exporter: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(spans)
            .with_resource(resource.clone())
            .build();
        let mut metrics = opentelemetry_otlp::MetricExporter::builder().with_http();
        if let Some(b) = &base {
            metrics = metrics.with_endpoint(format!("{b}/v1/metrics"));
        }
        let metrics = metrics
            .build()
            .map_err(|e| format!("OTLP metric exporter: {e}"))?;
        let meters = SdkMeterProvider::builder()
            .with_periodic_exporter(metrics)
            .with_resource(resource)
            .build();
        let duration = meters
            .meter("vane")
            .f64_histogram("mcp.server.operation.duration")
            .with_unit("s")
            .with_description("Duration of MCP requests handled by the server")
            .build();
        let tracer = provider.tracer("vane");
        Ok(Otel {
            tracer: Some(tracer),
            provider: Some(provider),
            meters: Some(meters),
            duration: Some(duration),
            ids: RandomIdGenerator::default(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.tracer.is_some()
    }

    /// Starts the span of one MCP request.
    pub fn start(
        &self,
        method: &str,
        tool: Option<&str>,
        traceparent: Option<&str>,
        request_id: &str,
        session_id: &str,
        protocol_version: Option<&str>,
    ) -> SpanHandle {
        let parent = traceparent.and_then(parse_traceparent);
        let name = match tool {
            Some(t) => format!("{method} {t}"),
            None => method.to_string(),
        };
        let start = Instant::now();
        match &self.tracer {
            Some(tracer) => {
                let cx = match &parent {
                    Some(sc) => Context::new().with_remote_span_context(sc.clone()),
                    None => Context::new(),
                };
                let mut attrs = vec![
                    KeyValue::new("mcp.method.name", method.to_string()),
                    KeyValue::new("jsonrpc.request.id", request_id.to_string()),
                    KeyValue::new("mcp.session.id", session_id.to_string()),
                ];
                if let Some(t) = tool {
                    attrs.push(KeyValue::new("gen_ai.tool.name", t.to_string()));
                    attrs.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
                }
                if let Some(v) = protocol_version {
                    attrs.push(KeyValue::new("mcp.protocol.version", v.to_string()));
                }
                let span = tracer
                    .span_builder(name)
                    .with_kind(SpanKind::Server)
                    .with_attributes(attrs)
                    .start_with_context(tracer, &cx);
                let sc = span.span_context().clone();
                SpanHandle {
                    trace_id: sc.trace_id().to_string(),
                    span_id: sc.span_id().to_string(),
                    span: Some(span),
                    start,
                    method: method.to_string(),
                    tool: tool.map(str::to_string),
                }
            }
            None => SpanHandle {
                trace_id: parent
                    .map(|p| p.trace_id())
                    .unwrap_or_else(|| self.ids.new_trace_id())
                    .to_string(),
                span_id: self.ids.new_span_id().to_string(),
                span: None,
                start,
                method: method.to_string(),
                tool: tool.map(str::to_string),
            },
        }
    }

    /// Ends a span: `error.type = "tool_error"` when the result is an error.
    pub fn end(&self, mut h: SpanHandle, is_error: bool, error_code: Option<&str>) {
        let secs = h.start.elapsed().as_secs_f64();
        if let Some(span) = h.span.as_mut() {
            if is_error {
                span.set_attribute(KeyValue::new("error.type", "tool_error"));
                if let Some(c) = error_code {
                    span.set_attribute(KeyValue::new("vane.error.code", c.to_string()));
                }
                span.set_status(Status::error(
                    error_code.unwrap_or("tool_error").to_string(),
                ));
            }
            span.end();
        }
        if let Some(hist) = &self.duration {
            let mut attrs = vec![KeyValue::new("mcp.method.name", h.method.clone())];
            if let Some(t) = &h.tool {
                attrs.push(KeyValue::new("gen_ai.tool.name", t.clone()));
            }
            if is_error {
                attrs.push(KeyValue::new("error.type", "tool_error"));
            }
            hist.record(secs, &attrs);
        }
    }

    /// Flushes and stops exporters (call outside the async runtime).
    pub fn shutdown(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
            let _ = p.shutdown();
        }
        if let Some(m) = &self.meters {
            let _ = m.force_flush();
            let _ = m.shutdown();
        }
    }
}
