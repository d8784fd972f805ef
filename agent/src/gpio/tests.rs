use std::time::Duration;

use picket_protocol::{EventKind, GpioLevel};
use tokio::sync::{mpsc, watch};

use super::*;
use crate::config::Bias;
use crate::sensors::clock::{ManualClock, Stamp};
use crate::shutdown;
use crate::store::Item;
use crate::testing::gpio::{SimChip, Use};

fn chip() -> SimChip {
    SimChip::new(
        "gpiochip0",
        &["GPIO0", "GPIO1", "GPIO17", "GPIO22", "GPIO27"],
    )
}

fn input(name: &str, line: &str, bias: Bias, active_low: bool) -> InputSpec {
    InputSpec {
        name: name.into(),
        line: LineRef::parse(line).unwrap(),
        bias,
        active_low,
        debounce: Duration::from_millis(10),
    }
}

fn output(name: &str, line: &str, active_low: bool, initial: bool) -> OutputSpec {
    OutputSpec {
        name: name.into(),
        line: LineRef::parse(line).unwrap(),
        active_low,
        initial,
    }
}

fn clock() -> Box<ManualClock> {
    Box::new(ManualClock::new(Stamp {
        ts: 1_700_000_000_000,
        mono: 5_000,
        boot: "b".into(),
        sync: true,
    }))
}

#[tokio::test]
async fn input_edges_become_events_at_once_and_levels_follow() {
    let sim = chip();
    let (items_tx, mut items) = mpsc::channel(16);
    let (levels_tx, levels) = watch::channel(Vec::new());
    let (trigger, stop) = shutdown::channel();
    let specs = [
        // A button to ground: pulled up, active low (pressed = active).
        input("button", "GPIO17", Bias::PullUp, true),
        input("door", "gpiochip0:3", Bias::PullDown, false),
    ];
    let (inputs, errors) = GpioInputs::open(&sim, &specs, items_tx, levels_tx, clock(), stop);
    assert!(errors.is_empty(), "{errors:?}");
    // The kernel got the configuration: bias, active-low, debounce.
    assert_eq!(sim.usage("GPIO17"), Use::Input(specs[0].clone()));
    assert_eq!(sim.usage("GPIO22"), Use::Input(specs[1].clone()));
    // Released button (pulled high, active low) and closed door read inactive.
    assert_eq!(
        *levels.borrow(),
        [
            GpioLevel {
                name: "button".into(),
                level: false
            },
            GpioLevel {
                name: "door".into(),
                level: false
            }
        ]
    );
    let task = tokio::spawn(inputs.run());

    sim.drive("GPIO17", false, 2_500); // pressed: physical low
    sim.drive("GPIO17", false, 100); // no change: no edge
    sim.drive("GPIO22", true, 700);
    sim.drive("GPIO17", true, 50); // released

    let mut got = Vec::new();
    while got.len() < 3 {
        let batch = tokio::time::timeout(Duration::from_secs(10), items.recv())
            .await
            .expect("an edge event")
            .expect("open");
        assert_eq!(batch.len(), 1, "one event per edge, sent at once");
        let Item::Event(e) = &batch[0] else {
            panic!("not an event")
        };
        assert_eq!((e.ts, e.mono, e.sync), (1_700_000_000_000, 5_000, true));
        got.push(e.kind.clone());
    }
    let gpio = |name: &str, level, edge_ns| EventKind::Gpio {
        name: name.into(),
        level,
        edge_ns,
    };
    assert_eq!(
        got,
        [
            gpio("button", true, 1_000_002_500),
            gpio("door", true, 1_000_003_300),
            gpio("button", false, 1_000_003_350),
        ]
    );
    assert_eq!(
        *levels.borrow(),
        [
            GpioLevel {
                name: "button".into(),
                level: false
            },
            GpioLevel {
                name: "door".into(),
                level: true
            }
        ]
    );
    trigger.fire();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .unwrap();
}

#[tokio::test]
async fn unavailable_lines_are_named_and_the_rest_runs() {
    let sim = chip();
    sim.claim_elsewhere("GPIO27", "kiosk-relay");
    let (items_tx, _items) = mpsc::channel(16);
    let (levels_tx, levels) = watch::channel(Vec::new());
    let (_trigger, stop) = shutdown::channel();
    let specs = [
        input("busy", "GPIO27", Bias::AsIs, false),
        input("missing-chip", "gpiochip9:1", Bias::AsIs, false),
        input("no-such-name", "GPIO99", Bias::AsIs, false),
        input("ok", "GPIO0", Bias::PullUp, false),
    ];
    let (inputs, errors) = GpioInputs::open(&sim, &specs, items_tx, levels_tx, clock(), stop);
    let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert!(matches!(errors[0], GpioError::Busy { .. }));
    assert!(
        msgs[0].contains("GPIO27") && msgs[0].contains("kiosk-relay"),
        "{}",
        msgs[0]
    );
    assert!(matches!(errors[1], GpioError::ChipMissing { .. }));
    assert!(
        msgs[1].contains("gpiochip9:1") && msgs[1].contains("gpiochip9"),
        "{}",
        msgs[1]
    );
    assert!(matches!(errors[2], GpioError::NotFound { .. }));
    assert!(msgs[2].contains("GPIO99"), "{}", msgs[2]);
    assert!(!inputs.is_empty());
    assert_eq!(
        *levels.borrow(),
        [GpioLevel {
            name: "ok".into(),
            level: true
        }]
    );
}

#[test]
fn outputs_only_for_lines_configured_as_outputs() {
    let sim = chip();
    let specs = [
        output("relay", "GPIO27", false, false),
        // Active-low: logical "on" drives the line low.
        output("buzzer", "gpiochip0:1", true, false),
    ];
    let (outputs, errors) = GpioOutputs::open(&sim, &specs);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(outputs.names(), ["buzzer", "relay"]);
    // Initial levels as configured, physical after active-low.
    assert_eq!(sim.physical("GPIO27"), Some(false));
    assert_eq!(sim.physical("GPIO1"), Some(true));

    outputs.write("relay", true).unwrap();
    outputs.write("buzzer", true).unwrap();
    assert_eq!(sim.physical("GPIO27"), Some(true));
    assert_eq!(sim.physical("GPIO1"), Some(false));

    // Neither a line name nor an unknown output can be written; nothing
    // on the chip changes.
    for name in ["GPIO17", "GPIO27", "door", ""] {
        let err = outputs.write(name, true).unwrap_err();
        assert!(matches!(err, GpioError::NotAnOutput { .. }), "{name}");
        let msg = err.to_string();
        assert!(msg.contains("buzzer, relay"), "{msg}");
    }
    assert_eq!(sim.physical("GPIO17"), None);
    assert_eq!(sim.usage("GPIO17"), Use::Free);
}

#[test]
fn an_output_that_cannot_be_had_is_left_out() {
    let sim = chip();
    sim.claim_elsewhere("GPIO22", "pigpiod");
    let (outputs, errors) = GpioOutputs::open(&sim, &[output("fan", "GPIO22", false, true)]);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().contains("pigpiod"));
    let err = outputs.write("fan", true).unwrap_err().to_string();
    assert!(err.contains("configured outputs: none"), "{err}");
    assert_eq!(sim.usage("GPIO22"), Use::Foreign("pigpiod".into()));
}

#[test]
fn write_arguments_are_validated_before_anything_runs() {
    let sim = chip();
    let (outputs, _) = GpioOutputs::open(&sim, &[output("relay", "GPIO27", false, false)]);
    assert_eq!(
        WriteArgs::validate(&outputs, "relay", 1).map_err(|e| e.to_string()),
        Ok(WriteArgs {
            name: "relay".into(),
            level: true
        })
    );
    assert_eq!(
        WriteArgs::validate(&outputs, "relay", 0)
            .map(|a| a.level)
            .ok(),
        Some(false)
    );
    assert!(
        WriteArgs::validate(&outputs, "relay", 2)
            .unwrap_err()
            .to_string()
            .contains("0 or 1")
    );
    assert!(
        WriteArgs::validate(&outputs, "GPIO27", 1)
            .unwrap_err()
            .to_string()
            .contains("relay")
    );
    assert_eq!(
        sim.physical("GPIO27"),
        Some(false),
        "validation touches nothing"
    );
}
