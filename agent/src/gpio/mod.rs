//! GPIO through the kernel's character device: configured inputs (each
//! edge an event at once, levels in every sample) and outputs (set only by
//! the `gpio.write` command, only on lines configured as outputs).
//!
//! The chip is a hardware seam: [`GpioBackend`] is implemented by
//! [`cdev::Cdev`] (gpiocdev, the real kernel interface) and by
//! [`crate::testing::gpio::SimChip`] for tests on machines without GPIO.
//! A line that cannot be had (busy, missing chip, unknown name) is logged
//! with its name and left out; the agent runs without it.

pub mod cdev;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use picket_protocol::{EventKind, GpioLevel};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::{InputSpec, LineRef, OutputSpec};
use crate::sensors::clock::Clock;
use crate::shutdown::Shutdown;
use crate::store::Item;

/// One edge, as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub name: String,
    /// The logical level after the edge.
    pub level: bool,
    /// The kernel's CLOCK_MONOTONIC timestamp of the edge, in nanoseconds.
    pub edge_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    #[error("GPIO line {line}: no line of that name on any GPIO chip")]
    NotFound { line: String },
    #[error("GPIO line {line}: chip {chip} is not available: {reason}")]
    ChipMissing {
        line: String,
        chip: String,
        reason: String,
    },
    #[error("GPIO line {line} is busy: already used by {consumer:?}")]
    Busy { line: String, consumer: String },
    #[error("GPIO line {line}: {reason}")]
    Line { line: String, reason: String },
    #[error("{name:?} is not a GPIO output of this agent (configured outputs: {configured})")]
    NotAnOutput { name: String, configured: String },
    #[error("level must be 0 or 1, not {0}")]
    Level(u8),
}

/// A GPIO chip (or all of the machine's chips): where lines are requested.
/// `input` may start a task on the current tokio runtime that forwards the
/// line's edges to `edges` until that channel closes.
pub trait GpioBackend: Send + Sync {
    fn input(
        &self,
        spec: &InputSpec,
        edges: mpsc::Sender<Edge>,
    ) -> Result<Box<dyn InputLine>, GpioError>;
    fn output(&self, spec: &OutputSpec) -> Result<Box<dyn OutputLine>, GpioError>;
    /// Find a line without requesting it; returns where it is and who uses
    /// it, for `doctor`.
    fn locate(&self, line: &LineRef) -> Result<String, GpioError>;
}

pub trait InputLine: Send + Sync {
    /// The logical level now.
    fn level(&self) -> Result<bool, GpioError>;
}

pub trait OutputLine: Send + Sync {
    /// Set the logical level (after `active_low`).
    fn set(&self, level: bool) -> Result<(), GpioError>;
}

/// The configured outputs: the only lines `gpio.write` may touch.
#[derive(Clone, Default)]
pub struct GpioOutputs {
    lines: Arc<BTreeMap<String, Box<dyn OutputLine>>>,
}

impl fmt::Debug for GpioOutputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.lines.keys()).finish()
    }
}

impl GpioOutputs {
    /// Request every configured output; a line that cannot be had is left
    /// out and its error returned for the log.
    pub fn open(backend: &dyn GpioBackend, specs: &[OutputSpec]) -> (GpioOutputs, Vec<GpioError>) {
        let mut lines = BTreeMap::new();
        let mut errors = Vec::new();
        for spec in specs {
            match backend.output(spec) {
                Ok(line) => {
                    lines.insert(spec.name.clone(), line);
                }
                Err(e) => errors.push(e),
            }
        }
        (
            GpioOutputs {
                lines: Arc::new(lines),
            },
            errors,
        )
    }

    /// Set output `name` to `level`. Refuses any name that is not a
    /// configured (and successfully requested) output, before touching
    /// any line.
    pub fn write(&self, name: &str, level: bool) -> Result<(), GpioError> {
        let line = self.lines.get(name).ok_or_else(|| GpioError::NotAnOutput {
            name: name.to_string(),
            configured: if self.lines.is_empty() {
                "none".into()
            } else {
                self.names().join(", ")
            },
        })?;
        line.set(level)?;
        info!(output = name, level, "GPIO output set");
        Ok(())
    }

    pub fn names(&self) -> Vec<String> {
        self.lines.keys().cloned().collect()
    }
}

/// The `gpio.write` command's arguments, checked before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteArgs {
    pub name: String,
    pub level: bool,
}

impl WriteArgs {
    /// `level` is 0/1 (or false/true): anything else is refused.
    pub fn validate(outputs: &GpioOutputs, name: &str, level: u8) -> Result<WriteArgs, GpioError> {
        let level = match level {
            0 => false,
            1 => true,
            n => return Err(GpioError::Level(n)),
        };
        if !outputs.lines.contains_key(name) {
            return Err(GpioError::NotAnOutput {
                name: name.to_string(),
                configured: outputs.names().join(", "),
            });
        }
        Ok(WriteArgs {
            name: name.to_string(),
            level,
        })
    }
}

/// Edges waiting for the store, at most.
const EDGE_QUEUE: usize = 256;

/// The GPIO inputs task: turns each edge into an event for the store at
/// once, and keeps the current levels for the sampler.
pub struct GpioInputs {
    lines: Vec<(String, Box<dyn InputLine>)>,
    edges: mpsc::Receiver<Edge>,
    /// Held so the edge channel stays open while the task runs (the
    /// backend's readers stop when it closes).
    _edges_tx: mpsc::Sender<Edge>,
    items: mpsc::Sender<Vec<Item>>,
    levels: watch::Sender<Vec<GpioLevel>>,
    clock: Box<dyn Clock>,
    shutdown: Shutdown,
}

impl GpioInputs {
    /// Request every configured input; a line that cannot be had is left
    /// out and its error returned for the log. Call inside the runtime.
    pub fn open(
        backend: &dyn GpioBackend,
        specs: &[InputSpec],
        items: mpsc::Sender<Vec<Item>>,
        levels: watch::Sender<Vec<GpioLevel>>,
        clock: Box<dyn Clock>,
        shutdown: Shutdown,
    ) -> (GpioInputs, Vec<GpioError>) {
        let (edges_tx, edges) = mpsc::channel(EDGE_QUEUE);
        let mut lines = Vec::new();
        let mut errors = Vec::new();
        for spec in specs {
            match backend.input(spec, edges_tx.clone()) {
                Ok(line) => lines.push((spec.name.clone(), line)),
                Err(e) => errors.push(e),
            }
        }
        let inputs = GpioInputs {
            lines,
            edges,
            _edges_tx: edges_tx,
            items,
            levels,
            clock,
            shutdown,
        };
        inputs.read_levels();
        (inputs, errors)
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    fn read_levels(&self) {
        let levels: Vec<GpioLevel> = self
            .lines
            .iter()
            .filter_map(|(name, line)| match line.level() {
                Ok(level) => Some(GpioLevel {
                    name: name.clone(),
                    level,
                }),
                Err(e) => {
                    warn!(error = %e, "cannot read a GPIO input");
                    None
                }
            })
            .collect();
        self.levels.send_replace(levels);
    }

    pub async fn run(mut self) {
        let mut shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                edge = self.edges.recv() => {
                    let Some(edge) = edge else { break };
                    self.levels.send_modify(|levels| {
                        if let Some(l) = levels.iter_mut().find(|l| l.name == edge.name) {
                            l.level = edge.level;
                        }
                    });
                    let stamp = self.clock.stamp();
                    let kind = EventKind::Gpio {
                        name: edge.name,
                        level: edge.level,
                        edge_ns: edge.edge_ns,
                    };
                    if self.items.send(vec![Item::Event(stamp.event(kind))]).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
