//! An `agent.update` whose binary reports another version than the one it
//! was sent as: refused before anything is installed, with the reason; the
//! device runs on unchanged, and the next, correct update goes through
//! (such an update used to stay on trial forever and refuse every later
//! one as busy).

use super::single::unchanged;
use super::{A, B, World, args, final_reason};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_reporting_another_version_is_refused_and_the_next_update_succeeds() {
    let w = World::start("pi-upd-label").await;
    let d = w.device("pi-upd-label", &w.stack.broker_url(), &[]).await;
    let pid = d.sup.pid();
    let (sha, sig) = w.sign(&w.builds.b);

    // Build B, sent as 1.2.0.
    let id = w.update(&d, args(w.url("/b"), &sha, "1.2.0", &sig)).await;
    let view = w.settled(&id, &d).await;
    assert_eq!(view["state"], "failed", "{view}");
    assert_eq!(
        final_reason(&view),
        "the artifact reports version 1.1.0, not 1.2.0 as the command says",
        "{view}\n{}",
        d.log()
    );
    unchanged(&d, pid, &w).await;
    w.wait_version(&d, A).await;

    // The same binary under its own version.
    let id = w.update(&d, args(w.url("/b"), &sha, B, &sig)).await;
    let view = w.settled(&id, &d).await;
    assert_eq!(view["state"], "succeeded", "{view}\n{}", d.log());
    w.wait_version(&d, B).await;
    assert_eq!(d.sup.pid(), pid, "B runs in the same process");
    let state = d.wait_state("reported", |s| s["report"].is_null()).await;
    assert_eq!(state["current"]["version"], B, "{state}");
    assert!(state["trial"].is_null(), "{state}");
    d.sup.stop();
}
