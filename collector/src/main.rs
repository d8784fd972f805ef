//! `picket-collector`: parse the command line, set up logging, load the
//! configuration, and hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use picket_collector::config::{self, Config};
use picket_config::shutdown::signal;

/// picket's collector: watches a fleet of picket agents over MQTT, keeps
/// their history, raises alerts, and serves a REST API and /metrics.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Configuration file [default: /etc/picket/collector.toml, optional].
    /// Every key can also be set as PICKET_<SECTION>_<KEY>.
    #[arg(short, long, global = true, env = "PICKET_CONFIG")]
    config: Option<PathBuf>,

    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector (the default).
    ///
    /// Without broker.url it starts its own MQTT broker.
    Serve,
    /// Embedded broker, collector and a simulated fleet in one process.
    ///
    /// A live one-line summary on the terminal, the API and /metrics on
    /// --http. Nothing to install, nothing kept.
    Demo(DemoArgs),
    /// Publish realistic telemetry for simulated devices (demo data, load).
    Simulate(SimulateArgs),
    /// Write a new key pair for signing commands.
    ///
    /// DIR/command.key stays with the collector (commands.private_key_file);
    /// DIR/command.pub goes to every agent (commands.public_key_file).
    Keygen {
        /// Directory to write the two files into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Send a command to a device through the collector's API.
    ///
    /// With --wait, print its status changes as they arrive. Exit code 0
    /// when it succeeded (or was sent, without --wait), 1 otherwise.
    Send(SendArgs),
    /// Print an agent binary's SHA-256 and signature, for agent.update.
    ///
    /// The signature is made with commands.private_key_file; the two
    /// values are agent.update's sha256 and signature arguments.
    SignArtifact {
        /// The agent binary.
        file: PathBuf,
    },
    /// Roll an agent version out to devices in batches.
    ///
    /// Each batch is sent agent.update and waited for until every device
    /// committed (the new version had a sample acknowledged by the broker)
    /// or failed (refused, rolled back, or silent until --timeout); the
    /// rollout stops when more than --max-failed percent of the devices
    /// tried so far failed. Exit code 0 when every batch ran, 1 when
    /// stopped or on error.
    Update(UpdateArgs),
    /// Print the default configuration, with comments, and exit.
    PrintDefaultConfig,
    /// Check the configuration and print the effective values, then exit.
    CheckConfig,
}

#[derive(Args)]
struct DemoArgs {
    /// Simulated devices.
    #[arg(long, default_value_t = 25)]
    devices: usize,
    /// Sampling interval of each simulated device.
    #[arg(long, default_value = "2s", value_parser = duration)]
    interval: Duration,
    /// Address of the API [default: 127.0.0.1:8080, or a free port if taken].
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
}

#[derive(Args)]
struct SimulateArgs {
    /// Number of simulated devices, each with its own MQTT connection.
    #[arg(long, default_value_t = 25)]
    devices: usize,
    /// Sampling interval of each device.
    #[arg(long, default_value = "10s", value_parser = duration)]
    interval: Duration,
    /// Broker to publish to [default: the configuration's broker.url,
    /// else mqtt://127.0.0.1:1883].
    #[arg(long)]
    broker: Option<String>,
    /// Payload encoding: cbor or json.
    #[arg(long, default_value = "cbor")]
    format: String,
    /// Seed of the simulation (same seed, same fleet).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// No overheating, full disks, power loss...: steady load only.
    #[arg(long)]
    no_scenarios: bool,
    /// Device ids are PREFIX-0001, PREFIX-0002...
    #[arg(long, default_value = "sim")]
    id_prefix: String,
}

#[derive(Args)]
struct SendArgs {
    /// The device id.
    device: String,
    /// The command: ping, system.info, system.reboot, service.restart,
    /// service.logs, file.deploy, file.delete, config.update, led.identify,
    /// gpio.write, agent.update, docker.list, docker.inspect, docker.start,
    /// docker.stop, docker.restart, docker.logs, docker.stats, docker.exec.
    name: String,
    /// Arguments as JSON, e.g. '{"unit": "kiosk.service"}'.
    #[arg(long)]
    args: Option<String>,
    /// How long the command may wait for an offline device (e.g. 30s,
    /// 10m) [default: commands.default_ttl].
    #[arg(long)]
    ttl: Option<String>,
    /// Wait for the final status and print every status change.
    #[arg(long)]
    wait: bool,
    /// The collector's API [default: http://<http.listen>].
    #[arg(long)]
    api: Option<String>,
    /// Admin token [default: api.admin_token of the configuration, or
    /// PICKET_API_ADMIN_TOKEN].
    #[arg(long)]
    token: Option<String>,
}

#[derive(Args)]
struct UpdateArgs {
    /// The version the artifact reports (e.g. 0.2.0).
    #[arg(long = "to")]
    to: String,
    /// The agent binary (signed here with commands.private_key_file).
    #[arg(long)]
    artifact: PathBuf,
    /// Where devices download it: an https:// URL serving that file.
    #[arg(long)]
    url: String,
    /// Devices: comma-separated ids or globs (pi-*), and label=value
    /// terms; all of the fleet by default. Devices already on the
    /// version, offline, or on a newer version are skipped.
    #[arg(long, default_value = "*")]
    devices: String,
    /// Devices per batch (the first batch is the canary).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Stop when more than this percentage of the devices tried so
    /// far failed.
    #[arg(long, default_value_t = 10.0)]
    max_failed: f64,
    /// Also replace newer versions (the agents refuse a downgrade
    /// otherwise).
    #[arg(long)]
    allow_downgrade: bool,
    /// How long each command may wait for its device at the broker.
    #[arg(long, default_value = "10m", value_parser = duration)]
    ttl: Duration,
    /// How long a batch may take before its silent devices count as
    /// failed (download, restart and the agents' trial window).
    #[arg(long, default_value = "15m", value_parser = duration)]
    timeout: Duration,
    /// The collector's API [default: http://<http.listen>].
    #[arg(long)]
    api: Option<String>,
    /// Admin token [default: api.admin_token of the configuration, or
    /// PICKET_API_ADMIN_TOKEN].
    #[arg(long)]
    token: Option<String>,
}

fn duration(s: &str) -> Result<Duration, picket_config::UnitError> {
    picket_config::parse_duration(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = &cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config, cli.verbose),
        Command::Demo(args) => demo(args, cli.verbose),
        Command::Simulate(args) => simulate(args, config.clone(), cli.verbose),
        Command::Keygen { out } => keygen(&out),
        Command::Send(args) => send(args, config),
        Command::SignArtifact { file } => sign_artifact(&file, config),
        Command::Update(args) => update(args, config),
        Command::PrintDefaultConfig => {
            print!("{}", config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Command::CheckConfig => check_config(config),
    }
}

fn serve(path: &Option<PathBuf>, verbose: u8) -> ExitCode {
    init_tracing(verbose);
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    report(
        block_on(picket_collector::run(config, signal()))
            .and_then(|r| r.context("collector failed")),
    )
}

fn demo(a: DemoArgs, verbose: u8) -> ExitCode {
    init_tracing(verbose);
    let opts = picket_collector::demo::DemoOptions {
        devices: a.devices,
        interval: a.interval,
        http: a.http,
    };
    report(
        block_on(picket_collector::demo::run(opts, signal()))
            .and_then(|r| r.context("demo failed")),
    )
}

fn simulate(a: SimulateArgs, config: Option<PathBuf>, verbose: u8) -> ExitCode {
    init_tracing(verbose);
    let opts = picket_collector::simulate::cli::Options {
        config,
        devices: a.devices,
        interval: a.interval,
        broker: a.broker,
        format: a.format,
        seed: a.seed,
        scenarios: !a.no_scenarios,
        id_prefix: a.id_prefix,
    };
    let sim = match picket_collector::simulate::cli::prepare(opts, std::env::vars()) {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("picket-collector: {e}");
            return ExitCode::from(2);
        }
    };
    report(
        block_on(picket_collector::simulate::cli::run(sim, signal()))
            .and_then(|r| r.context("simulation failed")),
    )
}

fn keygen(out: &std::path::Path) -> ExitCode {
    match picket_collector::commands::keygen::keygen(out) {
        Ok((private, public)) => {
            println!(
                "private key: {} (commands.private_key_file of the collector)",
                private.display()
            );
            println!(
                "public key:  {} (commands.public_key_file of every agent)",
                public.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("picket-collector: {e}");
            ExitCode::FAILURE
        }
    }
}

fn send(a: SendArgs, path: &Option<PathBuf>) -> ExitCode {
    use picket_collector::commands::send::{Request, Settled, send};
    let (api, token) = match (a.api, a.token) {
        (Some(api), Some(token)) => (api, Some(token)),
        (api, token) => {
            let c = match load(path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            (
                api.unwrap_or_else(|| format!("http://{}", c.http_listen)),
                token.or(c.api.admin),
            )
        }
    };
    let req = Request {
        api: &api,
        token: token.as_deref(),
        device: &a.device,
        name: &a.name,
        args: a.args.as_deref(),
        ttl: a.ttl.as_deref(),
        wait: a.wait,
    };
    match send(&req, &mut std::io::stdout()) {
        Ok(Settled::Sent | Settled::Succeeded) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("picket-collector: {e}");
            ExitCode::FAILURE
        }
    }
}

fn sign_artifact(file: &std::path::Path, path: &Option<PathBuf>) -> ExitCode {
    let c = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(key) = c.commands.key else {
        eprintln!("picket-collector: commands.private_key_file is not set: nothing to sign with");
        return ExitCode::from(2);
    };
    match picket_collector::commands::artifact::sign(file, &key) {
        Ok(s) => {
            println!("bytes:     {}", s.bytes);
            println!("sha256:    {}", s.sha256);
            println!("signature: {}", s.signature);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("picket-collector: {e}");
            ExitCode::FAILURE
        }
    }
}

fn update(a: UpdateArgs, path: &Option<PathBuf>) -> ExitCode {
    use picket_collector::rollout::cli::{Options, RolloutError, run};
    let c = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(key) = c.commands.key.clone() else {
        eprintln!(
            "picket-collector: commands.private_key_file is not set: the artifact cannot be signed"
        );
        return ExitCode::from(2);
    };
    let api = a.api.unwrap_or_else(|| format!("http://{}", c.http_listen));
    let token = a.token.or(c.api.admin);
    let opts = Options {
        api: &api,
        token: token.as_deref(),
        key: &key,
        to: &a.to,
        artifact: &a.artifact,
        url: &a.url,
        devices: &a.devices,
        batch: a.batch,
        max_failed: a.max_failed,
        allow_downgrade: a.allow_downgrade,
        ttl: a.ttl,
        timeout: a.timeout,
        poll: Duration::from_millis(500),
    };
    match run(&opts, &mut std::io::stdout()) {
        Ok(s) if !s.stopped => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e @ RolloutError::Invalid(_)) => {
            eprintln!("picket-collector: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("picket-collector: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: &Option<PathBuf>) -> ExitCode {
    let c = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    println!("configuration is valid");
    match &c.embedded {
        Some(e) => println!("broker:   embedded, listening on {}", e.listen),
        None => println!("broker:   {}", c.link.broker.url),
    }
    println!("http:     {}", c.http_listen);
    println!("storage:  {}", c.storage_path.display());
    println!(
        "rules:    {}",
        c.engine.rules.names().collect::<Vec<_>>().join(", ")
    );
    println!(
        "api:      {}",
        if c.api.open() {
            "no token: read-only, loopback only"
        } else {
            "bearer tokens"
        }
    );
    ExitCode::SUCCESS
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("picket-collector: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Bad configuration exits with code 2 and names the key.
fn load(path: &Option<PathBuf>) -> Result<Config, ExitCode> {
    match config::load(path.as_deref(), std::env::vars()) {
        Ok((config, unknown)) => {
            for var in unknown {
                tracing::warn!(variable = %var, "unknown PICKET_* variable ignored");
            }
            Ok(config)
        }
        Err(e) => {
            eprintln!("picket-collector: invalid configuration: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// Run `f` on a new multi-threaded runtime (SQLite readers, the HTTP server
/// and the MQTT loop share it; the store has its own thread). It is then shut down
/// without waiting for blocking threads still running (a history query, a
/// webhook call, a database call a stop left behind at its limit): the
/// stop is bounded by the future alone.
fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let out = rt.block_on(f);
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    Ok(out)
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    // rumqttd logs an error for every ordinary client disconnect.
    let default = match verbose {
        0 => "info,rumqttc=warn,rumqttd=off",
        1 => "debug,rumqttc=info,rumqttd=warn",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours on a terminal only: under systemd the lines go to the
    // journal, where escape codes are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
}
