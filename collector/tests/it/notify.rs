//! Notifications against real servers: the webhook against an HTTP server,
//! e-mail against an SMTP server, and the notifier task with both.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use picket_collector::notify::config::WebhookConfig;
use picket_collector::notify::webhook::WebhookError;
use picket_collector::notify::{
    Email, Kind, Notification, Notifier, NotifyConfig, NotifyCounters, RawEmail, RawNotify,
    RawWebhook, Webhook, validate,
};
use picket_config::HumanDuration;
use picket_protocol::{DeviceId, Severity};
use tokio::sync::{mpsc, oneshot};
use ureq::tls::RootCerts;

use crate::http_sink::{HttpSink, SilentServer, tls_front};
use crate::smtp_sink::SmtpSink;

const DEADLINE: Duration = Duration::from_secs(10);

fn notification() -> Notification {
    Notification {
        device: DeviceId::new("pi-cesson-01").expect("id"),
        labels: BTreeMap::from([("club".into(), "CESSON".into())]),
        rule: "temperature".into(),
        instance: None,
        severity: Severity::Critical,
        state: Kind::Firing,
        value: Some(81.2),
        message: "temperature 81.2 °C".into(),
        ts: 1_733_323_122_000,
    }
}

fn webhook(url: &str, timeout: Duration, retries: u32) -> WebhookConfig {
    WebhookConfig {
        url: url.to_string(),
        timeout,
        retries,
        backoff: Duration::from_millis(20),
        roots: RootCerts::WebPki,
    }
}

/// An e-mail section for `sink` in plain mode, through the real validation
/// (which reads the password file).
struct EmailSetup {
    raw: RawEmail,
    _dir: tempfile::TempDir,
}

fn email_setup(sink: &SmtpSink, password: &str) -> EmailSetup {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("smtp-password");
    std::fs::write(&secret, format!("{password}\n")).expect("write secret");
    EmailSetup {
        raw: RawEmail {
            host: "127.0.0.1".into(),
            port: sink.port,
            tls: "plain".into(),
            username: "picket".into(),
            password_file: secret.to_string_lossy().to_string(),
            from: "picket <picket@example.com>".into(),
            to: vec!["ops@example.com".into(), "night@example.com".into()],
            timeout: HumanDuration(Duration::from_secs(5)),
            backoff: HumanDuration(Duration::from_millis(20)),
            ..RawEmail::default()
        },
        _dir: dir,
    }
}

fn config(webhook: Option<WebhookConfig>, email: Option<&EmailSetup>) -> NotifyConfig {
    let raw_email = email.map(|e| e.raw.clone()).unwrap_or_default();
    let mut c =
        validate(&RawNotify::default(), &RawWebhook::default(), &raw_email).expect("valid config");
    c.webhook = webhook;
    c
}

#[tokio::test]
async fn the_webhook_posts_the_alert_as_json() {
    let sink = HttpSink::start(&[]).await;
    let hook = Webhook::new(webhook(&sink.url, Duration::from_secs(5), 0));
    let attempts = hook.send(&notification()).await.expect("delivered");
    assert_eq!(attempts, 1);

    let got = sink.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.path, "/hooks/picket");
    assert_eq!(r.content_type, "application/json");
    let v = &r.json;
    assert_eq!(v["device"], "pi-cesson-01");
    assert_eq!(v["labels"], serde_json::json!({"club": "CESSON"}));
    assert_eq!(v["alert"]["rule"], "temperature");
    assert_eq!(v["alert"]["severity"], "critical");
    assert_eq!(v["alert"]["state"], "firing");
    assert_eq!(v["alert"]["value"], 81.2);
    assert_eq!(v["alert"]["message"], "temperature 81.2 °C");
    assert_eq!(v["ts"], 1_733_323_122_000u64);
    assert_eq!(
        v["text"],
        "[picket CRITICAL] pi-cesson-01 - temperature: temperature 81.2 °C"
    );
}

#[tokio::test]
async fn an_https_webhook_trusts_its_ca_file_and_only_that() {
    let sink = HttpSink::start(&[]).await;
    let (port, ca) = tls_front(sink.addr).await;
    let url = format!("https://127.0.0.1:{port}/hooks/picket");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).expect("write CA");

    // Through the real validation, as the collector builds it.
    let raw = RawWebhook {
        url: url.clone(),
        ca_file: ca_file.to_string_lossy().to_string(),
        ..RawWebhook::default()
    };
    let trusted = validate(&RawNotify::default(), &raw, &RawEmail::default())
        .expect("valid")
        .webhook
        .expect("webhook on");
    let attempts = Webhook::new(trusted)
        .send(&notification())
        .await
        .expect("delivered over TLS");
    assert_eq!(attempts, 1);
    assert_eq!(sink.received()[0].json["device"], "pi-cesson-01");

    // With the default (public) roots the same server is refused, once.
    let failed = Webhook::new(webhook(&url, Duration::from_secs(5), 3))
        .send(&notification())
        .await
        .expect_err("unknown CA");
    assert_eq!(failed.attempts, 1, "{}", failed.error);
    assert!(!failed.error.is_retryable(), "{}", failed.error);
    assert_eq!(sink.received().len(), 1);
}

#[tokio::test]
async fn the_webhook_retries_what_the_server_may_fix_and_nothing_else() {
    // (statuses answered in turn, retries allowed, Ok(attempts) or
    // Err(attempts, final status))
    type Case = (&'static [u16], u32, Result<u32, (u32, u16)>);
    let table: [Case; 6] = [
        (&[500, 500, 200], 5, Ok(3)),
        (&[429, 503, 408, 204], 5, Ok(4)),
        (&[400], 5, Err((1, 400))),
        (&[404], 5, Err((1, 404))),
        (&[500, 401], 5, Err((2, 401))),
        (&[502, 502, 502], 2, Err((3, 502))),
    ];
    for (script, retries, want) in table {
        let sink = HttpSink::start(script).await;
        let hook = Webhook::new(webhook(&sink.url, Duration::from_secs(5), retries));
        let started = Instant::now();
        let got = hook.send(&notification()).await.map_err(|f| match f.error {
            WebhookError::Status { status, .. } => (f.attempts, status),
            other => panic!("{script:?}: unexpected error {other}"),
        });
        assert_eq!(got, want, "{script:?}");
        // Every attempt reached the server, and no more than that.
        let attempts = match got {
            Ok(a) | Err((a, _)) => a,
        };
        assert_eq!(sink.received().len(), attempts as usize, "{script:?}");
        // Backoff 20 ms, doubling, between attempts.
        let min_wait: u64 = (0..attempts - 1).map(|n| 20 << n).sum();
        assert!(
            started.elapsed() >= Duration::from_millis(min_wait),
            "{script:?}: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn the_webhook_times_out_a_silent_server_and_retries() {
    let server = SilentServer::start().await;
    let hook = Webhook::new(webhook(&server.url, Duration::from_millis(300), 2));
    let started = Instant::now();
    let failed = hook.send(&notification()).await.expect_err("no answer");
    let elapsed = started.elapsed();
    assert_eq!(failed.attempts, 3);
    assert!(
        matches!(failed.error, WebhookError::Http(ureq::Error::Timeout(_))),
        "{}",
        failed.error
    );
    assert_eq!(server.accepted(), 3);
    // Three timeouts plus 20 + 40 ms of backoff, and not much more.
    assert!(elapsed >= Duration::from_millis(960), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn the_email_arrives_with_subject_recipients_body_and_credentials() {
    let sink = SmtpSink::start(Some(("picket", "s3cret")), "PLAIN LOGIN").await;
    let setup = email_setup(&sink, "s3cret");
    let email = config(None, Some(&setup)).email.expect("email on");
    let attempts = Email::new(email)
        .send(&notification())
        .await
        .expect("delivered");
    assert_eq!(attempts, 1);

    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.auth, Some(("picket".into(), "s3cret".into())));
    assert_eq!(m.from, "picket@example.com");
    assert_eq!(m.rcpt, ["ops@example.com", "night@example.com"]);
    assert_eq!(
        m.header("Subject").as_deref(),
        Some("[picket CRITICAL] pi-cesson-01 - temperature")
    );
    assert_eq!(
        m.header("To").as_deref(),
        Some("ops@example.com, night@example.com")
    );
    assert_eq!(
        m.body(),
        "picket alert\n\
         Device: pi-cesson-01\n\
         Labels: club=CESSON\n\
         Level: CRITICAL\n\
         Rule: temperature\n\
         Message: temperature 81.2 °C\n\
         Value: 81.2\n\
         Date: 2024-12-04T14:38:42Z\n"
    );
}

#[tokio::test]
async fn a_resolution_mail_through_auth_login_keeps_dotted_lines() {
    let sink = SmtpSink::start(Some(("picket", "s3cret")), "LOGIN").await;
    let setup = email_setup(&sink, "s3cret");
    let email = config(None, Some(&setup)).email.expect("email on");
    let n = Notification {
        state: Kind::Resolved,
        // A line starting with a dot is doubled on the wire.
        message: "back to normal\n.hidden line".into(),
        ..notification()
    };
    Email::new(email).send(&n).await.expect("delivered");

    let m = &sink.mails()[0];
    assert_eq!(m.auth, Some(("picket".into(), "s3cret".into())));
    assert_eq!(
        m.header("Subject").as_deref(),
        Some("[picket RESOLVED] pi-cesson-01 - temperature")
    );
    let body = m.body();
    assert!(body.starts_with("picket alert resolved\n"), "{body}");
    assert!(body.contains("Level: RESOLVED (critical)\n"), "{body}");
    assert!(
        body.contains("Message: back to normal\n.hidden line\n"),
        "{body}"
    );
}

#[tokio::test]
async fn wrong_smtp_credentials_fail_once_and_are_counted() {
    let sink = SmtpSink::start(Some(("picket", "s3cret")), "PLAIN LOGIN").await;
    let setup = email_setup(&sink, "wrong");
    let counters = Arc::new(NotifyCounters::default());
    let (tx, rx) = mpsc::channel(8);
    let notifier = Notifier::new(config(None, Some(&setup)), rx, counters.clone());
    tx.send(notification()).await.expect("send");
    // With every sender gone the notifier finishes what it holds and ends.
    drop(tx);
    tokio::time::timeout(DEADLINE, notifier.run(std::future::pending()))
        .await
        .expect("notifier ends");

    let email = &counters.email;
    assert_eq!(email.failed.load(Ordering::Relaxed), 1);
    assert_eq!(email.sent.load(Ordering::Relaxed), 0);
    // 535 is permanent: one login attempt, no retry, no mail.
    assert_eq!(email.retries.load(Ordering::Relaxed), 0);
    assert_eq!(
        sink.auths(),
        [("picket".to_string(), "wrong".to_string(), false)]
    );
    assert!(sink.mails().is_empty());
}

#[tokio::test]
async fn the_notifier_delivers_to_every_channel() {
    let http = HttpSink::start(&[503]).await;
    let smtp = SmtpSink::start(Some(("picket", "s3cret")), "PLAIN LOGIN").await;
    let setup = email_setup(&smtp, "s3cret");
    let config = config(
        Some(webhook(&http.url, Duration::from_secs(5), 3)),
        Some(&setup),
    );
    let counters = Arc::new(NotifyCounters::default());
    let (tx, rx) = mpsc::channel(8);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(Notifier::new(config, rx, counters.clone()).run(async {
        let _ = stopped.await;
    }));

    tx.send(notification()).await.expect("send");
    let requests = http.wait_for(2, DEADLINE).await;
    let mails = smtp.wait_for(1, DEADLINE).await;
    assert_eq!(requests[1].json["device"], "pi-cesson-01");
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("[picket CRITICAL] pi-cesson-01 - temperature")
    );

    stop.send(()).expect("notifier running");
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("notifier stops")
        .expect("notifier task");
    let (w, e) = (&counters.webhook, &counters.email);
    assert_eq!(w.sent.load(Ordering::Relaxed), 1);
    assert_eq!(w.retries.load(Ordering::Relaxed), 1);
    assert_eq!(e.sent.load(Ordering::Relaxed), 1);
    for c in [w, e] {
        assert_eq!(c.failed.load(Ordering::Relaxed), 0);
        assert_eq!(c.dropped.load(Ordering::Relaxed), 0);
    }
}

#[tokio::test]
async fn a_dead_webhook_delays_neither_the_email_nor_the_shutdown() {
    let dead = SilentServer::start().await;
    let smtp = SmtpSink::start(None, "PLAIN").await;
    let setup = EmailSetup {
        raw: RawEmail {
            username: String::new(),
            password_file: String::new(),
            ..email_setup(&smtp, "unused").raw
        },
        _dir: tempfile::tempdir().expect("tempdir"),
    };
    let mut config = config(
        Some(webhook(&dead.url, Duration::from_secs(30), 5)),
        Some(&setup),
    );
    config.queue = 1;
    config.grace = Duration::from_millis(300);
    let counters = Arc::new(NotifyCounters::default());
    let (tx, rx) = mpsc::channel(8);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(Notifier::new(config, rx, counters.clone()).run(async {
        let _ = stopped.await;
    }));

    // The first notification is in flight to the dead webhook...
    tx.send(notification()).await.expect("send");
    dead.wait_for(1, DEADLINE).await;
    // ...and the e-mail went out long before its 30 s timeout.
    let started = Instant::now();
    smtp.wait_for(1, DEADLINE).await;
    // Four more, each waiting for its mail: the webhook's queue holds one,
    // the other three are dropped for the webhook only.
    for i in 2..=5 {
        tx.send(notification()).await.expect("send");
        smtp.wait_for(i, DEADLINE).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Counted before the notification was queued for the e-mail.
    let (w, e) = (&counters.webhook, &counters.email);
    assert_eq!(w.dropped.load(Ordering::Relaxed), 3);
    assert_eq!(dead.accepted(), 1);

    // Shutdown waits the grace period for the stuck webhook, not its 30 s.
    let stopping = Instant::now();
    stop.send(()).expect("notifier running");
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("notifier stops")
        .expect("notifier task");
    let took = stopping.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(e.sent.load(Ordering::Relaxed), 5);
    assert_eq!(e.dropped.load(Ordering::Relaxed), 0);
    // Abandoned, neither sent nor failed.
    assert_eq!(w.sent.load(Ordering::Relaxed), 0);
    assert_eq!(w.failed.load(Ordering::Relaxed), 0);
}
