//! RawConfig → Config: every check that can fail at start-up fails here,
//! with the key that is wrong and why.

use std::path::{Path, PathBuf};
use std::time::Duration;

use picket_protocol::{DeviceId, Format};

use super::raw::{RawCommands, RawConfig};
use super::{
    Bias, CommandsConfig, Config, ConfigError, DOCKER_SUPPORTED, DockerConfig, ExecSpec,
    GpioConfig, InputSpec, Label, LedConfig, LineRef, OutputSpec, Scope, UpdateConfig,
    UplinkConfig,
};
use crate::queue::QueueConfig;
use crate::sensors::{SensorConfig, identity};
use picket_config::{fnv1a, invalid, read_file};
use picket_protocol::{Action, signing};

pub fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let host_root = PathBuf::from(&raw.host.root);
    if !host_root.is_absolute() {
        return Err(invalid("host.root", "must be an absolute path"));
    }
    let device = device(&raw, &host_root)?;
    let broker = picket_config::broker::resolve(&raw.broker, &format!("picket-{device}"))?;
    let sampling_interval = sampling_interval(&raw)?;
    let format: Format = raw
        .payload
        .format
        .parse()
        .map_err(|e: String| invalid("payload.format", e))?;

    let queue = queue(&raw)?;
    let commands = commands(&raw)?;
    let update = update(&raw)?;
    let docker = docker(&raw)?;
    let uplink = uplink(&raw)?;
    let sensors = sensors(&raw, host_root)?;
    let led = led(&raw)?;
    let gpio = gpio(&raw)?;
    let status_socket = status_socket(&raw)?;
    let first_boot = first_boot(&raw)?;

    // The hash covers the effective settings, not the secrets' contents.
    let canonical = toml::to_string(&raw).unwrap_or_default();
    let hash = format!("{:016x}", fnv1a(canonical.as_bytes()));

    Ok(Config {
        device,
        broker,
        sampling_interval,
        format,
        queue,
        uplink,
        sensors,
        led,
        gpio,
        status_socket,
        commands,
        update,
        docker,
        first_boot,
        hash,
    })
}

/// `device.id`, or the default this host gives when it is not set.
fn device(raw: &RawConfig, host_root: &Path) -> Result<DeviceId, ConfigError> {
    if raw.device.id.is_empty() {
        identity::default_device_id(host_root).map_err(|e| {
            invalid(
                "device.id",
                format!("not set, and no default could be found: {e}"),
            )
        })
    } else {
        DeviceId::new(raw.device.id.clone()).map_err(|e| invalid("device.id", e.to_string()))
    }
}

fn sampling_interval(raw: &RawConfig) -> Result<Duration, ConfigError> {
    let interval = raw.sampling.interval.0;
    if interval < Duration::from_millis(10) {
        return Err(invalid("sampling.interval", "must be at least 10ms"));
    }
    if interval > Duration::from_secs(3600) {
        return Err(invalid("sampling.interval", "must be at most 1h"));
    }
    Ok(interval)
}

/// What the sensors read: the host root, the watched units, `systemctl`
/// and the interfaces left out.
fn sensors(raw: &RawConfig, host_root: PathBuf) -> Result<SensorConfig, ConfigError> {
    for unit in &raw.services.watch {
        if unit.is_empty() || unit.starts_with('-') || unit.contains(char::is_whitespace) {
            return Err(invalid(
                "services.watch",
                format!("{unit:?} is not a systemd unit name"),
            ));
        }
    }
    if raw.services.systemctl.is_empty() {
        return Err(invalid("services.systemctl", "must not be empty"));
    }
    Ok(SensorConfig {
        host_root,
        services: raw.services.watch.clone(),
        systemctl: PathBuf::from(&raw.services.systemctl),
        net_exclude: raw.net.exclude.clone(),
    })
}

fn status_socket(raw: &RawConfig) -> Result<Option<PathBuf>, ConfigError> {
    match raw.status.socket.as_str() {
        "" => Ok(None),
        s if Path::new(s).is_absolute() => Ok(Some(PathBuf::from(s))),
        _ => Err(invalid(
            "status.socket",
            "must be an absolute path, or empty (off)",
        )),
    }
}

fn docker(raw: &RawConfig) -> Result<DockerConfig, ConfigError> {
    let d = &raw.docker;
    if d.enabled && !DOCKER_SUPPORTED {
        return Err(invalid(
            "docker.enabled",
            "this agent was built without Docker support (cargo feature \"docker\")",
        ));
    }
    if !Path::new(&d.socket).is_absolute() {
        return Err(invalid(
            "docker.socket",
            "must be an absolute path (e.g. /var/run/docker.sock)",
        ));
    }
    let label = match d.label.as_str() {
        "" => None,
        l => Some(Label::parse(l).map_err(|e| invalid("docker.label", e.to_string()))?),
    };
    let names = Scope::names(&d.names).map_err(|e| invalid("docker.names", e))?;
    let scope = Scope { names, label };
    let stats_interval = match d.stats_interval.0 {
        Duration::ZERO => None,
        i if i < Duration::from_secs(1) => {
            return Err(invalid(
                "docker.stats_interval",
                "must be at least 1s, or 0s (off)",
            ));
        }
        i => Some(i),
    };
    if d.retry_max.0 < Duration::from_secs(1) {
        return Err(invalid("docker.retry_max", "must be at least 1s"));
    }
    let mut exec: Vec<ExecSpec> = Vec::new();
    for (i, e) in d.exec.iter().enumerate() {
        let key = |k: &str| format!("docker.exec[{i}].{k}");
        picket_protocol::docker::check_exec_name(&e.name)
            .map_err(|err| invalid(&key("name"), err.to_string()))?;
        if exec.iter().any(|x| x.name == e.name) {
            return Err(invalid(&key("name"), format!("{:?} is used twice", e.name)));
        }
        if e.command.is_empty() || e.command[0].is_empty() {
            return Err(invalid(
                &key("command"),
                "must name a program: an argument list such as [\"nginx\", \"-s\", \"reload\"] (no shell)",
            ));
        }
        if e.command.iter().any(|a| a.contains('\0')) {
            return Err(invalid(&key("command"), "must not contain NUL characters"));
        }
        let containers =
            Scope::names(&e.containers).map_err(|err| invalid(&key("containers"), err))?;
        exec.push(ExecSpec {
            name: e.name.clone(),
            argv: e.command.clone(),
            containers,
            user: (!e.user.is_empty()).then(|| e.user.clone()),
        });
    }
    Ok(DockerConfig {
        enabled: d.enabled,
        socket: PathBuf::from(&d.socket),
        scope,
        stats_interval,
        retry_max: d.retry_max.0,
        exec,
    })
}

/// The `[first_boot]` section alone: it is read before the rest of the
/// configuration, which the first-boot file may be about to replace.
pub fn first_boot(raw: &RawConfig) -> Result<Option<PathBuf>, ConfigError> {
    match raw.first_boot.path.as_str() {
        "" => Ok(None),
        p if Path::new(p).is_absolute() => Ok(Some(PathBuf::from(p))),
        _ => Err(invalid(
            "first_boot.path",
            "must be an absolute path, or empty (off)",
        )),
    }
}

/// The `[led]` section alone: the LED can still say "configuration
/// invalid" when another section is wrong.
pub fn led(raw: &RawConfig) -> Result<LedConfig, ConfigError> {
    let l = &raw.led;
    match l.backend.as_str() {
        "none" => Ok(LedConfig::None),
        "sysfs" => {
            if !Path::new(&l.sysfs_path).is_absolute() {
                return Err(invalid(
                    "led.sysfs_path",
                    "must be an absolute path (e.g. /sys/class/leds/ACT)",
                ));
            }
            Ok(LedConfig::Sysfs(PathBuf::from(&l.sysfs_path)))
        }
        "gpio" => {
            let line = LineRef::parse(&l.line).map_err(|e| invalid("led.line", e.to_string()))?;
            Ok(LedConfig::Gpio {
                line,
                active_low: l.active_low,
            })
        }
        other => Err(invalid(
            "led.backend",
            format!("{other:?} is not a LED backend: write sysfs, gpio or none"),
        )),
    }
}

fn gpio_name(key: &str, name: &str, seen: &mut Vec<String>) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return Err(invalid(
            key,
            format!("{name:?}: a name is 1-32 characters of [A-Za-z0-9_.-]"),
        ));
    }
    if seen.iter().any(|n| n == name) {
        return Err(invalid(key, format!("{name:?} is used twice")));
    }
    seen.push(name.to_string());
    Ok(())
}

fn gpio(raw: &RawConfig) -> Result<GpioConfig, ConfigError> {
    let mut names = Vec::new();
    let mut lines: Vec<LineRef> = Vec::new();
    let mut line = |key: &str, text: &str| -> Result<LineRef, ConfigError> {
        let l = LineRef::parse(text).map_err(|e| invalid(key, e.to_string()))?;
        if lines.contains(&l) {
            return Err(invalid(key, format!("{l} is configured twice")));
        }
        lines.push(l.clone());
        Ok(l)
    };
    let mut cfg = GpioConfig::default();
    for (i, r) in raw.gpio.input.iter().enumerate() {
        let key = |k: &str| format!("gpio.input[{i}].{k}");
        gpio_name(&key("name"), &r.name, &mut names)?;
        let debounce = r.debounce.0;
        // The kernel's debouncer is for contact bounce, not for filtering.
        if debounce > Duration::from_secs(1) {
            return Err(invalid(&key("debounce"), "must be at most 1s"));
        }
        cfg.inputs.push(InputSpec {
            name: r.name.clone(),
            line: line(&key("line"), &r.line)?,
            bias: Bias::parse(&r.bias).map_err(|e| invalid(&key("bias"), e.to_string()))?,
            active_low: r.active_low,
            debounce,
        });
    }
    for (i, r) in raw.gpio.output.iter().enumerate() {
        let key = |k: &str| format!("gpio.output[{i}].{k}");
        gpio_name(&key("name"), &r.name, &mut names)?;
        cfg.outputs.push(OutputSpec {
            name: r.name.clone(),
            line: line(&key("line"), &r.line)?,
            active_low: r.active_low,
            initial: r.initial,
        });
    }
    if let LedConfig::Gpio { line: l, .. } = led(raw)?
        && lines.contains(&l)
    {
        return Err(invalid(
            "led.line",
            format!("{l} is also a configured GPIO input or output"),
        ));
    }
    Ok(cfg)
}

fn queue(raw: &RawConfig) -> Result<QueueConfig, ConfigError> {
    let q = &raw.queue;
    if q.dir.is_empty() {
        return Err(invalid("queue.dir", "must not be empty"));
    }
    if q.segment_bytes.0 < 4096 {
        return Err(invalid("queue.segment_bytes", "must be at least 4KiB"));
    }
    if q.max_bytes.0 < 2 * q.segment_bytes.0 {
        return Err(invalid(
            "queue.max_bytes",
            format!(
                "must be at least twice queue.segment_bytes ({})",
                q.segment_bytes
            ),
        ));
    }
    let sync = q.sync_interval.0;
    if sync > Duration::from_secs(300) {
        return Err(invalid(
            "queue.sync_interval",
            "must be at most 5m (it is the most a power cut may lose)",
        ));
    }
    let hot_dir = match q.hot_dir.as_str() {
        "" => None,
        d if !Path::new(d).is_absolute() => {
            return Err(invalid("queue.hot_dir", "must be an absolute path"));
        }
        d if Path::new(d) == Path::new(&q.dir) => {
            return Err(invalid(
                "queue.hot_dir",
                "must differ from queue.dir (it belongs on tmpfs, queue.dir on the SD card)",
            ));
        }
        d => Some(PathBuf::from(d)),
    };
    Ok(QueueConfig {
        dir: PathBuf::from(&q.dir),
        segment_bytes: q.segment_bytes.0,
        max_bytes: q.max_bytes.0,
        sync_interval: sync,
        hot_dir,
    })
}

fn uplink(raw: &RawConfig) -> Result<UplinkConfig, ConfigError> {
    let u = &raw.uplink;
    if !(1..=10_000).contains(&u.batch_records) {
        return Err(invalid(
            "uplink.batch_records",
            "must be between 1 and 10000",
        ));
    }
    if !(1024..=(16 << 20)).contains(&u.batch_bytes.0) {
        return Err(invalid(
            "uplink.batch_bytes",
            "must be between 1KiB and 16MiB",
        ));
    }
    // rumqttc numbers in-flight packets 1..=inflight on its own; keeping
    // ours well under its limit rules out packet id collisions.
    if !(1..=64).contains(&u.inflight) {
        return Err(invalid("uplink.inflight", "must be between 1 and 64"));
    }
    if u.backoff_max.0 < Duration::from_secs(1) {
        return Err(invalid("uplink.backoff_max", "must be at least 1s"));
    }
    // An hour of records sent again after every reconnection is more than
    // any broker's save interval calls for.
    if u.hold_acked.0 > Duration::from_secs(3600) {
        return Err(invalid("uplink.hold_acked", "must be at most 1h"));
    }
    Ok(UplinkConfig {
        batch_records: u.batch_records as usize,
        batch_bytes: u.batch_bytes.0 as usize,
        inflight: u.inflight as usize,
        backoff_max: u.backoff_max.0,
        hold_acked: u.hold_acked.0,
    })
}

fn commands(raw: &RawConfig) -> Result<CommandsConfig, ConfigError> {
    let c = &raw.commands;
    check_allowed(c)?;
    let public_key = public_key(c)?;
    check_limits(c)?;
    check_programs(c)?;
    let file_dirs = file_dirs(c)?;
    let file_roots = file_roots(c)?;
    if c.config_rollback_after.0 < Duration::from_secs(5) {
        return Err(invalid(
            "commands.config_rollback_after",
            "must be at least 5s",
        ));
    }
    Ok(CommandsConfig {
        allowed: c.allowed.clone(),
        public_key,
        state_dir: PathBuf::from(&c.state_dir),
        max_clock_skew: c.max_clock_skew.0,
        trust_clock: c.trust_clock,
        concurrency: c.concurrency as usize,
        timeout: c.timeout.0,
        output_max: c.output_max_bytes.0 as usize,
        journal_entries: c.journal_entries as usize,
        services: c.services.clone(),
        systemctl: PathBuf::from(&c.systemctl),
        journalctl: PathBuf::from(&c.journalctl),
        reboot: c.reboot.clone(),
        reboot_window: c.reboot_window.0,
        file_dirs,
        file_max_bytes: c.file_max_bytes.0,
        file_ca_pem: file_roots,
        rollback_after: c.config_rollback_after.0,
        config_path: None,
    })
}

/// `commands.allowed`: known commands only, and `agent.update` only with
/// a key to check what it installs.
fn check_allowed(c: &RawCommands) -> Result<(), ConfigError> {
    for name in &c.allowed {
        if !Action::NAMES.contains(&name.as_str()) {
            return Err(invalid(
                "commands.allowed",
                format!(
                    "{name:?} is not a command; known: {}",
                    Action::NAMES.join(", ")
                ),
            ));
        }
    }
    if public_key_missing_for_update(c) {
        return Err(invalid(
            "commands.allowed",
            "agent.update needs commands.public_key_file: a new binary runs only if \
             the collector's key signed it",
        ));
    }
    Ok(())
}

/// The collector's signing key (`commands.public_key_file`), when set.
fn public_key(c: &RawCommands) -> Result<Option<signing::PublicKey>, ConfigError> {
    let path = c.public_key_file.as_str();
    if path.is_empty() {
        return Ok(None);
    }
    let data = read_file("commands.public_key_file", path)?;
    let text = String::from_utf8_lossy(&data);
    let key = signing::parse_public_key(&text)
        .map_err(|e| invalid("commands.public_key_file", format!("{path}: {e}")))?;
    Ok(Some(key))
}

/// The service's own bounds: where it keeps its state, how much it runs
/// at once, for how long, and how much it keeps.
fn check_limits(c: &RawCommands) -> Result<(), ConfigError> {
    if c.state_dir.is_empty() || !Path::new(&c.state_dir).is_absolute() {
        return Err(invalid("commands.state_dir", "must be an absolute path"));
    }
    if !(1..=64).contains(&c.concurrency) {
        return Err(invalid("commands.concurrency", "must be between 1 and 64"));
    }
    if c.timeout.0 < Duration::from_secs(1) {
        return Err(invalid("commands.timeout", "must be at least 1s"));
    }
    if c.max_clock_skew.0 > Duration::from_secs(3600) {
        return Err(invalid("commands.max_clock_skew", "must be at most 1h"));
    }
    if !(1024..=(16 << 20)).contains(&c.output_max_bytes.0) {
        return Err(invalid(
            "commands.output_max_bytes",
            "must be between 1KiB and 16MiB",
        ));
    }
    if !(16..=1_000_000).contains(&c.journal_entries) {
        return Err(invalid(
            "commands.journal_entries",
            "must be between 16 and 1000000",
        ));
    }
    Ok(())
}

/// The units `service.restart` may touch and the programs the commands run.
fn check_programs(c: &RawCommands) -> Result<(), ConfigError> {
    for unit in &c.services {
        if picket_protocol::Action::ServiceRestart(picket_protocol::UnitArgs { unit: unit.clone() })
            .check()
            .is_err()
        {
            return Err(invalid(
                "commands.services",
                format!("{unit:?} is not a systemd unit name"),
            ));
        }
    }
    for (key, v) in [
        ("commands.systemctl", &c.systemctl),
        ("commands.journalctl", &c.journalctl),
    ] {
        if v.is_empty() {
            return Err(invalid(key, "must not be empty"));
        }
    }
    if c.reboot.is_empty() || c.reboot[0].is_empty() {
        return Err(invalid("commands.reboot", "must name a program"));
    }
    Ok(())
}

/// `commands.file_dirs`: absolute, without `..`, and not the whole disk.
fn file_dirs(c: &RawCommands) -> Result<Vec<PathBuf>, ConfigError> {
    let mut file_dirs = Vec::new();
    for d in &c.file_dirs {
        let p = Path::new(d);
        if !p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
            return Err(invalid(
                "commands.file_dirs",
                format!("{d:?} must be an absolute path without `..`"),
            ));
        }
        if p == Path::new("/") {
            return Err(invalid(
                "commands.file_dirs",
                "\"/\" would allow every file",
            ));
        }
        file_dirs.push(p.to_path_buf());
    }
    Ok(file_dirs)
}

/// The CA certificates downloads are checked against
/// (`commands.file_ca_file`), when set.
fn file_roots(c: &RawCommands) -> Result<Option<Vec<u8>>, ConfigError> {
    let path = c.file_ca_file.as_str();
    if path.is_empty() {
        return Ok(None);
    }
    let pem = read_file("commands.file_ca_file", path)?;
    let text = String::from_utf8_lossy(&pem);
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(invalid(
            "commands.file_ca_file",
            format!("no PEM certificate in {path}"),
        ));
    }
    Ok(Some(pem))
}

// --- [update]: agent.update ---------------------------------------------

fn public_key_missing_for_update(c: &RawCommands) -> bool {
    c.allowed.iter().any(|a| a == "agent.update") && c.public_key_file.is_empty()
}

/// The `[update]` section; `update.dir` alone is also read, leniently, by
/// the launcher (see [`crate::update::launch`]).
pub fn update(raw: &RawConfig) -> Result<UpdateConfig, ConfigError> {
    let u = &raw.update;
    let dir = Path::new(&u.dir);
    if !dir.is_absolute()
        || dir
            .components()
            .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(invalid(
            "update.dir",
            "must be an absolute path without `..`",
        ));
    }
    if !(1..=20).contains(&u.keep) {
        return Err(invalid("update.keep", "must be between 1 and 20"));
    }
    let window = u.trial_window.0;
    if window < Duration::from_secs(5) || window > Duration::from_secs(3600) {
        return Err(invalid("update.trial_window", "must be between 5s and 1h"));
    }
    if !((64 << 10)..=(1 << 30)).contains(&u.max_bytes.0) {
        return Err(invalid(
            "update.max_bytes",
            "must be between 64KiB and 1GiB",
        ));
    }
    Ok(UpdateConfig {
        dir: dir.to_path_buf(),
        keep: u.keep as usize,
        trial_window: window,
        max_bytes: u.max_bytes.0,
    })
}
