//! What the long-lived tasks publish for each other over watch and mpsc
//! channels: the uplink's link state, the collector's alert set, the
//! command publishes handed to the command service (and the reply the
//! uplink sends for one the service has no room for). Kept below every
//! task so that none imports another for them.

use picket_protocol::{AlertSet, DeviceId, Reply, ReplyState, VERSION};

use crate::sensors::clock::unix_ms;

/// Why the link is down, coarse enough to drive a status LED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// DNS, TCP or timeouts: the network or the broker is unreachable.
    Unreachable,
    /// The broker answered and said no (credentials, client id, ACL).
    Refused,
    /// The TLS handshake failed (certificate, CA, protocol).
    Tls,
    /// The broker broke the protocol or closed the connection.
    Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Connected { since_ms: u64 },
    Down { failure: Failure, since_ms: u64 },
}

/// What the uplink tells the rest of the agent (and, later, `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkStatus {
    pub link: Link,
    pub broker: String,
    pub session: String,
    pub last_error: Option<String>,
    /// Queue records published (including re-publications).
    pub published: u64,
    /// How far the broker's acknowledgements go, settled or not; a lost
    /// connection takes it back to the settled point (the records after it
    /// are sent again).
    pub acked_through: Option<u64>,
}

impl UplinkStatus {
    /// Before the first connection attempt has finished.
    pub fn connecting(broker: &str) -> Self {
        UplinkStatus {
            link: Link::Connecting,
            broker: broker.to_string(),
            session: String::new(),
            last_error: None,
            published: 0,
            acked_through: None,
        }
    }
}

/// The collector's word on this device's alerts, from the retained alert
/// topic: `None` until one arrives or after it was cleared.
pub type AlertView = Option<AlertSet>;

/// A publish on the device's command topic, from the uplink.
#[derive(Debug)]
pub struct Inbound {
    /// The topic's last level.
    pub id: String,
    pub retained: bool,
    pub payload: Vec<u8>,
}

impl Inbound {
    /// The `rejected` reply the uplink publishes itself when the command
    /// service's queue is full: the event loop never waits for room. The
    /// reason reads like the service's own `busy` rejections.
    pub fn busy_reply(&self, device: &DeviceId) -> Reply {
        Reply {
            v: VERSION,
            id: self.id.clone(),
            device: device.clone(),
            state: ReplyState::Rejected,
            reason: Some("busy: too many commands waiting; send it again later".into()),
            output: None,
            chunk: None,
            ts: unix_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::admit::Rejection;

    #[test]
    fn the_busy_reply_is_a_busy_rejection_of_that_command() {
        let device = DeviceId::new("pi-1").unwrap();
        let inbound = Inbound {
            id: "c1".into(),
            retained: false,
            payload: b"{}".to_vec(),
        };
        let r = inbound.busy_reply(&device);
        assert_eq!((r.id.as_str(), &r.device), ("c1", &device));
        assert_eq!(r.state, ReplyState::Rejected);
        let busy = Rejection::Busy("too many commands waiting; send it again later".into());
        assert_eq!(r.reason, Some(busy.to_string()));
        assert_eq!((r.output, r.chunk), (None, None));
    }
}
