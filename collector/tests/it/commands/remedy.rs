//! Remediation: a stopped watched service makes the collector send
//! `service.restart`, once per firing and never beyond the rate limit.

use std::time::Duration;

use super::stack::Stack;

const RULES: &str = r#"
[[rules]]
name = "service_down"
for = "0s"
remedy = { command = "service.restart", args = { unit = "{instance}" }, limit = 2, window = "1h" }
"#;

async fn wait_for(s: &Stack, what: &str, f: impl Fn(&Stack) -> bool) {
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    while !f(s) {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}; systemctl calls {:?}",
            s.calls("systemctl")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The alert log lines of `service_down` firings, oldest first.
async fn firings(s: &Stack) -> Vec<serde_json::Value> {
    let (status, body) = s.get("/api/alerts?state=log&device=pi-remedy").await;
    assert_eq!(status, 200, "{body}");
    let mut v: Vec<serde_json::Value> = body["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == "service_down" && a["change"] == "fired")
        .cloned()
        .collect();
    v.reverse();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_service_is_restarted_within_the_rate_limit() {
    let mut s = Stack::start("pi-remedy", RULES).await;
    s.agent_env(&[
        ("PICKET_COMMANDS_ALLOWED", "service.restart"),
        ("PICKET_COMMANDS_SERVICES", "kiosk.service"),
        ("PICKET_SERVICES_WATCH", "kiosk.service"),
    ]);
    s.agent_online().await;

    for n in 1..=2 {
        s.set_service("inactive");
        // The fake restart brings the service back: one call per firing.
        wait_for(&s, &format!("restart {n}"), |s| {
            s.calls("systemctl").len() == n
        })
        .await;
        let end = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let f = firings(&s).await;
            if f.len() == n {
                let id = f[n - 1]["remedy"]
                    .as_str()
                    .expect("remedy recorded")
                    .to_string();
                let view = s.settled(&id).await;
                assert_eq!(view["state"], "succeeded", "{view}");
                assert_eq!(view["source"], "rule:service_down");
                assert_eq!(view["args"]["unit"], "kiosk.service");
                break;
            }
            assert!(tokio::time::Instant::now() < end, "{f:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Wait for the alert to resolve before stopping the service again.
        // Only this rule's: the agent samples the real host, whose disk
        // may be full enough for a `disk_usage` warning of its own.
        let end = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (_, body) = s.get("/api/alerts?device=pi-remedy").await;
            let down = |a: &serde_json::Value| {
                a["rule"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("service_down"))
            };
            if body["active"]
                .as_array()
                .is_some_and(|a| !a.iter().any(down))
            {
                break;
            }
            assert!(tokio::time::Instant::now() < end, "{body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Third firing within the hour: recorded as rate limited, not sent.
    s.set_service("inactive");
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let f = firings(&s).await;
        if f.len() == 3 {
            let remedy = f[2]["remedy"].as_str().unwrap_or_default();
            assert!(remedy.starts_with("rate_limited"), "{f:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < end, "{f:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Samples keep reporting it stopped; still nothing more is sent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.calls("systemctl").len(), 2);
    assert_eq!(
        firings(&s).await.len(),
        3,
        "a still-active alert does not fire again"
    );
    s.stop_agent();
}
