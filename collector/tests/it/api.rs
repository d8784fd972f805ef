//! The REST API: every endpoint, token roles, parameter validation.

use crate::harness::{Collector, Device, Setup, request};

const ADMIN: &str = "admin-token-0123456789";
const READ: &str = "read-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_roles_and_parameters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("[api]\nadmin_token = \"{ADMIN}\"\nread_token = \"{READ}\"\n");
    let setup = Setup::new(dir.path(), None, &extra);
    let c = Collector::start(&setup).await;
    let dev = Device::connect(c.broker, "pi-api", "s1").await;
    dev.birth().await;
    dev.telemetry(vec![dev.sample(1, 55.0), dev.sample(2, 57.0)])
        .await;
    dev.event(3, picket_protocol::EventKind::ClockSynced).await;
    // Wait through the API itself, with the read token.
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (s, d) = request("GET", c.url("/api/devices/pi-api"), Some(READ)).await;
        if s == 200 && d["seq"]["received"] == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "device never seen: {s} {d}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let get = |path: &str, token: Option<&'static str>| {
        let url = c.url(path);
        async move { request("GET", url, token).await }
    };
    // Roles.
    assert_eq!(get("/api/devices", None).await.0, 401);
    assert_eq!(
        get("/api/devices", Some("wrong-token-0123456789")).await.0,
        401
    );
    assert_eq!(get("/api/devices", Some(READ)).await.0, 200);
    assert_eq!(get("/api/devices", Some(ADMIN)).await.0, 200);
    assert_eq!(get("/metrics", None).await.0, 401);
    assert_eq!(get("/healthz", None).await.0, 200, "health needs no token");
    let (s, body) = request("DELETE", c.url("/api/devices/pi-api"), Some(READ)).await;
    assert_eq!(s, 403, "{body}");
    assert!(body["error"].is_string());

    // Each endpoint.
    let (s, list) = get("/api/devices", Some(READ)).await;
    assert_eq!(s, 200);
    assert_eq!(list[0]["id"], "pi-api");
    assert_eq!(list[0]["online"], true);
    assert!(list[0].get("severity").is_some());
    let (_, one) = get("/api/devices/pi-api", Some(READ)).await;
    assert_eq!(one["latest"]["temp"], 57.0);
    assert_eq!(one["seq"]["duplicates"], 0);
    // The live view runs one commit ahead of SQLite: once the event (sent
    // last) is stored, so are the samples before it.
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while get("/api/devices/pi-api/events", Some(READ)).await.1["events"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(
            tokio::time::Instant::now() < end,
            "the event was never stored"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (s, h) = get(
        "/api/devices/pi-api/history?metric=temp&from=-1h&to=now",
        Some(READ),
    )
    .await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["points"].as_array().map(Vec::len), Some(2));
    let (s, h) = get(
        "/api/devices/pi-api/history?metric=temp&from=-1h&step=1h",
        Some(READ),
    )
    .await;
    assert_eq!(s, 200, "{h}");
    let buckets = h["points"].as_array().expect("buckets");
    let total: u64 = buckets
        .iter()
        .map(|b| b["count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, 2);
    let (s, e) = get("/api/devices/pi-api/events", Some(READ)).await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["events"][0]["kind"], "clock_synced", "{e}");
    let (s, stats) = get("/api/stats", Some(READ)).await;
    assert_eq!(s, 200);
    assert_eq!(stats["total_devices"], 1);
    assert_eq!(stats["online_devices"], 1);
    assert_eq!(stats["averages"]["temperature"], 57.0);
    for state in ["active", "resolved", "all"] {
        let (s, a) = get(&format!("/api/alerts?state={state}"), Some(READ)).await;
        assert_eq!(s, 200, "{state}: {a}");
    }

    // Bad parameters → 400 with a reason.
    for path in [
        "/api/devices/pi-api/history",
        "/api/devices/pi-api/history?metric=te%20mp",
        "/api/devices/pi-api/history?metric=temp&from=yesterday",
        "/api/devices/pi-api/history?metric=temp&from=-1h&to=-2h",
        "/api/devices/pi-api/history?metric=temp&step=10ms",
        "/api/devices/pi-api/history?metric=temp&metirc=x",
        "/api/devices/pi%2Bapi",
        "/api/alerts?state=bogus",
        "/api/alerts?limit=0",
        "/api/devices?x=1",
    ] {
        let (s, body) = get(path, Some(READ)).await;
        assert_eq!(s, 400, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    assert_eq!(get("/api/devices/nobody", Some(READ)).await.0, 404);
    assert_eq!(get("/api/nothing-here", Some(READ)).await.0, 404);

    // Admin: forget the device.
    let (s, _) = request("DELETE", c.url("/api/devices/nobody"), Some(ADMIN)).await;
    assert_eq!(s, 404);
    let (s, _) = request("DELETE", c.url("/api/devices/pi-api"), Some(ADMIN)).await;
    assert_eq!(s, 204);
    assert_eq!(get("/api/devices/pi-api", Some(READ)).await.0, 404);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_the_api_is_read_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new(dir.path(), None, "");
    let c = Collector::start(&setup).await;
    assert_eq!(request("GET", c.url("/api/devices"), None).await.0, 200);
    let (s, body) = request("DELETE", c.url("/api/devices/x"), None).await;
    assert_eq!(s, 403, "{body}");
    c.stop().await;
}
