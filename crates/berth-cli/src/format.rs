//! Output as Docker's CLI prints it: aligned tables (tabwriter with a
//! minimum width of 10 and padding of 3), `--format table …`, `json`, or a
//! Go template per row; and the JSON of `inspect`, indented by four.

use std::io::Write;

use serde_json::Value;

use crate::template::Template;
use crate::CliError;

/// A `--format` template as Docker reads it: "json" is `{{json .}}`, and
/// `\t` and `\n` written literally are tab and newline.
pub fn template(f: &str) -> Result<Template, CliError> {
    let f = if f == "json" { "{{json .}}" } else { f };
    Ok(Template::parse(&f.replace("\\t", "\t").replace("\\n", "\n"))?)
}

/// Columns aligned as Go's tabwriter(minwidth 10, padding 3) aligns them:
/// every cell but the last in a row is padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            let w = c.chars().count() + 3;
            if widths.len() <= i {
                widths.push(10);
            }
            widths[i] = widths[i].max(w);
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i].saturating_sub(c.chars().count())));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// How rows are printed.
#[derive(Debug)]
pub enum Format {
    /// The command's own table, with its default columns.
    Default,
    /// A template per row; `table` adds a header and aligns the columns.
    Template { tpl: Template, table: bool },
}

impl Format {
    /// `None`/"table": the default table; "table …": aligned columns with
    /// headers; else a template per row (see [`template`]).
    pub fn parse(f: Option<&str>) -> Result<Format, CliError> {
        match f {
            None | Some("" | "table") => Ok(Format::Default),
            Some(s) => match s.strip_prefix("table") {
                Some(rest) if rest.starts_with(char::is_whitespace) || rest.starts_with("\\t") => {
                    Ok(Format::Template { tpl: template(rest.trim_start_matches("\\t").trim_start())?, table: true })
                }
                _ => Ok(Format::Template { tpl: template(s)?, table: false }),
            },
        }
    }

    /// Prints `rows` (each a JSON object with Docker's field names);
    /// `header` maps those names to column titles for `table`.
    pub fn print(&self, default_cols: &[&str], header: &Value, rows: &[Value]) -> Result<(), CliError> {
        let mut out = String::new();
        match self {
            Format::Default => {
                let mut t = vec![default_cols.iter().map(|c| field_text(header, c)).collect::<Vec<_>>()];
                for r in rows {
                    t.push(default_cols.iter().map(|c| field_text(r, c)).collect());
                }
                out = table(&t);
            }
            Format::Template { tpl, table: true } => {
                let mut t = vec![tpl.render(header)?.split('\t').map(str::to_owned).collect::<Vec<_>>()];
                for r in rows {
                    t.push(tpl.render(r)?.split('\t').map(str::to_owned).collect());
                }
                out = table(&t);
            }
            Format::Template { tpl, table: false } => {
                for r in rows {
                    out.push_str(&tpl.render(r)?);
                    out.push('\n');
                }
            }
        }
        print_out(&out)
    }
}

fn field_text(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(x) => crate::template::show(x),
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub fn print_out(s: &str) -> Result<(), CliError> {
    let mut o = std::io::stdout().lock();
    match o.write_all(s.as_bytes()).and_then(|()| o.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// JSON as Docker prints `inspect`: indented by four spaces.
pub fn pretty(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if serde::Serialize::serialize(v, &mut ser).is_err() {
        return v.to_string();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The first 12 hex digits of an id, without its `sha256:`.
pub fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// Docker's ellipsis: at most `n` characters, the last one "…".
pub fn ellipsis(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// "N units ago" from a Unix time in seconds.
pub fn ago(unix: i64) -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(unix);
    format!("{} ago", berth_core::units::human_duration((now - unix).max(0)))
}

/// A Unix time as Go's default `time.Time` string, in UTC.
pub fn unix_time(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    let s = berth_core::time::rfc3339(t);
    // 2024-01-02T03:04:05.000000000Z → 2024-01-02 03:04:05 +0000 UTC
    format!("{} {} +0000 UTC", &s[..10], &s[11..19])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables() {
        let t =
            table(&[vec!["A".into(), "LONGER HEADER".into(), "C".into()], vec!["x".into(), "y".into(), "z".into()]]);
        assert_eq!(t, "A         LONGER HEADER   C\nx         y               z\n");
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(unix_time(0), "1970-01-01 00:00:00 +0000 UTC");
    }

    #[test]
    fn formats() {
        assert!(matches!(Format::parse(None).unwrap(), Format::Default));
        assert!(matches!(Format::parse(Some("table {{.ID}}")).unwrap(), Format::Template { table: true, .. }));
        let Format::Template { tpl, .. } = Format::parse(Some("json")).unwrap() else { panic!() };
        assert_eq!(tpl.render(&json!({"a": 1})).unwrap(), r#"{"a":1}"#);
        assert!(pretty(&json!({"a": [1]})).contains("\n        1\n"));
    }
}
