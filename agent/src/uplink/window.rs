//! Which published batches the broker has acknowledged, and therefore how far
//! the disk queue may be acknowledged.
//!
//! rumqttc's `publish` returns no packet id: it reports the id later, as an
//! `Outgoing::Publish(pkid)` event, in the order requests were queued. So a
//! publication is first *unassigned* (queued, no id yet), then *in flight*
//! (id known), then acknowledged. The queue may only be acknowledged up to the
//! end of the longest fully acknowledged prefix: a PubAck for a later batch
//! must not release an earlier one that is still in flight.

use std::collections::VecDeque;

/// What a tracked publication carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracked {
    /// Queue records `first..=last`, in seq order across the window.
    Batch { first: u64, last: u64 },
    /// Anything else published at QoS 1 (birth, clean-stop state): it holds a
    /// packet id but releases no queue records.
    Control,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    what: Tracked,
    pkid: Option<u16>,
    acked: bool,
}

/// The publications between "queued on the MQTT client" and "acknowledged".
#[derive(Debug, Default)]
pub struct Window {
    entries: VecDeque<Entry>,
}

impl Window {
    pub fn new() -> Self {
        Window::default()
    }

    /// Publications not yet acknowledged (what counts against `inflight`).
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| !e.acked).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A publication was handed to the MQTT client.
    pub fn queued(&mut self, what: Tracked) {
        self.entries.push_back(Entry {
            what,
            pkid: None,
            acked: false,
        });
    }

    /// The client wrote a publish with this packet id. A pkid already in
    /// flight is a retransmission after a resumed session: nothing new.
    pub fn outgoing(&mut self, pkid: u16) {
        if self
            .entries
            .iter()
            .any(|e| e.pkid == Some(pkid) && !e.acked)
        {
            return;
        }
        if let Some(e) = self.entries.iter_mut().find(|e| e.pkid.is_none()) {
            e.pkid = Some(pkid);
        }
    }

    /// The broker acknowledged `pkid`. Returns the new "acknowledged through"
    /// seq when the fully acknowledged prefix grew past a batch.
    pub fn puback(&mut self, pkid: u16) -> Option<u64> {
        let entry = self
            .entries
            .iter_mut()
            .find(|e| e.pkid == Some(pkid) && !e.acked)?;
        entry.acked = true;
        let mut through = None;
        while let Some(front) = self.entries.front() {
            if !front.acked {
                break;
            }
            if let Tracked::Batch { last, .. } = front.what {
                through = Some(last);
            }
            self.entries.pop_front();
        }
        through
    }

    /// Forget everything: the session is gone, and with it whatever the
    /// client had queued or in flight.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Start over on a resumed session whose batches are read again from
    /// the queue: forget every publication except those the client sends
    /// again by itself (`resent`, in its order: their packet ids, `None`
    /// for one not numbered yet). These keep their place and their packet
    /// id, so their acknowledgements are recognised, but release nothing:
    /// the records they carry are in the batches read again.
    pub fn restart(&mut self, resent: impl IntoIterator<Item = Option<u16>>) {
        self.entries.clear();
        self.entries.extend(resent.into_iter().map(|pkid| Entry {
            what: Tracked::Control,
            pkid,
            acked: false,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(first: u64, last: u64) -> Tracked {
        Tracked::Batch { first, last }
    }

    #[test]
    fn in_order_acks_release_each_batch() {
        let mut w = Window::new();
        w.queued(b(1, 10));
        w.queued(b(11, 20));
        w.outgoing(1);
        w.outgoing(2);
        assert_eq!(w.len(), 2);
        assert_eq!(w.puback(1), Some(10));
        assert_eq!(w.puback(2), Some(20));
        assert!(w.is_empty());
    }

    #[test]
    fn out_of_order_ack_waits_for_the_prefix() {
        let mut w = Window::new();
        for (i, (f, l)) in [(1, 5), (6, 9), (10, 12)].into_iter().enumerate() {
            w.queued(b(f, l));
            w.outgoing(i as u16 + 1);
        }
        assert_eq!(w.puback(2), None);
        assert_eq!(w.puback(3), None);
        assert_eq!(w.len(), 1);
        assert_eq!(w.puback(1), Some(12));
        assert!(w.is_empty());
    }

    #[test]
    fn control_messages_hold_a_pkid_but_release_nothing() {
        let mut w = Window::new();
        w.queued(Tracked::Control);
        w.queued(b(1, 3));
        w.outgoing(7);
        w.outgoing(8);
        assert_eq!(w.puback(8), None);
        assert_eq!(w.puback(7), Some(3));
    }

    #[test]
    fn ack_before_id_known_or_unknown_id_is_ignored() {
        let mut w = Window::new();
        w.queued(b(1, 3));
        assert_eq!(w.puback(1), None);
        w.outgoing(1);
        assert_eq!(w.puback(99), None);
        assert_eq!(w.puback(1), Some(3));
        assert_eq!(w.puback(1), None, "a duplicate ack changes nothing");
    }

    #[test]
    fn retransmission_does_not_steal_an_unassigned_entry() {
        let mut w = Window::new();
        w.queued(b(1, 3));
        w.outgoing(1);
        w.queued(b(4, 6));
        // Session resumed: the client re-sends pkid 1, then the new batch.
        w.outgoing(1);
        w.outgoing(2);
        assert_eq!(w.puback(2), None);
        assert_eq!(w.puback(1), Some(6));
    }

    #[test]
    fn pkid_reuse_after_ack() {
        let mut w = Window::new();
        w.queued(b(1, 1));
        w.outgoing(1);
        assert_eq!(w.puback(1), Some(1));
        w.queued(b(2, 2));
        w.outgoing(1);
        assert_eq!(w.puback(1), Some(2));
    }

    #[test]
    fn a_restart_keeps_the_resent_as_control_in_front_of_new_batches() {
        let mut w = Window::new();
        w.queued(b(1, 3));
        w.outgoing(1);
        w.queued(b(4, 6));
        w.queued(Tracked::Control);
        // Resumed: pkid 1 and an unnumbered publish will go out again.
        w.restart([Some(1), None]);
        w.queued(b(1, 6));
        // The retransmission of 1 is not new; the unnumbered one is sent
        // first and takes the next id, then the new batch.
        w.outgoing(1);
        w.outgoing(2);
        w.outgoing(3);
        assert_eq!(w.len(), 3);
        assert_eq!(w.puback(1), None, "releases nothing");
        assert_eq!(w.puback(3), None, "waits for 2");
        assert_eq!(w.puback(2), Some(6));
        assert!(w.is_empty());
    }

    #[test]
    fn clear_forgets_everything() {
        let mut w = Window::new();
        w.queued(b(1, 3));
        w.outgoing(1);
        w.clear();
        assert!(w.is_empty());
        assert_eq!(w.puback(1), None);
    }
}
