//! States of the watched systemd units, from one `systemctl show` per sample.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use picket_protocol::{ActiveState, EventKind, Service};
use tracing::warn;

/// A hung systemd (PID 1 busy, D-Bus stuck) must not stall sampling.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct ServiceWatcher {
    systemctl: PathBuf,
    units: Vec<String>,
    /// Last state systemd actually reported, per unit.
    known: HashMap<String, (ActiveState, String)>,
    warned: bool,
}

impl ServiceWatcher {
    pub fn new(systemctl: PathBuf, units: Vec<String>) -> ServiceWatcher {
        ServiceWatcher {
            systemctl,
            units,
            known: HashMap::new(),
            warned: false,
        }
    }

    /// Current states, and an event per unit whose state changed since
    /// systemd last answered. When systemctl cannot be asked every unit is
    /// `Unknown` but no event is raised: the units did not change, our view
    /// of them did.
    pub fn poll(&mut self) -> (Vec<Service>, Vec<EventKind>) {
        if self.units.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let output = match run(&self.systemctl, &self.units) {
            Ok(out) => out,
            Err(error) => {
                if !self.warned {
                    self.warned = true;
                    warn!(systemctl = %self.systemctl.display(), %error, "cannot query systemd; services reported as unknown");
                }
                let unknown = self.units.iter().map(|u| unknown(u)).collect();
                return (unknown, Vec::new());
            }
        };
        let services = parse(&output, &self.units);
        let mut events = Vec::new();
        for s in &services {
            let now = (s.active, s.sub.clone());
            let old = self.known.insert(s.unit.clone(), now.clone());
            if let Some((old_active, old_sub)) = old.filter(|o| *o != now) {
                events.push(EventKind::Service {
                    unit: s.unit.clone(),
                    active: s.active,
                    sub: s.sub.clone(),
                    old_active: Some(old_active),
                    old_sub: Some(old_sub),
                });
            }
        }
        (services, events)
    }
}

fn unknown(unit: &str) -> Service {
    Service {
        unit: unit.to_string(),
        active: ActiveState::Unknown,
        sub: String::new(),
    }
}

/// Why `systemctl show` gave no answer to read.
#[derive(Debug, thiserror::Error)]
enum QueryError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("no stdout")]
    NoStdout,
    #[error("no answer within {TIMEOUT:?}")]
    Timeout,
    #[error("exited with {0}")]
    Exit(std::process::ExitStatus),
}

fn run(systemctl: &PathBuf, units: &[String]) -> Result<String, QueryError> {
    let mut child = Command::new(systemctl)
        .args(["show", "--property=Id,LoadState,ActiveState,SubState", "--"])
        .args(units)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let Some(mut stdout) = child.stdout.take() else {
        return Err(QueryError::NoStdout);
    };
    // Read on a thread so the timeout holds even if systemctl never closes
    // its output.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let result = stdout.read_to_end(&mut buf).map(|_| buf);
        let _ = tx.send(result);
    });
    let Ok(read) = rx.recv_timeout(TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(QueryError::Timeout);
    };
    let status = child.wait()?;
    let bytes = read?;
    if !status.success() {
        return Err(QueryError::Exit(status));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `systemctl show` prints one `Key=Value` block per unit, in the order
/// asked, separated by blank lines. `Id` is the unit's canonical name, which
/// differs from what was asked for aliases or a missing `.service` suffix, so
/// blocks are matched by position, or by `Id` when the count is off.
pub fn parse(output: &str, units: &[String]) -> Vec<Service> {
    let blocks: Vec<HashMap<&str, &str>> = output
        .split("\n\n")
        .map(|block| {
            block
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect::<HashMap<_, _>>()
        })
        .filter(|b| !b.is_empty())
        .collect();
    units
        .iter()
        .enumerate()
        .map(|(i, unit)| {
            let block = if blocks.len() == units.len() {
                blocks.get(i)
            } else {
                let with_suffix = format!("{unit}.service");
                blocks.iter().find(|b| {
                    b.get("Id")
                        .is_some_and(|id| *id == unit || *id == with_suffix)
                })
            };
            match block {
                Some(b) => service(unit, b),
                None => unknown(unit),
            }
        })
        .collect()
}

fn service(unit: &str, block: &HashMap<&str, &str>) -> Service {
    // systemd answers "inactive/dead" for a unit it has never heard of;
    // LoadState tells that apart from a unit that is merely stopped.
    let active = match block.get("LoadState") {
        Some(&"not-found") => ActiveState::Unknown,
        _ => block
            .get("ActiveState")
            .map_or(ActiveState::Unknown, |s| ActiveState::parse(s)),
    };
    Service {
        unit: unit.to_string(),
        active,
        sub: block
            .get("SubState")
            .map(|s| s.to_string())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    const SHOW: &str = "Id=nginx.service\nLoadState=loaded\nActiveState=active\nSubState=running\n\n\
Id=kiosk.service\nLoadState=loaded\nActiveState=failed\nSubState=failed\n\n\
Id=nope.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\n";

    #[test]
    fn parses_blocks_in_order() {
        let s = parse(SHOW, &units(&["nginx", "kiosk.service", "nope"]));
        let got: Vec<(&str, ActiveState, &str)> = s
            .iter()
            .map(|s| (s.unit.as_str(), s.active, s.sub.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("nginx", ActiveState::Active, "running"),
                ("kiosk.service", ActiveState::Failed, "failed"),
                ("nope", ActiveState::Unknown, "dead"),
            ]
        );
    }

    #[test]
    fn missing_blocks_match_by_id() {
        let s = parse(SHOW, &units(&["kiosk", "other"]));
        assert_eq!(
            (s[0].active, s[1].active),
            (ActiveState::Failed, ActiveState::Unknown)
        );
    }

    #[test]
    fn garbage_is_unknown() {
        for bad in [
            "",
            "\n\n\n",
            "no equals here",
            "ActiveState=sleepy\nSubState=x",
        ] {
            let s = parse(bad, &units(&["a"]));
            assert_eq!(s[0].active, ActiveState::Unknown, "{bad:?}");
        }
    }

    #[test]
    fn missing_systemctl_is_unknown_without_events() {
        let mut w = ServiceWatcher::new("/nonexistent/systemctl".into(), units(&["a", "b"]));
        for _ in 0..2 {
            let (s, e) = w.poll();
            assert!(
                s.iter()
                    .all(|s| s.active == ActiveState::Unknown && s.sub.is_empty())
            );
            assert_eq!(s.len(), 2);
            assert!(e.is_empty());
        }
        assert!(w.warned);
    }

    #[test]
    fn no_units_spawns_nothing() {
        let mut w = ServiceWatcher::new("/nonexistent/systemctl".into(), Vec::new());
        assert_eq!(w.poll(), (Vec::new(), Vec::new()));
        assert!(!w.warned);
    }
}
