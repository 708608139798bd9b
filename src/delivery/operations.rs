//! The operations task of a delivering instance: works on bulk recoveries and relays
//! operational events. It runs when something on this instance raised work for it
//! ([`Waker::wake_operations`](super::Waker::wake_operations)) and at least every poll
//! interval, which picks up recoveries started on an API-only instance and events left
//! behind by a crash.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{recovery, relay, DeliveryContext};

pub async fn run(context: Arc<DeliveryContext>, shutdown: CancellationToken) {
    let wake = context.waker.operations.clone();
    loop {
        pass(&context, &shutdown).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(context.settings.poll_interval) => {}
        }
    }
}

/// Recoveries first, so that the events of those completed now are relayed in this pass.
async fn pass(context: &DeliveryContext, shutdown: &CancellationToken) {
    match recovery::run_all(&context.pool, i64::from(context.settings.recover_batch), shutdown).await {
        Ok((requeued, _)) if requeued > 0 => {
            context.metrics.deliveries_recovered(requeued as u64);
            context.waker.wake();
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot work on recoveries; retrying at the next pass"),
    }
    match relay::relay_all(&context.pool).await {
        Ok(deliveries) if deliveries > 0 => context.waker.wake(),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot relay operational events; retrying at the next pass"),
    }
}
