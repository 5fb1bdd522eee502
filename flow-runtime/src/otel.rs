//! OpenTelemetry export of flow's `tracing` spans (cargo feature `otel`): each run as one
//! trace in Jaeger, Tempo or any OTLP backend.
//!
//! The engine opens a `run` span (fields `run_id`, `workflow`, `version`) each time a
//! driver takes a run up, and an `attempt` span (`step`, `branch`, `task`, `attempt`)
//! inside it for each task attempt. A run is driven by many drivers over its life: one
//! per wake-up, in whichever process holds the journal, before and after restarts. So
//! that they all land in one trace, every `run` span gets the same parent: a span
//! context whose trace ID ([`trace_id`]) and span ID ([`root_span_id`]) are computed
//! from the run ID alone. That root span is never exported (no process sees the whole
//! run); trace viewers show the `run` spans as the trace's top level, Jaeger with a note
//! that their parent is missing.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use flow::otel::opentelemetry::trace::TracerProvider as _;
//! use tracing_subscriber::layer::SubscriberExt as _;
//! use tracing_subscriber::util::SubscriberInitExt as _;
//!
//! // OTLP over HTTP to a local collector, Jaeger or Tempo (port 4318).
//! let provider = flow::otel::otlp_provider("orders", "http://127.0.0.1:4318/v1/traces")?;
//! tracing_subscriber::registry()
//!     .with(flow::otel::layer(provider.tracer("flow")))
//!     .init();
//! // ... open the engine, run workflows ...
//! provider.shutdown()?; // sends the spans still buffered
//! # Ok(()) }
//! ```

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};

use crate::error::FlowError;

/// The OpenTelemetry crates this module is built on, at the versions it uses: name the
/// tracer provider's trait, build your own provider or exporter with these.
pub use {opentelemetry, opentelemetry_sdk, tracing_opentelemetry};

/// The trace ID of run `run_id`: the same in every process and after every restart,
/// so that all of a run's spans share one trace. A 128-bit FNV-1a hash of the run ID
/// (never the invalid all-zero ID).
pub fn trace_id(run_id: &str) -> TraceId {
    TraceId::from_bytes(nonzero(fnv1a_128(b"flow-run-trace", run_id)).to_be_bytes())
}

/// The span ID of the run's root span, the parent of every `run` span of the run; never
/// exported (see the module docs).
pub fn root_span_id(run_id: &str) -> SpanId {
    let hash = nonzero(fnv1a_128(b"flow-run-root", run_id));
    SpanId::from_bytes((hash as u64).to_be_bytes())
}

/// The span context of run `run_id`'s root: remote (its span lives in no process) and
/// sampled, so that a parent-based sampler keeps the run's spans.
pub fn run_context(run_id: &str) -> SpanContext {
    SpanContext::new(
        trace_id(run_id),
        root_span_id(run_id),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    )
}

/// A `tracing` layer that exports flow's spans (and the application's own) through
/// `tracer`: [`tracing_opentelemetry::layer`] with the tracer set. Add it to the
/// subscriber before the engine opens.
pub fn layer<S, T>(tracer: T) -> OpenTelemetryLayer<S, T>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    T: opentelemetry::trace::Tracer + 'static,
    T::Span: Send + Sync,
{
    tracing_opentelemetry::layer().with_tracer(tracer)
}

/// A tracer provider that sends spans in batches over OTLP/HTTP (protobuf) to
/// `endpoint` (a collector's, Jaeger's or Tempo's traces URL, e.g.
/// `http://127.0.0.1:4318/v1/traces`), naming the process `service_name`. Call its
/// `shutdown` before the process ends, or the last batch is lost.
pub fn otlp_provider(
    service_name: &str,
    endpoint: &str,
) -> Result<opentelemetry_sdk::trace::SdkTracerProvider, FlowError> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| {
            FlowError::storage(format!(
                "could not build the OTLP exporter for `{endpoint}`: {e} (expected an \
                 http:// URL of a collector's traces endpoint, e.g. \
                 http://127.0.0.1:4318/v1/traces)"
            ))
        })?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_string())
        .build();
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Makes `span` (a driver's `run` span) a child of run `run_id`'s root. Without an
/// OpenTelemetry layer in the subscriber it does nothing.
pub(crate) fn adopt(span: &tracing::Span, run_id: &str) {
    if span.is_disabled() {
        // No subscriber wants it: skip building the context (a driver starts per wake-up).
        return;
    }
    let parent = Context::new().with_remote_span_context(run_context(run_id));
    // No layer, or no subscriber: nothing to export, nothing to do.
    let _ = span.set_parent(parent);
}

/// FNV-1a over `domain` then `text` (128 bits): stable across builds and platforms,
/// unlike std's hasher.
fn fnv1a_128(domain: &[u8], text: &str) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut hash = OFFSET;
    for byte in domain.iter().chain([0u8].iter()).chain(text.as_bytes()) {
        hash ^= u128::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

fn nonzero(hash: u128) -> u128 {
    if hash as u64 == 0 || hash >> 64 == 0 {
        hash | 1 | (1 << 64)
    } else {
        hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_the_run_id_only_and_are_valid() {
        assert_eq!(trace_id("order-7"), trace_id("order-7"));
        assert_ne!(trace_id("order-7"), trace_id("order-8"));
        assert_ne!(trace_id(""), TraceId::INVALID);
        assert_ne!(root_span_id(""), SpanId::INVALID);
        // Fixed across builds: a trace found yesterday is found again today.
        assert_eq!(
            trace_id("order-7").to_string(),
            "46f1c632f40198e2d6c4c7e11445f605"
        );
        let cx = run_context("order-7");
        assert!(cx.is_valid() && cx.is_remote() && cx.is_sampled());
    }
}
