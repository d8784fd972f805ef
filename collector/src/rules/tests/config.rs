//! Building rule sets: built-in and user rules merged, errors naming the
//! key to fix, and what overrides and reloads do to evaluation.

use picket_config::ConfigError;
use picket_protocol::alert::Alert;
use serde::{Deserialize, Serialize};

use super::*;

fn build_toml(toml: &str) -> Result<RuleSet, ConfigError> {
    let file: File = toml::from_str(toml).expect("test TOML parses");
    build(&file.rules)
}

#[test]
fn built_in_rules_are_valid_and_in_order() {
    let set = build(&[]).expect("built-in rules are valid");
    let names: Vec<&str> = set.names().collect();
    assert_eq!(
        names,
        [
            "temperature",
            "disk_usage",
            "disk_free",
            "memory",
            "service_down",
            "under_voltage",
            "throttled",
            "offline",
            "container_exited",
            "container_unhealthy",
            "container_restarts"
        ]
    );
    assert_eq!(build(&default_rules()).expect("valid"), set);
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct Raw {
    rules: Vec<RawRule>,
}

#[test]
fn built_in_rules_print_as_toml_and_read_back() {
    let text = toml::to_string(&Raw {
        rules: default_rules(),
    })
    .expect("serialises");
    for line in [
        "warning = 75\n",
        "warning = \"2GB\"\n",
        "for = \"1m\"\n",
        "op = \">\"\n",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    let back: Raw = toml::from_str(&text).expect("reads back");
    assert_eq!(back.rules, default_rules());
}

#[test]
fn file_errors_name_the_key() {
    let table = [
        ("name = \"x\"\nfor = \"5 minutes\"", "rules[0].for"),
        ("name = \"x\"\nwarning = \"2XB\"", "rules[0].warning"),
        ("name = \"x\"\nwarning = true", "rules[0].warning"),
        ("name = \"x\"\nwarnign = 1", "rules[0].warnign"),
        (
            "name = \"x\"\n[[rules.override]]\ndevice = [\"a\"]",
            "rules[0].override[0].device",
        ),
    ];
    for (text, key) in table {
        let text = format!("[[rules]]\n{text}\n");
        let err = picket_config::parse::<Raw>(&text, std::path::Path::new("c.toml"), vec![])
            .expect_err(&text);
        assert_eq!(err.key(), Some(key), "{text}: {err}");
    }
}

#[test]
fn validation_errors_name_the_key() {
    let named = "[[rules]]\nname = \"x\"\n";
    let rule = "[[rules]]\nname = \"x\"\nmetric = \"temp\"\nop = \">\"\n";
    let table: [(String, &str, &str); 20] = [
        (
            format!("{rule}warning = 1\n[[rules]]\nname = \"x\""),
            "rules[1].name",
            "unique",
        ),
        (
            "[[rules]]\nname = \"Temp\"".into(),
            "rules[0].name",
            "lowercase",
        ),
        (
            "[[rules]]\nname = \"\"".into(),
            "rules[0].name",
            "needs a name",
        ),
        (
            "[[rules]]\nname = \"x\"\nop = \">\"\nwarning = 1".into(),
            "rules[0].metric",
            "needs a metric",
        ),
        (
            "[[rules]]\nname = \"x\"\nmetric = \"temp\"\nwarning = 1".into(),
            "rules[0].op",
            "needs an op",
        ),
        (rule.to_string(), "rules[0]", "no threshold"),
        (
            format!("{named}metric = \"temp\"\nop = \"=>\"\nwarning = 1"),
            "rules[0].op",
            "unknown operator",
        ),
        (
            format!("{named}metric = \"tmp\"\nop = \">\"\nwarning = 1"),
            "rules[0].metric",
            "unknown metric",
        ),
        (
            format!("{named}metric = \"disk.pct:[ab]\"\nop = \">\"\nwarning = 1"),
            "rules[0].metric",
            "only *",
        ),
        (
            format!("{named}metric = \"disk.pct\"\nop = \">\"\nwarning = 1"),
            "rules[0].metric",
            "disk.pct:*",
        ),
        (
            format!("{rule}warning = 1\nhysteresis = -1"),
            "rules[0].hysteresis",
            "negative",
        ),
        (
            format!("{rule}warning = 1\nhysteresis = \"off\""),
            "rules[0].hysteresis",
            "write 0",
        ),
        (
            format!("{named}metric = \"temp\"\nop = \"==\"\nwarning = 1\nhysteresis = 1"),
            "rules[0].hysteresis",
            "no meaning",
        ),
        (
            format!("{rule}warning = nan"),
            "rules[0].warning",
            "not a usable number",
        ),
        (
            format!("{rule}warning = 5\ncritical = 5"),
            "rules[0].critical",
            "must be above warning",
        ),
        (
            format!("{rule}warning = 1\nmessage = \"{{valeu}}\""),
            "rules[0].message",
            "unknown placeholder",
        ),
        (
            format!("{rule}warning = 1\nmessage = \"{{instance}}\""),
            "rules[0].message",
            "no instances",
        ),
        (
            format!("{rule}warning = 1\n[[rules.override]]\nenabled = false"),
            "rules[0].override[0]",
            "devices or labels",
        ),
        (
            format!(
                "{rule}warning = 1\n[[rules.override]]\ndevices = [\"a\"]\n[[rules.override]]\ndevices = [\"pi 1\"]"
            ),
            "rules[0].override[1].devices",
            "never match",
        ),
        (
            format!("{rule}warning = 1\n[[rules.override]]\nlabels = {{ site = \"\" }}"),
            "rules[0].override[0].labels",
            "empty",
        ),
    ];
    for (text, key, reason) in table {
        let err = build_toml(&text).expect_err(&text);
        assert_eq!(err.key(), Some(key), "{text}\n{err}");
        assert!(err.to_string().contains(reason), "{text}\n{err}");
    }
}

#[test]
fn order_errors_blame_the_value_just_written() {
    let table = [
        // Over the built-in critical 80: the user's warning is wrong.
        (
            "name = \"temperature\"\nwarning = 85",
            "rules[0].warning",
            "must be below critical",
        ),
        (
            "name = \"temperature\"\ncritical = 70",
            "rules[0].critical",
            "must be above warning",
        ),
        (
            "name = \"temperature\"\n[[rules.override]]\ndevices = [\"*\"]\ncritical = 70",
            "rules[0].override[0].critical",
            "must be above warning (75",
        ),
        (
            "name = \"disk_free\"\ninfo = \"1GB\"",
            "rules[0].info",
            "must be above warning",
        ),
        (
            "name = \"temperature\"\nwarning = \"off\"\ncritical = \"off\"",
            "rules[0]",
            "no threshold",
        ),
    ];
    for (text, key, reason) in table {
        let text = format!("[[rules]]\n{text}\n");
        let err = build_toml(&text).expect_err(&text);
        assert_eq!(err.key(), Some(key), "{text}\n{err}");
        assert!(err.to_string().contains(reason), "{text}\n{err}");
    }
}

#[test]
fn overrides_by_device_and_label_first_match_wins() {
    use Obs::*;
    let set = rules(
        r#"
        [[rules]]
        name = "temperature"
        for = "0s"

        [[rules.override]]
        devices = ["attic-*", "loft"]
        warning = 85
        critical = 90

        [[rules.override]]
        devices = ["attic-2"]
        warning = 50
        critical = 60

        [[rules.override]]
        labels = { site = "lab*", role = "test" }
        enabled = false
        "#,
    );
    let cases: [(Device, &[&str]); 5] = [
        (device("pi-01", &[]), &["temperature fired critical"]),
        (device("attic-1", &[]), &["temperature fired warning"]),
        (device("attic-2", &[]), &["temperature fired warning"]),
        (device("pi-02", &[("site", "lab-3"), ("role", "test")]), &[]),
        (
            device("pi-03", &[("site", "lab-3")]),
            &["temperature fired critical"],
        ),
    ];
    for (dev, want) in cases {
        let table = [row(0.0, S(&[("temp", 86.0)]), want, None, &[])];
        let mut state = DeviceRules::default();
        let got: Vec<String> = eval(&set, &dev, &mut state, &table[0])
            .iter()
            .map(show)
            .collect();
        assert_eq!(got, want, "{}", dev.id);
    }
}

#[test]
fn user_rules_replace_and_disable_built_in_ones() {
    use Obs::*;
    let set = rules(
        r#"
        [[rules]]
        name = "temperature"
        warning = 70
        critical = "off"
        for = "0s"
        message = "{severity}: {value} over {threshold} on {device}"

        [[rules]]
        name = "under_voltage"
        enabled = false
        "#,
    );
    let table = [row(
        0.0,
        S(&[("temp", 85.0), ("throttle.uv", 1.0)]),
        &["temperature fired warning"],
        None,
        &["temperature warning"],
    )];
    let got = run(&set, &pi(), &mut DeviceRules::default(), &table);
    assert_eq!(got[0].message, "warning: 85.0 °C over 70.0 °C on pi-01");
}

#[test]
fn retain_forgets_removed_disabled_and_unselected_alerts() {
    use Obs::*;
    let before = rules(
        r#"
        [[rules]]
        name = "kiosk"
        metric = "service:*"
        op = "=="
        warning = 0
        "#,
    );
    let dev = pi();
    let mut state = DeviceRules::default();
    let first = row(
        0.0,
        S(&[
            ("service:kiosk.service", 0.0),
            ("service:nginx.service", 0.0),
            ("throttle.uv", 1.0),
        ]),
        &[],
        None,
        &[],
    );
    let shown: Vec<String> = eval(&before, &dev, &mut state, &first)
        .iter()
        .map(show)
        .collect();
    assert_eq!(
        shown,
        [
            "under_voltage fired critical",
            "kiosk:kiosk.service fired warning",
            "kiosk:nginx.service fired warning"
        ]
    );
    // A new configuration: kiosk only selects kiosk*, under_voltage is off.
    let after = rules(
        r#"
        [[rules]]
        name = "kiosk"
        metric = "service:kiosk*"
        op = "=="
        warning = 0

        [[rules]]
        name = "under_voltage"
        enabled = false
        "#,
    );
    state.retain_rules(&after, &dev.ctx());
    let active: Vec<String> = state
        .active()
        .iter()
        .map(|a| key(&a.rule, &a.instance))
        .collect();
    assert_eq!(active, ["kiosk:kiosk.service"]);
    // And without the rule at all: only service_down, waiting out its 30s.
    let none = rules("");
    assert!(
        none.evaluate(&dev.ctx(), &mut state, &Observation::Tick, at(1.0))
            .is_empty()
    );
    assert!(state.active().is_empty());
    assert_eq!(state.next_deadline(), Some(at(30.0)));
}

#[test]
fn retain_moves_deadlines_to_the_new_for() {
    use Obs::*;
    let dev = pi();
    let mut state = DeviceRules::default();
    let first = row(0.0, S(&[("mem.pct", 95.0)]), &[], Some(300.0), &[]);
    run(&rules(""), &dev, &mut state, &[first]);
    let shorter = rules("[[rules]]\nname = \"memory\"\nfor = \"1m\"\n");
    state.retain_rules(&shorter, &dev.ctx());
    assert_eq!(state.next_deadline(), Some(at(60.0)));
    let table = [row(
        60.0,
        Tick,
        &["memory fired warning"],
        None,
        &["memory warning"],
    )];
    run(&shorter, &dev, &mut state, &table);
}

#[test]
fn active_alert_to_wire() {
    let a = ActiveAlert {
        rule: "disk_usage".into(),
        instance: Some("/data".into()),
        severity: Severity::Critical,
        since: T0,
        value: 96.0,
        message: "disk /data 96.0% full".into(),
    };
    let wire = Alert::from(&a);
    assert_eq!(wire.rule, "disk_usage:/data");
    assert_eq!(
        (wire.severity, wire.since, wire.value),
        (Severity::Critical, T0, Some(96.0))
    );
    assert_eq!(wire.message, a.message);
    let bare = ActiveAlert {
        rule: "offline".into(),
        instance: None,
        ..a
    };
    assert_eq!(Alert::from(bare).rule, "offline");
}

#[test]
fn window_errors_name_the_key() {
    let cases = [
        (
            "[[rules]]\nname = \"x\"\nmetric = \"offline\"\nop = \"==\"\ncritical = 1\nwindow = \"1h\"\n",
            "rules[0].window",
        ),
        (
            "[[rules]]\nname = \"container_restarts\"\nwindow = \"0s\"\n",
            "rules[0].window",
        ),
        (
            "[[rules]]\nname = \"container_restarts\"\nwindow = \"31d\"\n",
            "rules[0].window",
        ),
    ];
    for (toml, key) in cases {
        let err = build_toml(toml).expect_err(toml);
        assert_eq!(err.key(), Some(key), "{toml}: {err}");
    }
    assert!(
        build_toml("[[rules]]\nname = \"container_restarts\"\nwindow = \"10m\"\nwarning = 5\n")
            .is_ok()
    );
}
