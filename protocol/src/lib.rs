//! picket's wire protocol: everything that crosses MQTT between an agent and
//! a collector, and nothing that does I/O.
//!
//! # Layout
//! - [`topic`]: topic names under `{prefix}/v1/{device}/...`, builders and parser,
//!   and the validated [`DeviceId`].
//! - [`codec`]: CBOR (default) and JSON encodings with the same field names,
//!   size-limited decoding that reports errors as values.
//! - One module per message kind: [`state`] (birth and Last Will),
//!   [`telemetry`] (sample batches), [`event`] (event batches),
//!   [`command`] (command envelope and typed arguments), [`reply`] (command
//!   status), [`alert`] (a device's active alerts); [`docker`]: the
//!   containers a sample and its events report.
//! - [`check`]: range checks on a decoded message (integers a database
//!   holds, finite floats, bounded text and lists, sane times).
//! - [`signing`]: ed25519 signatures over a canonical encoding of a command,
//!   and of an agent artifact (`agent.update`).
//! - [`version`]: agent version strings, their form and order.
//!
//! Every message carries `v` ([`VERSION`]); decoders ignore unknown fields so
//! newer agents and collectors can add fields without breaking older peers.

pub mod alert;
pub mod args;
mod cbor;
pub mod check;
pub mod codec;
pub mod command;
pub mod docker;
pub mod event;
pub mod reply;
pub mod signing;
pub mod state;
pub mod telemetry;
pub mod topic;
pub mod version;

#[cfg(test)]
mod test_util;

pub use alert::{Alert, AlertSet, Severity};
/// The CBOR decoder behind [`decode`], for CBOR that is not a wire message
/// (the agent's queue records): one decoder in every binary.
pub use cbor::{Error as CborError, from_slice as from_cbor};
pub use check::{Invalid, check};
pub use codec::{DecodeError, EncodeError, Format, decode, encode};
pub use command::{
    Action, ArgError, Command, ConfigArgs, DeployArgs, GpioWriteArgs, IdentifyArgs, LogsArgs,
    NoArgs, PathArgs, RebootArgs, UnitArgs, UpdateArgs,
};
pub use docker::{Container, ContainerState, Engine, Health};
pub use docker::{ContainerArgs, DockerExecArgs, DockerLogsArgs, DockerStatsArgs, StopArgs};
pub use event::{Event, EventBatch, EventKind};
pub use reply::{Reply, ReplyState};
pub use state::{OfflineReason, Presence, State};
pub use telemetry::{
    ActiveState, AgentHealth, Disk, GpioLevel, Load, Memory, NetIf, Sample, Service, Telemetry,
    Thermal, Throttle, ThrottleSource,
};
pub use topic::{DeviceId, DeviceIdError, Topic, TopicKind, Topics};

/// Wire version written into every message as `v`. A decoder refuses a
/// message whose `v` is newer than this (see [`codec::decode`]).
pub const VERSION: u16 = 1;

/// Default upper bound on an MQTT payload accepted by [`codec::decode`].
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
