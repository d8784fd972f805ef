//! picket's collector: watches a fleet of agents over MQTT, keeps their
//! history, evaluates threshold rules, notifies, and serves an API.
//!
//! ```text
//! MQTT (link) ─publishes─▶ fleet engine ─batches─▶ store thread (SQLite)
//!                           │   ▲                     │ committed
//!                 API ◀─────┘   └── queries           ▼
//!                                           acks + alert sets (link), notifier
//! ```
//!
//! # Layout
//! - [`config`]: TOML + `PICKET_*` → validated [`config::Config`].
//! - [`broker`]: the embedded rumqttd, when no broker is configured.
//! - [`link`]: the MQTT session (owns the event loop) and the
//!   acknowledgements that follow a commit.
//! - [`fleet`]: the engine — decoding, dedupe, presence, rules, alerts.
//! - [`rules`]: the threshold rule engine (pure).
//! - [`notify`]: cooldown policy, webhook and e-mail delivery.
//! - [`commands`]: signed command envelopes, remedy rate limits, the
//!   `keygen`, `send` and `sign-artifact` tools.
//! - [`rollout`]: `picket-collector update`, the staged agent rollout.
//! - [`history`]: SQLite storage and queries.
//! - [`store`]: the thread that commits batches (grouped: every batch
//!   queued while it wrote the previous one), and its pace, which the
//!   engine follows.
//! - [`api`]: REST API, `/metrics`, `/healthz`.
//! - [`simulate`]: simulated devices (the demo and the load generator).
//! - [`demo`]: embedded broker + collector + simulated fleet in one process.
//! - [`model`]: the flattened metric names everything above shares.
//! - `varint`: the compact integers of sample bodies and the journal.

pub mod api;
pub use picket_config::embedded_broker as broker;
pub mod clock;
pub mod commands;
pub mod config;
pub mod counters;
pub mod demo;
pub mod fleet;
pub mod history;
pub mod link;
pub mod model;
pub mod notify;
pub mod pipeline;
pub mod rollout;
pub mod rules;
pub mod simulate;
pub mod store;
mod varint;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::counters::IngestCounters;
use config::Config;
use fleet::Engine;
use fleet::query::Query;
use link::{Link, LinkStatus};
use notify::{Notifier, NotifyCounters};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    // The cause is the error's source: `{:#}` prints the chain once.
    #[error("cannot open the database")]
    History(#[from] history::HistoryError),
    #[error("cannot listen for HTTP on {addr}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the store thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    BrokerStopped(String),
}

/// How long a stop waits for the database to store what was handled
/// before leaving it to the broker's redelivery.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_millis(2_500);

/// The whole stop, at most: within systemd's patience and the 5 s an
/// operator expects.
const STOP_LIMIT: std::time::Duration = std::time::Duration::from_millis(4_000);

/// How long a stop waits for HTTP requests in progress.
const HTTP_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// What a running collector offers to whoever started it (the demo's
/// summary line, tests).
#[derive(Clone)]
pub struct Running {
    pub http: SocketAddr,
    /// The embedded broker's address, when there is one.
    pub broker: Option<SocketAddr>,
    pub queries: mpsc::Sender<Query>,
    pub counters: Arc<IngestCounters>,
    pub link: watch::Receiver<LinkStatus>,
}

/// Run the collector until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    run_with(config, shutdown, |_| {}).await
}

/// [`run`], calling `ready` once everything listens.
pub async fn run_with(
    config: Config,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(Running),
) -> Result<(), RunError> {
    picket_config::tls::install_provider();
    let mut embedded = start_embedded(&config)?;
    let (tasks, running) = start(&config, embedded.as_ref().map(|b| b.addr)).await?;
    info!(http = %running.http, broker = %config.link.broker.url, "collector running");
    ready(running);

    let failure = tokio::select! {
        _ = shutdown => {
            info!("stopping");
            None
        }
        why = broker_stopped(embedded.as_mut()) => Some(RunError::BrokerStopped(why)),
    };
    tasks.stop().await;
    info!("stopped");
    failure.map_or(Ok(()), Err)
}

/// Open the history, wire the tasks together and start them: the
/// collector runs from here on.
async fn start(config: &Config, broker: Option<SocketAddr>) -> Result<(Tasks, Running), RunError> {
    let (writer, snapshot) = history::open_with(&config.storage_path, config.durability)?;
    let reader = history::Reader::open(&config.storage_path)?;
    info!(path = %config.storage_path.display(), "history opened");

    let counters = Arc::new(IngestCounters::default());
    let notify_counters = Arc::new(NotifyCounters::default());
    let clock = Clock::system();
    let (inbound_tx, inbound_rx) = mpsc::channel(1024);
    let (query_tx, query_rx) = mpsc::channel(64);
    let (commit_tx, commit_rx) = mpsc::channel(4);
    let (done_tx, done_rx) = mpsc::channel(4);
    let (ack_tx, ack_rx) = mpsc::channel(4);
    let (notify_tx, notify_rx) = mpsc::channel(1024);
    let (status_tx, status_rx) = watch::channel(LinkStatus::default());
    let pace = Arc::new(pipeline::Pace::default());
    // Cancelled once the stop has taken STOP_GRACE: whatever still waits
    // on the database is left unacknowledged instead of holding the stop.
    let abandon = CancellationToken::new();

    let link = Link::new(&config.link, inbound_tx, ack_rx, status_tx);
    let client = link.client();
    let engine = Engine::new(
        config.engine.clone(),
        snapshot,
        clock,
        Arc::clone(&counters),
        inbound_rx,
        query_rx,
        commit_tx,
    )
    .paced_by(Arc::clone(&pace))
    .abandoned_by(abandon.clone());
    let store = store::spawn(store::Store {
        writer,
        commits: commit_rx,
        done: done_tx,
        counters: Arc::clone(&counters),
        retention: config.retention,
        clock,
        pace,
        abandon: store::Abandon::new(abandon.clone()),
    })
    .map_err(RunError::Thread)?;
    let notifier = Notifier::new(
        config.notify.clone(),
        notify_rx,
        Arc::clone(&notify_counters),
    );
    let app = api::router(api::AppState {
        fleet: query_tx.clone(),
        history: reader,
        counters: Arc::clone(&counters),
        notify: notify_counters,
        link: status_rx.clone(),
        auth: Arc::new(config.api.clone()),
    });
    let (http, http_addr) = serve_http(config, app).await?;

    let tasks = Tasks {
        http,
        link: Task::spawn(|stop| link.run(stop)),
        engine: Task::spawn(|stop| engine.run(stop)),
        store,
        acks: tokio::spawn(link::after_commit(client, done_rx, ack_tx, notify_tx)),
        notifier: Task::spawn(|stop| notifier.run(stop)),
        abandon,
    };
    let running = Running {
        http: http_addr,
        broker,
        queries: query_tx,
        counters,
        link: status_rx,
    };
    Ok((tasks, running))
}

/// The embedded broker, when no broker is configured.
fn start_embedded(config: &Config) -> Result<Option<broker::Embedded>, RunError> {
    let Some(cfg) = &config.embedded else {
        return Ok(None);
    };
    let b = broker::start(cfg)?;
    info!(listen = %b.addr, "embedded MQTT broker started");
    if !b.addr.ip().is_loopback() {
        warn!(listen = %b.addr, "the embedded broker has no authentication and listens beyond loopback");
    }
    Ok(Some(b))
}

/// Resolves (with why) if the embedded broker stops; never without one.
async fn broker_stopped(embedded: Option<&mut broker::Embedded>) -> String {
    match embedded {
        Some(b) => (&mut b.stopped)
            .await
            .unwrap_or_else(|_| "the embedded broker stopped".into()),
        None => std::future::pending().await,
    }
}

/// The API on `http.listen`, until its task is told to stop.
async fn serve_http(
    config: &Config,
    app: axum::Router,
) -> Result<(Task<std::io::Result<()>>, SocketAddr), RunError> {
    let err = |source| RunError::Http {
        addr: config.http_listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .map_err(err)?;
    let addr = listener.local_addr().map_err(err)?;
    if config.api.open() {
        warn!(
            "no API token configured: the API is read-only and answers loopback clients only \
             (set api.read_token / api.admin_token)"
        );
    }
    let task = Task::spawn(|stop| async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop)
        .await
    });
    Ok((task, addr))
}

/// A spawned task and the token that tells it to stop.
struct Task<T> {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<T>,
}

impl<T: Send + 'static> Task<T> {
    fn spawn<F: Future<Output = T> + Send + 'static>(
        run: impl FnOnce(tokio_util::sync::WaitForCancellationFutureOwned) -> F,
    ) -> Self {
        let stop = CancellationToken::new();
        let handle = tokio::spawn(run(stop.clone().cancelled_owned()));
        Task { stop, handle }
    }
}

/// The collector's long-lived tasks, stopped in dependency order.
struct Tasks {
    http: Task<std::io::Result<()>>,
    link: Task<()>,
    engine: Task<()>,
    store: std::thread::JoinHandle<()>,
    acks: tokio::task::JoinHandle<()>,
    notifier: Task<()>,
    abandon: CancellationToken,
}

impl Tasks {
    /// No new API calls; the engine stores what it handled; the store
    /// commits it; its acknowledgements go out; only then does the MQTT
    /// session close. Nothing acknowledged is unstored. A database that
    /// cannot store (disk full) gets STOP_GRACE, then is abandoned: what
    /// it held is redelivered by the broker at the next start, and the
    /// whole stop stays within systemd's patience (STOP_LIMIT).
    async fn stop(self) {
        let Tasks {
            http,
            link,
            engine,
            store,
            acks,
            notifier,
            abandon,
        } = self;
        http.stop.cancel();
        engine.stop.cancel();
        let grace = tokio::spawn(async move {
            tokio::time::sleep(STOP_GRACE).await;
            abandon.cancel();
        });
        let stopping = async {
            let _ = engine.handle.await;
            let _ = tokio::task::spawn_blocking(move || store.join()).await;
            let _ = acks.await;
            grace.abort();
            link.stop.cancel();
            let _ = link.handle.await;
            // The notifier's queue is closed now; give deliveries their
            // grace (within what is left of STOP_LIMIT).
            notifier.stop.cancel();
            let _ = notifier.handle.await;
            // Requests still running (a slow client) do not hold the stop.
            if tokio::time::timeout(HTTP_GRACE, http.handle).await.is_err() {
                warn!("HTTP requests still open at stop: closed");
            }
        };
        // Whatever still runs at the limit (a database call that blocks, a
        // webhook that does not answer) is left behind: nothing that was
        // not stored has been acknowledged, so nothing is lost by exiting.
        if tokio::time::timeout(STOP_LIMIT, stopping).await.is_err() {
            warn!(limit = ?STOP_LIMIT, "stop still unfinished at its limit: the rest is abandoned");
        }
    }
}
