//! What the collector reads back from its database at start-up: sequence
//! accounting (journal values and state rows), the journal rows holding
//! them, and sample bodies.

use std::collections::BTreeMap;

use picket_collector::fleet::device::{Device, Persisted};
use picket_collector::fleet::seq::{Seen, SeqTracker};
use picket_collector::history::fuzzing::{Entries, encode, find, journal_entries, put_varint};
use picket_collector::rules::{DeviceCtx, build, default_rules};
use picket_protocol::DeviceId;

/// `SeqTracker::decode` on a journal value: what decodes encodes back to
/// itself, and survives every kind of arrival.
pub fn seq_tracker(data: &[u8]) {
    let Some(t) = SeqTracker::decode(data) else {
        return;
    };
    let mut bytes = Vec::new();
    t.encode(&mut bytes);
    assert_eq!(SeqTracker::decode(&bytes).as_ref(), Some(&t), "round trip");
    exercise(t);
}

/// Arrivals at every edge the tracker knows: its high-water mark, the ends
/// and middles of its holes, 0 and `u64::MAX`; then skips over the holes.
/// After each: the holes stay ordered, disjoint and below the mark, the
/// counts add up, and the encoding round-trips.
fn exercise(mut t: SeqTracker) {
    let mut seqs = vec![
        0,
        1,
        t.last,
        t.last.saturating_add(1),
        t.last.saturating_add(5),
    ];
    for &(a, b) in t.missing_ranges().iter().take(8) {
        seqs.extend([
            a,
            b,
            a + (b - a) / 2,
            a.saturating_sub(1),
            b.saturating_add(1),
        ]);
    }
    let skips: Vec<(u64, u64)> = t
        .missing_ranges()
        .iter()
        .take(4)
        .map(|&(a, b)| (a, b.saturating_add(1)))
        .collect();
    for seq in seqs {
        let before = t.clone();
        let (seen, gap) = t.observe(seq);
        match seen {
            Seen::New => assert_eq!(t.received, before.received.saturating_add(1)),
            Seen::Duplicate => {
                assert_eq!(t.duplicates, before.duplicates.saturating_add(1));
                assert!(gap.is_none());
            }
        }
        if let Some(g) = gap {
            assert!(g.from <= g.to && g.to < seq, "{g:?} for {seq}");
        }
        check(&t);
    }
    for (a, b) in skips {
        let before = t.missing();
        let gone = t.skip(a, b);
        assert_eq!(t.missing() + gone, before);
        check(&t);
    }
}

fn check(t: &SeqTracker) {
    let mut floor = 0u64;
    for &(a, b) in t.missing_ranges() {
        assert!(
            a >= floor && a <= b && b < t.last,
            "{:?}",
            t.missing_ranges()
        );
        floor = b.saturating_add(2);
    }
    let mut bytes = Vec::new();
    t.encode(&mut bytes);
    assert_eq!(SeqTracker::decode(&bytes).as_ref(), Some(t), "round trip");
}

/// A device's state row (JSON), as the engine restores it: decoded,
/// turned into a device, its rules reconciled with the defaults, its
/// sequence accounting exercised, and stored again.
pub fn fleet_state(data: &[u8]) {
    let Ok(p) = serde_json::from_slice::<Persisted>(data) else {
        return;
    };
    let json = serde_json::to_string(&p).expect("state encodes");
    let back: Persisted = serde_json::from_str(&json).expect("own state decodes");
    assert_eq!(serde_json::to_string(&back).expect("encodes"), json);

    let id = DeviceId::new("pi-fuzz").expect("valid id");
    let labels = BTreeMap::new();
    let mut dev = Device::new(labels.clone(), p);
    let _ = dev.p.rules.active();
    let _ = dev.p.rules.next_deadline();
    let _ = dev.p.presence.deadline(60_000);
    if let Ok(rules) = build(&default_rules()) {
        let ctx = DeviceCtx {
            id: &id,
            labels: &labels,
        };
        dev.p.rules.retain_rules(&rules, &ctx);
        let _ = dev.p.rules.active();
    }
    let _ = dev.p.seq.missing();
    exercise(dev.p.seq.clone());
}

/// A `state_journal` row's body: entries until the first error, nothing
/// after it; what decodes whole encodes back to the same entries.
pub fn history_journal(data: &[u8]) {
    let mut entries = Vec::new();
    let mut iter = journal_entries(data);
    for e in iter.by_ref() {
        match e {
            Ok(entry) => entries.push(entry),
            Err(_) => {
                assert!(iter.next().is_none(), "an entry after an error");
                return;
            }
        }
    }
    let mut body = Vec::new();
    for &(device, value) in &entries {
        put_varint(&mut body, device);
        put_varint(&mut body, value.len() as u64);
        body.extend_from_slice(value);
    }
    let again: Vec<(u64, &[u8])> = journal_entries(&body)
        .collect::<Result<_, _>>()
        .expect("own body decodes");
    assert_eq!(again, entries);
    for (_, value) in entries {
        // Each value is a device's sequence accounting.
        seq_tracker(value);
    }
}

/// A sample's `body`: decoding is total, what decodes re-encodes to the
/// same bits, and `find` agrees with the full decoding.
pub fn history_body(data: &[u8]) {
    let Ok(points) = Entries::new(data).collect::<Result<Vec<(u64, f64)>, _>>() else {
        return;
    };
    let mut body = Vec::new();
    encode(&points, &mut body).expect("decoded points encode");
    assert!(
        body.len() <= data.len(),
        "the encoder's forms are the shortest"
    );
    let back: Vec<(u64, f64)> = Entries::new(&body)
        .collect::<Result<_, _>>()
        .expect("own body decodes");
    let bits = |p: &[(u64, f64)]| p.iter().map(|&(i, v)| (i, v.to_bits())).collect::<Vec<_>>();
    assert_eq!(bits(&back), bits(&points), "bit-exact round trip");
    for &(id, value) in points.iter().take(16) {
        let found = find(data, id).expect("find in a body that decodes");
        assert_eq!(found.map(f64::to_bits), Some(value.to_bits()));
        if id > 1 && !points.iter().any(|&(i, _)| i == id - 1) {
            assert_eq!(find(data, id - 1).expect("find"), None);
        }
    }
}
