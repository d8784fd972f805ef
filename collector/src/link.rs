//! The collector's MQTT session: the one task that owns the rumqttc event
//! loop (and writes the acknowledgements of what the store committed), and
//! the task that passes on what follows a commit.
//!
//! The session is persistent (clean session off, stable client id, QoS 1
//! subscriptions) and acknowledgements are manual: a publish is
//! acknowledged only after the batch holding it is in SQLite, so whatever
//! happens to the collector, a message is either stored or still held by
//! the broker for this session.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration,
    Transport,
};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use picket_config::BrokerConfig;

use crate::pipeline::{Ack, Committed, Delivery};

/// The link's state, for `/healthz` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// When the current connection was acknowledged; None while down.
    pub connected_since: Option<std::time::SystemTime>,
    /// Every subscription of this connection was acknowledged: from here
    /// on nothing published to the fleet's topics is missed.
    pub subscribed: bool,
    pub connects: u64,
    pub last_error: Option<String>,
}

impl LinkStatus {
    pub fn connected(&self) -> bool {
        self.connected_since.is_some()
    }
}

/// Connection settings beyond the broker section.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub broker: BrokerConfig,
    /// Largest MQTT packet accepted (the decoder enforces the payload
    /// limit again, with a counted refusal).
    pub max_packet: usize,
    /// Publishes in flight from the broker to us: how many can wait for a
    /// commit before the broker pauses the session.
    pub inflight: u16,
}

/// The largest packet MQTT can express (its remaining length is at most
/// 268,435,455 bytes). The link accepts any: the broker's own limit
/// (Mosquitto's `message_size_limit`) is what bounds the memory a hostile
/// publish can take here.
pub const MQTT_MAX_PACKET: usize = 268_435_455;

/// How long the stop may spend sending the last acknowledgements and the
/// DISCONNECT on a connection that may be stalled.
const DISCONNECT_TIMEOUT: Duration = Duration::from_millis(1_500);

/// Publishes waiting for the engine beyond which the link warns (then at
/// every doubling).
const WAITING_WARN: usize = 10_000;

/// The wait before reconnecting after a first failure; it doubles with
/// every failure after it, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long writing a group of acknowledgements may take before the
/// connection is left to the event loop to find broken (as rumqttc's own
/// flushes do).
const ACK_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Link {
    client: AsyncClient,
    eventloop: EventLoop,
    filters: Vec<String>,
    inbound: mpsc::Sender<Delivery>,
    /// Acknowledgements of what the store committed, in commit order.
    acks: mpsc::Receiver<Vec<Ack>>,
    /// The number of the current connection (see [`Delivery`]).
    conn: u64,
    status: watch::Sender<LinkStatus>,
}

impl Link {
    pub fn new(
        cfg: &LinkConfig,
        inbound: mpsc::Sender<Delivery>,
        acks: mpsc::Receiver<Vec<Ack>>,
        status: watch::Sender<LinkStatus>,
    ) -> Link {
        let b = &cfg.broker;
        let mut opts = MqttOptions::new(&b.client_id, &b.host, b.port);
        opts.set_keep_alive(b.keep_alive);
        opts.set_clean_session(false);
        opts.set_manual_acks(true);
        opts.set_max_packet_size(cfg.max_packet, cfg.max_packet);
        opts.set_inflight(cfg.inflight);
        if let Some((user, pass)) = &b.credentials {
            opts.set_credentials(user.clone(), pass.clone());
        }
        if let Some(tls) = &b.tls {
            opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::clone(tls))));
        }
        // Alert sets and commands queue here while the loop is busy.
        let (client, mut eventloop) = AsyncClient::new(opts, 4096);
        eventloop.network_options.set_connection_timeout(10);
        // Commands and acknowledgements are small and wanted now: no Nagle.
        eventloop.network_options.set_tcp_nodelay(true);
        let t = &b.topics;
        let filters = vec![
            // `+/+` rather than one filter per kind: an unknown kind is
            // then seen and counted instead of silently missed.
            t.fleet_filter("+"),
            t.fleet_filter("reply/+"),
        ];
        Link {
            client,
            eventloop,
            filters,
            inbound,
            acks,
            conn: 0,
            status,
        }
    }

    pub fn client(&self) -> AsyncClient {
        self.client.clone()
    }

    /// Poll the event loop until `stop`, then disconnect cleanly.
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut backoff = FIRST_BACKOFF;
        let mut subacks = 0usize;
        let mut waiting = Waiting::default();
        let mut acks_open = true;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                batch = self.acks.recv(), if acks_open => match batch {
                    // A stalled connection must not hold a stop for the
                    // flush timeout: unsent acknowledgements are redelivered.
                    Some(batch) => tokio::select! {
                        _ = send_acks(&mut self.eventloop, self.conn, &batch) => {}
                        _ = &mut stop => break,
                    },
                    None => acks_open = false,
                },
                permit = self.inbound.reserve(), if !waiting.is_empty() => match permit {
                    Ok(permit) => waiting.send_first(permit),
                    // The engine has stopped: what waits stays
                    // unacknowledged for the next run.
                    Err(_) => waiting.clear(),
                },
                ev = self.eventloop.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        backoff = FIRST_BACKOFF;
                        subacks = 0;
                        self.conn += 1;
                        self.connected(&ack);
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        waiting.deliver(&self.inbound, Delivery { conn: self.conn, publish });
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => self.subscribed(&ack, &mut subacks),
                    Ok(_) => {}
                    Err(e) => {
                        self.connection_failed(&e, backoff);
                        tokio::select! {
                            _ = &mut stop => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
        self.disconnect().await;
    }

    /// A new connection (already counted in `conn`): say so and subscribe.
    fn connected(&self, ack: &rumqttc::ConnAck) {
        info!(
            session_present = ack.session_present,
            "connected to the broker"
        );
        self.status.send_modify(|s| {
            s.connected_since = Some(std::time::SystemTime::now());
            s.subscribed = false;
            s.connects += 1;
            s.last_error = None;
        });
        // Subscribing again on a resumed session is harmless and covers a
        // broker that lost it.
        for f in &self.filters {
            if let Err(e) = self.client.try_subscribe(f.clone(), QoS::AtLeastOnce) {
                warn!(filter = %f, error = %e, "subscribe failed");
            }
        }
    }

    /// A subscription acknowledged: once all are, the link is subscribed.
    fn subscribed(&self, ack: &rumqttc::SubAck, subacks: &mut usize) {
        if ack
            .return_codes
            .iter()
            .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
        {
            warn!("the broker refused a subscription: check its ACL for the collector");
        } else {
            *subacks += 1;
            if *subacks == self.filters.len() {
                self.status.send_modify(|s| s.subscribed = true);
            }
        }
    }

    fn connection_failed(&self, e: &ConnectionError, backoff: Duration) {
        let msg = describe(e);
        warn!(error = %msg, retry_in = ?backoff, "MQTT connection failed");
        self.status.send_modify(|s| {
            s.connected_since = None;
            s.subscribed = false;
            s.last_error = Some(msg);
        });
    }

    async fn disconnect(mut self) {
        if !self.status.borrow().connected() {
            return;
        }
        let status = self.status.clone();
        if tokio::time::timeout(DISCONNECT_TIMEOUT, self.flush_and_disconnect())
            .await
            .is_err()
        {
            warn!("the broker did not take the DISCONNECT in time: the connection is dropped");
        }
        status.send_modify(|s| s.connected_since = None);
    }

    async fn flush_and_disconnect(&mut self) {
        // What the store committed before the stop is acknowledged first.
        while let Ok(batch) = self.acks.try_recv() {
            send_acks(&mut self.eventloop, self.conn, &batch).await;
        }
        if self.client.try_disconnect().is_err() {
            return;
        }
        // Let the event loop send what is queued (the last acks) and the
        // DISCONNECT; the caller's timeout covers a dead connection.
        loop {
            // After DISCONNECT rumqttc reports an error once the socket is
            // flushed and closed: only then is it all sent.
            if self.eventloop.poll().await.is_err() {
                break;
            }
        }
    }
}

/// Write a commit's acknowledgements on connection `conn` and flush them
/// once: rumqttc's `AsyncClient::ack` writes and flushes each on its own,
/// a system call and a TCP segment per message. Only the link task calls
/// this, with its own event loop, and the acknowledgements go through the
/// same network buffer as the loop's packets, so their order holds.
async fn send_acks(eventloop: &mut EventLoop, conn: u64, batch: &[Ack]) {
    // Not connected: the broker redelivers them on the next connection.
    let Some(network) = eventloop.network.as_mut() else {
        return;
    };
    let mut stale = 0usize;
    for ack in batch {
        if ack.conn != conn {
            stale += 1;
            continue;
        }
        let Some(packet) = ack.packet() else { continue };
        if let Err(e) = network.write(packet).await {
            warn!(error = %e, "acknowledgements not sent: the broker will redeliver");
            return;
        }
    }
    if stale > 0 {
        debug!(
            stale,
            "acknowledgements of an earlier connection dropped: the broker redelivers those messages"
        );
    }
    // On an error the event loop meets the broken connection on its
    // next read or write and reconnects.
    match tokio::time::timeout(ACK_FLUSH_TIMEOUT, network.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "acknowledgements not sent: the broker will redeliver"),
        Err(_) => warn!("acknowledgements not flushed in time: the broker will redeliver"),
    }
}

/// Publishes received while the engine's channel is full. The link must
/// keep polling meanwhile: the acknowledgements of what the store
/// committed (and the alert sets) leave through its event loop, and a link
/// that waits on the engine while the engine waits on those is a deadlock.
/// The backpressure is the broker's in-flight window instead: it sends
/// nothing more until we acknowledge.
#[derive(Default)]
struct Waiting {
    queue: VecDeque<Delivery>,
    /// The length at the last warning.
    warned: usize,
}

impl Waiting {
    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn clear(&mut self) {
        self.queue.clear();
    }

    /// Pass a publish on to the engine, behind those already waiting.
    fn deliver(&mut self, inbound: &mpsc::Sender<Delivery>, p: Delivery) {
        if self.queue.is_empty() {
            match inbound.try_send(p) {
                Ok(()) => {}
                Err(TrySendError::Full(p)) => self.queue.push_back(p),
                // The engine has stopped: leave the message
                // unacknowledged for the next run.
                Err(TrySendError::Closed(_)) => {}
            }
        } else {
            self.queue.push_back(p);
        }
        if self.queue.len() > self.warned.saturating_mul(2).max(WAITING_WARN) {
            self.warned = self.queue.len();
            warn!(
                waiting = self.queue.len(),
                "the broker sends more than the engine keeps up with: lower its in-flight window for this client (Mosquitto: max_inflight_messages)"
            );
        }
    }

    /// The engine has room again: pass on the oldest.
    fn send_first(&mut self, permit: mpsc::Permit<'_, Delivery>) {
        if let Some(p) = self.queue.pop_front() {
            permit.send(p);
        }
        if self.queue.is_empty() {
            self.warned = 0;
        }
    }
}

fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            format!("broker refused the connection: {code:?}")
        }
        other => other.to_string(),
    }
}

/// Have the link acknowledge what the store committed, publish the alert
/// sets; hand notifications to the notifier without ever waiting on it.
pub async fn after_commit(
    client: AsyncClient,
    mut done: mpsc::Receiver<Committed>,
    acks: mpsc::Sender<Vec<Ack>>,
    notify: mpsc::Sender<crate::notify::Notification>,
) {
    while let Some(c) = done.recv().await {
        if !c.acks.is_empty() && acks.send(c.acks).await.is_err() {
            warn!(
                "acknowledgements not sent: the MQTT link has stopped; the broker will redeliver"
            );
        }
        for (topic, payload) in c.alerts {
            if let Err(e) = client.publish(topic, QoS::AtLeastOnce, true, payload).await {
                warn!(error = %e, "alert set not published");
            }
        }
        for (topic, payload) in c.commands {
            if let Err(e) = client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
            {
                warn!(error = %e, "command not published");
            }
        }
        for tx in c.published {
            let _ = tx.send(());
        }
        for n in c.notifications {
            if notify.try_send(n).is_err() {
                warn!("notifier queue full: a notification was dropped");
            }
        }
    }
}
