//! `picket-agent`: parse the command line, set up logging, load the
//! configuration, and hand over to [`picket_agent::run`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// picket's edge agent: samples this device, queues every sample on disk,
/// and publishes it over MQTT until the broker acknowledged it.
#[derive(Parser)]
#[command(version = VERSION.as_str(), about, long_about = None)]
struct Cli {
    /// Configuration file [default: /etc/picket/agent.toml, optional].
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
    /// Run the agent (the default).
    ///
    /// A first-boot configuration left on the boot partition
    /// (first_boot.path, /boot/firmware/picket.toml) is checked and
    /// installed in place of the configuration file first. When
    /// agent.update installed another version, this binary starts that one
    /// instead (or restores the previous one if it failed its trial): see
    /// update.dir.
    Run,
    /// Print the default configuration, with comments, and exit.
    PrintDefaultConfig,
    /// Check the configuration and print the effective values, then exit.
    CheckConfig,
    /// Show the running agent's state and what its status LED means.
    ///
    /// Connection, queue, clock, alerts and the LED's pattern. Exit code 0
    /// if the agent answers, 3 if it is not running.
    Status {
        /// Print the state as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Check everything the agent needs, one line each with a fix.
    ///
    /// The configuration, the clock, DNS and TCP reach of the broker, TLS,
    /// the credentials, the queue directory, GPIO and the LED. Exit code 0
    /// only if every check passes.
    Doctor,
    /// For systemd's ExecStopPost=: record how a version on trial stopped.
    ///
    /// Reads $SERVICE_RESULT, $EXIT_CODE and $EXIT_STATUS while a new
    /// version is on trial, so a rollback says why. Does nothing
    /// otherwise; exit 0.
    PostStop,
}

/// The version (set at build time, see [`picket_agent::VERSION`]), and
/// whether this build can watch Docker (a cargo feature: the same version
/// number exists with and without it).
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    if picket_agent::config::DOCKER_SUPPORTED {
        format!("{} (docker)", picket_agent::VERSION)
    } else {
        picket_agent::VERSION.to_string()
    }
});

/// How long `run` shows "configuration invalid" on the LED before exiting
/// with code 2 (systemd then restarts it, and it shows again).
const CONFIG_INVALID_SHOWN: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::PrintDefaultConfig => {
            print!("{}", picket_agent::config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Command::CheckConfig => match load(&cli.config) {
            Ok(config) => {
                println!("configuration is valid");
                println!("device:  {}", config.device);
                println!("broker:  {}", config.broker.url);
                println!("queue:   {}", config.queue.dir.display());
                println!("hash:    {}", config.hash);
                println!("version: {}", picket_agent::VERSION);
                println!("updates: {}", config.update.dir.display());
                println!(
                    "commands: {} ({})",
                    config.commands.allowed.join(", "),
                    if config.commands.public_key.is_some() {
                        "signatures required"
                    } else {
                        "unsigned accepted: no commands.public_key_file"
                    }
                );
                println!("docker:  {}", docker_line(&config.docker));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Status { json } => status(&cli.config, json),
        Command::Doctor => doctor(&cli.config),
        Command::PostStop => {
            picket_agent::update::launch::post_stop(cli.config.as_deref());
            ExitCode::SUCCESS
        }
        Command::Run => {
            init_tracing(cli.verbose);
            // Before anything else, so that a rollback does not depend on
            // the rest of this binary (or its configuration) working.
            picket_agent::update::launch::launch(cli.config.as_deref());
            if let Err(code) = first_boot(&cli.config) {
                return code;
            }
            let config = match load(&cli.config) {
                Ok(c) => c,
                Err(code) => {
                    show_config_invalid(&cli.config);
                    return code;
                }
            };
            match run(config) {
                Ok(picket_agent::Exit::Stopped) => ExitCode::SUCCESS,
                Ok(picket_agent::Exit::Restart) => restart(),
                Ok(picket_agent::Exit::Relaunch) => {
                    let err = picket_agent::update::launch::relaunch();
                    eprintln!("picket-agent: cannot start the entry binary again: {err}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("picket-agent: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Bad configuration exits with code 2 and names the key.
fn load(path: &Option<PathBuf>) -> Result<picket_agent::Config, ExitCode> {
    match picket_agent::config::load(path.as_deref(), std::env::vars()) {
        Ok((config, unknown)) => {
            for var in unknown {
                tracing::warn!(variable = %var, "unknown PICKET_* variable ignored");
            }
            Ok(config)
        }
        Err(e) => {
            eprintln!("picket-agent: invalid configuration: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// Install a first-boot configuration from the SD card's boot partition,
/// if one is there, before the configuration is loaded. An invalid one is
/// a configuration error (exit code 2); it stays on the card.
fn first_boot(path: &Option<PathBuf>) -> Result<(), ExitCode> {
    use picket_agent::first_boot::{Outcome, install};
    // A broken environment is reported by the configuration load next.
    let Ok(Some(source)) = picket_agent::config::first_boot_path(path.as_deref(), std::env::vars())
    else {
        return Ok(());
    };
    let target = path
        .clone()
        .unwrap_or_else(|| PathBuf::from(picket_agent::config::DEFAULT_PATH));
    match install(&source, &target, std::env::vars()) {
        Ok(Outcome::Absent) => Ok(()),
        Ok(Outcome::Installed { source, target }) => {
            tracing::info!(
                from = %source.display(),
                to = %target.display(),
                "first-boot configuration installed"
            );
            Ok(())
        }
        Err(e) if e.is_invalid_config() => {
            eprintln!("picket-agent: {e}");
            show_config_invalid(path);
            Err(ExitCode::from(2))
        }
        Err(e) => {
            eprintln!("picket-agent: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Start again from scratch (new configuration): the same program, the
/// same arguments and environment, the same process id (systemd keeps
/// tracking it).
fn restart() -> ExitCode {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let program = std::env::current_exe().ok();
    let _ = args.next();
    match program {
        Some(p) => {
            let err = std::process::Command::new(p).args(args).exec();
            eprintln!("picket-agent: cannot restart: {err}");
        }
        None => eprintln!("picket-agent: cannot restart: own executable unknown"),
    }
    ExitCode::FAILURE
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Blink "configuration invalid" for a while, when there is a LED to
/// blink: the technician at the box has no other way to learn it.
fn show_config_invalid(path: &Option<PathBuf>) {
    use picket_agent::config::LedConfig;
    use picket_agent::led::{Led, LedSources, Pattern};
    let cfg = picket_agent::config::led_for_invalid(path.as_deref(), std::env::vars());
    if cfg == LedConfig::None {
        return;
    }
    let Ok(rt) = runtime() else { return };
    rt.block_on(async {
        let backend = match picket_agent::led::open(&cfg, &picket_agent::gpio::cdev::Cdev) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "no status LED to show the invalid configuration on");
                return;
            }
        };
        let (trigger, stop) = picket_agent::shutdown::channel();
        let (pattern, _) = tokio::sync::watch::channel(Pattern::Off);
        let sources = LedSources::config_invalid();
        let led = tokio::spawn(Led::new(backend, sources, pattern, stop).run());
        eprintln!(
            "picket-agent: showing \"configuration invalid\" on the status LED for {}s",
            CONFIG_INVALID_SHOWN.as_secs()
        );
        tokio::select! {
            () = tokio::time::sleep(CONFIG_INVALID_SHOWN) => {}
            () = picket_config::shutdown::signal() => {}
        }
        trigger.fire();
        let _ = led.await;
    });
}

fn status(path: &Option<PathBuf>, json: bool) -> ExitCode {
    use picket_agent::status::{QueryError, query, render, render_not_running};
    // A broken configuration should not hide a running agent: ask at the
    // default socket then.
    let socket = match picket_agent::config::load(path.as_deref(), std::env::vars()) {
        Ok((c, _)) => match c.status_socket {
            Some(s) => s,
            None => {
                eprintln!("picket-agent: the status socket is off (status.socket is empty)");
                return ExitCode::from(2);
            }
        },
        Err(e) => {
            eprintln!("picket-agent: invalid configuration: {e}");
            PathBuf::from(picket_agent::config::raw::RawStatus::default().socket)
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("picket-agent: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(query(&socket)) {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", render(&report));
            }
            ExitCode::SUCCESS
        }
        Err(e @ QueryError::NotRunning(_)) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"running": false, "error": e.to_string()})
                );
            } else {
                print!("{}", render_not_running(&e));
            }
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("picket-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

fn doctor(path: &Option<PathBuf>) -> ExitCode {
    use picket_agent::doctor;
    let config = picket_agent::config::load(path.as_deref(), std::env::vars()).map(|(c, _)| c);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("picket-agent: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let checks = rt.block_on(doctor::run(config, &doctor::Probes::real()));
    print!("{}", doctor::render(&checks));
    if doctor::passed(&checks) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(config: picket_agent::Config) -> anyhow::Result<picket_agent::Exit> {
    let rt = runtime()?;
    let exit = rt.block_on(async {
        // Listening from the start: a signal that comes while the agent is
        // still starting is kept for `run`, not the default action (death
        // without closing the queue or saying goodbye).
        let stop = listen_for_stop();
        picket_agent::run(config, stop).await
    });
    // Not the runtime's drop, which waits for every blocking thread: one
    // may still be in a download, a DNS lookup or a stuck sensor read that
    // nothing needs any more, and the stop must stay prompt.
    rt.shutdown_background();
    exit.context("agent failed")
}

/// SIGTERM (systemd) or SIGINT (Ctrl-C), listened for from the call on
/// (within the runtime).
fn listen_for_stop() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (term, int) => {
                tracing::warn!(
                    sigterm = term.is_ok(),
                    sigint = int.is_ok(),
                    "cannot listen for a stop signal; listening for what can be"
                );
                picket_config::shutdown::signal().await;
            }
        }
    }
}

/// Log filters for no `-v`, `-v` and `-vv`.
const DEFAULT_LOG: [&str; 3] = ["info,rumqttc=warn", "debug,rumqttc=info", "trace"];

fn init_tracing(verbose: u8) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let default = DEFAULT_LOG[usize::from(verbose.min(2))];
    // `RUST_LOG` as a level and `target=level` pairs. Not EnvFilter: its
    // span and field filters need a regex engine, 140 KiB of a binary that
    // has to fit on a Pi's update link.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| match v.parse::<Targets>() {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("picket-agent: RUST_LOG={v:?} ignored: {e}");
                None
            }
        })
        .unwrap_or_else(|| default.parse().unwrap_or_default());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .with(filter)
        .init();
}

/// `check-config`'s Docker line: off, or the socket and the scope.
fn docker_line(d: &picket_agent::config::DockerConfig) -> String {
    if !picket_agent::config::DOCKER_SUPPORTED {
        return "not in this build (cargo feature docker)".into();
    }
    if !d.enabled {
        return "off (docker.enabled)".into();
    }
    let mut scope = Vec::new();
    if let Some(l) = &d.scope.label {
        scope.push(format!("label {l}"));
    }
    if !d.scope.names.is_empty() {
        scope.push(format!("{} name pattern(s)", d.scope.names.len()));
    }
    if scope.is_empty() {
        scope.push("nothing: set docker.label or docker.names".into());
    }
    let exec: Vec<&str> = d.exec.iter().map(|e| e.name.as_str()).collect();
    format!(
        "{}, scope: {}; exec: {}",
        d.socket.display(),
        scope.join(" or "),
        if exec.is_empty() {
            "none".to_string()
        } else {
            exec.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_log_filters_parse() {
        for f in super::DEFAULT_LOG {
            assert!(
                f.parse::<tracing_subscriber::filter::Targets>().is_ok(),
                "{f}"
            );
        }
    }
}
