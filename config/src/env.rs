//! `PICKET_<SECTION>_<KEY>` environment overrides, applied to the parsed
//! TOML before it is deserialised, so they go through the same checks.

use toml::{Table, Value};

use crate::ConfigError;

/// Apply every `PICKET_*` variable of `vars` that names a known key to
/// `table`. `defaults` is the default configuration as a table: it lists
/// the known keys and their types. Returns the names of the variables that
/// name no key, for a warning (a typo should not go unnoticed), and the
/// `(section.key, variable)` pairs applied, so errors can name their origin.
pub(crate) fn apply(
    table: &mut Table,
    defaults: &Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Applied, ConfigError> {
    let mut unknown = Vec::new();
    let mut applied = Vec::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("PICKET_") else {
            continue;
        };
        // PICKET_CONFIG and PICKET_LOG are read by the binary, not here;
        // PICKET_ENTRY is set by the agent's update launcher for the
        // version it starts.
        if matches!(rest, "CONFIG" | "LOG" | "ENTRY") {
            continue;
        }
        let Some((section, key, default)) = find_key(defaults, rest) else {
            unknown.push(name);
            continue;
        };
        let parsed = convert(&value, default).map_err(|reason| ConfigError::Invalid {
            key: format!("{section}.{key}"),
            reason: reason.to_string(),
            origin: format!("environment variable {name}"),
        })?;
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        match entry {
            Value::Table(t) => {
                applied.push((format!("{section}.{key}"), name.clone()));
                t.insert(key, parsed);
            }
            _ => {
                return Err(ConfigError::Invalid {
                    key: section,
                    reason: "must be a table".into(),
                    origin: "the configuration file".into(),
                });
            }
        }
    }
    Ok(Applied { unknown, applied })
}

#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub unknown: Vec<String>,
    pub applied: Vec<(String, String)>,
}

fn find_key<'a>(defaults: &'a Table, rest: &str) -> Option<(String, String, &'a Value)> {
    defaults.iter().find_map(|(section, keys)| {
        let Value::Table(keys) = keys else {
            return None;
        };
        keys.iter().find_map(|(key, default)| {
            let env = format!("{section}_{key}").to_ascii_uppercase();
            (env == rest).then(|| (section.clone(), key.clone(), default))
        })
    })
}

/// A variable's text that is not of its key's type.
#[derive(Debug, thiserror::Error)]
enum ConvertError {
    #[error("{0:?} is not a whole number")]
    Integer(String),
    #[error("{0:?} is not true or false")]
    Boolean(String),
}

/// Convert a variable's text to the TOML type of the key's default.
fn convert(value: &str, default: &Value) -> Result<Value, ConvertError> {
    match default {
        Value::Integer(_) => value
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| ConvertError::Integer(value.to_string())),
        Value::Boolean(_) => match value.trim() {
            "true" | "1" | "yes" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" => Ok(Value::Boolean(false)),
            _ => Err(ConvertError::Boolean(value.to_string())),
        },
        Value::Array(_) => Ok(Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        )),
        _ => Ok(Value::String(value.to_string())),
    }
}
