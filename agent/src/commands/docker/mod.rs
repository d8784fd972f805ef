//! The `docker.*` commands: the checks before one is accepted, and what
//! each does through the engine client the Docker watcher shares
//! ([`crate::docker::Handle`]). The registry calls both.
//!
//! What the commands do needs the `docker` cargo feature; without it the
//! registry's arms stay the same and every one of them fails (they are
//! already refused before acceptance, since Docker cannot be enabled).

#[cfg(feature = "docker")]
mod supported;
#[cfg(not(feature = "docker"))]
mod unsupported;

#[cfg(feature = "docker")]
pub use supported::*;
#[cfg(not(feature = "docker"))]
pub use unsupported::*;

use picket_protocol::Engine;
use tokio::sync::watch;

use crate::config::{DOCKER_SUPPORTED, DockerConfig};
use crate::docker::{DockerView, Handle, track};

/// Docker's configuration and the watcher's view, or why the commands are
/// refused.
fn enabled(h: &Handle) -> Result<(&DockerConfig, watch::Ref<'_, DockerView>), String> {
    h.config().zip(h.view()).ok_or_else(|| {
        if DOCKER_SUPPORTED {
            "Docker is not enabled on this device (docker.enabled)".into()
        } else {
            "this agent was built without Docker support".into()
        }
    })
}

/// Checks done before a command is accepted: Docker enabled and the
/// engine reachable, the container in scope (from the current view),
/// and for `docker.exec` a configured command allowed in it.
pub fn validate(h: &Handle, container: &str, exec: Option<&str>) -> Result<(), String> {
    let (cfg, view) = enabled(h)?;
    if view.engine != Some(Engine::Available) {
        return Err("the Docker engine is unavailable".into());
    }
    let Some(c) = track::find(&view.containers, container) else {
        return Err(format!(
            "no container {container:?} in this device's Docker scope"
        ));
    };
    if let Some(name) = exec {
        let Some(spec) = cfg.exec.iter().find(|e| e.name == name) else {
            return Err(format!(
                "{name:?} is not a command of this device's [[docker.exec]] configuration"
            ));
        };
        if !spec.allows(&c.name) {
            return Err(format!("{name:?} may not run in container {}", c.name));
        }
    }
    Ok(())
}

/// Docker enabled and the engine reachable (for `docker.list`).
pub fn validate_engine(h: &Handle) -> Result<(), String> {
    if enabled(h)?.1.engine == Some(Engine::Available) {
        Ok(())
    } else {
        Err("the Docker engine is unavailable".into())
    }
}
