//! `picket-collector simulate`: command-line options to a [`SimConfig`],
//! and a run that prints the fleet's counters every few seconds.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use picket_config::ConfigError;
use picket_protocol::Format;

use super::{SimConfig, SimError, SimStats};
use crate::config::{DEFAULT_PATH, RawConfig};

#[derive(Debug, Clone)]
pub struct Options {
    /// The collector's configuration: its `[broker]` section (TLS,
    /// credentials, prefix) is used, with `broker` replacing the URL.
    pub config: Option<PathBuf>,
    pub devices: usize,
    pub interval: Duration,
    pub broker: Option<String>,
    pub format: String,
    pub seed: u64,
    pub scenarios: bool,
    pub id_prefix: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Sim(#[from] SimError),
}

/// Check the options before anything connects.
pub fn prepare(
    opts: Options,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<SimConfig, PrepareError> {
    let raw = picket_config::load::<RawConfig>(opts.config.as_deref(), DEFAULT_PATH, vars)?.raw;
    // The simulator publishes where the agents would: the configured
    // broker, else the embedded broker's address.
    let url = match (&opts.broker, raw.broker.url.is_empty()) {
        (Some(u), _) => u.clone(),
        (None, false) => raw.broker.url.clone(),
        (None, true) => format!("mqtt://{}", raw.broker.listen),
    };
    let broker = picket_config::broker::resolve(&raw.broker.shared(&url), "picket-sim")?;
    let format: Format = opts
        .format
        .parse()
        .map_err(|e: String| ConfigError::Invalid {
            key: "--format".into(),
            reason: e,
            origin: "command line".into(),
        })?;
    let mut sim = SimConfig::new(broker, opts.devices, opts.interval);
    sim.format = format;
    sim.seed = opts.seed;
    sim.scenarios = opts.scenarios;
    sim.id_prefix = opts.id_prefix;
    sim.validate()?;
    Ok(sim)
}

/// Run until `shutdown`, printing the counters every 5 seconds.
pub async fn run(sim: SimConfig, shutdown: impl Future<Output = ()>) -> Result<(), SimError> {
    let stats = Arc::new(SimStats::default());
    println!(
        "simulating {} devices every {:?} against {}",
        sim.devices, sim.interval, sim.broker.url
    );
    let printer = tokio::spawn({
        let stats = Arc::clone(&stats);
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            tick.tick().await;
            loop {
                tick.tick().await;
                println!("{}", stats.summary());
            }
        }
    });
    let result = super::run(sim, Arc::clone(&stats), shutdown).await;
    printer.abort();
    println!("{}", stats.summary());
    result
}
