//! The `docker.*` commands in a build without the `docker` feature: the
//! registry's arms stay the same, and every one of them fails (they are
//! already refused before acceptance, since Docker cannot be enabled).

use picket_protocol::{DockerExecArgs, DockerLogsArgs, DockerStatsArgs, StopArgs};

use super::DockerRefusal;
use crate::commands::Outcome;
use crate::commands::output::Sink;
use crate::docker::Handle;

fn unsupported() -> Outcome {
    Outcome::failed(DockerRefusal::Unsupported.to_string())
}

pub async fn list(_: &Handle) -> Outcome {
    unsupported()
}

pub async fn inspect(_: &Handle, _: &str) -> Outcome {
    unsupported()
}

pub async fn start(_: &Handle, _: &str) -> Outcome {
    unsupported()
}

pub async fn stop(_: &Handle, _: &StopArgs, _: bool) -> Outcome {
    unsupported()
}

pub async fn logs(_: &Handle, _: &DockerLogsArgs, _: &mut Sink) -> Outcome {
    unsupported()
}

pub async fn stats(_: &Handle, _: &DockerStatsArgs, _: &mut Sink) -> Outcome {
    unsupported()
}

pub async fn exec(_: &Handle, _: &DockerExecArgs, _: usize) -> Outcome {
    unsupported()
}
