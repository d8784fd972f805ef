//! Harnesses of the fuzz targets in `fuzz_targets/`, kept here so the seed
//! generator (`examples/seeds.rs`) writes inputs in the same shapes.
//!
//! # Layout
//! - [`protocol`]: every message kind from the broker.
//! - [`command`]: command envelopes, signatures and the agent's admission.
//! - [`queue`]: the agent's queue directory, recovered and reopened.
//! - [`agent_files`]: the agent's command journal and update state.
//! - [`collector`]: the collector's sequence accounting, device state,
//!   journal rows and sample bodies.

pub mod agent_files;
pub mod collector;
pub mod command;
pub mod protocol;
pub mod queue;

use std::path::Path;

/// A scratch directory for one input, on tmpfs when there is one: the
/// targets that touch files run millions of times, and fsync on tmpfs is
/// free.
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("picket-fuzz-")
            .tempdir_in(shm)
    } else {
        tempfile::Builder::new().prefix("picket-fuzz-").tempdir()
    };
    dir.expect("a scratch directory")
}

/// Every committed corpus input through its harness, as plain tests on the
/// stable toolchain (`cargo test --manifest-path fuzz/Cargo.toml --lib`):
/// what fuzzing found once keeps passing, and the harnesses keep building,
/// without nightly or libFuzzer. The harnesses' assertions are the checks.
#[cfg(test)]
mod replay {
    use std::path::Path;

    fn replay(target: &str, harness: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a corpus entry").path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{}: empty corpus", dir.display());
        for input in inputs {
            let data = std::fs::read(&input).expect("a corpus file");
            eprintln!("{}", input.display());
            harness(&data);
        }
    }

    #[test]
    fn protocol_decode() {
        replay("protocol_decode", crate::protocol::decode_all);
    }

    #[test]
    fn command_envelope() {
        replay("command_envelope", crate::command::envelope);
    }

    #[test]
    fn queue_recover() {
        replay("queue_recover", crate::queue::run);
    }

    #[test]
    fn command_journal() {
        replay("command_journal", crate::agent_files::journal);
    }

    #[test]
    fn update_state() {
        replay("update_state", crate::agent_files::update_state);
    }

    #[test]
    fn seq_tracker() {
        replay("seq_tracker", crate::collector::seq_tracker);
    }

    #[test]
    fn fleet_state() {
        replay("fleet_state", crate::collector::fleet_state);
    }

    #[test]
    fn history_journal() {
        replay("history_journal", crate::collector::history_journal);
    }

    #[test]
    fn history_body() {
        replay("history_body", crate::collector::history_body);
    }
}
