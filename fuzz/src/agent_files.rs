//! Files the agent reads back at start-up: the command journal and the
//! update state.

use std::cmp::Ordering;
use std::fs;

use picket_agent::commands::journal::{Journal, JournalError};
use picket_agent::update::state::{Installed, Launch, State};
use picket_protocol::version;

/// Ids recorded after the first open: valid command ids (one topic level
/// of the device id's characters), `-` included, which compaction also
/// writes for its floor line.
const IDS: [&str; 4] = ["c-1", "-", "c.2", "C_3"];

/// `data`: one byte of settings (bits 0..4: capacity 1..=16; bits 4..8:
/// the time, in steps of 100 ms), then the journal file.
pub fn journal(data: &[u8]) {
    let Some((&settings, file)) = data.split_first() else {
        return;
    };
    let max = 1 + usize::from(settings & 0xf);
    let now = 100 * u64::from(settings >> 4);
    let scratch = super::scratch();
    let dir = scratch.path();
    fs::write(dir.join("journal"), file).expect("journal file");

    let j = Journal::open(dir, max, now).expect("open never fails on content");
    let (len, floor) = (j.len(), j.floor());
    drop(j);
    // Opening compacted what needed it: a second open sees the same.
    let mut j = Journal::open(dir, max, now).expect("reopen");
    assert_eq!(
        (j.len(), j.floor()),
        (len, floor),
        "reopen changed the journal"
    );

    let mut recorded = Vec::new();
    for (i, id) in IDS.iter().enumerate() {
        let issued = floor.saturating_add(i as u64);
        let expires = now + 1_000;
        match j.record(id, issued, expires, now) {
            Ok(()) => recorded.push(*id),
            Err(JournalError::Full(n)) => assert!(n >= max, "full at {n} of {max}"),
            Err(e) => panic!("record: {e}"),
        }
    }
    let (len, floor) = (j.len(), j.floor());
    drop(j);
    // What was recorded is known after a restart, at any time before it
    // expires, and the floor never goes back.
    let j = Journal::open(dir, max, now).expect("reopen after records");
    for id in &recorded {
        assert!(j.contains(id), "{id} forgotten");
    }
    assert_eq!((j.len(), j.floor()), (len, floor));
    // A torn last line (a crash mid-append) is ignored. (The file may
    // hold the id on a line of its own: what counts is no change.)
    let had = j.contains("torn");
    drop(j);
    let mut bytes = fs::read(dir.join("journal")).expect("read back");
    bytes.extend_from_slice(b"99 99999 torn");
    fs::write(dir.join("journal"), bytes).expect("tear");
    let j = Journal::open(dir, max, now).expect("reopen after a tear");
    assert_eq!(j.contains("torn"), had);
    assert_eq!((j.len(), j.floor()), (len, floor));
}

/// `data`: a `state.json`. What decodes round-trips, and every decision the
/// launcher and the trial take on it holds its promises.
pub fn update_state(data: &[u8]) {
    let Ok(state) = serde_json::from_slice::<State>(data) else {
        return;
    };
    round_trip(&state);
    // Versions to act as: the entry binary's, and every one the state
    // names, so the comparisons meet what the file holds.
    let mut versions = vec!["1.0.0".to_string(), "0.9.0".to_string()];
    versions.extend(state.current.iter().map(|c| c.version.clone()));
    versions.extend(state.trial.iter().map(|t| t.to.version.clone()));
    versions.extend(state.installed.iter().map(|i| i.version.clone()));
    let boots = ["boot-1".to_string()]
        .into_iter()
        .chain(state.trial.iter().flat_map(|t| t.starts.clone()));
    let boots: Vec<String> = boots.collect();

    for own in versions.iter().take(6) {
        for boot in boots.iter().take(4) {
            let mut s = state.clone();
            let before = s.clone();
            match s.launch(own, boot) {
                Launch::Here => {}
                Launch::Exec(i) => {
                    let from_trial = before.trial.as_ref().is_some_and(|t| t.to == i);
                    let current = s.current.as_ref() == Some(&i);
                    assert!(
                        from_trial || current,
                        "launch runs {i:?}, neither trial nor current"
                    );
                }
            }
            assert!(
                s.trial.is_none() || before.trial.is_some(),
                "launch made a trial"
            );
            round_trip(&s);
            let _ = s.commit(own);
            let _ = s.fail(own, "failed".into());
            let _ = s.record_stop(boot, "stopped".into());
            if let Some(r) = s.report.clone() {
                let _ = r.outcome.text();
                assert!(s.reported(&r.id));
            }
            round_trip(&s);
        }
        let _ = state.admit(own, "2.0.0", false);
        let _ = state.admit(own, own, true);
        for other in versions.iter().take(6) {
            let _ = version::is_valid(other);
            let ab = version::compare(own, other);
            assert_eq!(
                ab.reverse(),
                version::compare(other, own),
                "{own} vs {other}"
            );
            if own == other {
                assert_eq!(ab, Ordering::Equal);
            }
        }
    }

    let mut s = state.clone();
    s.install(
        "u1",
        Installed::named("9.9.9"),
        "1.0.0",
        Some(Installed::named("1.0.0")),
    );
    round_trip(&s);
    for keep in 0..3 {
        let mut s = state.clone();
        let pinned: Vec<String> = (s.current.iter().map(|c| c.file.clone()))
            .chain(s.trial.iter().map(|t| t.to.file.clone()))
            .collect();
        let before = s.installed.len();
        let gone = s.prune(keep);
        assert_eq!(gone.len() + s.installed.len(), before);
        for f in &gone {
            assert!(!pinned.contains(f), "pruned the pinned {f}");
        }
    }
}

fn round_trip(state: &State) {
    let json = serde_json::to_vec_pretty(state).expect("a state encodes");
    let back: State = serde_json::from_slice(&json).expect("own state.json decodes");
    assert_eq!(&back, state);
}
