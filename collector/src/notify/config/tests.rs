//! Validation of the notification sections, key by key.

use std::time::Duration;

use picket_config::{ConfigError, HumanDuration};

use super::*;

fn email(host: &str, to: &[&str]) -> RawEmail {
    RawEmail {
        host: host.into(),
        to: to.iter().map(|s| s.to_string()).collect(),
        tls: "plain".into(),
        ..RawEmail::default()
    }
}

fn check(w: RawWebhook, e: RawEmail) -> Result<NotifyConfig, ConfigError> {
    validate(&RawNotify::default(), &w, &e)
}

#[test]
fn the_defaults_turn_every_channel_off() {
    let c = check(RawWebhook::default(), RawEmail::default()).expect("defaults");
    assert_eq!(c.cooldown, Duration::from_secs(3600));
    assert!(c.webhook.is_none());
    assert!(c.email.is_none());
    assert_eq!(c.queue, DEFAULT_QUEUE);
    assert_eq!(c.grace, DEFAULT_GRACE);
}

#[test]
fn the_defaults_serialise_as_documented() {
    let toml = toml::to_string(&RawEmail::default()).expect("toml");
    for line in [
        "host = \"\"",
        "port = 0",
        "tls = \"starttls\"",
        "from = \"picket@localhost\"",
        "to = []",
        "timeout = \"30s\"",
    ] {
        assert!(toml.contains(line), "{line} missing from\n{toml}");
    }
    let toml = toml::to_string(&RawWebhook::default()).expect("toml");
    for line in ["url = \"\"", "timeout = \"10s\"", "retries = 5"] {
        assert!(toml.contains(line), "{line} missing from\n{toml}");
    }
    let toml = toml::to_string(&RawNotify::default()).expect("toml");
    assert!(toml.contains("cooldown = \"1h\""), "{toml}");
}

#[test]
fn webhook_urls() {
    let table = [
        ("https://hooks.slack.com/services/T/B/X", true),
        ("http://127.0.0.1:8080/hook", true),
        ("http://[::1]:8080/", true),
        ("ftp://example.com/", false),
        ("hooks.slack.com/services", false),
        ("https://", false),
        ("http://exa mple.com/", false),
    ];
    for (url, ok) in table {
        let w = RawWebhook {
            url: url.into(),
            ..RawWebhook::default()
        };
        let got = check(w, RawEmail::default());
        assert_eq!(got.is_ok(), ok, "{url}: {:?}", got.err());
        if let Err(e) = got {
            assert_eq!(e.key(), Some("webhook.url"));
        }
    }
}

#[test]
fn a_valid_email_section_resolves_ports_and_addresses() {
    let table = [
        ("plain", 0, "25"),
        ("starttls", 0, "587"),
        ("tls", 0, "465"),
        ("plain", 2525, "2525"),
    ];
    for (mode, port, want) in table {
        let e = RawEmail {
            tls: mode.into(),
            port,
            from: "picket <picket@example.com>".into(),
            ..email(
                "smtp.example.com",
                &["ops@example.com", "Night Shift <night@example.com>"],
            )
        };
        let c = check(RawWebhook::default(), e).expect(mode);
        let email = c.email.expect("email on");
        assert_eq!(email.server, format!("smtp.example.com:{want} ({mode})"));
        assert_eq!(email.from.email.to_string(), "picket@example.com");
        assert_eq!(email.to.len(), 2);
        assert_eq!(email.to[1].email.to_string(), "night@example.com");
    }
}

#[test]
fn errors_name_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").expect("write");
    let empty = empty.to_string_lossy().to_string();
    let not_pem = dir.path().join("not-pem");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    let not_pem = not_pem.to_string_lossy().to_string();

    let table: Vec<(&str, RawWebhook, RawEmail)> = vec![
        (
            "webhook.timeout",
            RawWebhook {
                url: "http://h/".into(),
                timeout: HumanDuration(Duration::ZERO),
                ..RawWebhook::default()
            },
            RawEmail::default(),
        ),
        (
            "webhook.retries",
            RawWebhook {
                url: "http://h/".into(),
                retries: 100,
                ..RawWebhook::default()
            },
            RawEmail::default(),
        ),
        (
            "webhook.backoff",
            RawWebhook {
                url: "http://h/".into(),
                backoff: HumanDuration(Duration::ZERO),
                ..RawWebhook::default()
            },
            RawEmail::default(),
        ),
        (
            "webhook.ca_file",
            RawWebhook {
                url: "http://h/".into(),
                ca_file: empty.clone(),
                ..RawWebhook::default()
            },
            RawEmail::default(),
        ),
        (
            "webhook.ca_file",
            RawWebhook {
                url: "https://h/".into(),
                ca_file: empty.clone(),
                ..RawWebhook::default()
            },
            RawEmail::default(),
        ),
        (
            "webhook.ca_file",
            RawWebhook {
                url: "https://h/".into(),
                ca_file: not_pem.clone(),
                ..RawWebhook::default()
            },
            RawEmail::default(),
        ),
        ("email.host", RawWebhook::default(), email("", &["a@b.c"])),
        (
            "email.host",
            RawWebhook::default(),
            email("smtp:25", &["a@b.c"]),
        ),
        ("email.to", RawWebhook::default(), email("smtp", &[])),
        (
            "email.to",
            RawWebhook::default(),
            email("smtp", &["a@b.c", "not an address"]),
        ),
        (
            "email.from",
            RawWebhook::default(),
            RawEmail {
                from: "picket".into(),
                ..email("smtp", &["a@b.c"])
            },
        ),
        (
            "email.tls",
            RawWebhook::default(),
            RawEmail {
                tls: "ssl".into(),
                ..email("smtp", &["a@b.c"])
            },
        ),
        (
            "email.password_file",
            RawWebhook::default(),
            RawEmail {
                username: "u".into(),
                ..email("smtp", &["a@b.c"])
            },
        ),
        (
            "email.username",
            RawWebhook::default(),
            RawEmail {
                password_file: "/nonexistent".into(),
                ..email("smtp", &["a@b.c"])
            },
        ),
        (
            "email.password_file",
            RawWebhook::default(),
            RawEmail {
                username: "u".into(),
                password_file: "/nonexistent/secret".into(),
                ..email("smtp", &["a@b.c"])
            },
        ),
        (
            "email.password_file",
            RawWebhook::default(),
            RawEmail {
                username: "u".into(),
                password_file: empty.clone(),
                ..email("smtp", &["a@b.c"])
            },
        ),
        (
            "email.timeout",
            RawWebhook::default(),
            RawEmail {
                timeout: HumanDuration(Duration::from_secs(3600)),
                ..email("smtp", &["a@b.c"])
            },
        ),
        (
            "email.retries",
            RawWebhook::default(),
            RawEmail {
                retries: 21,
                ..email("smtp", &["a@b.c"])
            },
        ),
    ];
    for (key, w, e) in table {
        match check(w, e.clone()) {
            Ok(_) => panic!("{key}: {e:?} was accepted"),
            Err(err) => assert_eq!(err.key(), Some(key), "{err}"),
        }
    }
}
