//! `picket-agent status`: the running agent's live state, for a technician
//! at the box.
//!
//! The agent serves its state on a unix socket (`status.socket`, default
//! `/run/picket/agent.sock`, mode 0600 so only root and the agent's user
//! can read it): every connection gets one JSON [`StatusReport`] and is
//! closed. A socket rather than a state file: nothing is written to the SD
//! card, the state is computed when asked (never stale), and "nobody
//! answers" means "the agent is not running" without a pid file to trust.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use picket_protocol::{Alert, GpioLevel};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::led::Pattern;
use crate::sensors::clock::unix_ms;
use crate::shutdown::Shutdown;
use crate::store::StoreStatus;
use crate::views::{AlertView, Failure, Link, UplinkStatus};

/// What `status` prints, and `status --json` prints as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub running: bool,
    pub version: String,
    pub device: String,
    pub pid: u32,
    pub broker: String,
    pub connected: bool,
    /// `connected`, `connecting`, or why the link is down: `unreachable`,
    /// `refused`, `tls`, `protocol`.
    pub link: String,
    /// Unix ms since when the link is in this state.
    pub since_ms: Option<u64>,
    pub last_error: Option<String>,
    pub queue_records: u64,
    pub queue_bytes: u64,
    pub oldest_unsent_ms: Option<u64>,
    pub dropped: u64,
    pub clock_synced: bool,
    /// The collector's active alerts for this box, highest severity first.
    pub alerts: Vec<Alert>,
    pub led: Pattern,
    pub led_looks: String,
    pub led_meaning: String,
    pub led_action: String,
    pub gpio: Vec<GpioLevel>,
    /// The agent's wall clock when it answered, unix ms.
    pub now_ms: u64,
}

/// The watches the report is built from.
#[derive(Clone)]
pub struct StatusSources {
    pub device: String,
    pub uplink: watch::Receiver<UplinkStatus>,
    pub store: watch::Receiver<StoreStatus>,
    pub alerts: watch::Receiver<AlertView>,
    pub clock_synced: watch::Receiver<bool>,
    pub led: watch::Receiver<Pattern>,
    pub gpio: watch::Receiver<Vec<GpioLevel>>,
}

impl StatusSources {
    pub fn report(&self) -> StatusReport {
        let now = unix_ms();
        let uplink = self.uplink.borrow().clone();
        let store = self.store.borrow().clone();
        let (link, since_ms) = match uplink.link {
            Link::Connecting => ("connecting", None),
            Link::Connected { since_ms } => ("connected", Some(since_ms)),
            Link::Down { failure, since_ms } => (
                match failure {
                    Failure::Unreachable => "unreachable",
                    Failure::Refused => "refused",
                    Failure::Tls => "tls",
                    Failure::Protocol => "protocol",
                },
                Some(since_ms),
            ),
        };
        let led = *self.led.borrow();
        StatusReport {
            running: true,
            version: crate::VERSION.into(),
            device: self.device.clone(),
            pid: std::process::id(),
            broker: uplink.broker.clone(),
            connected: link == "connected",
            link: link.into(),
            since_ms,
            last_error: uplink.last_error.clone().or(store.last_error.clone()),
            queue_records: store.stats.records,
            queue_bytes: store.stats.bytes,
            oldest_unsent_ms: store.oldest_unsent_ms(uplink.acked_through, now),
            dropped: store.stats.dropped_total,
            clock_synced: *self.clock_synced.borrow(),
            alerts: self
                .alerts
                .borrow()
                .as_ref()
                .map(|a| a.alerts.clone())
                .unwrap_or_default(),
            led,
            led_looks: led.looks().into(),
            led_meaning: led.meaning().into(),
            led_action: led.action().into(),
            gpio: self.gpio.borrow().clone(),
            now_ms: now,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("status socket {path}: another agent is running and serving it")]
    InUse { path: PathBuf },
    #[error("status socket {path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
}

/// The task serving [`StatusReport`]s on the socket.
pub struct StatusServer {
    listener: UnixListener,
    path: PathBuf,
    sources: StatusSources,
    shutdown: Shutdown,
}

impl StatusServer {
    /// Bind `path` with mode 0600. The socket is bound under a temporary
    /// name, restricted, then renamed into place, so it is never reachable
    /// with looser permissions. A stale socket (nobody answering) is
    /// replaced; a live one is an error.
    pub async fn bind(
        path: &Path,
        sources: StatusSources,
        shutdown: Shutdown,
    ) -> Result<StatusServer, StatusError> {
        let io = |what: &'static str| {
            let path = path.to_path_buf();
            move |source| StatusError::Io { path, what, source }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io("cannot create its directory"))?;
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if UnixStream::connect(path).await.is_ok() {
                return Err(StatusError::InUse {
                    path: path.to_path_buf(),
                });
            }
            if !meta.file_type().is_socket() {
                return Err(StatusError::Io {
                    path: path.to_path_buf(),
                    what: "exists and is not a socket",
                    source: io::Error::from(io::ErrorKind::AlreadyExists),
                });
            }
            std::fs::remove_file(path).map_err(io("cannot remove the stale socket"))?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(io("cannot bind"))?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(io("cannot restrict its permissions"))
            .and_then(|()| std::fs::rename(&tmp, path).map_err(io("cannot put it in place")));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(StatusServer {
            listener,
            path: path.to_path_buf(),
            sources,
            shutdown,
        })
    }

    pub async fn run(self) {
        let mut shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                conn = self.listener.accept() => match conn {
                    Ok((mut stream, _)) => {
                        let mut body = serde_json::to_vec(&self.sources.report()).unwrap_or_default();
                        body.push(b'\n');
                        // A client that does not read must not stall us.
                        tokio::spawn(async move {
                            let r = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&body)).await;
                            if !matches!(r, Ok(Ok(()))) {
                                debug!("status client went away");
                            }
                        });
                    }
                    Err(e) => {
                        warn!(error = %e, "status socket accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("the agent is not running (nothing answers at {0})")]
    NotRunning(PathBuf),
    #[error("{path}: permission denied: run as root or as the agent's user")]
    Denied { path: PathBuf },
    #[error("{path}: {reason}")]
    Other { path: PathBuf, reason: String },
}

/// Ask the running agent for its state.
pub async fn query(path: &Path) -> Result<StatusReport, QueryError> {
    let other = |reason: String| QueryError::Other {
        path: path.to_path_buf(),
        reason,
    };
    let mut stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e) => {
            return Err(match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    QueryError::NotRunning(path.to_path_buf())
                }
                io::ErrorKind::PermissionDenied => QueryError::Denied {
                    path: path.to_path_buf(),
                },
                _ => other(e.to_string()),
            });
        }
    };
    let mut body = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut body))
        .await
        .map_err(|_| other("the agent did not answer within 10 s".into()))?
        .map_err(|e| other(e.to_string()))?;
    serde_json::from_slice(&body).map_err(|e| other(format!("unreadable answer: {e}")))
}

/// "3m 12s", "2h 5m", "40s".
pub fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn human_bytes(b: u64) -> String {
    match b {
        0..1024 => format!("{b} B"),
        1024..1_048_576 => format!("{:.1} KiB", b as f64 / 1024.0),
        _ => format!("{:.1} MiB", b as f64 / 1_048_576.0),
    }
}

/// The report as a technician reads it.
pub fn render(r: &StatusReport) -> String {
    let ago = |ms: Option<u64>| ms.map(|t| human_duration(r.now_ms.saturating_sub(t)));
    let link = match (r.link.as_str(), ago(r.since_ms)) {
        ("connected", Some(a)) => format!("connected for {a}"),
        ("connecting", _) => "connecting (first attempt)".to_string(),
        (why, Some(a)) => format!("NOT connected ({why}) for {a}"),
        (why, None) => format!("NOT connected ({why})"),
    };
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<13}{v}\n"));
    line(
        "agent:",
        format!(
            "running (version {}, pid {}, device {})",
            r.version, r.pid, r.device
        ),
    );
    line("broker:", format!("{} — {link}", r.broker));
    line(
        "last error:",
        r.last_error.clone().unwrap_or_else(|| "none".into()),
    );
    line(
        "queue:",
        format!(
            "{} records, {}, oldest unsent {}, {} dropped",
            r.queue_records,
            human_bytes(r.queue_bytes),
            r.oldest_unsent_ms.map_or("-".into(), human_duration),
            r.dropped
        ),
    );
    line(
        "clock:",
        if r.clock_synced {
            "synchronised".into()
        } else {
            "NOT synchronised (NTP)".into()
        },
    );
    if r.alerts.is_empty() {
        line("alerts:", "none".into());
    } else {
        for (i, a) in r.alerts.iter().enumerate() {
            let sev = serde_json::to_value(a.severity)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            line(
                if i == 0 { "alerts:" } else { "" },
                format!("{sev} {}: {}", a.rule, a.message),
            );
        }
    }
    for (i, g) in r.gpio.iter().enumerate() {
        line(
            if i == 0 { "gpio:" } else { "" },
            format!("{} {}", g.name, if g.level { "active" } else { "inactive" }),
        );
    }
    line("LED:", format!("{} — {}", r.led_looks, r.led_meaning));
    line("what to do:", r.led_action.clone());
    out
}

/// What `status` prints when no agent answers.
pub fn render_not_running(e: &QueryError) -> String {
    let off = Pattern::Off;
    format!(
        "agent:       NOT running: {e}\nLED:         {} — {}\nwhat to do:  {}\n",
        off.looks(),
        off.meaning(),
        off.action()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(59_999), "59s");
        assert_eq!(human_duration(192_000), "3m 12s");
        assert_eq!(human_duration(7_500_000), "2h 5m");
        assert_eq!(human_duration(90_000_000), "1d 1h");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(3 * 1024 + 512), "3.5 KiB");
    }
}
