//! The daemon's logs: human-readable lines (`pretty`, the default) or one JSON object per line (`json`), on
//! stderr, colour only when stderr is a terminal (files and journald get plain text).
//!
//! The JSON shape is stable (fields are only ever added):
//!
//! ```json
//! {"timestamp":"2026-11-29T10:00:00.123456Z","level":"WARN","target":"chaintrigger::trigger::worker",
//!  "message":"push discarded after its retries; kept as a dead letter",
//!  "trigger":"task-audit","channel":"mychannel","event":"contract-42-…","attempts":3,"error":"…"}
//! ```
//!
//! - `timestamp` (RFC 3339, UTC, microseconds), `level` (`ERROR`, `WARN`, `INFO`, `DEBUG`, `TRACE`), `target` (the
//!   module) and `message` are always there;
//! - the event's own fields follow, then the fields of every span it happened in, innermost last: every line a
//!   trigger's worker logs carries `trigger` and `channel`, every line of a channel's feed `channel`;
//! - numbers and booleans stay JSON numbers and booleans; everything else is a string.
//!
//! `--log-format` (or `CHAINTRIGGER_LOG_FORMAT`) picks the format at start; without it, `serve` applies its
//! configuration file's `log_format` once the file is read ([`apply_configured`]).

use std::fmt;
use std::io::{IsTerminal, Write as _};
use std::str::FromStr;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Pretty,
    /// One JSON object per line, see the module documentation.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format `{}`: expected `pretty` or `json`",
                other.escape_debug()
            )),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Pretty => "pretty",
            LogFormat::Json => "json",
        })
    }
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The installed logger's formatting layer, and whether the command line chose its format (which then wins over
/// the configuration file's).
struct Installed {
    /// Replaces the formatting layer.
    handle: reload::Handle<BoxedLayer, Registry>,
    /// `--log-format` was given.
    pinned: bool,
}

/// Set by [`init`]; absent in tests and library use, where nothing is switched.
static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Applies a configuration file's `log_format`, unless the command line chose one (or no logger was installed by
/// [`init`]).
pub fn apply_configured(format: LogFormat) {
    if let Some(installed) = INSTALLED.get().filter(|installed| !installed.pinned)
        && let Err(error) = installed.handle.reload(layer(format))
    {
        tracing::warn!(%error, "cannot switch the log format");
    }
}

fn layer(format: LogFormat) -> BoxedLayer {
    match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        LogFormat::Json => JsonLines.boxed(),
    }
}

/// Installs the process's logger: `format` when the command line gave one (else pretty, until
/// [`apply_configured`]); `RUST_LOG` when set, else `default_filter` (e.g. `info`).
pub fn init(format: Option<LogFormat>, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let (formatting, handle) = reload::Layer::new(layer(format.unwrap_or_default()));
    tracing_subscriber::registry()
        .with(formatting)
        .with(filter)
        .init();
    let _ = INSTALLED.set(Installed {
        handle,
        pinned: format.is_some(),
    });
}

/// The JSON-lines layer: see the module documentation for the shape.
struct JsonLines;

/// A span's fields, kept in its extensions when it is created so every event inside can repeat them.
struct SpanFields(Map<String, Value>);

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = FieldMap(Map::new());
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields.0));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            let mut more = FieldMap(std::mem::take(&mut fields.0));
            values.record(&mut more);
            fields.0 = more.0;
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.insert("level".into(), Value::String(metadata.level().to_string()));
        line.insert("target".into(), Value::String(metadata.target().to_owned()));
        let mut fields = FieldMap(Map::new());
        event.record(&mut fields);
        line.insert(
            "message".into(),
            fields
                .0
                .remove("message")
                .unwrap_or(Value::String(String::new())),
        );
        line.extend(fields.0);
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (name, value) in &fields.0 {
                        line.entry(name.clone()).or_insert_with(|| value.clone());
                    }
                }
            }
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        // One write per line, so lines from several threads never interleave.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

/// Collects fields as JSON values.
struct FieldMap(Map<String, Value>);

impl Visit for FieldMap {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_print_back() {
        for format in [LogFormat::Pretty, LogFormat::Json] {
            assert_eq!(format.to_string().parse::<LogFormat>(), Ok(format));
        }
        let error = "yaml".parse::<LogFormat>().unwrap_err();
        assert!(error.contains("`pretty` or `json`"), "{error}");
    }
}
