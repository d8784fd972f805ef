//! `POST /api/devices/{id}/commands` (admin) and `GET /api/commands/{id}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, Call, Role, ask, blocking, device_id};
use crate::commands::IssueError;
use crate::fleet::query::Query;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    name: String,
    #[serde(default)]
    args: Option<serde_json::Value>,
    /// `"30s"`, `"5m"`, or seconds as a number. Default:
    /// `commands.default_ttl`.
    #[serde(default)]
    ttl: Option<serde_json::Value>,
}

fn ttl(v: Option<serde_json::Value>) -> Result<Option<std::time::Duration>, ApiError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .map(|s| Some(std::time::Duration::from_secs(s)))
            .ok_or_else(|| ApiError::bad_request("ttl: a whole number of seconds")),
        Some(serde_json::Value::String(s)) => picket_config::parse_duration(&s)
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("ttl: {e}"))),
        Some(_) => Err(ApiError::bad_request(
            "ttl: a duration (\"30s\", \"5m\") or seconds",
        )),
    }
}

pub async fn send(Path(id): Path<String>, call: Call, body: Bytes) -> Result<Response, ApiError> {
    call.allow(Role::Admin, &[])?;
    let device = device_id(&id)?;
    let body: SendBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body: {e} (expected {{name, args, ttl}})")))?;
    let ttl = ttl(body.ttl)?;
    let action = crate::commands::action(&body.name, body.args)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let sent = ask(&call.state, |reply| Query::Send {
        device: device.clone(),
        action,
        ttl,
        reply,
    })
    .await?
    .map_err(|e| match e {
        IssueError::Encode(m) => ApiError::internal(m),
        other => ApiError::bad_request(other.to_string()),
    })?;
    let id = sent.id.clone();
    // Answer once the command is stored and handed to the broker: a GET
    // right after finds it.
    sent.published
        .await
        .map_err(|_| ApiError::unavailable("the collector is shutting down"))?;
    let body = json!({
        "id": id,
        "device": device,
        "name": body.name,
        "issued": sent.issued,
        "expires": sent.expires,
        "status": format!("/api/commands/{id}"),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn one(Path(id): Path<String>, call: Call) -> Result<Response, ApiError> {
    call.read(&[])?;
    let reader = call.state.history.clone();
    let key = id.clone();
    let log = blocking(move || reader.command(&key))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no command {id}")))?;
    let mut body = serde_json::to_value(&log)
        .map_err(|e| ApiError::internal(format!("cannot encode the command: {e}")))?;
    body["id"] = id.into();
    // The latest final status, and the output in chunk order.
    let last = log
        .statuses
        .iter()
        .rev()
        .find(|s| !matches!(s.state, picket_protocol::ReplyState::Running))
        .or(log.statuses.last());
    body["state"] = last.map_or(serde_json::Value::Null, |s| {
        serde_json::to_value(s.state).unwrap_or_default()
    });
    let mut chunks: Vec<(u32, &str)> = log
        .statuses
        .iter()
        .filter_map(|s| Some((s.chunk?, s.output.as_deref()?)))
        .collect();
    chunks.sort_by_key(|c| c.0);
    chunks.dedup_by_key(|c| c.0);
    body["output"] = chunks.iter().map(|c| c.1).collect::<String>().into();
    Ok(Json(body).into_response())
}
