//! A simulated GPIO chip for machines without one: named lines, inputs a
//! test drives (physical level in, logical edges out, `active_low` and bias
//! applied like the kernel does), outputs whose physical level a test reads,
//! lines held by "another program", and a chip that is not there.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::config::{Bias, InputSpec, LineRef, OutputSpec};
use crate::gpio::{Edge, GpioBackend, GpioError, InputLine, OutputLine};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Use {
    Free,
    /// Requested by someone else (the kernel would answer EBUSY).
    Foreign(String),
    Input(InputSpec),
    Output(OutputSpec),
}

#[derive(Debug)]
struct Line {
    name: String,
    usage: Use,
    /// What a test drives onto an input, or what we drive onto an output;
    /// `None`: undriven (an input then reads its bias).
    physical: Option<bool>,
    edges: Option<mpsc::Sender<Edge>>,
}

#[derive(Debug)]
struct Inner {
    chip: String,
    lines: Vec<Line>,
    /// The simulated kernel clock for edge timestamps, nanoseconds.
    now_ns: u64,
}

#[derive(Debug, Clone)]
pub struct SimChip(Arc<Mutex<Inner>>);

impl SimChip {
    /// A chip called `chip` (e.g. `gpiochip0`) whose lines, by offset, are
    /// named `names`.
    pub fn new(chip: &str, names: &[&str]) -> SimChip {
        SimChip(Arc::new(Mutex::new(Inner {
            chip: chip.to_string(),
            lines: names
                .iter()
                .map(|n| Line {
                    name: n.to_string(),
                    usage: Use::Free,
                    physical: None,
                    edges: None,
                })
                .collect(),
            now_ns: 1_000_000_000,
        })))
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock has failed already.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mark a line as used by another program.
    pub fn claim_elsewhere(&self, line: &str, consumer: &str) {
        let mut inner = self.inner();
        let offset = inner.offset(&LineRef::Name(line.into())).expect("sim line");
        inner.lines[offset].usage = Use::Foreign(consumer.into());
    }

    /// Drive an input's physical level `after_ns` after the previous edge;
    /// a change of logical level sends one edge, as the kernel would.
    pub fn drive(&self, line: &str, physical: bool, after_ns: u64) {
        let mut inner = self.inner();
        inner.now_ns += after_ns;
        let now = inner.now_ns;
        let offset = inner.offset(&LineRef::Name(line.into())).expect("sim line");
        let l = &mut inner.lines[offset];
        let before = l.logical();
        l.physical = Some(physical);
        let after = l.logical();
        if let (Some(tx), Use::Input(spec)) = (&l.edges, &l.usage)
            && before != after
            && let Some(level) = after
        {
            let _ = tx.try_send(Edge {
                name: spec.name.clone(),
                level,
                edge_ns: now,
            });
        }
    }

    /// The physical level on a line (an output's, after `active_low`).
    pub fn physical(&self, line: &str) -> Option<bool> {
        let inner = self.inner();
        let offset = inner.offset(&LineRef::Name(line.into())).ok()?;
        inner.lines[offset].physical
    }

    /// How a line is used now.
    pub fn usage(&self, line: &str) -> Use {
        let inner = self.inner();
        let offset = inner.offset(&LineRef::Name(line.into())).expect("sim line");
        inner.lines[offset].usage.clone()
    }
}

impl Line {
    /// The logical level as the kernel reports it: the driven or biased
    /// physical level, inverted for an active-low input.
    fn logical(&self) -> Option<bool> {
        let Use::Input(spec) = &self.usage else {
            return self.physical;
        };
        let physical = self.physical.or(match spec.bias {
            Bias::PullUp => Some(true),
            Bias::PullDown => Some(false),
            Bias::AsIs | Bias::Disabled => None,
        })?;
        Some(physical != spec.active_low)
    }
}

impl Inner {
    fn offset(&self, line: &LineRef) -> Result<usize, GpioError> {
        match line {
            LineRef::Name(n) => self
                .lines
                .iter()
                .position(|l| &l.name == n)
                .ok_or_else(|| GpioError::NotFound { line: n.clone() }),
            LineRef::Offset { chip, offset } => {
                if chip != &self.chip {
                    return Err(GpioError::ChipMissing {
                        line: line.to_string(),
                        chip: chip.clone(),
                        reason: "no such device".into(),
                    });
                }
                let o = *offset as usize;
                if o >= self.lines.len() {
                    return Err(GpioError::Line {
                        line: line.to_string(),
                        reason: format!("{chip} has {} lines", self.lines.len()),
                    });
                }
                Ok(o)
            }
        }
    }

    /// Who holds the line, as the kernel reports the consumer: ours are
    /// labelled `picket-agent`, like the real backend's.
    fn holder(&self, o: usize) -> Option<String> {
        match &self.lines[o].usage {
            Use::Free => None,
            Use::Foreign(c) => Some(c.clone()),
            Use::Input(_) | Use::Output(_) => Some("picket-agent".into()),
        }
    }

    fn request(&mut self, line: &LineRef, usage: Use) -> Result<usize, GpioError> {
        let o = self.offset(line)?;
        if let Some(consumer) = self.holder(o) {
            return Err(GpioError::Busy {
                line: line.to_string(),
                consumer,
            });
        }
        self.lines[o].usage = usage;
        Ok(o)
    }
}

struct SimInput {
    chip: SimChip,
    offset: usize,
}

impl InputLine for SimInput {
    fn level(&self) -> Result<bool, GpioError> {
        let inner = self.chip.inner();
        let l = &inner.lines[self.offset];
        // An undriven, unbiased line reads as whatever it floats to: low.
        Ok(l.logical().unwrap_or(false))
    }
}

struct SimOutput {
    chip: SimChip,
    offset: usize,
    active_low: bool,
}

impl OutputLine for SimOutput {
    fn set(&self, level: bool) -> Result<(), GpioError> {
        let mut inner = self.chip.inner();
        inner.lines[self.offset].physical = Some(level != self.active_low);
        Ok(())
    }
}

impl GpioBackend for SimChip {
    fn input(
        &self,
        spec: &InputSpec,
        edges: mpsc::Sender<Edge>,
    ) -> Result<Box<dyn InputLine>, GpioError> {
        let mut inner = self.inner();
        let offset = inner.request(&spec.line, Use::Input(spec.clone()))?;
        inner.lines[offset].edges = Some(edges);
        Ok(Box::new(SimInput {
            chip: self.clone(),
            offset,
        }))
    }

    fn output(&self, spec: &OutputSpec) -> Result<Box<dyn OutputLine>, GpioError> {
        let mut inner = self.inner();
        let offset = inner.request(&spec.line, Use::Output(spec.clone()))?;
        inner.lines[offset].physical = Some(spec.initial != spec.active_low);
        Ok(Box::new(SimOutput {
            chip: self.clone(),
            offset,
            active_low: spec.active_low,
        }))
    }

    fn locate(&self, line: &LineRef) -> Result<String, GpioError> {
        let inner = self.inner();
        let o = inner.offset(line)?;
        if let Some(consumer) = inner.holder(o) {
            return Err(GpioError::Busy {
                line: line.to_string(),
                consumer,
            });
        }
        Ok(format!("{}:{o}", inner.chip))
    }
}
