//! The daemon's log lines on stderr, as a person, a pipe and the journal each want them.
//!
//! - Colour only at a terminal.
//! - Under systemd with stderr connected to the journal (`$JOURNAL_STREAM` names stderr's
//!   device and inode), each line starts with its syslog priority (`<3>` error, `<4>` warn,
//!   `<6>` info, `<7>` debug and trace), which journald strips and keeps as `PRIORITY=`, so
//!   `journalctl -p err -u mcsd` shows the errors.
//! - In JSON mode every line is one object shaped like `tracing-subscriber`'s (`timestamp`,
//!   `level`, `target`, `fields`, `span`, `spans`), except that a field whose value is a
//!   JSON object or array (a list of names, a detail object) is embedded as JSON rather
//!   than as a string holding JSON.

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// Install the global subscriber. `filter` is the `[log] level` directive (or `RUST_LOG`,
/// which wins), already checked by [`filter`].
pub fn init(format: LogFormat, filter: tracing_subscriber::EnvFilter) {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let priority = stderr_is_journal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.fmt_fields(JsonFields::new()).event_format(JsonLine { priority }).init(),
        LogFormat::Text => {
            builder.event_format(TextLine { inner: format::Format::default().with_ansi(ansi), priority }).init()
        }
    }
}

/// The filter for `[log] level`, unless `RUST_LOG` is set; an error names what is wrong.
pub fn filter(level: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => {
            tracing_subscriber::EnvFilter::try_new(&env).map_err(|e| format!("RUST_LOG={env:?}: {e}"))
        }
        _ => tracing_subscriber::EnvFilter::try_new(level).map_err(|e| format!("log.level = {level:?}: {e}")),
    }
}

/// Whether stderr is the stream systemd connected to the journal: `$JOURNAL_STREAM` is
/// `<device>:<inode>` of that stream (systemd.exec(5)).
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else { return false };
    let Ok(meta) = std::io::stderr().as_fd().try_clone_to_owned().map(std::fs::File::from).and_then(|f| f.metadata())
    else {
        return false;
    };
    stream == format!("{}:{}", meta.dev(), meta.ino())
}

/// The syslog priority prefix of a level (sd-daemon(3)).
fn priority_prefix(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        _ => "<7>",
    }
}

/// The standard text line, after the priority prefix when the journal reads it.
struct TextLine {
    inner: format::Format,
    priority: bool,
}

impl<S, N> FormatEvent<S, N> for TextLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        if self.priority {
            writer.write_str(priority_prefix(event.metadata().level()))?;
        }
        self.inner.format_event(ctx, writer, event)
    }
}

/// One JSON object per line.
struct JsonLine {
    priority: bool,
}

impl<S> FormatEvent<S, JsonFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(crate::clock::rfc3339_ms(crate::clock::now_ms())));
        line.insert("level".into(), Value::String(meta.level().to_string()));
        line.insert("fields".into(), Value::Object(fields.0));
        line.insert("target".into(), Value::String(meta.target().to_owned()));
        let spans: Vec<Value> = ctx
            .event_scope()
            .into_iter()
            .flat_map(|scope| scope.from_root())
            .map(|span| {
                let ext = span.extensions();
                // The span's fields as `JsonFields` recorded them (a JSON object), with
                // the same embedding of nested JSON as the event's.
                let mut obj = match ext.get::<FormattedFields<JsonFields>>().map(|f| serde_json::from_str(f)) {
                    Some(Ok(Value::Object(m))) => m.into_iter().map(|(k, v)| (k, nested(v))).collect(),
                    _ => Map::new(),
                };
                obj.insert("name".into(), Value::String(span.name().to_owned()));
                Value::Object(obj)
            })
            .collect();
        if let Some(current) = spans.last() {
            line.insert("span".into(), current.clone());
        }
        if !spans.is_empty() {
            line.insert("spans".into(), Value::Array(spans));
        }
        if self.priority {
            writer.write_str(priority_prefix(meta.level()))?;
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// A string holding a JSON object or array becomes that JSON; anything else stays.
fn nested(v: Value) -> Value {
    match v {
        Value::String(s) if s.starts_with(['{', '[']) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        v => v,
    }
}

/// An event's fields, typed: numbers and booleans as such, nested JSON embedded.
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), nested(Value::String(value.to_owned())));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), nested(Value::String(format!("{value:?}"))));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), Value::String(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_in_a_string_is_embedded_and_other_strings_stay() {
        assert_eq!(nested(Value::String(r#"["a","b"]"#.into())), serde_json::json!(["a", "b"]));
        assert_eq!(nested(Value::String(r#"{"k":1}"#.into())), serde_json::json!({"k": 1}));
        assert_eq!(nested(Value::String("[not json".into())), Value::String("[not json".into()));
        assert_eq!(nested(Value::String("plain".into())), Value::String("plain".into()));
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority_prefix(&Level::ERROR), "<3>");
        assert_eq!(priority_prefix(&Level::WARN), "<4>");
        assert_eq!(priority_prefix(&Level::INFO), "<6>");
        assert_eq!(priority_prefix(&Level::DEBUG), "<7>");
    }

    #[test]
    fn a_bad_filter_names_the_setting() {
        // With RUST_LOG set (a developer's shell) the filter is that one: nothing to check.
        if std::env::var_os("RUST_LOG").is_none() {
            let e = filter("mcsd=loud").unwrap_err();
            assert!(e.starts_with("log.level = \"mcsd=loud\""), "{e}");
            assert!(filter("info,mcsd=debug").is_ok());
        }
    }
}
