//! rumqttd embedded in the test process on a free loopback port, and a
//! plain rumqttc subscriber that hands every message to the test.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// rumqttd cannot report the port of a port-0 bind: take a free one first.
pub fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Start a broker; returns its port once it accepts connections.
pub async fn start() -> u16 {
    let port = free_port();
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    std::thread::spawn(move || {
        let mut broker = rumqttd::Broker::new(config(listen));
        // start() only returns on failure (even a failed bind returns Ok):
        // the test then times out connecting, which names the problem.
        let _ = broker.start();
    });
    for _ in 0..200 {
        if TcpStream::connect(listen).await.is_ok() {
            return port;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("broker did not start listening on {listen}");
}

fn config(listen: SocketAddr) -> rumqttd::Config {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 60_000,
        // The default 20 KiB is below what a batch of samples can reach.
        max_payload_size: 1 << 20,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    // Segments sized with a wide margin: too small and a lagging QoS 1
    // subscriber silently loses messages.
    let router = rumqttd::RouterConfig {
        max_connections: 200,
        max_outgoing_packet_count: 1000,
        max_segment_size: 16 << 20,
        max_segment_count: 4,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    rumqttd::Config {
        id: 0,
        router,
        v4: Some(HashMap::from([("v4".to_string(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    }
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
