//! When a record the broker acknowledged may leave the disk queue.
//!
//! A PubAck says the broker holds the message, not that it would survive
//! the broker's death. Mosquitto persists by snapshot, every
//! `autosave_interval` seconds: killed (OOM, power cut of its host, a
//! crash) it comes back without what it acknowledged since its last save,
//! and the agent, which deleted those records at the PubAck, cannot send
//! them again. Measured: one record lost in 77 broker SIGKILLs
//! (bench/RESULTS.md, "Gauntlet").
//!
//! So an acknowledgement is *settled* only once the broker has been heard
//! from `hold` after it: by then it has saved (`hold` is set above the
//! broker's save interval). Until then the records stay in the queue. If
//! the connection drops first, every unsettled acknowledgement is void and
//! the uplink sends those records again from the settled point; the
//! collector drops what it already has by seq, and counts it as a
//! duplicate. "Heard from" rather than "connected for": the agent may learn
//! of a dead broker only at the next keep-alive, and nothing heard after
//! the broker died may count.
//!
//! With `hold` zero an acknowledgement settles at once (the broker is
//! trusted to persist before acknowledging).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Acknowledgements waiting to settle, and the settled cursor.
#[derive(Debug)]
pub struct Settle {
    hold: Duration,
    /// `(acknowledged through, when)`, in increasing seq and time.
    pending: VecDeque<(u64, Instant)>,
    settled: Option<u64>,
    heard: Option<Instant>,
}

impl Settle {
    /// `settled`: how far the queue was acknowledged when the agent started.
    pub fn new(hold: Duration, settled: Option<u64>) -> Self {
        Settle {
            hold,
            pending: VecDeque::new(),
            settled,
            heard: None,
        }
    }

    /// Records through `through` are settled (may leave the queue).
    pub fn settled(&self) -> Option<u64> {
        self.settled
    }

    /// The highest seq the broker acknowledged, settled or not.
    pub fn acked(&self) -> Option<u64> {
        self.pending.back().map(|&(t, _)| t).or(self.settled)
    }

    /// The broker acknowledged records through `through` at `now` (a PubAck
    /// is also news of the broker). Returns the new settled cursor if this
    /// settles something.
    pub fn ack(&mut self, through: u64, now: Instant) -> Option<u64> {
        if self.acked().is_none_or(|a| through > a) {
            self.pending.push_back((through, now));
        }
        self.heard(now)
    }

    /// Something arrived from the broker at `now` (any packet). Returns the
    /// new settled cursor if acknowledgements old enough settle.
    pub fn heard(&mut self, now: Instant) -> Option<u64> {
        if self.heard.is_none_or(|h| now > h) {
            self.heard = Some(now);
        }
        let heard = self.heard?;
        let mut moved = None;
        while let Some(&(through, at)) = self.pending.front() {
            if heard.saturating_duration_since(at) < self.hold {
                break;
            }
            self.pending.pop_front();
            self.settled = Some(through);
            moved = Some(through);
        }
        moved
    }

    /// The connection is gone: acknowledgements not yet settled no longer
    /// count. Returns where sending must start again when some were
    /// void (the seq after the settled cursor), `None` when nothing was.
    pub fn lost(&mut self) -> Option<u64> {
        if self.pending.is_empty() {
            return None;
        }
        self.pending.clear();
        Some(self.settled.map_or(0, |s| s + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn zero_hold_settles_each_ack_at_once() {
        let t = Instant::now();
        let mut s = Settle::new(Duration::ZERO, None);
        assert_eq!(s.ack(4, t), Some(4));
        assert_eq!(s.ack(9, t), Some(9));
        assert_eq!(s.settled(), Some(9));
        assert_eq!(s.lost(), None, "nothing void");
    }

    /// (event, time in ms, what it returns, settled after, acked after).
    /// Events: `a N` ack through N, `h` heard, `x` connection lost.
    type Row = (&'static str, u64, Option<u64>, Option<u64>, Option<u64>);

    #[test]
    fn acks_settle_once_the_broker_is_heard_from_hold_later() {
        let table: &[Row] = &[
            ("a 10", 0, None, Some(2), Some(10)),
            ("h", 500, None, Some(2), Some(10)),
            ("a 20", 800, None, Some(2), Some(20)),
            // 1 s after the first ack: it settles, the second does not.
            ("h", 1000, Some(10), Some(10), Some(20)),
            // An older ack (a retransmission) changes nothing.
            ("a 15", 1100, None, Some(10), Some(20)),
            ("h", 1799, None, Some(10), Some(20)),
            ("h", 1800, Some(20), Some(20), Some(20)),
            ("a 30", 2000, None, Some(20), Some(30)),
            // Lost before it settles: sending starts again after 20.
            ("x", 2500, Some(21), Some(20), Some(20)),
            // Time alone settles nothing: only news from a broker does,
            // and the void ack is gone.
            ("h", 9000, None, Some(20), Some(20)),
            ("x", 9100, None, Some(20), Some(20)),
        ];
        let base = Instant::now();
        let mut s = Settle::new(Duration::from_secs(1), Some(2));
        for (i, &(event, ms, want, settled, acked)) in table.iter().enumerate() {
            let now = at(base, ms);
            let got = match event.split_once(' ') {
                Some(("a", n)) => s.ack(n.parse().unwrap(), now),
                _ if event == "h" => s.heard(now),
                _ => s.lost(),
            };
            assert_eq!(got, want, "row {i}: {event} at {ms}");
            assert_eq!(s.settled(), settled, "row {i}: settled");
            assert_eq!(s.acked(), acked, "row {i}: acked");
        }
    }

    #[test]
    fn one_late_packet_settles_every_old_enough_ack_and_only_those() {
        let base = Instant::now();
        let mut s = Settle::new(Duration::from_secs(2), None);
        for (i, through) in [3, 7, 12, 20].into_iter().enumerate() {
            s.ack(through, at(base, i as u64 * 1000));
        }
        // Heard at 4 s: the acks of 0, 1 and 2 s are 2 s old or more.
        assert_eq!(s.heard(at(base, 4000)), Some(12));
        assert_eq!(s.lost(), Some(13));
    }

    #[test]
    fn a_first_connection_without_anything_settled_resends_from_zero() {
        let base = Instant::now();
        let mut s = Settle::new(Duration::from_secs(5), None);
        s.ack(0, base);
        assert_eq!(s.lost(), Some(0));
    }

    #[test]
    fn a_clock_that_seems_to_go_back_settles_nothing_early() {
        let base = at(Instant::now(), 10_000);
        let mut s = Settle::new(Duration::from_secs(1), None);
        s.ack(5, base);
        assert_eq!(s.heard(at(base, 0) - Duration::from_secs(5)), None);
        assert_eq!(s.heard(at(base, 999)), None);
        assert_eq!(s.heard(at(base, 1000)), Some(5));
    }
}
