//! Query parameters: every one is checked, unknown ones are refused (a
//! typo like `?metirc=` must not silently return something else).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use super::ApiError;
use crate::model::Millis;

pub type Params = HashMap<String, String>;

/// Refuse parameters not in `known`.
pub fn only(params: &Params, known: &[&str]) -> Result<(), ApiError> {
    let mut unknown: Vec<&str> = params
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort_unstable();
    Err(ApiError::bad_request(format!(
        "unknown parameter(s) {}: this endpoint takes {}",
        unknown.join(", "),
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    )))
}

pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// A time: unix milliseconds, or relative to now as `-24h`, `-30m`
/// (`now` itself is accepted too).
pub fn time(name: &str, value: &str, now: Millis) -> Result<Millis, ApiError> {
    let v = value.trim();
    if v == "now" {
        return Ok(now);
    }
    if let Some(rel) = v.strip_prefix('-') {
        let d = picket_config::parse_duration(rel)
            .map_err(|e| ApiError::bad_request(format!("{name}: {e}")))?;
        return Ok(now.saturating_sub(d.as_millis() as Millis));
    }
    v.parse::<Millis>().map_err(|_| {
        ApiError::bad_request(format!(
            "{name}={value:?}: expected unix milliseconds, `now` or a relative time like -24h"
        ))
    })
}

/// A duration parameter: `5m`, `10s`, or milliseconds.
pub fn duration(name: &str, value: &str) -> Result<Millis, ApiError> {
    let v = value.trim();
    if let Ok(ms) = v.parse::<Millis>() {
        return Ok(ms);
    }
    picket_config::parse_duration(v)
        .map(|d| d.as_millis() as Millis)
        .map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
}

/// A count between 1 and `max`, `default` when absent.
pub fn limit(params: &Params, default: usize, max: usize) -> Result<usize, ApiError> {
    match params.get("limit") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "limit={v:?}: expected a whole number from 1 to {max}"
            ))),
        },
    }
}

/// The `from`/`to` window, defaulting to the last 24 hours.
pub fn window(params: &Params, max_span: Millis) -> Result<(Millis, Millis), ApiError> {
    let now = now_ms();
    let to = match params.get("to") {
        Some(v) => time("to", v, now)?,
        None => now,
    };
    let from = match params.get("from") {
        Some(v) => time("from", v, now)?,
        None => to.saturating_sub(86_400_000),
    };
    if from >= to {
        return Err(ApiError::bad_request("from must be before to"));
    }
    if to - from > max_span {
        return Err(ApiError::bad_request(format!(
            "the window is longer than {} days",
            max_span / 86_400_000
        )));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let now = 1_000_000_000;
        let table = [
            ("now", Ok(now)),
            ("-1h", Ok(now - 3_600_000)),
            ("-24h", Ok(now - 86_400_000)),
            ("123", Ok(123)),
            ("yesterday", Err(())),
            ("-1x", Err(())),
            ("-5", Err(())),
            ("1.5", Err(())),
        ];
        for (input, want) in table {
            assert_eq!(time("from", input, now).map_err(|_| ()), want, "{input}");
        }
    }

    #[test]
    fn limits_and_unknown_params() {
        let p: Params = [("limit".to_string(), "0".to_string())].into();
        assert!(limit(&p, 10, 100).is_err());
        let p: Params = [("limit".to_string(), "100".to_string())].into();
        assert_eq!(limit(&p, 10, 100).unwrap(), 100);
        let p: Params = [("metirc".to_string(), "temp".to_string())].into();
        assert!(only(&p, &["metric"]).is_err());
        assert!(only(&Params::new(), &["metric"]).is_ok());
    }
}
