//! The TTL and idle reaper: one background loop, also run once at start-up.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::service::SessionService;

pub async fn run(service: Arc<SessionService>, every: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => service.reap().await,
        }
    }
    // Keep the last activity figures.
    service.reap().await;
}
