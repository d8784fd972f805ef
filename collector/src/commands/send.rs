//! `picket-collector send DEVICE NAME [--args JSON] [--ttl D] [--wait]`: a
//! client of the collector's REST API (`POST /api/devices/{id}/commands`,
//! then `GET /api/commands/{id}` until the command is settled).

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0} is not valid JSON: {1}")]
    Args(String, serde_json::Error),
    #[error("the collector at {url} cannot be reached: {error}")]
    Http { url: String, error: String },
    #[error("the collector refused the command (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("unexpected answer from the collector: {0}")]
    Answer(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// What the command came to, as far as `send` saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Not waited for.
    Sent,
    Succeeded,
    /// `failed` or `rejected`.
    Failed,
    /// Expired at the broker or in flight without a final status.
    NoAnswer,
}

pub struct Request<'a> {
    /// `http://host:port` of the collector's API.
    pub api: &'a str,
    pub token: Option<&'a str>,
    pub device: &'a str,
    pub name: &'a str,
    pub args: Option<&'a str>,
    pub ttl: Option<&'a str>,
    pub wait: bool,
}

pub fn send(req: &Request<'_>, out: &mut impl Write) -> Result<Settled, SendError> {
    let args: Option<Value> = req
        .args
        .map(|a| serde_json::from_str(a).map_err(|e| SendError::Args(a.to_string(), e)))
        .transpose()?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut body = json!({ "name": req.name });
    if let Some(a) = args {
        body["args"] = a;
    }
    if let Some(t) = req.ttl {
        body["ttl"] = t.into();
    }
    let url = format!(
        "{}/api/devices/{}/commands",
        req.api.trim_end_matches('/'),
        req.device
    );
    let created = call(&agent, &url, req.token, Some(&body))?;
    let id = created["id"]
        .as_str()
        .ok_or_else(|| SendError::Answer(created.to_string()))?
        .to_string();
    let expires = created["expires"].as_u64().unwrap_or(0);
    writeln!(out, "command {id} sent to {}", req.device)?;
    if !req.wait {
        return Ok(Settled::Sent);
    }
    let url = format!("{}/api/commands/{id}", req.api.trim_end_matches('/'));
    let mut shown = 0usize;
    let mut expired_at: Option<Instant> = None;
    loop {
        let log = call(&agent, &url, req.token, None)?;
        let statuses = log["statuses"].as_array().cloned().unwrap_or_default();
        for s in statuses.iter().skip(shown) {
            writeln!(out, "{}", line(s))?;
            if let Some(o) = s["output"].as_str() {
                write!(out, "{o}")?;
                if !o.ends_with('\n') {
                    writeln!(out)?;
                }
            }
        }
        shown = statuses.len();
        if let Some(settled) = statuses
            .iter()
            .rev()
            .find_map(|s| match s["state"].as_str() {
                Some("succeeded") => Some(Settled::Succeeded),
                Some("failed" | "rejected") => Some(Settled::Failed),
                _ => None,
            })
        {
            return Ok(settled);
        }
        // After expiry a reply can still be on its way: wait a little more.
        if now_ms() > expires {
            let since = *expired_at.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(5) {
                writeln!(out, "no final status: the command expired")?;
                return Ok(Settled::NoAnswer);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn line(s: &Value) -> String {
    let mut l = format!(
        "{} {}",
        s["ts"].as_u64().unwrap_or(0),
        s["state"].as_str().unwrap_or("?")
    );
    if let Some(r) = s["reason"].as_str() {
        l.push_str(": ");
        l.push_str(r);
    }
    l
}

/// POST `body` when given, else GET.
pub(crate) fn call(
    agent: &ureq::Agent,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<Value, SendError> {
    let http = |e: ureq::Error| SendError::Http {
        url: url.to_string(),
        error: e.to_string(),
    };
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut response = match body {
        Some(b) => {
            let mut r = agent.post(url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.send_json(b).map_err(http)?
        }
        None => {
            let mut r = agent.get(url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.call().map_err(http)?
        }
    };
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().map_err(http)?;
    let value: Value = serde_json::from_str(&text).map_err(|_| SendError::Answer(text.clone()))?;
    if !(200..300).contains(&status) {
        return Err(SendError::Refused {
            status,
            message: value["error"].as_str().unwrap_or(&text).to_string(),
        });
    }
    Ok(value)
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
