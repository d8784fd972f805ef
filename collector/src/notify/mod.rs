//! Alert notifications to people: a webhook (JSON, Slack-compatible) and
//! e-mail over SMTP. (The retained MQTT alert topic is the engine's.)
//!
//! The engine asks [`Cooldowns::decide`] whether an alert change is worth
//! telling, and if so sends a [`Notification`] to the [`Notifier`] task,
//! which delivers it to every configured channel. Each channel has its own
//! task and bounded queue: a slow or dead webhook never delays the e-mail,
//! and nothing ever blocks the engine (a full queue drops, and counts).
//!
//! # Configuration
//! ```toml
//! [notify]
//! cooldown = "1h"          # see Cooldowns
//! [webhook]
//! url = ""                 # http(s)://...; empty: no webhook
//! timeout = "10s"          # per attempt
//! retries = 5              # after the first attempt
//! backoff = "1s"           # before the first retry, doubling, at most 5m
//! ca_file = ""             # PEM CAs for https; empty: built-in Mozilla roots
//! [email]
//! host = ""                # empty: no e-mail
//! port = 0                 # 0: 587 starttls, 465 tls, 25 plain
//! tls = "starttls"         # starttls (required), tls (implicit), plain
//! username = ""
//! password_file = ""       # first line is the password
//! from = "picket@localhost"
//! to = []                  # PICKET_EMAIL_TO=a@x,b@y
//! timeout = "30s"          # per attempt, the whole SMTP session
//! retries = 3
//! backoff = "1s"
//! ```
//!
//! # Layout
//! - [`cooldown`]: the pure policy deciding what to notify.
//! - [`config`]: the `[notify]`, `[webhook]` and `[email]` sections.
//! - [`webhook`] and [`email`]: formatting (pure) and delivery with retries.
//! - this module: the [`Notification`], the [`Notifier`] task and its
//!   [`NotifyCounters`].

pub mod config;
pub mod cooldown;
pub mod email;
pub mod webhook;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use picket_protocol::{DeviceId, Severity};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::model::Millis;

pub use config::{NotifyConfig, RawEmail, RawNotify, RawWebhook, validate};
pub use cooldown::{Change, Cooldowns, Kind};
pub use email::Email;
pub use webhook::Webhook;

/// One alert change to tell people about.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub device: DeviceId,
    /// The device's labels (site, club, ...), for people to know where it is.
    pub labels: BTreeMap<String, String>,
    pub rule: String,
    /// The instance the rule matched (`/data`, `nginx.service`), if any.
    pub instance: Option<String>,
    pub severity: Severity,
    pub state: Kind,
    pub value: Option<f64>,
    pub message: String,
    /// When the change happened.
    pub ts: Millis,
}

impl Notification {
    /// `[picket CRITICAL] pi-cesson-01 - temperature`, or `[picket
    /// RESOLVED] ...`: the e-mail subject, as operators' filters know it.
    pub fn headline(&self) -> String {
        format!("[picket {}] {} - {}", self.level(), self.device, self.rule)
    }

    /// `CRITICAL`, `WARNING`, `INFO`, or `RESOLVED` for a resolution.
    pub fn level(&self) -> &'static str {
        match (self.state, self.severity) {
            (Kind::Resolved, _) => "RESOLVED",
            (Kind::Firing, Severity::Critical) => "CRITICAL",
            (Kind::Firing, Severity::Warning) => "WARNING",
            (Kind::Firing, Severity::Info) => "INFO",
        }
    }
}

/// Delivery figures of one channel, for `/metrics`.
#[derive(Debug, Default)]
pub struct ChannelCounters {
    /// Notifications delivered.
    pub sent: AtomicU64,
    /// Notifications given up on (permanent error or retries exhausted).
    pub failed: AtomicU64,
    /// Notifications never tried because the channel's queue was full.
    pub dropped: AtomicU64,
    /// Attempts repeated after a transient error.
    pub retries: AtomicU64,
}

/// Per-channel counters, shared with the API for `/metrics`.
#[derive(Debug, Default)]
pub struct NotifyCounters {
    pub webhook: ChannelCounters,
    pub email: ChannelCounters,
}

impl NotifyCounters {
    /// `(channel name, counters)` for every channel, configured or not.
    pub fn channels(&self) -> [(&'static str, &ChannelCounters); 2] {
        [("webhook", &self.webhook), ("email", &self.email)]
    }
}

/// Why a delivery was given up, after how many attempts.
#[derive(Debug, thiserror::Error)]
#[error("{error} (after {attempts} attempt(s))")]
pub struct Failed<E: std::error::Error + 'static> {
    pub attempts: u32,
    #[source]
    pub error: E,
}

/// The wait before retry number `n` (0-based): `backoff`, doubled each
/// time, never more than [`config::MAX_BACKOFF`].
pub fn retry_delay(backoff: Duration, n: u32) -> Duration {
    backoff
        .checked_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
        .map_or(config::MAX_BACKOFF, |d| d.min(config::MAX_BACKOFF))
}

/// Run `attempt` until it succeeds, fails with an error `retryable` refuses,
/// or `retries` retries are spent. Returns the number of attempts made.
async fn retrying<E, F, Fut>(
    channel: &'static str,
    retries: u32,
    backoff: Duration,
    retryable: fn(&E) -> bool,
    mut attempt: F,
) -> Result<u32, Failed<E>>
where
    E: std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut n = 0;
    loop {
        match attempt().await {
            Ok(()) => return Ok(n + 1),
            Err(error) if n < retries && retryable(&error) => {
                let delay = retry_delay(backoff, n);
                debug!(channel, attempt = n + 1, error = %error, ?delay, "delivery failed, retrying");
                tokio::time::sleep(delay).await;
                n += 1;
            }
            Err(error) => {
                return Err(Failed {
                    attempts: n + 1,
                    error,
                });
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum ChannelKind {
    Webhook,
    Email,
}

impl ChannelKind {
    fn name(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Email => "email",
        }
    }

    fn counters(self, all: &NotifyCounters) -> &ChannelCounters {
        match self {
            ChannelKind::Webhook => &all.webhook,
            ChannelKind::Email => &all.email,
        }
    }
}

/// A configured destination.
enum Channel {
    Webhook(Webhook),
    // lettre's transport is large; boxed so the enum is not.
    Email(Box<Email>),
}

impl Channel {
    fn kind(&self) -> ChannelKind {
        match self {
            Channel::Webhook(_) => ChannelKind::Webhook,
            Channel::Email(_) => ChannelKind::Email,
        }
    }

    /// Deliver with retries: `Ok(attempts)` or the final error, as text.
    async fn deliver(&self, n: &Notification) -> Result<u32, (u32, String)> {
        match self {
            Channel::Webhook(w) => w
                .send(n)
                .await
                .map_err(|f| (f.attempts, f.error.to_string())),
            Channel::Email(e) => e
                .send(n)
                .await
                .map_err(|f| (f.attempts, f.error.to_string())),
        }
    }
}

/// How often a channel's "queue full" warning may be logged.
const DROP_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Rate limit for the "queue full" warning: the first drop is logged,
/// then at most one line per [`DROP_WARNING_EVERY`] with the count since.
#[derive(Debug, Default)]
struct DropWarning {
    last: Option<Instant>,
    unreported: u64,
}

impl DropWarning {
    /// Record a drop at `now`; `Some(count)` when a warning is due, with
    /// the drops it covers.
    fn drop_at(&mut self, now: Instant) -> Option<u64> {
        self.unreported += 1;
        match self.last {
            Some(last) if now.duration_since(last) < DROP_WARNING_EVERY => None,
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.unreported))
            }
        }
    }
}

/// The notification task: fans every [`Notification`] out to the
/// configured channels.
pub struct Notifier {
    config: NotifyConfig,
    rx: mpsc::Receiver<Notification>,
    counters: Arc<NotifyCounters>,
}

impl Notifier {
    pub fn new(
        config: NotifyConfig,
        rx: mpsc::Receiver<Notification>,
        counters: Arc<NotifyCounters>,
    ) -> Self {
        Notifier {
            config,
            rx,
            counters,
        }
    }

    /// Deliver until `shutdown` completes or every sender is gone, then
    /// let queued and in-flight deliveries finish for up to the grace
    /// period, and abandon the rest.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut channels = Vec::new();
        if let Some(c) = self.config.webhook.take() {
            channels.push(Channel::Webhook(Webhook::new(c)));
        }
        if let Some(c) = self.config.email.take() {
            channels.push(Channel::Email(Box::new(Email::new(c))));
        }
        let mut workers = JoinSet::new();
        let mut queues = Vec::new();
        for channel in channels {
            let (tx, rx) = mpsc::channel(self.config.queue.max(1));
            queues.push((channel.kind(), tx, DropWarning::default()));
            workers.spawn(deliver_all(channel, rx, self.counters.clone()));
        }
        if queues.is_empty() {
            info!("no notification channel configured (webhook.url, email.host)");
        }

        tokio::pin!(shutdown);
        loop {
            let n = tokio::select! {
                biased;
                () = &mut shutdown => break,
                n = self.rx.recv() => match n {
                    Some(n) => Arc::new(n),
                    None => break,
                },
            };
            for (kind, tx, warning) in &mut queues {
                match tx.try_send(n.clone()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        kind.counters(&self.counters)
                            .dropped
                            .fetch_add(1, Ordering::Relaxed);
                        if let Some(count) = warning.drop_at(Instant::now()) {
                            warn!(
                                channel = kind.name(),
                                dropped = count,
                                "notification queue full, dropping notifications"
                            );
                        }
                    }
                    // The worker only ends when its queue is closed.
                    Err(TrySendError::Closed(_)) => {}
                }
            }
        }

        // Closing the queues lets each worker finish what it holds and end.
        drop(queues);
        let grace = self.config.grace;
        let finished = tokio::time::timeout(grace, async {
            while workers.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            warn!(
                ?grace,
                "notification deliveries still running after the grace period, abandoned"
            );
            workers.shutdown().await;
        }
    }
}

async fn deliver_all(
    channel: Channel,
    mut rx: mpsc::Receiver<Arc<Notification>>,
    all: Arc<NotifyCounters>,
) {
    let name = channel.kind().name();
    let counters = channel.kind().counters(&all);
    while let Some(n) = rx.recv().await {
        let attempts = match channel.deliver(&n).await {
            Ok(attempts) => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
                debug!(channel = name, device = %n.device, rule = %n.rule, attempts, "notification sent");
                attempts
            }
            Err((attempts, error)) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                warn!(channel = name, device = %n.device, rule = %n.rule, attempts, %error, "notification not delivered");
                attempts
            }
        };
        counters
            .retries
            .fetch_add(u64::from(attempts.saturating_sub(1)), Ordering::Relaxed);
    }
}

/// The notification the channels' tests format: a critical temperature
/// alert firing on a labelled device.
#[cfg(test)]
pub(crate) fn test_notification() -> Notification {
    Notification {
        device: DeviceId::new("pi-cesson-01").expect("id"),
        labels: BTreeMap::from([("club".into(), "CESSON".into())]),
        rule: "temperature".into(),
        instance: None,
        severity: Severity::Critical,
        state: Kind::Firing,
        value: Some(81.2),
        message: "temperature 81.2 °C".into(),
        ts: 1_733_323_122_000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(severity: Severity, state: Kind) -> Notification {
        Notification {
            device: DeviceId::new("pi-cesson-01").expect("id"),
            labels: BTreeMap::new(),
            rule: "temperature".into(),
            instance: None,
            severity,
            state,
            value: Some(81.2),
            message: "temperature 81.2 °C".into(),
            ts: 0,
        }
    }

    #[test]
    fn headlines() {
        let table = [
            (
                Severity::Critical,
                Kind::Firing,
                "[picket CRITICAL] pi-cesson-01 - temperature",
            ),
            (
                Severity::Warning,
                Kind::Firing,
                "[picket WARNING] pi-cesson-01 - temperature",
            ),
            (
                Severity::Info,
                Kind::Firing,
                "[picket INFO] pi-cesson-01 - temperature",
            ),
            (
                Severity::Critical,
                Kind::Resolved,
                "[picket RESOLVED] pi-cesson-01 - temperature",
            ),
        ];
        for (severity, state, want) in table {
            assert_eq!(notification(severity, state).headline(), want);
        }
    }

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let s = Duration::from_secs;
        let table = [
            (0, s(1)),
            (1, s(2)),
            (2, s(4)),
            (3, s(8)),
            (8, s(256)),
            (9, s(300)),
            (40, s(300)),
        ];
        for (n, want) in table {
            assert_eq!(retry_delay(s(1), n), want, "retry {n}");
        }
        assert_eq!(
            retry_delay(Duration::from_millis(10), 2),
            Duration::from_millis(40)
        );
    }

    #[test]
    fn drop_warnings_are_rate_limited_and_count_what_they_cover() {
        let t0 = Instant::now();
        let mut w = DropWarning::default();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert_eq!(w.drop_at(at(0)), Some(1));
        assert_eq!(w.drop_at(at(1)), None);
        assert_eq!(w.drop_at(at(59)), None);
        assert_eq!(w.drop_at(at(60)), Some(3));
        assert_eq!(w.drop_at(at(200)), Some(1));
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct E(bool);

    #[tokio::test(start_paused = true)]
    async fn retrying_stops_on_success_permanent_error_or_exhaustion() {
        // (outcomes of successive attempts, retries allowed, expected result)
        type Case = (&'static [Result<(), bool>], u32, Result<u32, u32>);
        let table: [Case; 5] = [
            (&[Ok(())], 3, Ok(1)),
            (&[Err(true), Err(true), Ok(())], 3, Ok(3)),
            (&[Err(false), Ok(())], 3, Err(1)),
            (&[Err(true), Err(true), Err(true)], 2, Err(3)),
            (&[Err(true)], 0, Err(1)),
        ];
        for (outcomes, retries, want) in table {
            let mut next = outcomes.iter();
            let start = Instant::now();
            let got = retrying(
                "test",
                retries,
                Duration::from_secs(1),
                |e: &E| e.0,
                || {
                    let r = next.next().expect("no more attempts scripted").map_err(E);
                    async move { r }
                },
            )
            .await
            .map_err(|f| f.attempts);
            assert_eq!(got, want, "{outcomes:?}");
            // Waited 1 s, 2 s, ... between the attempts made.
            let attempts = match got {
                Ok(a) | Err(a) => a,
            };
            let waited: Duration = (0..attempts - 1)
                .map(|n| retry_delay(Duration::from_secs(1), n))
                .sum();
            assert_eq!(start.elapsed(), waited, "{outcomes:?}");
        }
    }
}
