//! Docker on the device: the containers in scope in every sample, their
//! state and health changes as events at once, and the engine client the
//! `docker.*` commands ([`crate::commands::docker`]) use, through the
//! engine's API on its unix socket (bollard).
//!
//! The engine is a seam the agent cannot count on: absent, refused or
//! restarted, it makes samples say `docker: unavailable` (one warning per
//! outage), and the watcher retries with backoff while everything else
//! runs on.
//!
//! # Layout
//! - [`crate::config::Scope`]: which containers picket may see and manage
//!   (name globs, a label); [`track`]: what is known about them and which
//!   changes are events (pure); [`stats`]: CPU % and memory as
//!   `docker stats` computes them (pure); [`time`]: the engine's
//!   timestamps.
//! - `engine`: the bollard client: connect, list, inspect, events, stats.
//! - `watch`: the task following the engine (event stream, periodic
//!   listing and stats), publishing [`DockerView`] and sending events, and
//!   sharing its client through a [`Handle`].
//!
//! The last two need the `docker` cargo feature (off by default); without
//! it, `docker.enabled = true` is a configuration error and the commands
//! are refused.

pub mod stats;
pub mod time;
pub mod track;

#[cfg(feature = "docker")]
pub mod engine;
#[cfg(feature = "docker")]
pub mod watch;

use std::sync::Arc;

use picket_protocol::{Container, Engine};

use crate::config::DockerConfig;

/// What the agent currently knows of Docker, for samples and commands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DockerView {
    /// `None` until the first attempt to reach the engine.
    pub engine: Option<Engine>,
    /// The containers in scope, by name.
    pub containers: Vec<Container>,
}

/// What the `docker.*` commands need: the configuration, the current view
/// and, while the engine is reachable, the watcher's client.
#[derive(Clone, Default)]
pub struct Handle {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    cfg: DockerConfig,
    view: tokio::sync::watch::Receiver<DockerView>,
    #[cfg(feature = "docker")]
    client: tokio::sync::watch::Receiver<Option<engine::Client>>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let engine = self.shared.as_ref().and_then(|s| s.view.borrow().engine);
        f.debug_struct("Handle")
            .field("enabled", &self.shared.is_some())
            .field("engine", &engine)
            .finish()
    }
}

impl Handle {
    /// Docker is off on this device: every `docker.*` command is refused.
    pub fn disabled() -> Handle {
        Handle { shared: None }
    }

    /// Docker's configuration; `None` when Docker is off on this device.
    pub fn config(&self) -> Option<&DockerConfig> {
        self.shared.as_deref().map(|s| &s.cfg)
    }

    /// What the watcher last saw; `None` when Docker is off on this device.
    pub fn view(&self) -> Option<tokio::sync::watch::Ref<'_, DockerView>> {
        self.shared.as_deref().map(|s| s.view.borrow())
    }

    /// The watcher's client, while the engine is reachable.
    #[cfg(feature = "docker")]
    pub fn client(&self) -> Option<engine::Client> {
        self.shared.as_deref()?.client.borrow().clone()
    }
}
