//! The HTTP side: REST API (JSON), `/metrics` (Prometheus text) and
//! `/healthz`.
//!
//! Live state comes from the engine over a channel (it owns the fleet);
//! history from SQLite through read-only connections on blocking threads.
//!
//! # Layout
//! - this file: router, shared state, errors, bearer-token roles, the
//!   [`Call`] every route starts from.
//! - `devices`: `/api/devices...`.
//! - `commands`: sending a command, following its statuses.
//! - `fleet`: `/api/stats`, `/api/alerts`.
//! - `metrics`: `/metrics`.
//! - `params`: query parameter parsing and validation.

mod commands;
mod devices;
mod fleet;
mod metrics;
mod params;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Query as QueryParams, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use picket_protocol::DeviceId;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::ApiAuth;
use crate::counters::IngestCounters;
use crate::fleet::query::Query;
use crate::history::Reader;
use crate::link::LinkStatus;
use crate::notify::NotifyCounters;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub fleet: mpsc::Sender<Query>,
    pub history: Reader,
    pub counters: Arc<IngestCounters>,
    pub notify: Arc<NotifyCounters>,
    pub link: watch::Receiver<LinkStatus>,
    pub auth: Arc<ApiAuth>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/devices", get(devices::list))
        .route(
            "/api/devices/{id}",
            get(devices::one).delete(devices::forget),
        )
        .route("/api/devices/{id}/history", get(devices::history))
        .route("/api/devices/{id}/events", get(devices::events))
        .route(
            "/api/devices/{id}/commands",
            axum::routing::post(commands::send),
        )
        .route("/api/commands/{id}", get(commands::one))
        .route("/api/stats", get(fleet::stats))
        .route("/api/alerts", get(fleet::alerts))
        .route("/api/ingest/refused", get(fleet::refused))
        .fallback(not_found)
        .with_state(state)
}

/// An error answered as `{"error": "..."}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"picket\""),
            );
        }
        res
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint (see docs/collector.md, \"API\")")
}

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Admin,
}

/// Check the request's bearer token against the role the route needs.
pub fn authorize(
    auth: &ApiAuth,
    headers: &HeaderMap,
    peer: SocketAddr,
    need: Role,
) -> Result<(), ApiError> {
    if auth.open() {
        if !peer.ip().is_loopback() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "no API token is configured: the API answers loopback clients only",
            ));
        }
        if need == Role::Admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "no admin token is configured: the API is read-only",
            ));
        }
        return Ok(());
    }
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing bearer token (Authorization: Bearer ...)"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
    let matches = |t: &Option<String>| t.as_deref().is_some_and(|t| same(t, token));
    let role = if matches(&auth.admin) {
        Role::Admin
    } else if matches(&auth.read) {
        Role::Read
    } else {
        return Err(unauthorized("invalid token"));
    };
    if role < need {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this token may read but not change anything",
        ));
    }
    Ok(())
}

/// What an API route starts from: the shared state, the caller's address
/// and headers (for the token) and the query parameters, extracted in that
/// order.
pub struct Call {
    pub state: AppState,
    peer: SocketAddr,
    headers: HeaderMap,
    pub params: params::Params,
}

impl FromRequestParts<AppState> for Call {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let ConnectInfo(peer) = Peer::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let QueryParams(params) = QueryParams::<params::Params>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Call {
            state: state.clone(),
            peer,
            headers: parts.headers.clone(),
            params,
        })
    }
}

impl Call {
    /// The preamble of every route: the token must allow `need`, then
    /// every parameter must be one of `known`.
    pub fn allow(&self, need: Role, known: &[&str]) -> Result<(), ApiError> {
        authorize(&self.state.auth, &self.headers, self.peer, need)?;
        params::only(&self.params, known)
    }

    /// [`Call::allow`] for a read route.
    pub fn read(&self, known: &[&str]) -> Result<(), ApiError> {
        self.allow(Role::Read, known)
    }
}

/// A device id from a route's path.
pub fn device_id(id: &str) -> Result<DeviceId, ApiError> {
    DeviceId::new(id).map_err(|e| ApiError::bad_request(format!("device id {id:?}: {e}")))
}

/// Compare in time independent of where the strings differ (a token's
/// length is not the secret: at least 16 characters, checked at start).
fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Ask the engine; it answers between two messages.
pub async fn ask<T>(
    state: &AppState,
    q: impl FnOnce(oneshot::Sender<T>) -> Query,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    state
        .fleet
        .send(q(tx))
        .await
        .map_err(|_| ApiError::unavailable("the collector is shutting down"))?;
    rx.await
        .map_err(|_| ApiError::unavailable("the collector is shutting down"))
}

/// Run a history query on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::history::HistoryError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("query task failed: {e}")))?
        .map_err(|e| ApiError::internal(format!("history query failed: {e}")))
}

/// `200` while the broker link is up and the database stores, `503`
/// otherwise, saying why; never needs a token (load balancers and systemd
/// checks call it).
async fn healthz(State(state): State<AppState>) -> Response {
    let link = state.link.borrow().clone();
    let store_error = state.counters.store_failure();
    let status = match (&store_error, link.connected()) {
        (Some(_), _) => "database failing",
        (None, false) => "broker unreachable",
        (None, true) => "ok",
    };
    let code = if status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": status,
        "broker_connected": link.connected(),
        "last_error": link.last_error,
        // While the database cannot store (disk full, I/O error, read-only
        // file system) nothing is acknowledged; ingest resumes by itself.
        "store_error": store_error,
        "version": env!("CARGO_PKG_VERSION"),
    });
    (code, Json(body)).into_response()
}

/// The peer address, for the loopback-only rule.
pub type Peer = ConnectInfo<SocketAddr>;
