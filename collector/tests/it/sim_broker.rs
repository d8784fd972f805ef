//! The embedded broker on a free loopback port, and a plain rumqttc
//! subscriber that hands every message to the test.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

/// Start the collector's embedded broker on a free port; returns the port
/// once it accepts connections.
pub async fn start() -> u16 {
    let port = crate::harness::free_port();
    tokio::task::spawn_blocking(move || {
        picket_collector::broker::start(&picket_collector::broker::EmbeddedConfig {
            listen: ([127, 0, 0, 1], port).into(),
            // The default 20 KiB is below what a batch of samples can reach.
            max_payload: 1 << 20,
            max_connections: 200,
            auth: None,
        })
        .expect("embedded broker")
    })
    .await
    .expect("broker start task");
    port
}

/// One message as the subscriber received it.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Subscribe to `filter` (QoS 1) and forward every message; returns once
/// the broker acknowledged the subscription.
pub async fn subscribe(
    port: u16,
    client_id: &str,
    filter: &str,
) -> mpsc::UnboundedReceiver<Message> {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("queue the subscription");
    let (tx, rx) = mpsc::unbounded_channel();
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        // Keeps the client (and with it the request channel) alive.
        let _client = client;
        let mut subscribed = Some(subscribed_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(s) = subscribed.take() {
                        let _ = s.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let msg = Message {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                    };
                    if tx.send(msg).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("test subscriber lost the broker: {e}"),
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
        .await
        .expect("SubAck in time")
        .expect("subscriber running");
    rx
}
