//! Watching the plugin folder so that adding, replacing and removing a file
//! takes effect while the host runs.
//!
//! File-system notifications trigger a scan after a short quiet period (a
//! file being copied produces a burst of events). A periodic scan backs them
//! up on file systems that do not deliver notifications; it only compares
//! sizes and modification times, so it costs a directory listing.

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Registry;

/// Quiet period after the last event before scanning.
const SETTLE: Duration = Duration::from_millis(150);
/// Scan at least this often, notifications or not.
const POLL: Duration = Duration::from_secs(1);

/// A running watcher; dropping it stops watching.
pub struct Watcher {
    _notify: Option<notify::RecommendedWatcher>,
    task: JoinHandle<()>,
}

impl Watcher {
    /// Starts watching the registry's folder.
    pub fn start(registry: Arc<Registry>) -> Watcher {
        let (tx, rx) = mpsc::channel::<()>(1);
        let notify = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                // A full channel already holds a wake-up; dropping this one
                // loses nothing.
                let _ = tx.try_send(());
            }
        })
        .and_then(|mut w| w.watch(registry.path(), RecursiveMode::NonRecursive).map(|_| w));
        let notify = match notify {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "no file notifications for the plugin folder; checking it every second instead");
                None
            }
        };
        let task = tokio::spawn(run(registry, rx));
        Watcher {
            _notify: notify,
            task,
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(registry: Arc<Registry>, mut events: mpsc::Receiver<()>) {
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(()) = events.recv() => settle(&mut events).await,
            _ = poll.tick() => {}
        }
        let report = registry.scan().await;
        if report != Default::default() {
            tracing::debug!(?report, "plugin folder changed");
        }
    }
}

/// Waits until no event has arrived for [`SETTLE`].
async fn settle(events: &mut mpsc::Receiver<()>) {
    while let Ok(Some(())) = tokio::time::timeout(SETTLE, events.recv()).await {}
}
