//! One shutdown signal for every task (mini-redis `shutdown.rs`): each task
//! holds a [`Shutdown`] and includes `wait()` in its `select!`.

use tokio::sync::watch;

#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Resolves once shutdown was fired (or every trigger was dropped).
    pub async fn wait(&mut self) {
        // An error means the trigger is gone, which also means "stop".
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}
