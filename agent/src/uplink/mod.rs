//! The uplink task: owns the rumqttc event loop and moves records from the
//! disk queue to the broker.
//!
//! It polls the event loop continuously and never touches the disk: reads and
//! acknowledgements go to the store task over channels. On every ConnAck it
//! publishes the retained birth message and, when the broker kept no session,
//! re-publishes everything unacknowledged from the queue (rumqttc drops its
//! in-flight publishes in that case, so the queue is the source of truth).
//! A record leaves the queue only after the PubAck of the batch carrying it
//! has settled: the broker was heard from `uplink.hold_acked` after it, so
//! it has saved it (settle.rs); a connection lost before that sends the
//! records again.
//!
//! It also carries the command service's traffic: it subscribes to the
//! device's command topic on every connection, hands command publishes to
//! the service without waiting (a full queue is answered `busy` here), and
//! publishes the service's replies at QoS 1 (see `crate::commands`).

pub mod batch;
pub mod settle;
pub mod window;

use std::time::{Duration, Instant};

use picket_protocol::{
    AlertSet, DEFAULT_MAX_PAYLOAD, DeviceId, Format, OfflineReason, Presence, Reply, State,
    TopicKind, VERSION, decode, encode,
};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS,
    Request, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::config::{BrokerConfig, UplinkConfig};
use crate::liveness::Beacon;
use crate::sensors::clock::unix_ms;
use crate::shutdown::Shutdown;
use crate::store::{ReadReply, StoreStatus, UplinkRequest};
use crate::views::{AlertView, Failure, Inbound, Link, UplinkStatus};
use batch::Batcher;
use settle::Settle;
use window::{Tracked, Window};

/// Facts about this device announced in the birth message.
#[derive(Debug, Clone)]
pub struct Identity {
    pub device: DeviceId,
    pub model: Option<String>,
    pub boot: Option<String>,
}

/// The uplink's side of the command service: command publishes go out on
/// `inbound`, replies come back on `replies`.
#[derive(Debug)]
pub struct CommandLink {
    pub inbound: mpsc::Sender<Inbound>,
    pub replies: mpsc::Receiver<Reply>,
}

impl CommandLink {
    pub fn new(inbound: mpsc::Sender<Inbound>, replies: mpsc::Receiver<Reply>) -> Self {
        CommandLink { inbound, replies }
    }
}

/// The uplink's channels: to the store, to the command service, the state
/// it publishes, its stop signal and its watchdog beacon.
pub struct Links {
    pub requests: mpsc::Sender<UplinkRequest>,
    pub replies: mpsc::Receiver<ReadReply>,
    pub store: watch::Receiver<StoreStatus>,
    pub status: watch::Sender<UplinkStatus>,
    /// The collector's retained alert set for this device (drives the LED).
    pub alerts: watch::Sender<AlertView>,
    pub commands: CommandLink,
    pub shutdown: Shutdown,
    pub beacon: Beacon,
}

pub struct Uplink {
    broker: BrokerConfig,
    cfg: UplinkConfig,
    identity: Identity,
    format: Format,
    links: Links,
    batcher: Batcher,
    cmd_filter: String,
    state_topic: String,
    alert_topic: String,
    client: AsyncClient,
    eventloop: EventLoop,
    session: String,
}

/// The `requests` channel must hold at least this many messages so that
/// `try_send` cannot fail: one read plus one ack per batch in flight.
pub fn request_capacity(cfg: &UplinkConfig) -> usize {
    2 * cfg.inflight + 4
}

impl Uplink {
    pub fn new(
        broker: BrokerConfig,
        cfg: UplinkConfig,
        identity: Identity,
        format: Format,
        links: Links,
    ) -> Self {
        let session = new_session_id();
        let cmd_filter = broker.topics.cmd_filter(&identity.device);
        let state_topic = broker.topics.state(&identity.device);
        let alert_topic = broker.topics.alert(&identity.device);
        let mut opts = MqttOptions::new(&broker.client_id, &broker.host, broker.port);
        opts.set_keep_alive(broker.keep_alive);
        // A persistent session keeps the device's command subscription while
        // it is offline; telemetry does not depend on it (see module doc).
        opts.set_clean_session(false);
        // Batches can be large; the default 10 KiB would refuse them.
        let max_packet = cfg.batch_bytes.saturating_mul(4).max(1 << 20);
        opts.set_max_packet_size(max_packet, max_packet);
        // rumqttc numbers packets 1..=inflight; with our window well below,
        // a packet id is never reused while still unacknowledged.
        opts.set_inflight((cfg.inflight as u16).saturating_mul(2).saturating_add(4));
        opts.set_request_channel_capacity(cfg.inflight * 2 + 8);
        if let Some((user, pass)) = &broker.credentials {
            opts.set_credentials(user.clone(), pass.clone());
        }
        if let Some(config) = &broker.tls {
            opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(config.clone())));
        }
        opts.set_last_will(will(&state_topic, &identity, &session, format));
        let (client, mut eventloop) = AsyncClient::new(opts, cfg.inflight * 2 + 8);
        eventloop.network_options.set_connection_timeout(10);
        // Batching is ours (batch.rs); Nagle's algorithm would only hold a
        // command reply or a PubAck back behind the broker's delayed ACK
        // (40 ms per exchange, measured in bench/command-rtt.sh).
        eventloop.network_options.set_tcp_nodelay(true);
        let batcher = Batcher::new(&broker.topics, identity.device.clone(), format);
        let acked_through = links.store.borrow().stats.acked_through;
        links.status.send_modify(|s| {
            s.session = session.clone();
            s.acked_through = acked_through;
        });
        Uplink {
            broker,
            cfg,
            identity,
            format,
            links,
            batcher,
            cmd_filter,
            state_topic,
            alert_topic,
            client,
            eventloop,
            session,
        }
    }

    pub async fn run(mut self) {
        let mut flow = Flow::new(&self.cfg, &self.links.store);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = self.links.shutdown.clone();

        loop {
            let appended = self.links.store.borrow().appended_through;
            self.request_read(&mut flow, appended);
            let reply_room = flow.connected && flow.window.len() < 2 * self.cfg.inflight;

            tokio::select! {
                // Rarely-ready branches first, so a busy event loop (a
                // backlog streaming out) cannot starve the watchdog beacon
                // or the next read.
                biased;
                () = shutdown.wait() => break,
                _ = tick.tick() => self.links.beacon.beat(),
                // Replies share the window with batches; bounded so the
                // client's request queue cannot overflow. While the link
                // is down they wait in the channel (the command tasks wait
                // behind them), never in rumqttc's queue, whose content a
                // reconnection without session would leave unaccounted.
                reply = self.links.commands.replies.recv(), if reply_room => {
                    if let Some(reply) = reply {
                        self.publish_reply(&reply, &mut flow.window);
                    }
                }
                reply = self.links.replies.recv() => {
                    let Some(reply) = reply else { break };
                    self.on_read(&mut flow, reply);
                }
                ev = self.eventloop.poll(), if flow.poll_at.is_none() => match ev {
                    Ok(event) => self.on_event(&mut flow, event, appended),
                    Err(e) => self.on_error(&mut flow, &e),
                },
                () = sleep_until(flow.poll_at), if flow.poll_at.is_some() => flow.poll_at = None,
                changed = self.links.store.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }

        if flow.connected {
            // Statuses the command service sent while stopping go out
            // before the goodbye.
            while let Ok(reply) = self.links.commands.replies.try_recv() {
                self.publish_reply(&reply, &mut flow.window);
            }
            self.clean_stop(&mut flow.window, &mut flow.settle).await;
        }
    }

    /// Ask the store for the next records when connected, no read is
    /// outstanding, the window has room and the queue has some.
    fn request_read(&self, flow: &mut Flow, appended: Option<u64>) {
        if flow.connected
            && !flow.read_pending
            && flow.window.len() < self.cfg.inflight
            && appended.is_some_and(|a| a >= flow.send_next)
        {
            let req = UplinkRequest::Read {
                from: flow.send_next,
                max_records: self.cfg.batch_records,
                max_bytes: self.cfg.batch_bytes,
                epoch: flow.epoch,
            };
            match self.links.requests.try_send(req) {
                Ok(()) => flow.read_pending = true,
                Err(e) => warn!(error = %e, "store busy; read deferred"),
            }
        }
    }

    /// The store's answer to a read: publish its batches, unless it
    /// answers a read from before the last rewind or the link went down.
    fn on_read(&mut self, flow: &mut Flow, reply: ReadReply) {
        if reply.epoch != flow.epoch {
            return;
        }
        flow.read_pending = false;
        if !flow.connected {
            return;
        }
        let Some(last) = reply.records.last().map(|r| r.seq) else {
            return;
        };
        let publications = self.batcher.build(reply.records, flow.live_from);
        let (next, sent) = publish_batches(
            &self.client,
            self.cfg.inflight,
            publications,
            &mut flow.window,
        );
        flow.send_next = next.unwrap_or(last + 1);
        self.set_status(|s| s.published += sent);
    }

    /// An event from the MQTT event loop.
    fn on_event(&mut self, flow: &mut Flow, event: Event, appended: Option<u64>) {
        match event {
            Event::Incoming(Packet::ConnAck(ack)) => {
                self.on_connack(flow, ack.session_present, appended);
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => flow.window.outgoing(pkid),
            Event::Incoming(Packet::Publish(p)) => {
                self.settle_heard(&mut flow.settle);
                if p.topic == self.alert_topic {
                    self.on_alerts(&p);
                } else {
                    self.on_command(p, &mut flow.window);
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => self.on_puback(flow, ack.pkid),
            Event::Incoming(other) => {
                self.settle_heard(&mut flow.settle);
                debug!(event = ?other, "mqtt");
            }
            other => debug!(event = ?other, "mqtt"),
        }
    }

    /// Connected: start again from the last settled record when the
    /// in-flight batches are void, subscribe, say hello.
    fn on_connack(&mut self, flow: &mut Flow, session_present: bool, appended: Option<u64>) {
        flow.connected = true;
        flow.backoff.reset();
        self.settle_heard(&mut flow.settle);
        if !session_present || flow.rewind {
            if session_present {
                // rumqttc sends its pending publishes again by itself;
                // they keep their packet ids.
                flow.window
                    .restart(self.eventloop.pending.iter().filter_map(|r| match r {
                        Request::Publish(p) if p.qos != QoS::AtMostOnce => {
                            Some((p.pkid != 0).then_some(p.pkid))
                        }
                        _ => None,
                    }));
            } else {
                // rumqttc dropped whatever it had queued.
                flow.window.clear();
            }
            // Start again from the last settled record.
            flow.rewind = false;
            flow.epoch += 1;
            flow.read_pending = false;
            flow.send_next = flow.settle.settled().map_or(0, |a| a + 1);
        }
        flow.live_from = appended.map_or(0, |a| a + 1);
        if !session_present {
            // A broker that lost our session also lost the alert
            // clearances queued for it; the retained set, if any, comes
            // back with the subscription.
            self.links.alerts.send_replace(None);
        }
        // Again on a resumed session too: harmless, and it covers a
        // broker that kept the session but not the subscription.
        if let Err(e) = self
            .client
            .try_subscribe(&self.alert_topic, QoS::AtLeastOnce)
        {
            warn!(error = %e, "cannot subscribe to the alert topic");
        }
        info!(broker = %self.broker.url, session = %self.session,
              resumed = session_present, "connected");
        // Every connection: a broker that lost the session must learn
        // the subscription again; on a resumed one it is harmless.
        if let Err(e) = self
            .client
            .try_subscribe(self.cmd_filter.clone(), QoS::AtLeastOnce)
        {
            warn!(error = %e, "cannot subscribe to commands");
        }
        self.publish_birth(&mut flow.window);
        self.set_status(|s| {
            s.link = Link::Connected {
                since_ms: unix_ms(),
            };
            s.last_error = None;
        });
    }

    /// A PubAck: one for a batch acknowledges its records (they settle
    /// later); any other is news of the broker.
    fn on_puback(&mut self, flow: &mut Flow, pkid: u16) {
        match flow.window.puback(pkid) {
            Some(through) => {
                let settled = flow.settle.ack(through, Instant::now());
                self.settled(settled);
                let acked = flow.settle.acked();
                self.set_status(|s| s.acked_through = acked);
            }
            None => self.settle_heard(&mut flow.settle),
        }
    }

    /// The connection failed or could not be made: void what had not
    /// settled, back off, and prepare the next connection's will.
    fn on_error(&mut self, flow: &mut Flow, e: &ConnectionError) {
        let failure = classify(e);
        let delay = flow.backoff.next(rand::random::<f64>());
        if flow.connected {
            warn!(error = %e, retry_in = ?delay, "connection lost");
        } else {
            warn!(error = %e, ?failure, retry_in = ?delay, "cannot connect");
        }
        flow.connected = false;
        if let Some(from) = flow.settle.lost() {
            // The broker may have died with them unsaved.
            flow.rewind = true;
            info!(
                from,
                "acknowledgements not yet settled are void: sending again from there"
            );
            let acked = flow.settle.acked();
            self.set_status(|s| s.acked_through = acked);
        }
        flow.poll_at = Some(Instant::now() + delay);
        // A new connection is a new session id, so a will from this one
        // can be told apart from the next.
        self.session = new_session_id();
        let will = will(
            &self.state_topic,
            &self.identity,
            &self.session,
            self.format,
        );
        self.eventloop.mqtt_options.set_last_will(will);
        let session = self.session.clone();
        self.set_status(|s| {
            if !matches!(s.link, Link::Down { failure: f, .. } if f == failure) {
                s.link = Link::Down {
                    failure,
                    since_ms: unix_ms(),
                };
            }
            s.last_error = Some(e.to_string());
            s.session = session;
        });
    }

    /// A packet arrived from the broker: settle what is old enough.
    fn settle_heard(&self, settle: &mut Settle) {
        let settled = settle.heard(Instant::now());
        self.settled(settled);
    }

    /// Tell the store how far the queue may now be acknowledged.
    fn settled(&self, through: Option<u64>) {
        if let Some(through) = through
            && let Err(e) = self.links.requests.try_send(UplinkRequest::Ack { through })
        {
            warn!(error = %e, through, "store busy; ack deferred to the next one");
        }
    }

    /// The collector's retained alert set for this device (drives the LED).
    fn on_alerts(&self, p: &rumqttc::Publish) {
        // An empty payload is the collector clearing the retained set.
        if p.payload.is_empty() {
            info!("alerts cleared by the collector");
            self.links.alerts.send_replace(None);
            return;
        }
        match decode::<AlertSet>(&p.payload, DEFAULT_MAX_PAYLOAD) {
            Ok(set) if set.device != self.identity.device => {
                warn!(device = %set.device, "alert set for another device ignored");
            }
            Ok(set) => {
                info!(alerts = set.alerts.len(), highest = ?set.highest(), "alert set from the collector");
                let set = (!set.alerts.is_empty()).then_some(set);
                self.links.alerts.send_replace(set);
            }
            Err(e) => warn!(error = %e, "undecodable alert set ignored"),
        }
    }

    /// A publish on the command topic: hand it to the command service, or
    /// refuse it here when its queue is full (never block the event loop).
    fn on_command(&mut self, p: rumqttc::Publish, window: &mut Window) {
        let id = match self.broker.topics.parse(&p.topic) {
            Ok(t) if t.device == self.identity.device => match t.kind {
                TopicKind::Cmd(id) => id,
                _ => return,
            },
            _ => {
                debug!(topic = %p.topic, "publish outside the command topic ignored");
                return;
            }
        };
        let inbound = Inbound {
            id: id.clone(),
            retained: p.retain,
            payload: p.payload.to_vec(),
        };
        match self.links.commands.inbound.try_send(inbound) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(inbound)) => {
                warn!(id = %id, "command queue full: rejected");
                let reply = inbound.busy_reply(&self.identity.device);
                self.publish_reply(&reply, window);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn publish_reply(&mut self, reply: &Reply, window: &mut Window) {
        let topic = match self.broker.topics.reply(&self.identity.device, &reply.id) {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "reply to an unusable command id not sent");
                return;
            }
        };
        match encode(reply, self.format) {
            Ok(payload) => match self
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, payload)
            {
                Ok(()) => window.queued(Tracked::Control),
                Err(e) => warn!(error = %e, id = %reply.id, "cannot queue a command reply"),
            },
            Err(e) => warn!(error = %e, "cannot encode a command reply"),
        }
    }

    fn publish_birth(&mut self, window: &mut Window) {
        let birth = State {
            v: VERSION,
            device: self.identity.device.clone(),
            status: Presence::Online,
            session: self.session.clone(),
            version: Some(crate::VERSION.into()),
            model: self.identity.model.clone(),
            boot: self.identity.boot.clone(),
            ts: Some(unix_ms()),
            reason: None,
        };
        self.publish_state(&birth, window);
    }

    fn publish_state(&mut self, state: &State, window: &mut Window) {
        match encode(state, self.format) {
            Ok(payload) => {
                match self
                    .client
                    .try_publish(&self.state_topic, QoS::AtLeastOnce, true, payload)
                {
                    Ok(()) => window.queued(Tracked::Control),
                    Err(e) => warn!(error = %e, "cannot queue the state message"),
                }
            }
            Err(e) => warn!(error = %e, "cannot encode the state message"),
        }
    }

    /// Say "offline, clean stop" (retained), wait briefly for the broker to
    /// acknowledge it and whatever batches are in flight, then disconnect.
    async fn clean_stop(&mut self, window: &mut Window, settle: &mut Settle) {
        let state = State {
            v: VERSION,
            device: self.identity.device.clone(),
            status: Presence::Offline,
            session: self.session.clone(),
            version: Some(crate::VERSION.into()),
            model: None,
            boot: None,
            ts: Some(unix_ms()),
            reason: Some(OfflineReason::CleanStop),
        };
        self.publish_state(&state, window);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut disconnecting = false;
        loop {
            if window.is_empty() && !disconnecting {
                disconnecting = true;
                if self.client.try_disconnect().is_err() {
                    break;
                }
            }
            match tokio::time::timeout_at(deadline, self.eventloop.poll()).await {
                Err(_) | Ok(Err(_)) => break,
                Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) => break,
                Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => window.outgoing(pkid),
                Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                    // What settles by now goes; the rest is sent again by
                    // the next run.
                    let settled = match window.puback(ack.pkid) {
                        Some(through) => settle.ack(through, Instant::now()),
                        None => settle.heard(Instant::now()),
                    };
                    self.settled(settled);
                }
                Ok(Ok(_)) => {}
            }
        }
        info!("disconnected");
    }

    fn set_status(&self, f: impl FnOnce(&mut UplinkStatus)) {
        self.links.status.send_modify(f);
    }
}

/// What the event loop keeps from one event to the next.
struct Flow {
    backoff: Backoff,
    window: Window,
    connected: bool,
    /// Tags reads: a reply to a read made before the last rewind is stale.
    epoch: u64,
    read_pending: bool,
    settle: Settle,
    /// Acknowledgements voided by a lost connection: the batches in
    /// flight are read again at the next connection, resumed or not.
    rewind: bool,
    /// The first record to read next.
    send_next: u64,
    /// Records from here on were appended while connected (see
    /// [`Batcher::build`]).
    live_from: u64,
    /// While backing off after a connection error: when to poll again.
    poll_at: Option<Instant>,
}

impl Flow {
    fn new(cfg: &UplinkConfig, store: &watch::Receiver<StoreStatus>) -> Self {
        let settle = Settle::new(cfg.hold_acked, store.borrow().stats.acked_through);
        Flow {
            backoff: Backoff::new(cfg.backoff_max),
            window: Window::new(),
            connected: false,
            epoch: 0,
            read_pending: false,
            send_next: settle.settled().map_or(0, |a| a + 1),
            settle,
            rewind: false,
            live_from: u64::MAX,
            poll_at: None,
        }
    }
}

fn will(topic: &str, identity: &Identity, session: &str, format: Format) -> LastWill {
    let state = State::will(identity.device.clone(), session, unix_ms());
    // Encoding a State cannot fail (no floats, no maps with odd keys).
    let payload = encode(&state, format).unwrap_or_default();
    LastWill::new(topic, payload, QoS::AtLeastOnce, true)
}

/// Hand a read's publications to the client, in order, while the window
/// has room (`inflight`). The first one that does not go (window full, or
/// the client's request queue full) and all after it are read again later:
/// returns its first seq, and how many records went. Never one skipped in
/// the middle: a later batch's acknowledgement would acknowledge it too,
/// and the queue would let it go unsent.
fn publish_batches(
    client: &AsyncClient,
    inflight: usize,
    publications: Vec<batch::Publication>,
    window: &mut Window,
) -> (Option<u64>, u64) {
    let mut sent = 0;
    for p in publications {
        if window.len() >= inflight {
            return (Some(p.first), sent);
        }
        let tracked = Tracked::Batch {
            first: p.first,
            last: p.last,
        };
        match client.try_publish(&p.topic, QoS::AtLeastOnce, false, p.payload) {
            Ok(()) => {
                window.queued(tracked);
                sent += p.records as u64;
            }
            Err(e) => {
                debug!(error = %e, first = p.first, "mqtt client queue full; read again later");
                return (Some(p.first), sent);
            }
        }
    }
    (None, sent)
}

fn classify(e: &ConnectionError) -> Failure {
    match e {
        ConnectionError::ConnectionRefused(_) => Failure::Refused,
        ConnectionError::Tls(_) => Failure::Tls,
        ConnectionError::Io(_)
        | ConnectionError::NetworkTimeout
        | ConnectionError::FlushTimeout => Failure::Unreachable,
        _ => Failure::Protocol,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn new_session_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publications(n: u64) -> Vec<batch::Publication> {
        (0..n)
            .map(|i| batch::Publication {
                topic: "picket/v1/pi/telemetry".into(),
                payload: vec![0; 8],
                first: 10 * i,
                last: 10 * i + 9,
                records: 10,
            })
            .collect()
    }

    /// A client whose request queue holds `capacity` requests, never
    /// connected: `try_publish` only queues.
    fn client(capacity: usize) -> (AsyncClient, EventLoop) {
        AsyncClient::new(MqttOptions::new("t", "127.0.0.1", 1), capacity)
    }

    #[test]
    fn a_full_request_queue_stops_the_read_at_the_batch_that_did_not_go() {
        let (c, _ev) = client(2);
        let mut w = Window::new();
        assert_eq!(
            publish_batches(&c, 8, publications(5), &mut w),
            (Some(20), 20)
        );
        assert_eq!(w.len(), 2, "the two that went are tracked");
    }

    #[test]
    fn a_full_window_stops_the_read_too() {
        let (c, _ev) = client(100);
        let mut w = Window::new();
        w.queued(Tracked::Control);
        assert_eq!(
            publish_batches(&c, 3, publications(5), &mut w),
            (Some(20), 20)
        );
        assert_eq!(w.len(), 3);
        // With room for all, nothing is left.
        let mut w = Window::new();
        assert_eq!(publish_batches(&c, 8, publications(5), &mut w), (None, 50));
    }
}
