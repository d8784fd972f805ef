//! The one place where a command name meets its code.
//!
//! A command is an [`Action`] variant (in `picket-protocol`) plus one arm in
//! each function below: [`validate`] for the device-specific checks done
//! before the command is accepted (allowlists, paths, anything that would
//! otherwise be found out half-way), and [`run`] for what it does. Both get
//! the shared [`Ctx`]. Nothing else needs to change to add a command.

use std::sync::Arc;
use std::time::Duration;

use picket_protocol::{Action, Command};

use super::output::Sink;
use super::{Ctx, Outcome, config_update, docker, exec, files, sysinfo};
use crate::gpio::WriteArgs;
use crate::led::Identify;
use crate::update;

/// Device-specific checks; an error is a `rejected` reply. Blocking (may
/// look at the file system), so callers use a blocking thread.
pub fn validate(action: &Action, ctx: &Ctx) -> Result<(), String> {
    match action {
        Action::Ping(_) | Action::SystemInfo(_) | Action::SystemReboot(_) => Ok(()),
        Action::ServiceRestart(a) => unit_allowed(&a.unit, ctx),
        Action::ServiceLogs(a) => unit_allowed(&a.unit, ctx),
        Action::FileDeploy(a) => files::resolve(&a.dest, &ctx.cfg.file_dirs).map(drop),
        Action::FileDelete(a) => files::resolve(&a.path, &ctx.cfg.file_dirs).map(drop),
        Action::ConfigUpdate(a) => config_update::validate(&a.toml, ctx.cfg.config_path.as_deref()),
        Action::LedIdentify(a) => Identify::duration(a.secs.map(u64::from))
            .map(drop)
            .map_err(|e| e.to_string()),
        Action::GpioWrite(a) => {
            WriteArgs::validate(&ctx.peripherals.gpio, &a.name, a.level).map(drop)
        }
        Action::AgentUpdate(a) => {
            update::install::validate(a, &ctx.update.updates, ctx.cfg.public_key.as_ref())
        }
        // Docker: the container must be in the device's scope (as the
        // watcher last saw it); `run` checks again against the engine.
        Action::DockerList(_) => docker::validate_engine(&ctx.peripherals.docker),
        Action::DockerInspect(a) | Action::DockerStart(a) => {
            docker::validate(&ctx.peripherals.docker, &a.container, None)
        }
        Action::DockerStop(a) | Action::DockerRestart(a) => {
            docker::validate(&ctx.peripherals.docker, &a.container, None)
        }
        Action::DockerLogs(a) => {
            streaming_fits(a.follow.then_some(a.duration.unwrap_or(60)), ctx)?;
            docker::validate(&ctx.peripherals.docker, &a.container, None)
        }
        Action::DockerStats(a) => {
            streaming_fits(a.stream.then_some(a.duration.unwrap_or(10)), ctx)?;
            docker::validate(&ctx.peripherals.docker, &a.container, None)
        }
        Action::DockerExec(a) => {
            docker::validate(&ctx.peripherals.docker, &a.container, Some(&a.command))
        }
    }
}

/// A stream must end before `commands.timeout` would cut it.
fn streaming_fits(secs: Option<u32>, ctx: &Ctx) -> Result<(), String> {
    match secs {
        Some(s) if Duration::from_secs(u64::from(s)) >= ctx.cfg.timeout => Err(format!(
            "duration {s} s is not shorter than commands.timeout ({} s)",
            ctx.cfg.timeout.as_secs()
        )),
        _ => Ok(()),
    }
}

fn unit_allowed(unit: &str, ctx: &Ctx) -> Result<(), String> {
    if ctx.cfg.services.iter().any(|s| s == unit) {
        Ok(())
    } else {
        Err(format!("unit {unit} is not in commands.services"))
    }
}

/// Execute an accepted command. Streaming commands write their output
/// into `out` as it comes; the others return it.
pub async fn run(cmd: &Command, ctx: &Arc<Ctx>, out: &mut Sink) -> Outcome {
    let max = ctx.cfg.output_max;
    match &cmd.action {
        Action::Ping(_) => Outcome::Succeeded("pong".into()),
        Action::SystemInfo(_) => {
            let sensors = ctx.sensors.clone();
            let device = ctx.device.to_string();
            blocking(move || Ok(sysinfo::report(&sensors, &device))).await
        }
        Action::SystemReboot(a) => reboot(a.delay, ctx).await,
        Action::ServiceRestart(a) => {
            program(exec::restart_argv(&ctx.cfg.systemctl, &a.unit), max).await
        }
        Action::ServiceLogs(a) => {
            program(exec::logs_argv(&ctx.cfg.journalctl, &a.unit, a.lines), max).await
        }
        Action::FileDeploy(a) => {
            let (ctx, a, id) = (Arc::clone(ctx), a.clone(), cmd.id.clone());
            blocking(move || {
                // Again at the last moment: the tree may have changed.
                let dest = files::resolve(&a.dest, &ctx.cfg.file_dirs)?;
                ctx.downloader.deploy(&a.url, &a.sha256, &dest, &id)
            })
            .await
        }
        Action::FileDelete(a) => {
            let (ctx, a) = (Arc::clone(ctx), a.clone());
            blocking(move || {
                let path = files::resolve(&a.path, &ctx.cfg.file_dirs)?;
                files::delete(&path)
            })
            .await
        }
        Action::LedIdentify(a) => {
            let started = Identify::duration(a.secs.map(u64::from))
                .and_then(|d| ctx.peripherals.identify.start(d).map(|_| d));
            match started {
                Ok(d) => Outcome::Succeeded(format!("identify pattern for {} s", d.as_secs())),
                Err(e) => Outcome::failed(e.to_string()),
            }
        }
        Action::GpioWrite(a) => {
            let (gpio, name, level) = (ctx.peripherals.gpio.clone(), a.name.clone(), a.level == 1);
            blocking(move || {
                gpio.write(&name, level)
                    .map(|()| format!("{name} set to {}", u8::from(level)))
                    .map_err(|e| e.to_string())
            })
            .await
        }
        Action::AgentUpdate(a) => {
            let (c, a, id) = (Arc::clone(ctx), a.clone(), cmd.id.clone());
            let installed = blocking(move || {
                // /proc/self/exe is the running binary's inode even if its
                // path was replaced meanwhile (a package upgrade).
                let exe = std::path::Path::new("/proc/self/exe");
                update::install::install(
                    &a,
                    &id,
                    &c.update.updates,
                    &c.downloader,
                    c.cfg.public_key.as_ref(),
                    exe,
                )
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
        Action::DockerList(_) => docker::list(&ctx.peripherals.docker).await,
        Action::DockerInspect(a) => docker::inspect(&ctx.peripherals.docker, &a.container).await,
        Action::DockerStart(a) => docker::start(&ctx.peripherals.docker, &a.container).await,
        Action::DockerStop(a) => docker::stop(&ctx.peripherals.docker, a, false).await,
        Action::DockerRestart(a) => docker::stop(&ctx.peripherals.docker, a, true).await,
        Action::DockerLogs(a) => docker::logs(&ctx.peripherals.docker, a, out).await,
        Action::DockerStats(a) => docker::stats(&ctx.peripherals.docker, a, out).await,
        Action::DockerExec(a) => docker::exec(&ctx.peripherals.docker, a, max).await,
        Action::ConfigUpdate(a) => {
            let Some(path) = ctx.cfg.config_path.clone() else {
                return Outcome::failed("the agent knows no configuration file to replace");
            };
            let (toml, state, id) = (a.toml.clone(), ctx.cfg.state_dir.clone(), cmd.id.clone());
            let written = blocking(move || {
                config_update::apply(&toml, &path, &state, &id).map(|()| String::new())
            })
            .await;
            match written {
                Outcome::Succeeded(_) => {
                    ctx.restart.fire();
                    Outcome::Deferred(
                        "configuration written; restarting onto it (the final status follows)"
                            .into(),
                    )
                }
                other => other,
            }
        }
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
fn reboot_slot(state: &std::path::Path, window: Duration) -> Result<String, String> {
    let path = state.join("last-reboot");
    let now = crate::sensors::clock::unix_ms();
    if let Some(last) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
    {
        let window_ms = window.as_millis() as u64;
        if now < last.saturating_add(window_ms) && last <= now {
            return Err(format!(
                "a reboot was already requested {} s ago; at most one per {} s (commands.reboot_window)",
                (now - last) / 1000,
                window.as_secs()
            ));
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
        Err(e) => Outcome::failed(e),
    }
}

async fn blocking(f: impl FnOnce() -> Result<String, String> + Send + 'static) -> Outcome {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(out)) => Outcome::Succeeded(out),
        Ok(Err(e)) => Outcome::failed(e),
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
        let err = reboot_slot(d.path(), Duration::from_secs(3600)).unwrap_err();
        assert!(err.contains("at most one per 3600 s"), "{err}");
        assert!(reboot_slot(d.path(), Duration::ZERO).is_ok());
    }
}
