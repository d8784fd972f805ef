//! `systemctl stop` (SIGTERM) while an `agent.update` downloads from a
//! server that holds the response: the agent exits cleanly within 5 s, the
//! command is reported cancelled, nothing is installed, and the agent
//! started again takes the next update.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{A, B, World, args, final_reason};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_an_update_download_is_prompt() {
    let w = World::start("pi-upd-stop").await;
    let d = w.device("pi-upd-stop", &w.stack.broker_url(), &[]).await;
    let pid = d.sup.pid().expect("the agent runs");
    let (sha, sig) = w.sign(&w.builds.b);
    w.release.send_replace(false);
    let id = w.update(&d, args(w.url("/b"), &sha, B, &sig)).await;
    let end = Instant::now() + Duration::from_secs(60);
    while w.server.requests.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < end, "no download\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let t = Instant::now();
    // SAFETY: signalling the agent process the supervisor started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let end = Instant::now() + Duration::from_secs(30);
    while d.sup.exits().is_empty() {
        assert!(Instant::now() < end, "still running\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = t.elapsed();
    eprintln!(
        "stopped {} ms after SIGTERM, mid-download",
        took.as_millis()
    );
    assert_eq!(d.sup.exits(), ["exited 0"], "{}", d.log());
    assert!(
        took < Duration::from_secs(5),
        "stopped in {took:?}\n{}",
        d.log()
    );

    // The supervisor starts the agent again, as systemd's Restart= would.
    let view = w.settled(&id, &d).await;
    assert_eq!(view["state"], "failed", "{view}");
    assert_eq!(final_reason(&view), "cancelled: the agent is stopping");
    w.wait_version(&d, A).await;
    assert!(d.state().is_null(), "nothing installed: {}", d.state());

    w.release.send_replace(true);
    let id = w.update(&d, args(w.url("/b"), &sha, B, &sig)).await;
    let view = w.settled(&id, &d).await;
    assert_eq!(view["state"], "succeeded", "{view}\n{}", d.log());
    w.wait_version(&d, B).await;
    d.sup.stop();
}
