//! `picket-agent doctor` against real brokers: a good configuration, and
//! each failure producing its line and a non-zero exit.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use picket_agent::doctor::{self, Check, Probes};
use picket_agent::testing::gpio::SimChip;

use crate::broker::{Broker, free_port};
use crate::tls::{make_pki, tls_endpoint, tls_env};
use crate::util::{base_env, config};

const BIN: &str = env!("CARGO_BIN_EXE_picket-agent");
const AUTH: crate::broker::Auth = Some(("pi-user", "s3cret"));

/// The clock seam set to "synchronised", and a simulated chip holding the
/// configured lines: everything but the network is under the test's control.
fn probes() -> Probes {
    Probes {
        clock_synced: || true,
        gpio: Arc::new(SimChip::new("gpiochip0", &["GPIO17", "GPIO26"])),
    }
}

fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} check in {checks:?}"))
}

/// Every check fails exactly where `failing` says.
fn assert_fails_only(checks: &[Check], failing: &[&str]) {
    let names: Vec<&str> = checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "config",
            "clock",
            "dns",
            "tcp",
            "tls",
            "credentials",
            "queue",
            "gpio",
            "led"
        ]
    );
    for c in checks {
        assert_eq!(
            !c.ok,
            failing.contains(&c.name),
            "{}: {}\n{}",
            c.name,
            c.detail,
            doctor::render(checks)
        );
        if !c.ok {
            assert!(!c.hint.is_empty(), "{} has a fix hint", c.name);
        }
    }
    assert_eq!(doctor::passed(checks), failing.is_empty());
}

fn env_with(broker_url: &str, dir: &Path) -> Vec<(&'static str, String)> {
    let mut env = base_env("pi-doctor", broker_url, &dir.join("q"), "1s");
    env.push(("PICKET_LED_BACKEND", "gpio".into()));
    env.push(("PICKET_LED_LINE", "GPIO26".into()));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_configuration_passes_every_check() {
    let broker = Broker::start_with(AUTH).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
    let mut env = env_with(&broker.url(), dir.path());
    env.push(("PICKET_BROKER_USERNAME", "pi-user".into()));
    env.push((
        "PICKET_BROKER_PASSWORD_FILE",
        dir.path().join("pw").display().to_string(),
    ));
    let checks = doctor::run(Ok(config(&env)), &probes()).await;
    assert_fails_only(&checks, &[]);
    assert!(find(&checks, "credentials").detail.contains("pi-user"));
    assert!(find(&checks, "led").detail.contains("gpiochip0:1"));
    let text = doctor::render(&checks);
    assert_eq!(text.lines().count(), 10, "{text}");
    assert!(text.ends_with("all checks passed\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_fails_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    let checks = doctor::run(Ok(config(&env_with(&url, dir.path()))), &probes()).await;
    assert_fails_only(&checks, &["tcp", "credentials"]);
    assert!(
        find(&checks, "tcp").detail.contains("refused"),
        "{checks:?}"
    );
    assert!(find(&checks, "credentials").detail.contains("skipped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_credentials() {
    let broker = Broker::start_with(AUTH).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "guess\n").unwrap();
    let mut env = env_with(&broker.url(), dir.path());
    env.push(("PICKET_BROKER_USERNAME", "pi-user".into()));
    env.push((
        "PICKET_BROKER_PASSWORD_FILE",
        dir.path().join("pw").display().to_string(),
    ));
    let checks = doctor::run(Ok(config(&env)), &probes()).await;
    assert_fails_only(&checks, &["credentials"]);
    let c = find(&checks, "credentials");
    assert!(c.hint.contains("broker.username"), "{c:?}");
    if crate::broker::use_mosquitto() {
        // Mosquitto answers CONNACK "not authorised"; rumqttd hangs up.
        assert!(c.detail.contains("refused"), "{c:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_another_ca_fails_tls() {
    let broker = Broker::start().await;
    let pki = make_pki("picket test CA");
    let port = tls_endpoint(&pki, ([127, 0, 0, 1], broker.sub_port).into()).await;
    let dir = tempfile::tempdir().unwrap();
    let other = make_pki("another CA");
    let mut env = tls_env(dir.path(), port, &other.ca_pem, &pki.client);
    env.push(("PICKET_LED_BACKEND", "none".into()));
    let checks = doctor::run(Ok(config(&env)), &probes()).await;
    assert_fails_only(&checks, &["tls", "credentials"]);
    let tls = find(&checks, "tls");
    assert!(tls.detail.contains("handshake failed"), "{tls:?}");
    assert!(tls.hint.contains("broker.ca_file"), "{tls:?}");

    // The right CA: TLS and the credentials (client certificate) pass.
    let mut env = tls_env(dir.path(), port, &pki.ca_pem, &pki.client);
    env.push(("PICKET_LED_BACKEND", "none".into()));
    let checks = doctor::run(Ok(config(&env)), &probes()).await;
    assert_fails_only(&checks, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_queue_directory_fails_queue() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = env_with(&broker.url(), dir.path());
    // Root ignores permission bits: there, a directory under a regular
    // file is what cannot be written.
    let queue = if unsafe { libc::geteuid() } == 0 {
        std::fs::write(dir.path().join("file"), "").unwrap();
        dir.path().join("file/q")
    } else {
        use std::os::unix::fs::PermissionsExt;
        let q = dir.path().join("ro");
        std::fs::create_dir(&q).unwrap();
        std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o500)).unwrap();
        q
    };
    env.retain(|(k, _)| *k != "PICKET_QUEUE_DIR");
    env.push(("PICKET_QUEUE_DIR", queue.display().to_string()));
    let checks = doctor::run(Ok(config(&env)), &probes()).await;
    assert_fails_only(&checks, &["queue"]);
    assert!(
        find(&checks, "queue")
            .detail
            .contains(&queue.display().to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_or_missing_gpio_lines_fail_gpio_and_led() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        "[[gpio.input]]\nname = \"door\"\nline = \"GPIO17\"\n",
    )
    .unwrap();
    let mut env = env_with(&broker.url(), dir.path());
    env.retain(|(k, _)| *k != "PICKET_LED_LINE");
    env.push(("PICKET_LED_LINE", "GPIO99".into()));
    let vars: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let cfg = picket_agent::config::load(Some(&conf), vars).map(|(c, _)| c);
    let chip = SimChip::new("gpiochip0", &["GPIO17", "GPIO26"]);
    chip.claim_elsewhere("GPIO17", "pigpiod");
    let probes = Probes {
        clock_synced: || true,
        gpio: Arc::new(chip),
    };
    let checks = doctor::run(cfg, &probes).await;
    assert_fails_only(&checks, &["gpio", "led"]);
    assert!(find(&checks, "gpio").detail.contains("pigpiod"));
    assert!(find(&checks, "led").detail.contains("GPIO99"));
}

#[test]
fn the_binary_prints_one_line_per_check_and_exits_non_zero_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[(&str, &str)]| {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("PICKET_DEVICE_ID", "pi-doctor")
            .env("PICKET_QUEUE_DIR", dir.path().join("q"))
            .env("PICKET_LED_BACKEND", "none")
            .arg("doctor");
        for (k, v) in extra {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // Nothing listens on this port.
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    let out = run(&[("PICKET_BROKER_URL", &url)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL  tcp") && l.contains("fix:")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("ok    queue")), "{text}");
    let clock_ok = picket_agent::sensors::clock::ntp_synced();
    assert_eq!(
        text.lines().any(|l| l.starts_with("ok    clock")),
        clock_ok,
        "{text}"
    );

    // An invalid configuration: one line naming the key, exit 1.
    let out = run(&[("PICKET_BROKER_URL", "http://x")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with("FAIL  config") && text.contains("broker.url"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_passes_against_a_real_broker_when_the_clock_is_synchronised() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = broker.url();
    let q = dir.path().join("q");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .env_clear()
            .env("PICKET_DEVICE_ID", "pi-doctor")
            .env("PICKET_BROKER_URL", url)
            .env("PICKET_QUEUE_DIR", q)
            .env("PICKET_LED_BACKEND", "none")
            .arg("doctor")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // Everything but the clock is under the test's control; the clock is
    // this machine's.
    for name in [
        "config",
        "dns",
        "tcp",
        "tls",
        "credentials",
        "queue",
        "gpio",
        "led",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("ok") && l.split_whitespace().nth(1) == Some(name)),
            "{name} passes:\n{text}"
        );
    }
    let synced = picket_agent::sensors::clock::ntp_synced();
    assert_eq!(out.status.success(), synced, "{text}");
    assert_eq!(text.contains("FAIL  clock"), !synced, "{text}");
}
