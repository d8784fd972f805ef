//! The one place where a command name meets its code.
//!
//! A command is an [`Action`] variant (in `picket-protocol`) plus one arm in
//! each function below: [`validate`] for the device-specific checks done
//! before the command is accepted (allowlists, paths, anything that would
//! otherwise be found out half-way), and [`run`] for what it does. Both get
//! the shared [`Ctx`]. Nothing else needs to change to add a command.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use picket_protocol::{
    Action, Command, ConfigArgs, DeployArgs, GpioWriteArgs, IdentifyArgs, PathArgs, UpdateArgs,
};

use super::config_update::ConfigUpdateError;
use super::docker::DockerRefusal;
use super::exec::ExecError;
use super::files::FileError;
use super::output::Sink;
use super::{Ctx, Outcome, config_update, docker, exec, files, sysinfo};
use crate::download::DownloadError;
use crate::durable::DurableError;
use crate::gpio::{GpioError, WriteArgs};
use crate::led::{Identify, IdentifyError};
use crate::update;
use crate::update::install::InstallError;

/// Why a command was rejected before it ran, or failed while running.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("unit {0} is not in commands.services")]
    Unit(String),
    #[error("duration {secs} s is not shorter than commands.timeout ({} s)", timeout.as_secs())]
    TooLong { secs: u32, timeout: Duration },
    #[error(
        "a reboot was already requested {ago} s ago; at most one per {} s (commands.reboot_window)",
        window.as_secs()
    )]
    RebootTooSoon { ago: u64, window: Duration },
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    ConfigUpdate(#[from] ConfigUpdateError),
    #[error(transparent)]
    Identify(#[from] IdentifyError),
    #[error(transparent)]
    Gpio(#[from] GpioError),
    #[error(transparent)]
    Update(#[from] InstallError),
    #[error(transparent)]
    Docker(#[from] DockerRefusal),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Durable(#[from] DurableError),
}

/// Device-specific checks; an error is a `rejected` reply. Blocking (may
/// look at the file system), so callers use a blocking thread.
pub fn validate(action: &Action, ctx: &Ctx) -> Result<(), CommandError> {
    let docker = &ctx.peripherals.docker;
    match action {
        Action::Ping(_) | Action::SystemInfo(_) | Action::SystemReboot(_) => Ok(()),
        Action::ServiceRestart(a) => unit_allowed(&a.unit, ctx),
        Action::ServiceLogs(a) => unit_allowed(&a.unit, ctx),
        Action::FileDeploy(a) => Ok(files::resolve(&a.dest, &ctx.cfg.file_dirs).map(drop)?),
        Action::FileDelete(a) => Ok(files::resolve(&a.path, &ctx.cfg.file_dirs).map(drop)?),
        Action::ConfigUpdate(a) => Ok(config_update::validate(
            &a.toml,
            ctx.cfg.config_path.as_deref(),
        )?),
        Action::LedIdentify(a) => Ok(Identify::duration(a.secs.map(u64::from)).map(drop)?),
        Action::GpioWrite(a) => {
            Ok(WriteArgs::validate(&ctx.peripherals.gpio, &a.name, a.level).map(drop)?)
        }
        Action::AgentUpdate(a) => Ok(update::install::validate(
            a,
            &ctx.update.updates,
            ctx.cfg.public_key.as_ref(),
        )?),
        // Docker: the container must be in the device's scope (as the
        // watcher last saw it); `run` checks again against the engine.
        Action::DockerList(_) => Ok(docker::validate_engine(docker)?),
        Action::DockerInspect(a) | Action::DockerStart(a) => {
            Ok(docker::validate(docker, &a.container, None)?)
        }
        Action::DockerStop(a) | Action::DockerRestart(a) => {
            Ok(docker::validate(docker, &a.container, None)?)
        }
        Action::DockerLogs(a) => {
            streaming_fits(a.follow.then_some(a.duration.unwrap_or(60)), ctx)?;
            Ok(docker::validate(docker, &a.container, None)?)
        }
        Action::DockerStats(a) => {
            streaming_fits(a.stream.then_some(a.duration.unwrap_or(10)), ctx)?;
            Ok(docker::validate(docker, &a.container, None)?)
        }
        Action::DockerExec(a) => Ok(docker::validate(docker, &a.container, Some(&a.command))?),
    }
}

/// A stream must end before `commands.timeout` would cut it.
fn streaming_fits(secs: Option<u32>, ctx: &Ctx) -> Result<(), CommandError> {
    match secs {
        Some(s) if Duration::from_secs(u64::from(s)) >= ctx.cfg.timeout => {
            Err(CommandError::TooLong {
                secs: s,
                timeout: ctx.cfg.timeout,
            })
        }
        _ => Ok(()),
    }
}

fn unit_allowed(unit: &str, ctx: &Ctx) -> Result<(), CommandError> {
    if ctx.cfg.services.iter().any(|s| s == unit) {
        Ok(())
    } else {
        Err(CommandError::Unit(unit.to_string()))
    }
}

/// Execute an accepted command. Streaming commands write their output
/// into `out` as it comes; the others return it.
pub async fn run(cmd: &Command, ctx: &Arc<Ctx>, out: &mut Sink) -> Outcome {
    let max = ctx.cfg.output_max;
    let docker = &ctx.peripherals.docker;
    match &cmd.action {
        Action::Ping(_) => Outcome::Succeeded("pong".into()),
        Action::SystemInfo(_) => system_info(ctx).await,
        Action::SystemReboot(a) => reboot(a.delay, ctx).await,
        Action::ServiceRestart(a) => {
            program(exec::restart_argv(&ctx.cfg.systemctl, &a.unit), max).await
        }
        Action::ServiceLogs(a) => {
            program(exec::logs_argv(&ctx.cfg.journalctl, &a.unit, a.lines), max).await
        }
        Action::FileDeploy(a) => file_deploy(a, &cmd.id, ctx).await,
        Action::FileDelete(a) => file_delete(a, ctx).await,
        Action::LedIdentify(a) => led_identify(a, ctx),
        Action::GpioWrite(a) => gpio_write(a, ctx).await,
        Action::AgentUpdate(a) => agent_update(a, &cmd.id, ctx).await,
        Action::DockerList(_) => docker::list(docker).await,
        Action::DockerInspect(a) => docker::inspect(docker, &a.container).await,
        Action::DockerStart(a) => docker::start(docker, &a.container).await,
        Action::DockerStop(a) => docker::stop(docker, a, false).await,
        Action::DockerRestart(a) => docker::stop(docker, a, true).await,
        Action::DockerLogs(a) => docker::logs(docker, a, out).await,
        Action::DockerStats(a) => docker::stats(docker, a, out).await,
        Action::DockerExec(a) => docker::exec(docker, a, max).await,
        Action::ConfigUpdate(a) => config_update(a, &cmd.id, ctx).await,
    }
}

async fn system_info(ctx: &Arc<Ctx>) -> Outcome {
    let sensors = ctx.sensors.clone();
    let device = ctx.device.to_string();
    blocking(move || Ok(sysinfo::report(&sensors, &device))).await
}

async fn file_deploy(a: &DeployArgs, id: &str, ctx: &Arc<Ctx>) -> Outcome {
    let (ctx, a, id) = (Arc::clone(ctx), a.clone(), id.to_string());
    blocking(move || {
        // Again at the last moment: the tree may have changed.
        let dest = files::resolve(&a.dest, &ctx.cfg.file_dirs)?;
        Ok(ctx.downloader.deploy(&a.url, &a.sha256, &dest, &id)?)
    })
    .await
}

async fn file_delete(a: &PathArgs, ctx: &Arc<Ctx>) -> Outcome {
    let (ctx, a) = (Arc::clone(ctx), a.clone());
    blocking(move || {
        let path = files::resolve(&a.path, &ctx.cfg.file_dirs)?;
        Ok(files::delete(&path)?)
    })
    .await
}

fn led_identify(a: &IdentifyArgs, ctx: &Ctx) -> Outcome {
    let started = Identify::duration(a.secs.map(u64::from))
        .and_then(|d| ctx.peripherals.identify.start(d).map(|_| d));
    match started {
        Ok(d) => Outcome::Succeeded(format!("identify pattern for {} s", d.as_secs())),
        Err(e) => Outcome::failed(e.to_string()),
    }
}

async fn gpio_write(a: &GpioWriteArgs, ctx: &Ctx) -> Outcome {
    let (gpio, name, level) = (ctx.peripherals.gpio.clone(), a.name.clone(), a.level == 1);
    blocking(move || {
        gpio.write(&name, level)?;
        Ok(format!("{name} set to {}", u8::from(level)))
    })
    .await
}

/// Installs, then has the agent re-executed onto the new version (whose
/// trial sends the final status).
async fn agent_update(a: &UpdateArgs, id: &str, ctx: &Arc<Ctx>) -> Outcome {
    let (c, a, id) = (Arc::clone(ctx), a.clone(), id.to_string());
    let installed = blocking(move || {
        // /proc/self/exe is the running binary's inode even if its
        // path was replaced meanwhile (a package upgrade).
        let exe = Path::new("/proc/self/exe");
        let (updates, key) = (&c.update.updates, c.cfg.public_key.as_ref());
        Ok(update::install::install(
            &a,
            &id,
            updates,
            &c.downloader,
            key,
            exe,
        )?)
    })
    .await;
    match installed {
        Outcome::Succeeded(note) => {
            ctx.update.relaunch.fire();
            Outcome::Deferred(format!("{note} (the final status follows)"))
        }
        other => other,
    }
}

/// Writes the new file, then has the agent restarted onto it (whose
/// trial sends the final status).
async fn config_update(a: &ConfigArgs, id: &str, ctx: &Arc<Ctx>) -> Outcome {
    let Some(path) = ctx.cfg.config_path.clone() else {
        return Outcome::failed(ConfigUpdateError::NoPath.to_string());
    };
    let (toml, state, id) = (a.toml.clone(), ctx.cfg.state_dir.clone(), id.to_string());
    let written = blocking(move || {
        config_update::apply(&toml, &path, &state, &id)?;
        Ok(String::new())
    })
    .await;
    match written {
        Outcome::Succeeded(_) => {
            ctx.restart.fire();
            Outcome::Deferred(
                "configuration written; restarting onto it (the final status follows)".into(),
            )
        }
        other => other,
    }
}

/// At most one reboot per `commands.reboot_window`, remembered on disk
/// (the point of a reboot is that this process will not be around).
async fn reboot(delay: u32, ctx: &Arc<Ctx>) -> Outcome {
    let state = ctx.cfg.state_dir.clone();
    let window = ctx.cfg.reboot_window;
    let allowed = blocking(move || reboot_slot(&state, window)).await;
    if let Outcome::Failed { .. } = allowed {
        return allowed;
    }
    tokio::time::sleep(Duration::from_secs(u64::from(delay))).await;
    program(exec::reboot_argv(&ctx.cfg.reboot), ctx.cfg.output_max).await
}

/// Take the reboot slot: fails when the last reboot request is younger
/// than `window`.
fn reboot_slot(state: &Path, window: Duration) -> Result<String, CommandError> {
    let path = state.join("last-reboot");
    let now = crate::sensors::clock::unix_ms();
    if let Some(last) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
    {
        let window_ms = window.as_millis() as u64;
        if now < last.saturating_add(window_ms) && last <= now {
            return Err(CommandError::RebootTooSoon {
                ago: (now - last) / 1000,
                window,
            });
        }
    }
    crate::durable::write_atomic(&path, now.to_string().as_bytes())?;
    Ok(String::new())
}

async fn program(argv: Vec<std::ffi::OsString>, max: usize) -> Outcome {
    match exec::run(&argv, max).await {
        Ok(r) if r.success => Outcome::Succeeded(r.output),
        Ok(r) => Outcome::Failed {
            reason: format!("{} failed: {}", argv[0].to_string_lossy(), r.status),
            output: r.output,
        },
        Err(e) => Outcome::failed(e.to_string()),
    }
}

/// Run `f` on a blocking thread; its error is the reply's reason.
async fn blocking(f: impl FnOnce() -> Result<String, CommandError> + Send + 'static) -> Outcome {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(out)) => Outcome::Succeeded(out),
        Ok(Err(e)) => Outcome::failed(e.to_string()),
        Err(e) => Outcome::failed(format!("the command's thread failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reboot_per_window() {
        let d = tempfile::tempdir().unwrap();
        assert!(reboot_slot(d.path(), Duration::from_secs(3600)).is_ok());
        let err = reboot_slot(d.path(), Duration::from_secs(3600))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most one per 3600 s"), "{err}");
        assert!(reboot_slot(d.path(), Duration::ZERO).is_ok());
    }
}
