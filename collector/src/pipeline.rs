//! The messages between the collector's long-lived parts, and what they
//! share: the link hands the engine [`Delivery`]s, the engine hands the
//! store [`Commit`]s, the store hands the link (and the notifier) what
//! follows each stored group, [`Committed`]; [`Pace`] tells the engine
//! when the store waits. Kept below all three so none imports another.

use std::sync::atomic::{AtomicBool, Ordering};

use rumqttc::{Packet, PubAck, PubRec, Publish, QoS};
use tokio::sync::Notify;

use crate::history::WriteBatch;
use crate::notify::Notification;

/// A publish as the link received it. `conn` numbers the connection it
/// arrived on: its acknowledgement is sent on that connection or not at
/// all, because on a later one the broker may have given its packet id to
/// another message (which would then be acknowledged unstored).
#[derive(Debug)]
pub struct Delivery {
    pub conn: u64,
    pub publish: Publish,
}

/// What acknowledges one [`Delivery`] once it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub(crate) conn: u64,
    pkid: u16,
    qos: QoS,
}

impl Ack {
    pub fn of(d: &Delivery) -> Ack {
        Ack {
            conn: d.conn,
            pkid: d.publish.pkid,
            qos: d.publish.qos,
        }
    }

    pub(crate) fn packet(self) -> Option<Packet> {
        match self.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some(Packet::PubAck(PubAck::new(self.pkid))),
            QoS::ExactlyOnce => Some(Packet::PubRec(PubRec::new(self.pkid))),
        }
    }
}

/// One batch of work for the store thread and what follows its commit.
#[derive(Debug, Default)]
pub struct Commit {
    pub batch: WriteBatch,
    /// Acknowledged to the broker once the batch is stored.
    pub acks: Vec<Ack>,
    /// Retained alert sets: `(topic, payload)`; an empty payload clears.
    pub alerts: Vec<(String, Vec<u8>)>,
    pub notifications: Vec<Notification>,
    /// Commands: `(topic, payload)`, published (never retained) once stored.
    pub commands: Vec<(String, Vec<u8>)>,
    /// Told once the commands are stored and published.
    pub published: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Commit {
    pub(crate) fn is_empty(&self) -> bool {
        self.acks.is_empty()
            && self.alerts.is_empty()
            && self.commands.is_empty()
            && self.notifications.is_empty()
            && self.batch.is_empty()
    }
}

/// Whether the store thread waits for work, so the engine hands over what
/// it has then and, while a commit is being written, gathers the next:
/// the commit's size follows the disk's pace (a batch handed over while
/// the store is busy would only wait in the channel, and the next commit
/// would hold the few messages that arrived in between).
#[derive(Debug, Default)]
pub struct Pace {
    idle: AtomicBool,
    became_idle: Notify,
}

impl Pace {
    pub fn idle(&self) -> bool {
        self.idle.load(Ordering::Acquire)
    }

    /// Resolves once the store has become idle (at once if it did since
    /// the last call).
    pub async fn became_idle(&self) {
        self.became_idle.notified().await;
    }

    pub(crate) fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::Release);
        if idle {
            self.became_idle.notify_one();
        }
    }
}

/// What follows a stored batch.
#[derive(Debug, Default)]
pub struct Committed {
    pub acks: Vec<Ack>,
    pub alerts: Vec<(String, Vec<u8>)>,
    pub notifications: Vec<Notification>,
    pub commands: Vec<(String, Vec<u8>)>,
    pub published: Vec<tokio::sync::oneshot::Sender<()>>,
}
