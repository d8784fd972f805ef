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
use crate::config::{ConfigError, LedConfig, LineRef};
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

/// Run every check. With an invalid configuration only that is reported:
/// nothing else can be checked meaningfully.
pub async fn run(config: Result<Config, ConfigError>, probes: &Probes) -> Vec<Check> {
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            let hint = match e.key() {
                Some(key) => format!(
                    "fix {key} in the configuration file or its PICKET_ variable (`picket-agent print-default-config` documents every key)"
                ),
                None => "fix the configuration file (`picket-agent print-default-config` shows a valid one)".into(),
            };
            return vec![fail("config", e.to_string(), hint)];
        }
    };
    picket_config::tls::install_provider();
    let mut checks = vec![pass(
        "config",
        format!("valid (device {}, hash {})", config.device, config.hash),
    )];

    checks.push(if (probes.clock_synced)() {
        pass("clock", "synchronised (NTP)")
    } else {
        fail(
            "clock",
            "not synchronised: samples are stamped with an unreliable time and TLS certificates may look invalid",
            "check that systemd-timesyncd (or chrony) runs and can reach an NTP server (UDP port 123)",
        )
    });

    let b = &config.broker;
    let addrs = resolve(&b.host, b.port).await;
    checks.push(match &addrs {
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
    });

    let tcp = match &addrs {
        Ok(a) => connect(a).await,
        Err(_) => Err("skipped: the broker's name did not resolve".into()),
    };
    checks.push(match &tcp {
        Ok(addr) => pass("tcp", format!("{addr} accepts connections")),
        Err(e) => fail(
            "tcp",
            format!("cannot reach {}:{}: {e}", b.host, b.port),
            "check that the broker runs and listens on that port, and that no firewall is in the way",
        ),
    });

    checks.push(match (&b.tls, &tcp) {
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
    });

    let tls_ok = checks.last().is_some_and(|c| c.ok);
    checks.push(if tcp.is_err() || !tls_ok {
        fail(
            "credentials",
            "skipped: no connection to the broker",
            "fix the checks above first",
        )
    } else {
        match mqtt_connect(&config).await {
            Ok(()) => pass(
                "credentials",
                match &b.credentials {
                    Some((user, _)) => format!("the broker accepted user {user:?} (connected and disconnected)"),
                    None => "the broker accepted an anonymous connection (connected and disconnected)".into(),
                },
            ),
            Err(e) => fail(
                "credentials",
                format!("the broker did not accept the connection: {e}"),
                "check broker.username and the password in broker.password_file (and the broker's ACL for the client id)",
            ),
        }
    });

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

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    match tokio::time::timeout(NET_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(format!("no answer within {NET_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err("no address".into())
            } else {
                Ok(addrs)
            }
        }
    }
}

async fn connect(addrs: &[SocketAddr]) -> Result<SocketAddr, String> {
    let mut last = String::new();
    for a in addrs {
        match tokio::time::timeout(NET_TIMEOUT, tokio::net::TcpStream::connect(a)).await {
            Ok(Ok(_)) => return Ok(*a),
            Ok(Err(e)) => last = format!("{a}: {e}"),
            Err(_) => last = format!("{a}: no answer within {NET_TIMEOUT:?}"),
        }
    }
    Err(last)
}

async fn handshake(
    tls: Arc<rustls::ClientConfig>,
    host: &str,
    addr: SocketAddr,
) -> Result<(), String> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(tls);
    match tokio::time::timeout(NET_TIMEOUT, connector.connect(name, tcp)).await {
        Err(_) => Err(format!("no answer within {NET_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Connect with the agent's settings, wait for the broker's answer,
/// disconnect.
async fn mqtt_connect(config: &Config) -> Result<(), String> {
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
                    return Err(format!("refused: {code:?}"));
                }
                // rumqttd and some others hang up instead of answering.
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| "no answer from the broker".to_string())?;
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
