//! `picket-agent doctor`: every check a technician or an installer needs,
//! one line each with a fix hint; the exit code is 0 only if all pass.
//!
//! The checks use the agent's own configuration and code paths (the same
//! TLS configuration, the same MQTT client), so "doctor passes" means the
//! agent can connect. The credentials check connects with the client id
//! `<broker.client_id>-doctor` and a clean session, so it neither kicks a
//! running agent off the broker nor leaves a session behind.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, MqttOptions, Packet, TlsConfiguration, Transport,
};

use crate::Config;
use crate::config::{BrokerConfig, ConfigError, LedConfig, LineRef};
use crate::gpio::{GpioBackend, GpioError};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    /// What to do when it failed.
    pub hint: String,
}

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: true,
        detail: detail.into(),
        hint: String::new(),
    }
}

fn fail(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
    Check {
        name,
        ok: false,
        detail: detail.into(),
        hint: hint.into(),
    }
}

/// The seams: the clock and the GPIO chips.
#[derive(Clone)]
pub struct Probes {
    pub clock_synced: fn() -> bool,
    pub gpio: Arc<dyn GpioBackend>,
}

impl Probes {
    pub fn real() -> Probes {
        Probes {
            clock_synced: crate::sensors::clock::ntp_synced,
            gpio: Arc::new(crate::gpio::cdev::Cdev),
        }
    }
}

/// Network steps wait this long at most.
const NET_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a network step of the broker checks did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("no answer within {NET_TIMEOUT:?}")]
    Timeout,
    #[error("no address")]
    NoAddress,
    #[error("skipped: the broker's name did not resolve")]
    Unresolved,
    #[error("{addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{addr}: no answer within {NET_TIMEOUT:?}")]
    ConnectTimeout { addr: SocketAddr },
    #[error("{host:?} is not a valid TLS server name: {source}")]
    ServerName {
        host: String,
        source: rustls::pki_types::InvalidDnsNameError,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("refused: {0:?}")]
    Refused(rumqttc::ConnectReturnCode),
    #[error(transparent)]
    Mqtt(#[from] ConnectionError),
    #[error("no answer from the broker")]
    NoBrokerAnswer,
}

/// Run every check. With an invalid configuration only that is reported:
/// nothing else can be checked meaningfully.
pub async fn run(config: Result<Config, ConfigError>, probes: &Probes) -> Vec<Check> {
    let config = match config {
        Ok(c) => c,
        Err(e) => return vec![invalid_config(&e)],
    };
    picket_config::tls::install_provider();
    let mut checks = vec![
        pass(
            "config",
            format!("valid (device {}, hash {})", config.device, config.hash),
        ),
        clock((probes.clock_synced)()),
    ];
    checks.extend(broker(&config).await);
    checks.push(queue_dir(
        &config.queue.dir,
        config.queue.max_bytes,
        "queue",
    ));
    if let Some(hot) = &config.queue.hot_dir {
        checks.push(queue_dir(hot, 0, "queue.hot_dir"));
    }
    checks.push(gpio(&config, probes.gpio.as_ref()));
    checks.push(led(&config.led, probes.gpio.as_ref()));
    checks
}

fn invalid_config(e: &ConfigError) -> Check {
    let hint = match e.key() {
        Some(key) => format!(
            "fix {key} in the configuration file or its PICKET_ variable (`picket-agent print-default-config` documents every key)"
        ),
        None => {
            "fix the configuration file (`picket-agent print-default-config` shows a valid one)"
                .into()
        }
    };
    fail("config", e.to_string(), hint)
}

fn clock(synced: bool) -> Check {
    if synced {
        pass("clock", "synchronised (NTP)")
    } else {
        fail(
            "clock",
            "not synchronised: samples are stamped with an unreliable time and TLS certificates may look invalid",
            "check that systemd-timesyncd (or chrony) runs and can reach an NTP server (UDP port 123)",
        )
    }
}

/// dns, tcp, tls and credentials, in that order: each is skipped when one
/// it needs failed.
async fn broker(config: &Config) -> [Check; 4] {
    let b = &config.broker;
    let addrs = resolve(&b.host, b.port).await;
    let dns = dns(b, &addrs);
    let tcp = match &addrs {
        Ok(a) => connect(a).await,
        Err(_) => Err(NetError::Unresolved),
    };
    let tls = tls(b, &tcp).await;
    let connected = tcp.is_ok() && tls.ok;
    let tcp = match &tcp {
        Ok(addr) => pass("tcp", format!("{addr} accepts connections")),
        Err(e) => fail(
            "tcp",
            format!("cannot reach {}:{}: {e}", b.host, b.port),
            "check that the broker runs and listens on that port, and that no firewall is in the way",
        ),
    };
    let credentials = credentials(config, connected).await;
    [dns, tcp, tls, credentials]
}

fn dns(b: &BrokerConfig, addrs: &Result<Vec<SocketAddr>, NetError>) -> Check {
    match addrs {
        Ok(a) if b.host.parse::<std::net::IpAddr>().is_ok() => pass(
            "dns",
            format!("{} is an IP address, no lookup needed", a[0].ip()),
        ),
        Ok(a) => pass("dns", format!("{} resolves to {}", b.host, a[0].ip())),
        Err(e) => fail(
            "dns",
            format!("cannot resolve {}: {e}", b.host),
            "check the network and /etc/resolv.conf, and the host name in broker.url",
        ),
    }
}

async fn tls(b: &BrokerConfig, tcp: &Result<SocketAddr, NetError>) -> Check {
    match (&b.tls, tcp) {
        (None, _) => pass("tls", "not used (mqtt://)"),
        (Some(_), Err(_)) => fail(
            "tls",
            "skipped: no TCP connection",
            "fix the tcp check first",
        ),
        (Some(tls), Ok(addr)) => match handshake(tls.clone(), &b.host, *addr).await {
            Ok(()) => pass(
                "tls",
                "handshake done: the broker's certificate is valid for this host and signed by the configured CA",
            ),
            Err(e) => fail(
                "tls",
                format!("handshake failed: {e}"),
                "check that broker.ca_file holds the CA that signed the broker's certificate, that the certificate names the host of broker.url and has not expired (and the clock)",
            ),
        },
    }
}

/// `connected`: the tcp and tls checks passed.
async fn credentials(config: &Config, connected: bool) -> Check {
    if !connected {
        return fail(
            "credentials",
            "skipped: no connection to the broker",
            "fix the checks above first",
        );
    }
    match mqtt_connect(config).await {
        Ok(()) => pass(
            "credentials",
            match &config.broker.credentials {
                Some((user, _)) => {
                    format!("the broker accepted user {user:?} (connected and disconnected)")
                }
                None => "the broker accepted an anonymous connection (connected and disconnected)"
                    .into(),
            },
        ),
        Err(e) => fail(
            "credentials",
            format!("the broker did not accept the connection: {e}"),
            "check broker.username and the password in broker.password_file (and the broker's ACL for the client id)",
        ),
    }
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, NetError> {
    let addrs = tokio::time::timeout(NET_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| NetError::Timeout)??;
    let addrs: Vec<SocketAddr> = addrs.collect();
    if addrs.is_empty() {
        Err(NetError::NoAddress)
    } else {
        Ok(addrs)
    }
}

/// The first of `addrs` that accepts a connection, or why the last did not.
async fn connect(addrs: &[SocketAddr]) -> Result<SocketAddr, NetError> {
    let mut last = NetError::NoAddress;
    for &addr in addrs {
        match tokio::time::timeout(NET_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => return Ok(addr),
            Ok(Err(source)) => last = NetError::Connect { addr, source },
            Err(_) => last = NetError::ConnectTimeout { addr },
        }
    }
    Err(last)
}

async fn handshake(
    tls: Arc<rustls::ClientConfig>,
    host: &str,
    addr: SocketAddr,
) -> Result<(), NetError> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|source| {
        NetError::ServerName {
            host: host.to_string(),
            source,
        }
    })?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(tls);
    tokio::time::timeout(NET_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| NetError::Timeout)??;
    Ok(())
}

/// Connect with the agent's settings, wait for the broker's answer,
/// disconnect.
async fn mqtt_connect(config: &Config) -> Result<(), NetError> {
    let b = &config.broker;
    let mut opts = MqttOptions::new(format!("{}-doctor", b.client_id), &b.host, b.port);
    opts.set_clean_session(true);
    opts.set_keep_alive(Duration::from_secs(10));
    if let Some((user, pass)) = &b.credentials {
        opts.set_credentials(user.clone(), pass.clone());
    }
    if let Some(tls) = &b.tls {
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls.clone())));
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 4);
    eventloop
        .network_options
        .set_connection_timeout(NET_TIMEOUT.as_secs());
    let answer = tokio::time::timeout(NET_TIMEOUT + Duration::from_secs(5), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => {
                    return Err(NetError::Refused(code));
                }
                // rumqttd and some others hang up instead of answering.
                Err(e) => return Err(NetError::Mqtt(e)),
            }
        }
    })
    .await
    .map_err(|_| NetError::NoBrokerAnswer)?;
    answer?;
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(ev) = eventloop.poll().await {
            if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
    Ok(())
}

fn queue_dir(dir: &Path, need: u64, name: &'static str) -> Check {
    let hint = "create the directory, owned by the agent's user and writable by it (e.g. systemd StateDirectory=picket)";
    if let Err(e) = std::fs::create_dir_all(dir) {
        return fail(name, format!("{}: cannot create: {e}", dir.display()), hint);
    }
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    let written = std::fs::File::create(&probe).and_then(|mut f| {
        use std::io::Write;
        f.write_all(b"picket doctor")?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    if let Err(e) = written {
        return fail(name, format!("{}: not writable: {e}", dir.display()), hint);
    }
    match free_bytes(dir) {
        Some(free) if free < need => fail(
            name,
            format!(
                "{}: writable, but only {} MiB free for a queue of up to {} MiB",
                dir.display(),
                free >> 20,
                need >> 20
            ),
            "free space on that filesystem, or lower queue.max_bytes",
        ),
        Some(free) => pass(
            name,
            format!("{}: writable, {} MiB free", dir.display(), free >> 20),
        ),
        None => pass(name, format!("{}: writable", dir.display())),
    }
}

fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statvfs is a valid out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// A line is fine if it exists and is free, or held by a running agent.
fn locate(gpio: &dyn GpioBackend, line: &LineRef) -> Result<String, GpioError> {
    match gpio.locate(line) {
        Err(GpioError::Busy { consumer, .. }) if consumer == "picket-agent" => {
            Ok(format!("{line} (held by the running agent)"))
        }
        other => other,
    }
}

fn gpio(config: &Config, gpio: &dyn GpioBackend) -> Check {
    let lines: Vec<&LineRef> = config
        .gpio
        .inputs
        .iter()
        .map(|i| &i.line)
        .chain(config.gpio.outputs.iter().map(|o| &o.line))
        .collect();
    if lines.is_empty() {
        return pass("gpio", "no GPIO lines configured");
    }
    let mut found = Vec::new();
    for line in lines {
        match locate(gpio, line) {
            Ok(at) => found.push(at),
            Err(e) => {
                return fail(
                    "gpio",
                    e.to_string(),
                    "check the line names with `gpioinfo` (package gpiod), stop the program using the line, and that the agent's user may open /dev/gpiochip* (group gpio)",
                );
            }
        }
    }
    pass("gpio", format!("all lines available: {}", found.join(", ")))
}

fn led(cfg: &LedConfig, gpio: &dyn GpioBackend) -> Check {
    match cfg {
        LedConfig::None => pass("led", "no status LED configured (led.backend = none)"),
        LedConfig::Sysfs(path) => {
            let hint = "check led.sysfs_path (ls /sys/class/leds) and that the agent may write there (run as root, or a udev rule)";
            if let Err(e) = std::fs::read_to_string(path.join("trigger")) {
                return fail(
                    "led",
                    format!("{}: cannot read its trigger: {e}", path.display()),
                    hint,
                );
            }
            match std::fs::OpenOptions::new()
                .write(true)
                .open(path.join("brightness"))
            {
                Ok(_) => pass("led", format!("{} can be driven", path.display())),
                Err(e) => fail(
                    "led",
                    format!("{}: cannot write its brightness: {e}", path.display()),
                    hint,
                ),
            }
        }
        LedConfig::Gpio { line, .. } => match locate(gpio, line) {
            Ok(at) => pass("led", format!("GPIO line {at} available")),
            Err(e) => fail(
                "led",
                e.to_string(),
                "check led.line with `gpioinfo` (package gpiod) and that no other program holds it",
            ),
        },
    }
}

/// True if every check passed.
pub fn passed(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.ok)
}

/// One line per check: `ok   name   detail`, or `FAIL name   detail — fix: hint`.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        if c.ok {
            out.push_str(&format!("ok    {:<12} {}\n", c.name, c.detail));
        } else {
            out.push_str(&format!(
                "FAIL  {:<12} {} — fix: {}\n",
                c.name, c.detail, c.hint
            ));
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        out.push_str("all checks passed\n");
    } else {
        out.push_str(&format!("{failed} check(s) failed\n"));
    }
    out
}
