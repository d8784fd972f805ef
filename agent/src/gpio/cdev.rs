//! The real GPIO backend: the kernel's GPIO character device (uAPI v2)
//! through gpiocdev. Works on every Pi (Pi 5 included) and any other board.

use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

use gpiocdev::line::{EdgeDetection, EdgeKind, Value};
use gpiocdev::request::Builder;
use gpiocdev::{Chip, Request};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tracing::warn;

use super::{Edge, GpioBackend, GpioError, InputLine, OutputLine};
use crate::config::{Bias, InputSpec, LineRef, OutputSpec};

/// The consumer label other programs see on our lines (`gpioinfo`).
const CONSUMER: &str = "picket-agent";

/// Every GPIO chip of this machine, found under `/dev`.
#[derive(Debug, Clone, Default)]
pub struct Cdev;

/// A line found on a chip.
struct Found {
    chip: PathBuf,
    offset: u32,
}

impl Cdev {
    /// Request `line` for this agent, set up by `configure` (direction,
    /// bias, edges), active-low if asked.
    fn request(
        &self,
        line: &LineRef,
        active_low: bool,
        configure: impl FnOnce(&mut Builder),
    ) -> Result<Shared, GpioError> {
        let found = self.find(line)?;
        let mut builder = Request::builder();
        builder
            .on_chip(&found.chip)
            .with_consumer(CONSUMER)
            .with_line(found.offset);
        configure(&mut builder);
        if active_low {
            builder.as_active_low();
        }
        let request = builder.request().map_err(|e| line_error(line, e))?;
        Ok(Shared {
            request,
            offset: found.offset,
            line: line.clone(),
        })
    }

    fn find(&self, line: &LineRef) -> Result<Found, GpioError> {
        let (chip, offset) = match line {
            LineRef::Name(name) => {
                let found = gpiocdev::find_named_line(name)
                    .ok_or_else(|| GpioError::NotFound { line: name.clone() })?;
                (found.chip, found.info.offset)
            }
            LineRef::Offset { chip, offset } => {
                let path = if chip.starts_with('/') {
                    PathBuf::from(chip)
                } else {
                    PathBuf::from("/dev").join(chip)
                };
                (path, *offset)
            }
        };
        let opened = Chip::from_path(&chip).map_err(|e| GpioError::ChipMissing {
            line: line.to_string(),
            chip: chip.display().to_string(),
            reason: e.to_string(),
        })?;
        let info = opened.line_info(offset).map_err(|e| GpioError::Line {
            line: line.to_string(),
            reason: format!("offset {offset} on {}: {e}", chip.display()),
        })?;
        // The kernel would answer EBUSY; asking first lets us name the user.
        if info.used {
            return Err(GpioError::Busy {
                line: line.to_string(),
                consumer: if info.consumer.is_empty() {
                    "another program".into()
                } else {
                    info.consumer
                },
            });
        }
        Ok(Found { chip, offset })
    }
}

fn bias(b: Bias) -> Option<gpiocdev::line::Bias> {
    match b {
        Bias::AsIs => None,
        Bias::PullUp => Some(gpiocdev::line::Bias::PullUp),
        Bias::PullDown => Some(gpiocdev::line::Bias::PullDown),
        Bias::Disabled => Some(gpiocdev::line::Bias::Disabled),
    }
}

fn value(level: bool) -> Value {
    if level {
        Value::Active
    } else {
        Value::Inactive
    }
}

fn line_error(line: &LineRef, e: gpiocdev::Error) -> GpioError {
    GpioError::Line {
        line: line.to_string(),
        reason: e.to_string(),
    }
}

/// A requested line shared by its reader task and its owner.
struct Shared {
    request: Request,
    offset: u32,
    line: LineRef,
}

/// `AsyncFd` wants something that is `AsRawFd`; the request is shared.
struct Fd(Arc<Shared>);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.request.as_raw_fd()
    }
}

impl InputLine for Arc<Shared> {
    fn level(&self) -> Result<bool, GpioError> {
        self.request
            .value(self.offset)
            .map(|v| v == Value::Active)
            .map_err(|e| line_error(&self.line, e))
    }
}

impl OutputLine for Arc<Shared> {
    fn set(&self, level: bool) -> Result<(), GpioError> {
        self.request
            .set_value(self.offset, value(level))
            .map_err(|e| line_error(&self.line, e))
    }
}

impl GpioBackend for Cdev {
    fn input(
        &self,
        spec: &InputSpec,
        edges: mpsc::Sender<Edge>,
    ) -> Result<Box<dyn InputLine>, GpioError> {
        let shared = Arc::new(self.request(&spec.line, spec.active_low, |b| {
            b.as_input()
                .with_bias(bias(spec.bias))
                .with_edge_detection(EdgeDetection::BothEdges);
            if !spec.debounce.is_zero() {
                b.with_debounce_period(spec.debounce);
            }
        })?);
        let watch_error = |reason: String| GpioError::Line {
            line: spec.line.to_string(),
            reason: format!("cannot watch for edges: {reason}"),
        };
        // Registering panics outside a runtime: say so instead.
        tokio::runtime::Handle::try_current().map_err(|e| watch_error(e.to_string()))?;
        // SAFETY: the descriptor belongs to the request, which `Fd` keeps
        // alive (an `Arc`) for as long as the `AsyncFd` exists, and a
        // request never changes its descriptor.
        let fd = unsafe { AsyncFd::register_with_interest(Fd(shared.clone()), Interest::READABLE) }
            .map_err(|e| watch_error(e.to_string()))?;
        tokio::spawn(read_edges(fd, spec.name.clone(), edges));
        Ok(Box::new(shared))
    }

    fn output(&self, spec: &OutputSpec) -> Result<Box<dyn OutputLine>, GpioError> {
        let shared = self.request(&spec.line, spec.active_low, |b| {
            b.as_output(value(spec.initial));
        })?;
        Ok(Box::new(Arc::new(shared)))
    }

    fn locate(&self, line: &LineRef) -> Result<String, GpioError> {
        let found = self.find(line)?;
        Ok(format!("{}:{}", found.chip.display(), found.offset))
    }
}

/// Forward the kernel's edge events until the receiver hangs up; the
/// request (and the line) is released when this task ends.
async fn read_edges(fd: AsyncFd<Fd>, name: String, edges: mpsc::Sender<Edge>) {
    loop {
        let mut guard = tokio::select! {
            () = edges.closed() => return,
            ready = fd.readable() => match ready {
                Ok(g) => g,
                Err(e) => {
                    warn!(input = %name, error = %e, "GPIO edge reader stopped");
                    return;
                }
            },
        };
        let shared = &fd.get_ref().0;
        loop {
            match shared.request.has_edge_event() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    warn!(input = %name, error = %e, "GPIO edge reader stopped");
                    return;
                }
            }
            match shared.request.read_edge_event() {
                Ok(ev) => {
                    let edge = Edge {
                        name: name.clone(),
                        level: ev.kind == EdgeKind::Rising,
                        edge_ns: ev.timestamp_ns,
                    };
                    if edges.send(edge).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    warn!(input = %name, error = %e, "GPIO edge reader stopped");
                    return;
                }
            }
        }
        guard.clear_ready();
    }
}
