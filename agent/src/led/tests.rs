//! The LED task under paused time: every row of the priority table with its
//! exact timings on the simulated LED, and the transitions between rows.

use std::time::Duration;

use picket_protocol::{Alert, AlertSet, DeviceId, Severity, VERSION};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::*;
use crate::queue::QueueStats;
use crate::shutdown::{self, Trigger};
use crate::testing::led::{Change, SimLed};

struct Rig {
    led: SimLed,
    uplink: watch::Sender<UplinkStatus>,
    store: watch::Sender<StoreStatus>,
    alerts: watch::Sender<AlertView>,
    clock: watch::Sender<bool>,
    identify: Identify,
    pattern: watch::Receiver<Pattern>,
    trigger: Trigger,
    task: JoinHandle<()>,
    /// When the rig (and the simulated LED's clock) started.
    start: Instant,
}

fn connected() -> UplinkStatus {
    UplinkStatus {
        link: Link::Connected { since_ms: 1 },
        ..UplinkStatus::connecting("mqtt://broker")
    }
}

fn down(failure: Failure) -> UplinkStatus {
    UplinkStatus {
        link: Link::Down {
            failure,
            since_ms: 1,
        },
        ..UplinkStatus::connecting("mqtt://broker")
    }
}

fn alerts(severity: Severity) -> AlertView {
    Some(AlertSet {
        v: VERSION,
        device: DeviceId::new("pi-1").unwrap(),
        ts: 1,
        alerts: vec![Alert {
            rule: "temperature".into(),
            severity,
            since: 1,
            value: Some(81.0),
            message: "CPU at 81 °C".into(),
        }],
    })
}

/// A healthy agent's state, the LED task running on the simulated LED.
fn rig(config_invalid: bool) -> Rig {
    let start = Instant::now();
    let led = SimLed::new();
    let (uplink, uplink_rx) = watch::channel(connected());
    let (store, store_rx) = watch::channel(StoreStatus::default());
    let (alerts_tx, alerts_rx) = watch::channel(None);
    let (clock, clock_rx) = watch::channel(true);
    let (identify, identify_rx) = Identify::channel();
    let (pattern_tx, pattern) = watch::channel(Pattern::Off);
    let (trigger, stop) = shutdown::channel();
    let sources = LedSources {
        uplink: Some(uplink_rx),
        store: Some(store_rx),
        alerts: Some(alerts_rx),
        clock_synced: Some(clock_rx),
        identify: Some(identify_rx),
        config_invalid,
    };
    let task = tokio::spawn(Led::new(Box::new(led.clone()), sources, pattern_tx, stop).run());
    Rig {
        led,
        uplink,
        store,
        alerts: alerts_tx,
        clock,
        identify,
        pattern,
        trigger,
        task,
        start,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Sleep until `t` ms after the rig started (paused time: exact).
async fn at(rig: &Rig, t: u64) {
    tokio::time::sleep_until(rig.start + ms(t)).await;
}

/// The changes `pattern` makes in `[0, span)` from when it starts at 0.
fn expected(pattern: Pattern, span: u64) -> Vec<(u64, Change)> {
    let mut out = Vec::new();
    let mut t = 0;
    'outer: loop {
        for s in pattern.steps() {
            if t >= span {
                break 'outer;
            }
            out.push((t, if s.on { Change::On } else { Change::Off }));
            if s.ms == 0 {
                break 'outer;
            }
            t += s.ms;
        }
    }
    out
}

async fn stop(rig: Rig) -> SimLed {
    rig.trigger.fire();
    rig.task.await.unwrap();
    rig.led
}

#[tokio::test(start_paused = true)]
async fn every_row_plays_its_exact_timings() {
    type Setup = fn(&Rig);
    let rows: [(Pattern, Setup); 7] = [
        (Pattern::Identify, |r| {
            r.identify.start(Duration::from_secs(30)).unwrap();
            r.alerts.send_replace(alerts(Severity::Critical));
        }),
        (Pattern::CriticalAlert, |r| {
            r.alerts.send_replace(alerts(Severity::Critical));
            r.uplink.send_replace(down(Failure::Refused));
        }),
        (Pattern::BrokerRefused, |r| {
            r.uplink.send_replace(down(Failure::Tls));
            r.clock.send_replace(false);
        }),
        (Pattern::NoBroker, |r| {
            r.uplink.send_replace(down(Failure::Unreachable));
            r.alerts.send_replace(alerts(Severity::Warning));
        }),
        (Pattern::Degraded, |r| {
            r.clock.send_replace(false);
        }),
        (Pattern::AllWell, |r| {
            r.alerts.send_replace(alerts(Severity::Warning));
        }),
        (Pattern::NoBroker, |r| {
            r.uplink
                .send_replace(UplinkStatus::connecting("mqtt://broker"));
        }),
    ];
    for (want, setup) in rows {
        let rig = rig(false);
        setup(&rig);
        // Three periods (or 10 s for a steady pattern).
        let span = if want.is_steady() {
            10_000
        } else {
            3 * want.period().as_millis() as u64
        };
        tokio::time::sleep(ms(span)).await;
        assert_eq!(*rig.pattern.borrow(), want);
        let got = rig.led.levels_ms(Duration::ZERO, ms(span));
        assert_eq!(got, expected(want, span), "{want:?}");
        let led = stop(rig).await;
        assert!(!led.is_on(), "{want:?}: off at shutdown");
        assert_eq!(
            led.log().last(),
            Some(&(ms(span), Change::Released)),
            "{want:?}: released at shutdown"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn config_invalid_needs_no_other_source() {
    let led = SimLed::new();
    let (pattern_tx, pattern) = watch::channel(Pattern::Off);
    let (trigger, stop) = shutdown::channel();
    let sources = LedSources::config_invalid();
    let task = tokio::spawn(Led::new(Box::new(led.clone()), sources, pattern_tx, stop).run());
    tokio::time::sleep(ms(6400)).await;
    assert_eq!(*pattern.borrow(), Pattern::ConfigInvalid);
    assert_eq!(
        led.levels_ms(Duration::ZERO, ms(6400)),
        expected(Pattern::ConfigInvalid, 6400)
    );
    // 4 blinks per 3.2 s period.
    let ons = led.log().iter().filter(|(_, c)| *c == Change::On).count();
    assert_eq!(ons, 8);
    trigger.fire();
    task.await.unwrap();
    assert_eq!(*pattern.borrow(), Pattern::Off);
}

#[tokio::test(start_paused = true)]
async fn transitions_start_the_new_pattern_at_once() {
    let rig = rig(false);
    at(&rig, 1000).await;
    assert_eq!(*rig.pattern.borrow(), Pattern::AllWell);

    // Broker lost at 1000: two blinks from 1000 on.
    rig.uplink.send_replace(down(Failure::Unreachable));
    at(&rig, 3000).await;
    // Refused at 3000, in the middle of a pause.
    rig.uplink.send_replace(down(Failure::Refused));
    at(&rig, 6000).await;
    // Back, with a critical alert from the collector.
    rig.uplink.send_replace(connected());
    rig.alerts.send_replace(alerts(Severity::Critical));
    at(&rig, 7000).await;
    // Identify for 2 s overrides the alert, then the alert shows again.
    let until = rig.identify.start(Duration::from_secs(2)).unwrap();
    assert_eq!(until, rig.start + ms(9000));
    at(&rig, 9500).await;
    // The collector clears the alert: solid.
    rig.alerts.send_replace(None);
    at(&rig, 10_000).await;

    let w = |from: u64, to: u64| rig.led.levels_ms(ms(from), ms(to));
    assert_eq!(w(0, 1000), [(0, Change::On)]);
    assert_eq!(w(1000, 3000), expected(Pattern::NoBroker, 2000));
    assert_eq!(w(3000, 6000), expected(Pattern::BrokerRefused, 3000));
    assert_eq!(w(6000, 7000), expected(Pattern::CriticalAlert, 1000));
    assert_eq!(w(7000, 9000), expected(Pattern::Identify, 2000));
    assert_eq!(w(9000, 9500), expected(Pattern::CriticalAlert, 500));
    assert_eq!(w(9500, 10_000), [(0, Change::On)]);
    assert_eq!(*rig.pattern.borrow(), Pattern::AllWell);
    assert!(rig.led.is_on());
    stop(rig).await;
}

#[tokio::test(start_paused = true)]
async fn clock_and_queue_drops_slow_the_blink_then_it_recovers() {
    let rig = rig(false);
    rig.store.send_replace(StoreStatus {
        stats: QueueStats {
            dropped_total: 7,
            ..QueueStats::default()
        },
        ..StoreStatus::default()
    });
    at(&rig, 100).await;
    // A drop counted before the agent started is old news: still solid.
    assert_eq!(*rig.pattern.borrow(), Pattern::AllWell);

    rig.clock.send_replace(false);
    at(&rig, 1100).await;
    rig.clock.send_replace(true);
    at(&rig, 2000).await;
    // The queue drops records at 2000: 1 Hz for five minutes exactly.
    rig.store.send_modify(|s| s.stats.dropped_total = 9);
    at(&rig, 3000).await;
    assert_eq!(*rig.pattern.borrow(), Pattern::Degraded);
    at(&rig, 2000 + 300_000 + 1000).await;

    let w = |from: u64, to: u64| rig.led.levels_ms(ms(from), ms(to));
    assert_eq!(w(0, 100), [(0, Change::On)]);
    assert_eq!(w(100, 1100), expected(Pattern::Degraded, 1000));
    assert_eq!(w(1100, 2000), [(0, Change::On)]);
    assert_eq!(w(2000, 302_000), expected(Pattern::Degraded, 300_000));
    assert_eq!(w(302_000, 303_000), [(0, Change::On)]);
    assert_eq!(*rig.pattern.borrow(), Pattern::AllWell);
    stop(rig).await;
}

#[tokio::test(start_paused = true)]
async fn identify_is_bounded_and_replaced_by_a_new_request() {
    assert_eq!(Identify::duration(None), Ok(Duration::from_secs(30)));
    assert_eq!(Identify::duration(Some(600)), Ok(Duration::from_secs(600)));
    assert_eq!(Identify::duration(Some(0)), Err(IdentifyError::Duration(0)));
    assert_eq!(
        Identify::duration(Some(601)),
        Err(IdentifyError::Duration(601))
    );
    let err = Identify::duration(Some(3600)).unwrap_err().to_string();
    assert!(err.contains("600"), "{err}");

    let rig = rig(false);
    assert!(rig.identify.start(Duration::from_secs(601)).is_err());
    rig.identify.start(Duration::from_secs(30)).unwrap();
    at(&rig, 1000).await;
    // A second request shortens it: it ends 2 s from then.
    rig.identify.start(Duration::from_secs(2)).unwrap();
    at(&rig, 3500).await;
    assert_eq!(rig.led.levels_ms(ms(3000), ms(3500)), [(0, Change::On)]);
    // Cancel before the end.
    rig.identify.start(Duration::from_secs(10)).unwrap();
    at(&rig, 4000).await;
    rig.identify.cancel();
    at(&rig, 4100).await;
    assert_eq!(*rig.pattern.borrow(), Pattern::AllWell);

    let identify = rig.identify.clone();
    stop(rig).await;
    assert_eq!(
        identify.start(Duration::from_secs(5)),
        Err(IdentifyError::Stopped)
    );
}
