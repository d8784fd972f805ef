//! Every refusal reason: a `rejected` reply naming it, and nothing run.

use picket_protocol::{Action, DeviceId, Format, LogsArgs, RebootArgs, UnitArgs, encode};

use super::stack::{Publisher, Stack, reason, states};
use crate::harness::now_ms;

fn restart() -> Action {
    Action::ServiceRestart(UnitArgs {
        unit: "kiosk.service".into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_replied_and_runs_nothing() {
    let mut s = Stack::start("pi-refuse", "").await;
    s.agent_env(&[
        ("PICKET_COMMANDS_ALLOWED", "service.restart,service.logs"),
        ("PICKET_COMMANDS_SERVICES", "kiosk.service"),
    ]);
    let publisher = Publisher::connect(s.broker).await;

    // Retained: published before the device ever subscribed, so the
    // broker hands it over flagged retained when the agent subscribes.
    let retained = s.envelope(restart(), |_| {});
    let topic = s.cmd_topic(&retained.id);
    publisher
        .publish(&topic, encode(&retained, Format::Cbor).unwrap(), true)
        .await;
    s.agent_online().await;
    let r = s.settled(&retained.id).await;
    assert_eq!(states(&r), ["rejected"], "{r}");
    assert!(reason(&r, "rejected").starts_with("retained"), "{r}");
    // Clear it, as an operator would.
    publisher.publish(&topic, Vec::new(), true).await;

    let now = now_ms();
    let cases: Vec<(&str, picket_protocol::Command, &str)> = vec![
        (
            "tampered after signing",
            {
                let mut c = s.envelope(restart(), |_| {});
                c.expires += 1;
                c
            },
            "bad signature",
        ),
        (
            "unsigned",
            {
                let mut c = s.envelope(restart(), |_| {});
                c.sig = None;
                c
            },
            "unsigned",
        ),
        (
            "signed by another key",
            {
                let mut c = s.envelope(restart(), |_| {});
                picket_protocol::signing::sign(
                    &mut c,
                    &picket_protocol::signing::private_key([1; 32]),
                );
                c
            },
            "bad signature",
        ),
        (
            "for another device",
            s.envelope(restart(), |c| c.device = DeviceId::new("pi-other").unwrap()),
            "wrong device",
        ),
        (
            "expired",
            s.envelope(restart(), |c| {
                c.issued = now - 120_000;
                c.expires = now - 60_000;
            }),
            "expired",
        ),
        (
            "issued in the future",
            s.envelope(restart(), |c| {
                c.issued = now + 600_000;
                c.expires = now + 700_000;
            }),
            "issued in the future",
        ),
        (
            "not allowed",
            s.envelope(Action::SystemReboot(RebootArgs { delay: 0 }), |_| {}),
            "not allowed",
        ),
        (
            "unit not allowlisted",
            s.envelope(
                Action::ServiceRestart(UnitArgs {
                    unit: "ssh.service".into(),
                }),
                |_| {},
            ),
            "not in commands.services",
        ),
        (
            "invalid arguments",
            s.envelope(
                Action::ServiceLogs(LogsArgs {
                    unit: "kiosk.service".into(),
                    lines: 0,
                }),
                |_| {},
            ),
            "invalid arguments: lines",
        ),
    ];
    for (what, cmd, why) in cases {
        publisher
            .publish(
                &s.cmd_topic(&cmd.id),
                encode(&cmd, Format::Json).unwrap(),
                false,
            )
            .await;
        let r = s.settled(&cmd.id).await;
        assert_eq!(states(&r), ["rejected"], "{what}: {r}");
        assert!(reason(&r, "rejected").contains(why), "{what}: {r}");
    }
    // Garbage on the topic: rejected as malformed.
    publisher
        .publish(
            &s.cmd_topic("garbage-1"),
            b"{\"v\":1,\"id\":".to_vec(),
            false,
        )
        .await;
    let r = s.settled("garbage-1").await;
    assert!(reason(&r, "rejected").starts_with("malformed"), "{r}");

    assert!(
        s.calls("systemctl").is_empty(),
        "{:?}",
        s.calls("systemctl")
    );
    assert!(s.calls("journalctl").is_empty());
    s.stop_agent();
}
