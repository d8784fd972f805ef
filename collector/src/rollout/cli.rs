//! `picket-collector update --to VERSION --artifact FILE --url URL
//! [--devices SELECTOR] [--batch N] [--max-failed PCT] ...`: a client of
//! the collector's API (`GET /api/devices`, `POST
//! /api/devices/{id}/commands`, `GET /api/commands/{id}`) that signs the
//! artifact with the collector's key and drives a [`Rollout`].

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use picket_protocol::signing::PrivateKey;
use picket_protocol::{Action, UpdateArgs, version};
use serde_json::{Value, json};

use super::{Device, Finished, Rollout, Selector, Skip, Summary, plan};
use crate::commands::artifact::{self, ArtifactError};
use crate::commands::send::{SendError, call};

pub struct Options<'a> {
    /// `http://host:port` of the collector's API.
    pub api: &'a str,
    pub token: Option<&'a str>,
    pub key: &'a PrivateKey,
    pub to: &'a str,
    pub artifact: &'a Path,
    /// Where devices download the artifact (`https://`).
    pub url: &'a str,
    pub devices: &'a str,
    pub batch: usize,
    /// Percent of the devices tried so far that may fail before the
    /// rollout stops.
    pub max_failed: f64,
    pub allow_downgrade: bool,
    /// How long each command may wait for its device at the broker.
    pub ttl: Duration,
    /// How long a batch may take before its silent devices count as
    /// failed.
    pub timeout: Duration,
    pub poll: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Api(#[from] SendError),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Every argument, checked before anything is read or sent.
fn check(o: &Options<'_>) -> Result<Selector, RolloutError> {
    let bad = |m: String| Err(RolloutError::Invalid(m));
    if !version::is_valid(o.to) {
        return bad(format!(
            "--to {:?}: a version is 1 to 64 of [0-9A-Za-z.+-] starting with a digit",
            o.to
        ));
    }
    if !o.url.starts_with("https://") {
        return bad(format!(
            "--url {:?}: devices download over https:// only",
            o.url
        ));
    }
    if o.batch == 0 {
        return bad("--batch must be at least 1".into());
    }
    if !(0.0..=100.0).contains(&o.max_failed) {
        return bad("--max-failed is a percentage, 0 to 100".into());
    }
    if o.ttl < Duration::from_secs(1) {
        return bad("--ttl must be at least 1s".into());
    }
    Selector::parse(o.devices).map_err(|e| RolloutError::Invalid(format!("--devices: {e}")))
}

pub fn run(o: &Options<'_>, out: &mut impl Write) -> Result<Summary, RolloutError> {
    let selector = check(o)?;
    let args = signed_args(o, out)?;
    let api = Api::new(o);
    let mut rollout = api.plan(&selector, out)?;
    let total = rollout.batches();
    if total == 0 {
        writeln!(out, "no device to update")?;
    }
    let body = json!({
        "name": "agent.update",
        "args": serde_json::to_value(&args).map_err(|e| RolloutError::Invalid(e.to_string()))?,
        "ttl": o.ttl.as_secs(),
    });
    while let Some((i, batch)) = rollout.next_batch() {
        writeln!(out, "batch {}/{total}: {}", i + 1, batch.join(", "))?;
        out.flush()?;
        let pending = api.send_batch(&mut rollout, &batch, &body, out)?;
        api.await_batch(&mut rollout, pending, out)?;
        if rollout.check() {
            let s = rollout.summary();
            writeln!(
                out,
                "stopping: {} of {} devices failed, more than {}%",
                s.failed,
                s.failed + s.committed,
                o.max_failed
            )?;
        }
    }
    let s = rollout.summary();
    writeln!(
        out,
        "rollout of {} {}: {} committed, {} failed, {} not started, {} skipped",
        o.to,
        if s.stopped { "stopped" } else { "finished" },
        s.committed,
        s.failed,
        s.not_started,
        s.skipped
    )?;
    Ok(s)
}

/// Sign the artifact and check the command every device will get.
fn signed_args(o: &Options<'_>, out: &mut impl Write) -> Result<UpdateArgs, RolloutError> {
    let signed = artifact::sign(o.artifact, o.key)?;
    let args = UpdateArgs {
        url: o.url.to_string(),
        sha256: signed.sha256.clone(),
        version: o.to.to_string(),
        signature: signed.signature.clone(),
        allow_downgrade: o.allow_downgrade,
    };
    Action::AgentUpdate(args.clone())
        .check()
        .map_err(|e| RolloutError::Invalid(e.to_string()))?;
    writeln!(
        out,
        "artifact {}: {} bytes, sha256 {}, signed",
        o.artifact.display(),
        signed.bytes,
        signed.sha256
    )?;
    Ok(args)
}

/// The collector's API as the rollout uses it.
struct Api<'o, 'a> {
    http: ureq::Agent,
    base: &'a str,
    o: &'o Options<'a>,
}

impl<'o, 'a> Api<'o, 'a> {
    fn new(o: &'o Options<'a>) -> Self {
        let http: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let base = o.api.trim_end_matches('/');
        Api { http, base, o }
    }

    fn get(&self, path: &str) -> Result<Value, SendError> {
        call(
            &self.http,
            &format!("{}{path}", self.base),
            self.o.token,
            None,
        )
    }

    /// The fleet as the API lists it, planned into batches; the devices
    /// left out are reported.
    fn plan(&self, selector: &Selector, out: &mut impl Write) -> Result<Rollout, RolloutError> {
        let o = self.o;
        let listed = self.get("/api/devices")?;
        let devices: Vec<Device> = listed
            .as_array()
            .map(|a| a.iter().filter_map(Device::from_api).collect())
            .unwrap_or_default();
        let p = plan(&devices, selector, o.to, o.allow_downgrade, o.batch);
        for (id, why) in &p.skipped {
            let why = match why {
                Skip::Already => format!("already runs {}", o.to),
                Skip::Offline => "offline (run the rollout again when it is back)".into(),
                Skip::Newer(v) => format!("runs {v}, newer (--allow-downgrade to replace it)"),
            };
            writeln!(out, "skipped {id}: {why}")?;
        }
        Ok(Rollout::new(p, o.max_failed / 100.0))
    }

    /// Send the command to each device of a batch. Returns the devices
    /// and command ids it was sent to; a device that refused it is
    /// recorded as failed.
    fn send_batch(
        &self,
        rollout: &mut Rollout,
        batch: &[String],
        body: &Value,
        out: &mut impl Write,
    ) -> Result<Vec<(String, String)>, RolloutError> {
        let mut pending: Vec<(String, String)> = Vec::new();
        for device in batch {
            let url = format!("{}/api/devices/{device}/commands", self.base);
            match call(&self.http, &url, self.o.token, Some(body)) {
                Ok(v) => match v["id"].as_str() {
                    Some(id) => {
                        writeln!(out, "  {device}: sent (command {id})")?;
                        pending.push((device.clone(), id.to_string()));
                    }
                    None => finish(
                        rollout,
                        out,
                        device,
                        Finished::Failed(format!("no command id in {v}")),
                    )?,
                },
                Err(SendError::Refused { message, .. }) => {
                    finish(
                        rollout,
                        out,
                        device,
                        Finished::Failed(format!("not sent: {message}")),
                    )?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(pending)
    }

    /// Poll the batch's commands until each has a final status or the
    /// batch's time is up (the silent ones fail).
    fn await_batch(
        &self,
        rollout: &mut Rollout,
        mut pending: Vec<(String, String)>,
        out: &mut impl Write,
    ) -> Result<(), RolloutError> {
        let timeout = self.o.timeout;
        let deadline = Instant::now() + timeout;
        while !pending.is_empty() {
            let mut still = Vec::new();
            for (device, id) in pending {
                let view = self.get(&format!("/api/commands/{id}"))?;
                match settled(&view) {
                    Some(f) => finish(rollout, out, &device, f)?,
                    None => still.push((device, id)),
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                for (device, id) in pending.drain(..) {
                    let why = format!(
                        "no final status within {} s (command {id})",
                        timeout.as_secs()
                    );
                    finish(rollout, out, &device, Finished::Failed(why))?;
                }
                break;
            }
            std::thread::sleep(self.o.poll);
        }
        Ok(())
    }
}

fn finish(
    rollout: &mut Rollout,
    out: &mut impl Write,
    device: &str,
    f: Finished,
) -> std::io::Result<()> {
    match &f {
        Finished::Committed => writeln!(out, "  {device}: committed")?,
        Finished::Failed(why) => writeln!(out, "  {device}: failed: {why}")?,
    }
    out.flush()?;
    rollout.record(device, f);
    Ok(())
}

/// A command's final outcome from its API view, if it has one.
fn settled(view: &Value) -> Option<Finished> {
    let statuses = view["statuses"].as_array()?;
    let last = statuses.iter().rev().find(|s| {
        matches!(
            s["state"].as_str(),
            Some("succeeded" | "failed" | "rejected")
        )
    })?;
    let reason = last["reason"].as_str().unwrap_or("no reason given");
    match last["state"].as_str() {
        Some("succeeded") => Some(Finished::Committed),
        Some("rejected") => Some(Finished::Failed(format!("rejected: {reason}"))),
        Some(_) => Some(Finished::Failed(reason.to_string())),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_outcomes_from_command_views() {
        let table = [
            (json!({"statuses": []}), None),
            (
                json!({"statuses": [{"state": "accepted"}, {"state": "running", "reason": "installed"}]}),
                None,
            ),
            (
                json!({"statuses": [{"state": "accepted"}, {"state": "succeeded"}]}),
                Some(Finished::Committed),
            ),
            (
                json!({"statuses": [{"state": "running"}, {"state": "failed", "reason": "rolled back to 1.0.0: x"}]}),
                Some(Finished::Failed("rolled back to 1.0.0: x".into())),
            ),
            (
                json!({"statuses": [{"state": "rejected", "reason": "not allowed"}]}),
                Some(Finished::Failed("rejected: not allowed".into())),
            ),
            (json!({"error": "no command"}), None),
        ];
        for (view, want) in table {
            assert_eq!(settled(&view), want, "{view}");
        }
    }

    #[test]
    fn arguments_are_checked_before_anything_runs() {
        let key = picket_protocol::signing::private_key([1; 32]);
        let base = || Options {
            api: "http://127.0.0.1:1",
            token: None,
            key: &key,
            to: "1.1.0",
            artifact: Path::new("/nonexistent"),
            url: "https://h/a",
            devices: "*",
            batch: 1,
            max_failed: 10.0,
            allow_downgrade: false,
            ttl: Duration::from_secs(60),
            timeout: Duration::from_secs(60),
            poll: Duration::from_millis(10),
        };
        type Edit = for<'a> fn(&mut Options<'a>);
        let table: [(Edit, &str); 6] = [
            (|o| o.to = "v1", "--to"),
            (|o| o.url = "http://h/a", "--url"),
            (|o| o.batch = 0, "--batch"),
            (|o| o.max_failed = 150.0, "--max-failed"),
            (|o| o.devices = "pi/1", "--devices"),
            (|o| o.ttl = Duration::ZERO, "--ttl"),
        ];
        for (edit, want) in table {
            let mut o = base();
            edit(&mut o);
            let err = check(&o).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let err = run(&base(), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, RolloutError::Artifact(_)), "{err}");
    }
}
