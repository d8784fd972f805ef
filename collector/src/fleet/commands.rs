//! The engine's side of commands: sending one (for the API or a rule's
//! remedy) and storing the statuses devices reply.
//!
//! A command goes into the same commit as everything else and is published
//! only after that commit, so the command log always knows a command
//! before its first reply can arrive.

use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{info, warn};

use picket_protocol::{Action, DeviceId, Reply};

use super::Engine;
use crate::commands::IssueError;
use crate::history::{CommandRow, StatusRow};
use crate::model::Millis;

/// What the API learns about a command it asked for.
#[derive(Debug)]
pub struct Sent {
    pub id: String,
    pub issued: Millis,
    pub expires: Millis,
    /// Resolves once the command is stored and handed to the broker.
    pub published: oneshot::Receiver<()>,
}

impl Engine {
    /// Build, log and queue for publication one command.
    pub(super) fn send_command(
        &mut self,
        device: &DeviceId,
        action: Action,
        ttl: Option<Duration>,
        source: String,
    ) -> Result<Sent, IssueError> {
        let now = self.clock.now();
        let issued = self.cfg.issuer.issue(device, action, ttl, now)?;
        let c = &issued.command;
        let args = serde_json::to_value(&c.action)
            .ok()
            .and_then(|mut v| v.get_mut("args").map(serde_json::Value::take))
            .unwrap_or_default();
        info!(device = %device, id = %c.id, name = c.action.name(), source = %source, "command sent");
        self.pending.batch.commands.push(CommandRow {
            id: c.id.clone(),
            device: device.clone(),
            name: c.action.name().to_string(),
            args,
            issued: c.issued,
            expires: c.expires,
            source,
        });
        self.pending.commands.push((issued.topic, issued.payload));
        let (tx, rx) = oneshot::channel();
        self.pending.published.push(tx);
        Ok(Sent {
            id: c.id.clone(),
            issued: c.issued,
            expires: c.expires,
            published: rx,
        })
    }

    pub(super) fn on_reply(&mut self, id: &DeviceId, r: &Reply, now: Millis) {
        self.pending.batch.statuses.push(StatusRow {
            command: r.id.clone(),
            device: id.clone(),
            state: r.state,
            ts: r.ts,
            received: now,
            reason: r.reason.clone(),
            output: r.output.clone(),
            chunk: r.chunk,
        });
    }

    /// The rule fired: send its remedy if it has one and the rate limit
    /// allows. Returns what to record with the alert.
    pub(super) fn remedy(
        &mut self,
        device: &DeviceId,
        rule: &str,
        instance: Option<&str>,
        now: Millis,
    ) -> Option<String> {
        let remedy = self.cfg.rules.remedy(rule)?.clone();
        let dev = self.device(device);
        let allowed = dev.p.remedies.entry(rule.to_string()).or_default().allow(
            now,
            remedy.limit,
            remedy.window,
        );
        dev.dirty = true;
        if !allowed {
            warn!(device = %device, rule, "remedy rate limited");
            return Some(format!(
                "rate_limited: at most {} per {} s",
                remedy.limit,
                remedy.window.as_secs()
            ));
        }
        let sent = remedy.action(device, instance).and_then(|action| {
            self.send_command(device, action, remedy.ttl, format!("rule:{rule}"))
        });
        match sent {
            // Nobody waits for this one to be published.
            Ok(s) => Some(s.id),
            Err(e) => {
                warn!(device = %device, rule, error = %e, "remedy not sent");
                Some(format!("error: {e}"))
            }
        }
    }
}
