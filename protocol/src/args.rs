//! The limits on commands' arguments and the error naming a broken one,
//! shared by the command and Docker argument checks (both sides of the
//! wire check the same limits).

/// The longest identify a command may ask for, in seconds.
pub const MAX_IDENTIFY_SECS: u32 = 600;

/// The longest reboot delay a command may ask for, in seconds.
pub const MAX_REBOOT_DELAY: u32 = 3600;
/// The most journal lines `service.logs` may ask for.
pub const MAX_LOG_LINES: u32 = 10_000;
/// The largest configuration `config.update` may carry.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;
/// The longest path or URL argument.
pub const MAX_PATH_LEN: usize = 1024;

/// Why a command's arguments are invalid, whatever the device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("unit {0:?} is not a systemd unit name")]
    Unit(String),
    #[error("lines must be between 1 and {MAX_LOG_LINES}, not {0}")]
    Lines(u32),
    #[error("delay must be at most {MAX_REBOOT_DELAY} seconds, not {0}")]
    Delay(u32),
    #[error("url must start with https:// and be at most {MAX_PATH_LEN} bytes")]
    Url,
    #[error("sha256 must be 64 hexadecimal digits")]
    Sha256,
    #[error("path {0:?} is empty, too long, or holds a NUL or a `..` component")]
    Path(String),
    #[error("the configuration is empty or larger than {MAX_CONFIG_BYTES} bytes")]
    ConfigSize,
    #[error("secs must be between 1 and {MAX_IDENTIFY_SECS}, not {0}")]
    IdentifySecs(u32),
    #[error("output name {0:?} is not 1 to 64 of [A-Za-z0-9_.-]")]
    OutputName(String),
    #[error("level must be 0 or 1, not {0}")]
    Level(u8),
    #[error("version {0:?} is not 1 to 64 of [0-9A-Za-z.+-] starting with a digit")]
    Version(String),
    #[error("signature must be 128 hexadecimal digits")]
    Signature,
    #[error(
        "container {0:?} is not a container name or id: 1 to 128 of [a-zA-Z0-9_.-], starting with a letter or digit"
    )]
    Container(String),
    #[error("tail must be at most {max}, not {0}", max = MAX_TAIL)]
    Tail(u32),
    #[error("duration must be between 1 and {max} seconds, not {0}", max = MAX_STREAM_SECS)]
    StreamSecs(u32),
    #[error("duration applies only with follow (docker.logs) or stream (docker.stats)")]
    DurationWithoutStream,
    #[error("timeout must be at most {max} seconds, not {0}", max = MAX_STOP_TIMEOUT)]
    StopTimeout(u32),
    #[error("max_bytes must be at least 1")]
    MaxBytes,
    #[error("command {0:?} is not a command name: 1 to 64 of [A-Za-z0-9_.-]")]
    ExecName(String),
}

/// The longest stop timeout a command may ask for, in seconds.
pub const MAX_STOP_TIMEOUT: u32 = 600;
/// The most log lines `docker.logs` may ask for from the past.
pub const MAX_TAIL: u32 = 10_000;
/// The longest `docker.logs` follow or `docker.stats` stream, in seconds.
pub const MAX_STREAM_SECS: u32 = 3600;
