//! `picket-collector demo`: the embedded broker, the collector and a
//! simulated fleet in one process, so one command shows the whole system.
//! The database lives in a temporary directory removed on exit.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{self, RawConfig};
use crate::fleet::query::Query;
use crate::simulate::{self, SimConfig, SimStats};
use crate::{Running, run_with};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub devices: usize,
    pub interval: Duration,
    pub http: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot create a temporary directory for the demo's database: {0}")]
    TempDir(std::io::Error),
    #[error("cannot find a free port: {0}")]
    Port(std::io::Error),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Run(#[from] crate::RunError),
    #[error("the simulated fleet failed: {0}")]
    Simulate(#[from] simulate::SimError),
}

/// `preferred` if it can be bound, else a free loopback port.
fn address(preferred: SocketAddr) -> Result<SocketAddr, DemoError> {
    if TcpListener::bind(preferred).is_ok() {
        return Ok(preferred);
    }
    let l = TcpListener::bind("127.0.0.1:0").map_err(DemoError::Port)?;
    l.local_addr().map_err(DemoError::Port)
}

pub async fn run(opts: DemoOptions, shutdown: impl Future<Output = ()>) -> Result<(), DemoError> {
    let dir = tempfile::Builder::new()
        .prefix("picket-demo-")
        .tempdir()
        .map_err(DemoError::TempDir)?;
    let (config, broker) = demo_config(&opts, dir.path())?;

    let stop = CancellationToken::new();
    let stats = Arc::new(SimStats::default());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Running>();
    let collector = run_with(config.clone(), stop.clone().cancelled_owned(), move |r| {
        let _ = ready_tx.send(r);
    });
    tokio::pin!(collector);
    tokio::pin!(shutdown);

    let running = tokio::select! {
        r = ready_rx => r.ok(),
        res = &mut collector => {
            res?;
            return Ok(());
        }
    };
    let Some(running) = running else {
        return Ok(());
    };
    banner(&opts, &running, broker);

    let sim = SimConfig::new(config.link.broker.clone(), opts.devices, opts.interval);
    let sim_task = tokio::spawn(simulate::run(
        sim,
        Arc::clone(&stats),
        stop.clone().cancelled_owned(),
    ));
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            res = &mut collector => {
                stop.cancel();
                let _ = sim_task.await;
                res?;
                return Ok(());
            }
            _ = tick.tick() => {
                if let Some(line) = summary(&running).await {
                    println!("{line}");
                }
            }
        }
    }
    // Devices say goodbye first, so the collector records clean stops.
    stop.cancel();
    let sim_result = sim_task.await;
    collector.await?;
    if let Ok(r) = sim_result {
        r?;
    }
    Ok(())
}

/// The collector's configuration for the demo, with the embedded
/// broker's address: the usual ports if they are free, and the database
/// in `dir`.
fn demo_config(
    opts: &DemoOptions,
    dir: &std::path::Path,
) -> Result<(config::Config, SocketAddr), DemoError> {
    let broker = address(SocketAddr::from(([127, 0, 0, 1], 1883)))?;
    let http = match opts.http {
        Some(a) => a,
        None => address(SocketAddr::from(([127, 0, 0, 1], 8080)))?,
    };
    let mut raw = RawConfig::default();
    raw.broker.listen = broker.to_string();
    raw.http.listen = http.to_string();
    raw.storage.path = dir.join("collector.db").display().to_string();
    // A silent simulated device should go offline while someone watches.
    raw.presence.timeout =
        picket_config::HumanDuration((opts.interval * 15).max(Duration::from_secs(30)));
    let config = config::validate(&raw)?;
    Ok((config, broker))
}

/// Where to look, printed once the collector runs.
fn banner(opts: &DemoOptions, running: &Running, broker: SocketAddr) {
    println!(
        "picket demo: {} simulated devices every {:?}",
        opts.devices, opts.interval
    );
    println!(
        "  API      http://{}/api/devices  (also /api/stats, /api/alerts, /metrics)",
        running.http
    );
    println!(
        "  broker   mqtt://{broker}  (try: mosquitto_sub -h 127.0.0.1 -p {} -t 'picket/v1/+/alert' -v)",
        broker.port()
    );
    println!("  Ctrl-C to stop; nothing is kept.");
}

/// `25 devices: 24 online, 1 offline | alerts: 1 critical, 2 warning | 1234 records`
async fn summary(r: &Running) -> Option<String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    r.queries.send(Query::Devices(tx)).await.ok()?;
    let devices = rx.await.ok()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    r.queries.send(Query::Alerts(tx)).await.ok()?;
    let alerts = rx.await.ok()?;
    let online = devices.iter().filter(|d| d.online).count();
    let count = |s| alerts.iter().filter(|a| a.alert.severity == s).count();
    use picket_protocol::Severity::*;
    let records = crate::counters::IngestCounters::get(&r.counters.samples)
        + crate::counters::IngestCounters::get(&r.counters.events);
    let mut worst: Vec<String> = alerts
        .iter()
        .take(3)
        .map(|a| format!("{} {}", a.device, a.alert.rule))
        .collect();
    if alerts.len() > 3 {
        worst.push("...".into());
    }
    Some(format!(
        "{} devices: {online} online, {} offline | alerts: {} critical, {} warning, {} info{} | {records} records stored",
        devices.len(),
        devices.len() - online,
        count(Critical),
        count(Warning),
        count(Info),
        if worst.is_empty() {
            String::new()
        } else {
            format!(" ({})", worst.join(", "))
        },
    ))
}
