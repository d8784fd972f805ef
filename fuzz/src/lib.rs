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
