//! The embedded broker (rumqttd; feature `embedded-broker`): the
//! collector's, started when no `broker.url` is set so one command brings
//! up a working system (the collector then connects to it like to any
//! other broker: one code path for embedded and external), and the agent's
//! test broker. One configuration for both, so the tests run against the
//! broker users get.
//!
//! rumqttd 0.20's traps, handled here: it cannot report the port of a
//! port-0 bind and its `start()` returns `Ok(())` when the bind fails, so
//! the address is checked first and *any* return of `start()` is fatal;
//! it keeps published data in RAM per filter up to segment size × count,
//! and with segments too small a lagging QoS 1 subscriber silently loses
//! messages, so segments are sized with a wide margin (see
//! [`SEGMENT_SIZE`]).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Bytes per commit-log segment and segments kept per filter: up to
/// 256 MiB of RAM per filter under a lagging subscriber, hundreds of
/// thousands of telemetry messages (about 43 MB held 500,000 here).
pub const SEGMENT_SIZE: usize = 32 << 20;
pub const SEGMENT_COUNT: usize = 8;

#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    pub listen: SocketAddr,
    pub max_payload: usize,
    pub max_connections: usize,
    /// A username and password every client must give; `None`: anyone.
    pub auth: Option<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the embedded broker cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the embedded broker did not start listening on {0} within 10 s")]
    NotListening(SocketAddr),
    #[error("cannot start the embedded broker's thread: {0}")]
    Thread(std::io::Error),
}

/// A running embedded broker. `stopped` resolves if it ever stops, which
/// it only does on failure.
pub struct Embedded {
    pub addr: SocketAddr,
    pub stopped: oneshot::Receiver<String>,
}

pub fn start(cfg: &EmbeddedConfig) -> Result<Embedded, BrokerError> {
    // Check the address ourselves: rumqttd would fail silently.
    drop(
        TcpListener::bind(cfg.listen).map_err(|source| BrokerError::Bind {
            addr: cfg.listen,
            source,
        })?,
    );
    let config = config(cfg);
    let (tx, stopped) = oneshot::channel();
    std::thread::Builder::new()
        .name("picket-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            let why = match broker.start() {
                Ok(()) => "the embedded broker stopped (its listener failed)".to_string(),
                Err(e) => format!("the embedded broker failed: {e}"),
            };
            let _ = tx.send(why);
        })
        .map_err(BrokerError::Thread)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&cfg.listen, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            return Err(BrokerError::NotListening(cfg.listen));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Embedded {
        addr: cfg.listen,
        stopped,
    })
}

fn config(cfg: &EmbeddedConfig) -> rumqttd::Config {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: cfg.max_payload,
        max_inflight_count: 1_000,
        auth: cfg
            .auth
            .as_ref()
            .map(|(u, p)| HashMap::from([(u.clone(), p.clone())])),
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "v4".into(),
        listen: cfg.listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let router = rumqttd::RouterConfig {
        max_connections: cfg.max_connections,
        max_outgoing_packet_count: 1_000,
        max_segment_size: SEGMENT_SIZE,
        max_segment_count: SEGMENT_COUNT,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    rumqttd::Config {
        id: 0,
        router,
        v4: Some(HashMap::from([("v4".to_string(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    }
}
