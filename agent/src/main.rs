//! `picket-agent`: parse the command line, set up logging, load the
//! configuration, and hand over to [`picket_agent::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// picket's edge agent: samples this device, queues every sample on disk,
/// and publishes it over MQTT until the broker acknowledged it.
#[derive(Parser)]
#[command(version, about, long_about = None)]
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
    Run,
    /// Print the default configuration, with comments, and exit.
    PrintDefaultConfig,
    /// Check the configuration and print the effective values, then exit.
    CheckConfig,
}

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
                println!(
                    "commands: {} ({})",
                    config.commands.allowed.join(", "),
                    if config.commands.public_key.is_some() {
                        "signatures required"
                    } else {
                        "unsigned accepted: no commands.public_key_file"
                    }
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run => {
            init_tracing(cli.verbose);
            let config = match load(&cli.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match run(config) {
                Ok(picket_agent::Exit::Stopped) => ExitCode::SUCCESS,
                Ok(picket_agent::Exit::Restart) => restart(),
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

fn run(config: picket_agent::Config) -> anyhow::Result<picket_agent::Exit> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(picket_agent::run(config, signal()))
        .context("agent failed")
}

/// SIGTERM (systemd) or SIGINT (Ctrl-C).
async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "info,rumqttc=warn",
        1 => "debug,rumqttc=info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
