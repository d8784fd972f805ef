//! Whether a command may run: every check that needs no file system, in a
//! fixed order, as a pure function with table tests.
//!
//! Order matters: nothing from an unauthenticated message is trusted, so
//! the signature is checked right after decoding, before the device, the
//! times, the journal or the allowlist are looked at.

use picket_protocol::signing::{self, PublicKey, SignatureError};
use picket_protocol::{Command, DEFAULT_MAX_PAYLOAD, DeviceId, decode};

/// Why a command was refused. Its `Display` is the `reason` of the
/// `rejected` reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error(
        "retained: commands are never retained (a stale command would run on every reconnection)"
    )]
    Retained,
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("id mismatch: the topic says {topic:?}, the envelope {payload:?}")]
    IdMismatch { topic: String, payload: String },
    #[error("unsigned: this device requires signed commands")]
    Unsigned,
    #[error("bad signature: {0}")]
    BadSignature(SignatureError),
    #[error("wrong device: the command is for {0}")]
    WrongDevice(DeviceId),
    #[error("expired at {expires} (device time {now})")]
    Expired { expires: u64, now: u64 },
    #[error("issued in the future: {issued} is more than {skew_ms} ms after device time {now}")]
    FromFuture { issued: u64, now: u64, skew_ms: u64 },
    #[error("duplicate: command {0} was already received")]
    Duplicate(String),
    #[error("not allowed: {0} is not in this device's commands.allowed")]
    NotAllowed(&'static str),
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    #[error("busy: {0}")]
    Busy(String),
}

/// What the checks compare a command with.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub device: &'a DeviceId,
    pub key: Option<&'a PublicKey>,
    pub allowed: &'a [String],
    /// Device wall time, unix ms.
    pub now: u64,
    /// The kernel clock is NTP-synchronised.
    pub synced: bool,
    /// The latest `issued` of a command this device accepted: real time is
    /// at least this, whatever an unsynchronised clock says.
    pub floor: u64,
    pub max_skew_ms: u64,
}

impl Context<'_> {
    /// The time expiry is judged against. A Pi without RTC starts with a
    /// clock in the past, which would accept long-expired commands: until
    /// it is synchronised, the latest accepted issue time is a lower bound.
    pub fn effective_now(&self) -> u64 {
        if self.synced {
            self.now
        } else {
            self.now.max(self.floor)
        }
    }
}

/// Decode and check one publish from `{prefix}/v1/{device}/cmd/{topic_id}`.
/// `seen` says whether an id is in the journal. Returns the command, or
/// why not.
pub fn admit(
    topic_id: &str,
    retained: bool,
    payload: &[u8],
    ctx: &Context<'_>,
    seen: impl Fn(&str) -> bool,
) -> Result<Command, Rejection> {
    if retained {
        return Err(Rejection::Retained);
    }
    let cmd: Command =
        decode(payload, DEFAULT_MAX_PAYLOAD).map_err(|e| Rejection::Malformed(e.to_string()))?;
    if cmd.id != topic_id {
        return Err(Rejection::IdMismatch {
            topic: topic_id.to_string(),
            payload: cmd.id,
        });
    }
    if let Some(key) = ctx.key {
        match signing::verify(&cmd, key) {
            Ok(()) => {}
            Err(SignatureError::Missing) => return Err(Rejection::Unsigned),
            Err(e) => return Err(Rejection::BadSignature(e)),
        }
    }
    if &cmd.device != ctx.device {
        return Err(Rejection::WrongDevice(cmd.device));
    }
    let now = ctx.effective_now();
    if cmd.expires <= now {
        return Err(Rejection::Expired {
            expires: cmd.expires,
            now,
        });
    }
    if ctx.synced && cmd.issued > ctx.now.saturating_add(ctx.max_skew_ms) {
        return Err(Rejection::FromFuture {
            issued: cmd.issued,
            now: ctx.now,
            skew_ms: ctx.max_skew_ms,
        });
    }
    if seen(&cmd.id) {
        return Err(Rejection::Duplicate(cmd.id));
    }
    let name = cmd.action.name();
    if !ctx.allowed.iter().any(|a| a == name) {
        return Err(Rejection::NotAllowed(name));
    }
    cmd.action
        .check()
        .map_err(|e| Rejection::InvalidArgs(e.to_string()))?;
    Ok(cmd)
}

/// The note added to `accepted` when the clock could not be trusted.
pub fn clock_note(ctx: &Context<'_>) -> Option<String> {
    (!ctx.synced).then(|| {
        format!(
            "clock not synchronised: issue time not checked, expiry checked against {}",
            ctx.effective_now()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_protocol::signing::{PrivateKey, private_key, sign};
    use picket_protocol::{Action, Format, NoArgs, PathArgs, UnitArgs, VERSION, encode};

    const NOW: u64 = 1_700_000_000_000;

    fn key() -> PrivateKey {
        private_key([9; 32])
    }

    fn dev() -> DeviceId {
        DeviceId::new("pi-1").unwrap()
    }

    fn command(f: impl FnOnce(&mut Command)) -> Command {
        let mut c = Command {
            v: VERSION,
            id: "c1".into(),
            device: dev(),
            action: Action::Ping(NoArgs {}),
            issued: NOW - 1_000,
            expires: NOW + 60_000,
            sig: None,
        };
        f(&mut c);
        sign(&mut c, &key());
        c
    }

    fn bytes(c: &Command) -> Vec<u8> {
        encode(c, Format::Cbor).unwrap()
    }

    struct Case {
        name: &'static str,
        topic_id: &'static str,
        retained: bool,
        payload: Vec<u8>,
        synced: bool,
        floor: u64,
        want: Result<(), Rejection>,
    }

    fn case(name: &'static str, payload: Vec<u8>, want: Result<(), Rejection>) -> Case {
        Case {
            name,
            topic_id: "c1",
            retained: false,
            payload,
            synced: true,
            floor: 0,
            want,
        }
    }

    #[test]
    fn table() {
        let ok = bytes(&command(|_| {}));
        let mut unsigned = command(|_| {});
        unsigned.sig = None;
        let mut tampered = command(|_| {});
        tampered.expires += 1;
        let mut other_key = command(|_| {});
        sign(&mut other_key, &private_key([1; 32]));
        let allowed = vec!["ping".to_string(), "service.restart".to_string()];
        let cases = vec![
            case("accepted", ok.clone(), Ok(())),
            Case {
                retained: true,
                ..case("retained", ok.clone(), Err(Rejection::Retained))
            },
            case(
                "garbage",
                b"\xff\x00".to_vec(),
                Err(Rejection::Malformed(String::new())),
            ),
            Case {
                topic_id: "c2",
                ..case(
                    "id mismatch",
                    ok.clone(),
                    Err(Rejection::IdMismatch {
                        topic: "c2".into(),
                        payload: "c1".into(),
                    }),
                )
            },
            case("unsigned", bytes(&unsigned), Err(Rejection::Unsigned)),
            case(
                "tampered",
                bytes(&tampered),
                Err(Rejection::BadSignature(SignatureError::Mismatch)),
            ),
            case(
                "other key",
                bytes(&other_key),
                Err(Rejection::BadSignature(SignatureError::Mismatch)),
            ),
            case(
                "wrong device",
                bytes(&command(|c| c.device = DeviceId::new("pi-2").unwrap())),
                Err(Rejection::WrongDevice(DeviceId::new("pi-2").unwrap())),
            ),
            case(
                "expired",
                bytes(&command(|c| c.expires = NOW)),
                Err(Rejection::Expired {
                    expires: NOW,
                    now: NOW,
                }),
            ),
            case(
                "skew tolerated",
                bytes(&command(|c| c.issued = NOW + 30_000)),
                Ok(()),
            ),
            case(
                "from the future",
                bytes(&command(|c| c.issued = NOW + 30_001)),
                Err(Rejection::FromFuture {
                    issued: NOW + 30_001,
                    now: NOW,
                    skew_ms: 30_000,
                }),
            ),
            Case {
                synced: false,
                ..case(
                    "future not judged on an unsynchronised clock",
                    bytes(&command(|c| c.issued = NOW + 3_600_000)),
                    Ok(()),
                )
            },
            Case {
                synced: false,
                floor: NOW + 120_000,
                ..case(
                    "unsynchronised: expiry judged against the floor",
                    ok.clone(),
                    Err(Rejection::Expired {
                        expires: NOW + 60_000,
                        now: NOW + 120_000,
                    }),
                )
            },
            Case {
                floor: NOW + 120_000,
                ..case("synchronised: the floor is not used", ok.clone(), Ok(()))
            },
            Case {
                topic_id: "seen",
                ..case(
                    "duplicate",
                    bytes(&command(|c| c.id = "seen".into())),
                    Err(Rejection::Duplicate("seen".into())),
                )
            },
            case(
                "not allowed",
                bytes(&command(|c| {
                    c.action = Action::FileDelete(PathArgs { path: "x".into() })
                })),
                Err(Rejection::NotAllowed("file.delete")),
            ),
            case(
                "invalid args",
                bytes(&command(|c| {
                    c.action = Action::ServiceRestart(UnitArgs {
                        unit: "--all".into(),
                    })
                })),
                Err(Rejection::InvalidArgs(
                    "unit \"--all\" is not a systemd unit name".into(),
                )),
            ),
        ];
        let pk = key().verifying_key();
        for c in cases {
            let device = dev();
            let ctx = Context {
                device: &device,
                key: Some(&pk),
                allowed: &allowed,
                now: NOW,
                synced: c.synced,
                floor: c.floor,
                max_skew_ms: 30_000,
            };
            let got = admit(c.topic_id, c.retained, &c.payload, &ctx, |id| id == "seen");
            match (&got, &c.want) {
                (Ok(_), Ok(())) => {}
                (Err(Rejection::Malformed(_)), Err(Rejection::Malformed(_))) => {}
                (Err(g), Err(w)) => assert_eq!(g, w, "{}", c.name),
                _ => panic!("{}: got {got:?}, want {:?}", c.name, c.want),
            }
        }
    }

    #[test]
    fn without_a_key_unsigned_commands_pass() {
        let mut c = command(|_| {});
        c.sig = None;
        let device = dev();
        let allowed = vec!["ping".to_string()];
        let ctx = Context {
            device: &device,
            key: None,
            allowed: &allowed,
            now: NOW,
            synced: true,
            floor: 0,
            max_skew_ms: 0,
        };
        assert!(admit("c1", false, &bytes(&c), &ctx, |_| false).is_ok());
        assert_eq!(clock_note(&ctx), None);
        let unsynced = Context {
            synced: false,
            ..ctx
        };
        assert!(clock_note(&unsynced).unwrap().contains("not synchronised"));
    }
}
