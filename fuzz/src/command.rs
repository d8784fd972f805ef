//! Command envelopes and their signatures, as the agent checks them.

use picket_agent::commands::admit::{Context, admit};
use picket_protocol::signing::{self, PrivateKey};
use picket_protocol::{Action, Command, DEFAULT_MAX_PAYLOAD, DeviceId, Format, decode, encode};

/// The key the seed corpus signs with (`seeds` example): mutations of a
/// seed start from envelopes that pass the signature check.
pub fn key() -> PrivateKey {
    signing::private_key([7; 32])
}

/// The device the seeds are addressed to.
pub const DEVICE: &str = "pi-fuzz";

/// Their time: issued just before, expiring well after.
pub const NOW: u64 = 1_700_000_000_000;

pub fn envelope(data: &[u8]) {
    let key = key();
    let public = key.verifying_key();
    let device = DeviceId::new(DEVICE).expect("a valid device id");
    let allowed: Vec<String> = Action::NAMES.iter().map(|n| n.to_string()).collect();
    // Artifact signatures and key files come from outside too (the update
    // command's arguments, the key file on disk).
    if let Some((sha256, sig)) = data.split_first_chunk::<32>() {
        let _ = signing::verify_artifact(sha256, sig, &public);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = signing::parse_public_key(text);
        let _ = signing::parse_private_key(text);
        let _ = signing::from_hex(text);
    }
    let topic_id = decode::<Command>(data, DEFAULT_MAX_PAYLOAD)
        .map(|c| c.id)
        .unwrap_or_default();
    for (signed, synced) in [(true, true), (true, false), (false, true)] {
        let ctx = Context {
            device: &device,
            key: signed.then_some(&public),
            allowed: &allowed,
            now: NOW,
            synced,
            floor: 0,
            max_skew_ms: 60_000,
        };
        if let Ok(cmd) = admit(&topic_id, false, data, &ctx, |_| false) {
            // What is admitted passed every check admit promises.
            assert_eq!(cmd.id, topic_id);
            assert_eq!(cmd.device, device);
            assert!(cmd.expires > ctx.effective_now());
            assert!(cmd.action.check().is_ok());
            if signed {
                assert_eq!(signing::verify(&cmd, &public), Ok(()));
            }
        }
        // A retained envelope is refused whatever it holds.
        assert!(admit(&topic_id, true, data, &ctx, |_| false).is_err());
    }

    let Ok(mut cmd) = decode::<Command>(data, DEFAULT_MAX_PAYLOAD) else {
        return;
    };
    let _ = signing::verify(&cmd, &public);
    signing::sign(&mut cmd, &key);
    assert_eq!(signing::verify(&cmd, &public), Ok(()));
    // The collector signs the typed command and sends it in either
    // encoding; the agent rebuilds the canonical bytes from what it
    // decoded: the two must agree for every command that can be decoded.
    for format in [Format::Cbor, Format::Json] {
        let bytes = encode(&cmd, format).expect("a decoded command encodes");
        let back: Command = match decode(&bytes, usize::MAX) {
            Ok(back) => back,
            Err(e) => panic!("{format:?} of a decoded command does not decode: {e}\n{cmd:?}"),
        };
        assert_eq!(
            signing::verify(&back, &public),
            Ok(()),
            "{format:?} lost the signature of {cmd:?}"
        );
    }
    // Any other key refuses it.
    let other = signing::private_key([8; 32]).verifying_key();
    assert!(signing::verify(&cmd, &other).is_err());
}
