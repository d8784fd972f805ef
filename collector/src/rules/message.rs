//! Alert messages: a rule's `message` template, checked when the
//! configuration is loaded so a typo in a placeholder is an error at
//! start-up rather than a strange notification at three in the morning.

use picket_protocol::alert::Severity;

/// A parsed `message` template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Field(Field),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Value,
    Threshold,
    Instance,
    Device,
    Metric,
    Rule,
    Severity,
    Op,
}

const FIELDS: [(&str, Field); 8] = [
    ("value", Field::Value),
    ("threshold", Field::Threshold),
    ("instance", Field::Instance),
    ("device", Field::Device),
    ("metric", Field::Metric),
    ("rule", Field::Rule),
    ("severity", Field::Severity),
    ("op", Field::Op),
];

/// The template of a rule that has no `message`.
pub(crate) const DEFAULT_TEMPLATE: &str = "{rule}: {metric} is {value} ({op} {threshold})";

/// What a message is rendered from.
pub(crate) struct Fill<'a> {
    pub value: f64,
    /// The threshold of the alert's severity; `None` when a new
    /// configuration dropped that level while the alert was active.
    pub threshold: Option<f64>,
    pub unit: &'a str,
    pub instance: &'a str,
    pub device: &'a str,
    pub metric: &'a str,
    pub rule: &'a str,
    pub severity: Severity,
    pub op: &'a str,
}

/// A rule's `message` that [`Template::parse`] refuses.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TemplateError {
    #[error("a lone '}}': write '}}}}' for a literal brace")]
    LoneBrace,
    #[error("'{{{0}' is not closed: write '{{{{' for a literal brace")]
    Unclosed(String),
    #[error("unknown placeholder {{{name}}}; available: {known}")]
    Unknown { name: String, known: String },
}

impl Template {
    pub(crate) fn parse(s: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '}' => return Err(TemplateError::LoneBrace),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(TemplateError::Unclosed(name)),
                        }
                    }
                    let field = FIELDS
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, f)| *f)
                        .ok_or_else(|| {
                            let known: Vec<String> =
                                FIELDS.iter().map(|(n, _)| format!("{{{n}}}")).collect();
                            TemplateError::Unknown {
                                name: name.clone(),
                                known: known.join(", "),
                            }
                        })?;
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Field(field));
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template(parts))
    }

    pub(crate) fn uses_instance(&self) -> bool {
        self.0.contains(&Part::Field(Field::Instance))
    }

    pub(crate) fn render(&self, f: &Fill) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(Field::Value) => out.push_str(&format_value(f.value, f.unit)),
                Part::Field(Field::Threshold) => match f.threshold {
                    Some(t) => out.push_str(&format_value(t, f.unit)),
                    None => out.push_str("(no threshold)"),
                },
                Part::Field(Field::Instance) => out.push_str(f.instance),
                Part::Field(Field::Device) => out.push_str(f.device),
                Part::Field(Field::Metric) => out.push_str(f.metric),
                Part::Field(Field::Rule) => out.push_str(f.rule),
                Part::Field(Field::Severity) => out.push_str(severity_name(f.severity)),
                Part::Field(Field::Op) => out.push_str(f.op),
            }
        }
        out
    }
}

pub(crate) fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// A value with its unit as an operator reads it: `81.3 °C`, `93.0%`,
/// `1.8 GB`, `12 s`; unitless values with at most two decimals.
pub(crate) fn format_value(v: f64, unit: &str) -> String {
    match unit {
        "%" => format!("{v:.1}%"),
        "°C" => format!("{v:.1} °C"),
        "bytes" => bytes(v),
        "s" => format!("{} s", plain(v)),
        _ => plain(v),
    }
}

fn plain(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// Decimal units, like disk vendors and `df -H`: thresholds are written
/// `2GB` and should read back as `2.0 GB`.
fn bytes(v: f64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut x = v.abs();
    let mut i = 0;
    while x >= 1000.0 && i < UNITS.len() - 1 {
        x /= 1000.0;
        i += 1;
    }
    if i == 0 {
        return format!("{} B", plain(v));
    }
    let sign = if v < 0.0 { "-" } else { "" };
    format!("{sign}{x:.1} {}", UNITS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_values_with_their_unit() {
        let table = [
            (81.27, "°C", "81.3 °C"),
            (93.0, "%", "93.0%"),
            (1_834_000_000.0, "bytes", "1.8 GB"),
            (2e9, "bytes", "2.0 GB"),
            (999.0, "bytes", "999 B"),
            (1500.0, "bytes", "1.5 kB"),
            (3e18, "bytes", "3000.0 PB"),
            (12.0, "s", "12 s"),
            (1.0, "0/1", "1"),
            (0.0, "", "0"),
            (1.23456, "", "1.23"),
            (2.5, "", "2.5"),
            (-0.001, "", "0"),
        ];
        for (v, unit, want) in table {
            assert_eq!(format_value(v, unit), want, "{v} {unit}");
        }
    }

    #[test]
    fn renders_every_placeholder() {
        let t = Template::parse(
            "{{{rule}}} {severity} on {device}: {metric} ({instance}) {value} {op} {threshold}",
        )
        .expect("valid template");
        let fill = Fill {
            value: 96.04,
            threshold: Some(95.0),
            unit: "%",
            instance: "/data",
            device: "pi-01",
            metric: "disk.pct:/data",
            rule: "disk_usage",
            severity: Severity::Critical,
            op: ">",
        };
        assert_eq!(
            t.render(&fill),
            "{disk_usage} critical on pi-01: disk.pct:/data (/data) 96.0% > 95.0%"
        );
        assert!(t.uses_instance());
        let none = Fill {
            threshold: None,
            ..fill
        };
        let t = Template::parse("over {threshold}").expect("valid template");
        assert_eq!(t.render(&none), "over (no threshold)");
        assert!(!t.uses_instance());
    }

    #[test]
    fn refuses_bad_templates() {
        for bad in ["{valeu}", "{value", "value}", "{}", "a { b"] {
            assert!(Template::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Template::parse(DEFAULT_TEMPLATE).is_ok());
    }
}
