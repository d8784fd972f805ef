//! `/api/devices`, one device, its history and events.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::params;
use super::{ApiError, Call, Role, ask, blocking, device_id};
use crate::fleet::query::Query;
use crate::model::{Metric, Millis};

/// At most this many buckets or raw points per history answer.
const MAX_POINTS: usize = 20_000;
/// The longest window one history query may cover.
const MAX_SPAN: Millis = 400 * 86_400_000;

pub async fn list(call: Call) -> Result<Response, ApiError> {
    call.read(&[])?;
    let devices = ask(&call.state, Query::Devices).await?;
    Ok(Json(devices).into_response())
}

pub async fn one(Path(id): Path<String>, call: Call) -> Result<Response, ApiError> {
    call.read(&[])?;
    let id = device_id(&id)?;
    let detail = ask(&call.state, |tx| Query::Device(id.clone(), tx))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device {id}")))?;
    let reader = call.state.history.clone();
    let history = blocking(move || reader.presence(&id, 50)).await?;
    let mut body = serde_json::to_value(&detail)
        .map_err(|e| ApiError::internal(format!("cannot encode the device: {e}")))?;
    body["presence_history"] = serde_json::to_value(&history)
        .map_err(|e| ApiError::internal(format!("cannot encode presence: {e}")))?;
    Ok(Json(body).into_response())
}

/// `?metric=temp&from=-24h&to=now&step=5m`: one metric's values; with
/// `step`, averages (and min, max, count) per bucket.
pub async fn history(Path(id): Path<String>, call: Call) -> Result<Response, ApiError> {
    call.read(&["metric", "from", "to", "step"])?;
    let id = device_id(&id)?;
    let metric = call
        .params
        .get("metric")
        .ok_or_else(|| ApiError::bad_request("metric is required, e.g. metric=temp"))?;
    let metric = Metric::parse(metric).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (from, to) = params::window(&call.params, MAX_SPAN)?;
    let step = match call.params.get("step") {
        None => None,
        Some(v) => {
            let step = params::duration("step", v)?;
            if step < 1_000 {
                return Err(ApiError::bad_request("step must be at least 1s"));
            }
            if (to - from) / step > MAX_POINTS as Millis {
                return Err(ApiError::bad_request(format!(
                    "step is too small for the window: more than {MAX_POINTS} buckets"
                )));
            }
            Some(step)
        }
    };
    let reader = call.state.history.clone();
    let (dev, m) = (id.clone(), metric.clone());
    let points = blocking(move || reader.history(&dev, &m, from, to, step, MAX_POINTS)).await?;
    Ok(Json(json!({
        "device": id,
        "metric": metric.as_str(),
        "from": from,
        "to": to,
        "step": step,
        "points": points,
    }))
    .into_response())
}

/// `?from=&to=&limit=`: the device's events, newest last.
pub async fn events(Path(id): Path<String>, call: Call) -> Result<Response, ApiError> {
    call.read(&["from", "to", "limit"])?;
    let id = device_id(&id)?;
    let (from, to) = params::window(&call.params, MAX_SPAN)?;
    let limit = params::limit(&call.params, 500, 10_000)?;
    let reader = call.state.history.clone();
    let dev = id.clone();
    let events = blocking(move || reader.events(&dev, from, to, limit)).await?;
    Ok(Json(json!({ "device": id, "events": events })).into_response())
}

/// Admin: forget a device (decommissioned box) and its history.
pub async fn forget(Path(id): Path<String>, call: Call) -> Result<Response, ApiError> {
    call.allow(Role::Admin, &[])?;
    let id = device_id(&id)?;
    if ask(&call.state, |tx| Query::Forget(id.clone(), tx)).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("no device {id}")))
    }
}
