//! One simulated device on the network: a task that owns its rumqttc event
//! loop, polls it continuously, and samples on its own timer in the same
//! `select!`.
//!
//! Presence follows the agent: a retained `offline` Last Will with a fresh
//! session id per connection, a retained birth on every ConnAck, and a
//! retained `offline`/`clean_stop` on shutdown. Records sampled while the
//! link is down wait in the [`Outbox`] and go out as history on reconnect.

use std::sync::Arc;
use std::time::Duration;

use picket_config::BrokerConfig;
use picket_protocol::{Format, OfflineReason, Presence, State, VERSION, encode};
use rumqttc::{
    AsyncClient, ConnectionError, Event as MqttEvent, EventLoop, LastWill, MqttOptions, Outgoing,
    Packet, QoS, TlsConfiguration, Transport,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::device::{Link, Record, SimDevice};
use super::outbox::{Encoder, Outbox};
use super::{SimStats, unix_ms};

/// Records a device holds while disconnected (see [`super::outbox`]).
const OUTBOX_CAP: usize = 32;
/// QoS 1 publishes in flight per device: one sample per interval needs
/// few; rumqttc allocates a slot per possible packet id up front.
const INFLIGHT: u16 = 16;
/// Requests queued towards the event loop: a birth plus a full outbox
/// flushed at reconnect, in the worst case one message per record.
const REQUESTS: usize = OUTBOX_CAP + 8;
/// Devices subscribe to nothing: what comes in is acknowledgements.
const MAX_INCOMING: usize = 4 * 1024;
const MAX_OUTGOING: usize = 256 * 1024;
/// How long a device waits at shutdown for its last messages' PubAcks.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect delays grow from this to [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// When a device starts and how often it samples.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// When it first connects (staggered across the fleet).
    pub connect_at: Instant,
    /// Its offset inside the interval, so devices do not publish together.
    pub phase: Duration,
    pub interval: Duration,
}

pub struct DeviceTask {
    device: SimDevice,
    outbox: Outbox,
    encoder: Encoder,
    client: AsyncClient,
    eventloop: EventLoop,
    state_topic: String,
    format: Format,
    session: String,
    timing: Timing,
    stats: Arc<SimStats>,
    connected: bool,
    ever_connected: bool,
    /// The Drop scenario has cut the link; no polling until it ends.
    cut: bool,
    /// Publishes handed to rumqttc not yet written out.
    queued: usize,
    attempt: u32,
}

impl DeviceTask {
    pub fn new(
        broker: &BrokerConfig,
        format: Format,
        device: SimDevice,
        timing: Timing,
        stats: Arc<SimStats>,
    ) -> Self {
        let state_topic = broker.topics.state(device.id());
        let session = new_session_id();
        let mut opts = MqttOptions::new(
            format!("picket-sim-{}", device.id()),
            broker.host.clone(),
            broker.port,
        );
        opts.set_keep_alive(broker.keep_alive);
        opts.set_clean_session(true);
        opts.set_max_packet_size(MAX_INCOMING, MAX_OUTGOING);
        opts.set_inflight(INFLIGHT);
        opts.set_request_channel_capacity(REQUESTS);
        if let Some((user, pass)) = &broker.credentials {
            opts.set_credentials(user.clone(), pass.clone());
        }
        if let Some(tls) = &broker.tls {
            opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls.clone())));
        }
        opts.set_last_will(will(&state_topic, &device, &session, format));
        let (client, mut eventloop) = AsyncClient::new(opts, REQUESTS);
        eventloop.network_options.set_connection_timeout(10);
        let encoder = Encoder::new(&broker.topics, device.id().clone(), format);
        DeviceTask {
            device,
            outbox: Outbox::new(OUTBOX_CAP),
            encoder,
            client,
            eventloop,
            state_topic,
            format,
            session,
            timing,
            stats,
            connected: false,
            ever_connected: false,
            cut: false,
            queued: 0,
            attempt: 0,
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(self.timing.connect_at) => {}
        }
        // Sampling starts `phase` after the first ConnAck, or one interval
        // after the first attempt if the broker is not there: an agent
        // samples whether or not it can publish.
        let mut next_tick = self.timing.connect_at + self.timing.interval + self.timing.phase;
        let mut ticking = false;
        let mut retry_at: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = tokio::time::sleep_until(next_tick) => {
                    ticking = true;
                    next_tick = following(next_tick, self.timing.interval, Instant::now());
                    self.tick();
                }
                () = sleep_until(retry_at), if retry_at.is_some() => retry_at = None,
                ev = self.eventloop.poll(), if !self.cut && retry_at.is_none() => match ev {
                    Ok(ev) => {
                        if self.handle(ev) && !ticking {
                            ticking = true;
                            next_tick = Instant::now() + self.timing.phase;
                        }
                    }
                    Err(e) => retry_at = Some(Instant::now() + self.lost(&e)),
                },
            }
        }
        if self.connected {
            self.clean_stop().await;
        }
    }

    /// Book-keeping for one event-loop event; true on ConnAck.
    fn handle(&mut self, ev: MqttEvent) -> bool {
        match ev {
            MqttEvent::Incoming(Packet::ConnAck(_)) => {
                self.connected = true;
                self.attempt = 0;
                // A clean session: rumqttc dropped whatever it still held.
                self.queued = 0;
                self.stats.connected(1);
                if self.ever_connected {
                    self.stats.count(&self.stats.reconnects);
                }
                self.ever_connected = true;
                debug!(device = %self.device.id(), session = %self.session, "connected");
                self.publish_state(Presence::Online, None);
                if !self.outbox.is_empty() {
                    let held = self.outbox.take();
                    self.send(held, true);
                }
                true
            }
            MqttEvent::Outgoing(Outgoing::Publish(_)) => {
                self.queued = self.queued.saturating_sub(1);
                self.stats.count(&self.stats.published);
                false
            }
            MqttEvent::Incoming(Packet::PubAck(_)) => {
                self.stats.count(&self.stats.acked);
                false
            }
            _ => false,
        }
    }

    /// The connection failed or could not be made: returns how long to wait.
    fn lost(&mut self, e: &ConnectionError) -> Duration {
        if self.connected {
            self.connected = false;
            self.stats.connected(-1);
        }
        let delay = backoff(self.attempt, rand::random::<f64>());
        self.attempt = self.attempt.saturating_add(1);
        self.stats
            .error(self.device.id(), &format!("{e}; retrying in {delay:?}"));
        self.renew_session();
        delay
    }

    fn tick(&mut self) {
        let now = unix_ms();
        self.device.set_backlog(self.outbox.backlog(now));
        let tick = self.device.tick(now);
        match tick.link {
            Link::Down => {
                if !self.cut {
                    self.cut_link();
                }
                self.outbox.push(now, tick.records);
            }
            Link::Silent => {}
            Link::Up => {
                if self.cut {
                    // Back from the Drop scenario: polling resumes and
                    // reconnects under a new session.
                    self.cut = false;
                    self.renew_session();
                }
                if self.connected {
                    self.send(tick.records, false);
                } else {
                    self.outbox.push(now, tick.records);
                }
            }
        }
    }

    /// Lose the connection without a DISCONNECT, so the broker publishes
    /// the Last Will. rumqttc's `clean` drops the socket and keeps what was
    /// in flight, which the next clean session discards.
    fn cut_link(&mut self) {
        info!(device = %self.device.id(), "scenario drop: cutting the connection");
        self.cut = true;
        self.eventloop.clean();
        if self.connected {
            self.connected = false;
            self.stats.connected(-1);
        }
    }

    /// A new connection is a new session id, so the will of this one can be
    /// told apart from the next.
    fn renew_session(&mut self) {
        self.session = new_session_id();
        let will = will(&self.state_topic, &self.device, &self.session, self.format);
        self.eventloop.mqtt_options.set_last_will(will);
    }

    fn send(&mut self, records: Vec<Record>, hist: bool) {
        match self.encoder.encode(records, hist) {
            Ok(messages) => {
                for (channel, payload) in messages {
                    let topic = self.encoder.topic(channel).to_string();
                    self.publish(topic, payload, false);
                }
            }
            Err(e) => self.stats.error(self.device.id(), &e.to_string()),
        }
    }

    fn publish(&mut self, topic: String, payload: Vec<u8>, retain: bool) {
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
        {
            Ok(()) => self.queued += 1,
            Err(e) => self.stats.error(self.device.id(), &e.to_string()),
        }
    }

    fn publish_state(&mut self, status: Presence, reason: Option<OfflineReason>) {
        let online = status == Presence::Online;
        let state = State {
            v: VERSION,
            device: self.device.id().clone(),
            status,
            session: self.session.clone(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
            model: online.then(|| self.device.model().into()),
            boot: online.then(|| self.device.boot().into()),
            ts: Some(unix_ms()),
            reason,
        };
        match encode(&state, self.format) {
            Ok(payload) => self.publish(self.state_topic.clone(), payload, true),
            Err(e) => self.stats.error(self.device.id(), &e.to_string()),
        }
    }

    /// Say "stopping" and "offline, clean stop" (retained), wait for the
    /// broker to take them, then disconnect.
    async fn clean_stop(&mut self) {
        let stopping = self.device.stopping(unix_ms());
        self.send(vec![Record::Event(stopping)], false);
        self.publish_state(Presence::Offline, Some(OfflineReason::CleanStop));
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut disconnecting = false;
        loop {
            if !disconnecting && self.queued == 0 && self.eventloop.state.inflight() == 0 {
                disconnecting = true;
                if self.client.try_disconnect().is_err() {
                    break;
                }
            }
            match tokio::time::timeout_at(deadline, self.eventloop.poll()).await {
                Ok(Ok(MqttEvent::Outgoing(Outgoing::Disconnect))) => break,
                Ok(Ok(ev)) => {
                    self.handle(ev);
                }
                Ok(Err(e)) => {
                    self.stats
                        .error(self.device.id(), &format!("at shutdown: {e}"));
                    break;
                }
                Err(_) => {
                    self.stats
                        .error(self.device.id(), "at shutdown: no PubAck in time");
                    break;
                }
            }
        }
        self.connected = false;
        self.stats.connected(-1);
    }
}

fn will(topic: &str, device: &SimDevice, session: &str, format: Format) -> LastWill {
    let state = State::will(device.id().clone(), session, unix_ms());
    // Encoding a State cannot fail (no floats, no maps with odd keys).
    let payload = encode(&state, format).unwrap_or_default();
    LastWill::new(topic, payload, QoS::AtLeastOnce, true)
}

/// The tick after `prev`; when the runtime fell behind (ten thousand
/// devices on two cores), skip ahead rather than burst to catch up.
fn following(prev: Instant, interval: Duration, now: Instant) -> Instant {
    let next = prev + interval;
    if next + interval < now {
        now + interval
    } else {
        next
    }
}

/// Reconnect delay after `attempt` failures: exponential, capped, with
/// jitter in [ceiling/2, ceiling] from `unit` in [0, 1), so a fleet that
/// lost its broker at once does not come back in lockstep.
fn backoff(attempt: u32, unit: f64) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
    let ceiling = BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX);
    let half = ceiling / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn new_session_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let table = [
            (0, 0.0, 500),
            (0, 0.5, 750),
            (1, 0.0, 1_000),
            (2, 0.999, 3_998),
            (4, 0.0, 8_000),
            (5, 0.0, 15_000),
            (6, 0.0, 15_000),
            (40, 0.5, 22_500),
            (3, 7.0, 8_000),
        ];
        for (attempt, unit, want_ms) in table {
            assert_eq!(
                backoff(attempt, unit).as_millis(),
                want_ms,
                "attempt {attempt}, unit {unit}"
            );
        }
    }

    #[test]
    fn ticks_skip_ahead_when_late() {
        let t0 = Instant::now();
        let i = Duration::from_secs(10);
        assert_eq!(following(t0, i, t0), t0 + i);
        assert_eq!(following(t0, i, t0 + i + i), t0 + i);
        let late = t0 + Duration::from_secs(35);
        assert_eq!(following(t0, i, late), late + i);
    }
}
