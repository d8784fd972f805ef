//! One device: a good update, a new version that crashes at start, one
//! that cannot reach the broker within its window, and artifacts refused
//! before anything changes.

use serde_json::Value;

use super::supervisor::Notifications;
use super::{A, B, CRASH, Device, World, args, final_reason};
use crate::commands::file_server::sha256_hex;
use crate::commands::stack::states;
use crate::harness::Proxy;

fn ping_ok(view: &Value) -> bool {
    view["state"] == "succeeded"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_update_runs_the_new_version_commits_and_keeps_a_backup() {
    let w = World::start("pi-upd-good").await;
    let notify = Notifications::bind(w.stack.path("notify.sock"));
    let socket = notify.path.display().to_string();
    let d = w
        .device(
            "pi-upd-good",
            &w.stack.broker_url(),
            &[("NOTIFY_SOCKET", socket.as_str())],
        )
        .await;
    let pid = d.sup.pid();
    let (sha, sig) = w.sign(&w.builds.b);
    let id = w.update(&d, args(w.url("/b"), &sha, B, &sig)).await;
    let view = w.settled(&id, &d).await;
    assert_eq!(
        states(&view),
        ["accepted", "running", "running", "succeeded"],
        "{view}"
    );
    let installing = &view["statuses"][2]["reason"];
    assert!(
        installing
            .as_str()
            .is_some_and(|r| r.starts_with("installed 1.1.0")),
        "{view}"
    );
    assert!(
        view["output"]
            .as_str()
            .is_some_and(|o| o.contains("version 1.1.0 committed (previous: 1.0.0")),
        "{view}"
    );
    let ts = |i: usize| view["statuses"][i]["ts"].as_u64().unwrap_or(0);
    eprintln!(
        "download, checks, backup and install: {} ms; re-exec to commit: {} ms",
        ts(2).saturating_sub(ts(1)),
        ts(3).saturating_sub(ts(2))
    );
    w.wait_version(&d, B).await;

    // B runs in the same process (exec, no restart), from the update
    // directory; A's binary is kept as the backup.
    assert_eq!(d.sup.pid(), pid);
    assert_eq!(d.sup.starts(), 1);
    assert_eq!(d.sup.exe(), Some(d.bin(B)));
    assert_eq!(
        std::fs::read(d.bin(A)).unwrap(),
        std::fs::read(&w.builds.a).unwrap(),
        "backup of A"
    );
    let state = d.wait_state("reported", |s| s["report"].is_null()).await;
    assert_eq!(state["current"]["version"], B, "{state}");
    assert!(state["trial"].is_null(), "{state}");
    // For systemd the exec is a reload that B's READY=1 ends, never a
    // stop (systemd would kill the process after TimeoutStopSec).
    let lines = notify.lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0], "READY=1", "A: {lines:?}");
    assert_eq!(lines[1], "RELOADING=1", "{lines:?}");
    assert!(lines[2].starts_with("MONOTONIC_USEC="), "{lines:?}");
    assert_eq!(lines[3], "READY=1", "B: {lines:?}");

    // A crash of the committed version: systemd starts the entry (A)
    // again, whose launcher runs B.
    d.sup.kill();
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while d.sup.starts() < 2 || d.sup.exe() != Some(d.bin(B)) {
        assert!(tokio::time::Instant::now() < end, "{}", d.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    w.wait_version(&d, B).await;
    assert_eq!(d.sup.exits(), ["killed KILL"]);
    assert!(d.state()["report"].is_null(), "nothing more to report");
    d.sup.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_that_crashes_at_start_is_rolled_back_and_reported() {
    let w = World::start("pi-upd-crash").await;
    let d = w.device("pi-upd-crash", &w.stack.broker_url(), &[]).await;
    let (sha, sig) = w.sign(&w.builds.crash);
    let id = w.update(&d, args(w.url("/crash"), &sha, CRASH, &sig)).await;
    let view = w.settled(&id, &d).await;
    assert_eq!(view["state"], "failed", "{view}");
    assert_eq!(
        final_reason(&view),
        "rolled back to 1.0.0: 1.1.1 exited with status 1 before committing",
        "{view}\n{}",
        d.log()
    );
    // The new version ran once and exited; the supervisor restarted the
    // entry, which restored A.
    assert_eq!(d.sup.exits(), ["exited 1"]);
    assert_eq!(d.sup.starts(), 2);
    assert_eq!(d.sup.exe().as_deref(), Some(w.builds.a.as_path()));
    w.wait_version(&d, A).await;
    let state = d.wait_state("reported", |s| s["report"].is_null()).await;
    assert!(
        state["trial"].is_null() && state["current"].is_null(),
        "{state}"
    );
    let ping = w.stack.get(&format!("/api/devices/{}", d.id)).await.1;
    assert_eq!(ping["version"], A);
    d.sup.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_without_the_broker_is_rolled_back_after_its_window() {
    let w = World::start("pi-upd-offline").await;
    let proxy = Proxy::start(([127, 0, 0, 1], w.stack.broker).into()).await;
    let d = w
        .device(
            "pi-upd-offline",
            &format!("mqtt://127.0.0.1:{}", proxy.port),
            &[("PICKET_UPDATE_TRIAL_WINDOW", "6s")],
        )
        .await;
    let (sha, sig) = w.sign(&w.builds.b);
    // The network goes down while the device downloads: B starts without
    // a broker.
    w.release.send_replace(false);
    let id = w.update(&d, args(w.url("/b"), &sha, B, &sig)).await;
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while w.server.requests.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < end,
            "no download\n{}",
            d.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    proxy.close();
    w.release.send_replace(true);

    // B started (on trial), missed its window, handed back to the
    // launcher, which restored A: all in the same process, no restart.
    let state = d
        .wait_state("rolled back", |s| {
            s["report"]["outcome"]["kind"] == "rolled_back"
        })
        .await;
    let reason = state["report"]["outcome"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with(
            "1.1.0 had no sample acknowledged by the broker within 6 s (broker not reached"
        ),
        "{state}"
    );
    assert!(
        state["trial"].is_null() && state["current"].is_null(),
        "{state}"
    );
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while d.sup.exe().as_deref() != Some(w.builds.a.as_path()) {
        assert!(
            tokio::time::Instant::now() < end,
            "A is not running\n{}",
            d.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(d.sup.starts(), 1, "{:?}", d.sup.exits());
    assert!(
        d.log().contains("on trial"),
        "B ran its trial:\n{}",
        d.log()
    );

    // The network comes back: A reports.
    proxy.open();
    let view = w.settled(&id, &d).await;
    assert_eq!(view["state"], "failed", "{view}");
    let r = final_reason(&view);
    assert!(
        r.starts_with("rolled back to 1.0.0: 1.1.0 had no sample acknowledged"),
        "{r}"
    );
    w.wait_version(&d, A).await;
    assert_eq!(d.sup.starts(), 1);
    // No loop: B was started once, and A has not restarted since.
    let execs = d.log().matches("starting the installed agent").count();
    assert_eq!(execs, 1, "{}", d.log());
    d.sup.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_artifacts_change_nothing() {
    let w = World::start("pi-upd-refuse").await;
    let d = w
        .device(
            "pi-upd-refuse",
            &w.stack.broker_url(),
            &[("PICKET_UPDATE_MAX_BYTES", "1MiB")],
        )
        .await;
    let pid = d.sup.pid();
    let b = std::fs::read(&w.builds.b).unwrap();
    let script = w.stack.path("script");
    std::fs::write(&script, super::SCRIPT).unwrap();
    let (sha_b, sig_b) = w.sign(&w.builds.b);
    let (sha_script, sig_script) = w.sign(&script);
    let (sha_false, sig_false) = w.sign(std::path::Path::new("/bin/false"));
    let other_key = picket_protocol::signing::private_key([42; 32]);
    let digest: [u8; 32] = picket_protocol::signing::from_hex(&sha_script)
        .unwrap()
        .try_into()
        .unwrap();
    let forged = picket_protocol::signing::to_hex(&picket_protocol::signing::sign_artifact(
        &digest, &other_key,
    ));
    assert_eq!(sha_b, sha256_hex(&b));
    let wrong_sha = sha256_hex(b"something else");

    let cases: Vec<(Value, &str, &str)> = vec![
        (
            args(w.url("/b-streamed"), &wrong_sha, B, &sig_b),
            "failed",
            "the download exceeded update.max_bytes (1048576)",
        ),
        (
            args(w.url("/script"), &wrong_sha, B, &sig_script),
            "failed",
            "sha256 mismatch",
        ),
        (
            args(w.url("/script"), &sha_script, B, &forged),
            "failed",
            "bad signature",
        ),
        (
            args(w.url("/script"), &sha_script, B, &sig_script),
            "failed",
            "the artifact is not an ELF executable",
        ),
        (
            args(w.url("/false"), &sha_false, "1.1.1", &sig_false),
            "failed",
            "the artifact's --version failed (exit status: 1)",
        ),
        (
            args(w.url("/b"), &sha_b, "0.9.0", &sig_b),
            "rejected",
            "version 0.9.0 is not newer than the running 1.0.0",
        ),
        (
            args(w.url("/b"), &sha_b, A, &sig_b),
            "rejected",
            "version 1.0.0 is already running",
        ),
    ];
    for (a, state, why) in cases {
        let id = w.update(&d, a).await;
        let view = w.settled(&id, &d).await;
        assert_eq!(view["state"], state, "{why}: {view}");
        assert!(final_reason(&view).contains(why), "{why}: {view}");
    }
    unchanged(&d, pid, &w).await;
    // The artifact that passes every check but the size, announced this
    // time: refused from the length alone.
    let id = w.update(&d, args(w.url("/b"), &sha_b, B, &sig_b)).await;
    let view = w.settled(&id, &d).await;
    assert!(
        final_reason(&view).contains("more than update.max_bytes (1048576)"),
        "{view}"
    );
    unchanged(&d, pid, &w).await;
    d.sup.stop();
}

/// Nothing installed, nothing on trial, A still the same process.
pub(super) async fn unchanged(d: &Device, pid: Option<u32>, w: &World) {
    assert!(d.state().is_null(), "no update state: {}", d.state());
    let left: Vec<_> = std::fs::read_dir(d.home.join("update/bin"))
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "files left in bin/: {left:?}");
    assert_eq!(d.sup.pid(), pid);
    assert_eq!(d.sup.starts(), 1);
    let (_, body) = w
        .stack
        .post(
            &format!("/api/devices/{}/commands", d.id),
            serde_json::json!({"name": "ping"}),
        )
        .await;
    let id = body["id"].as_str().unwrap().to_string();
    assert!(ping_ok(&w.settled(&id, d).await));
}
