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
        while pass(&context, &shutdown).await && !shutdown.is_cancelled() {}
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(context.settings.poll_interval) => {}
        }
    }
}

/// One batch of each running recovery, then every queued operational event (those of
/// recoveries completed now included). Returns whether recoveries progressed, so that the
/// next round follows at once.
async fn pass(context: &DeliveryContext, shutdown: &CancellationToken) -> bool {
    let round = match recovery::run_round(&context.pool, i64::from(context.settings.recover_batch), context.statement_deadline, shutdown).await {
        Ok(round) => round,
        Err(error) => {
            tracing::warn!(%error, "cannot work on recoveries; retrying at the next pass");
            recovery::Round::default()
        }
    };
    if round.requeued > 0 {
        context.metrics.deliveries_recovered(round.requeued as u64);
        context.progressed();
        context.waker.wake();
    }
    match relay::relay_all(&context.pool, context.statement_deadline, shutdown).await {
        Ok(deliveries) if deliveries > 0 => context.waker.wake(),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot relay operational events; retrying at the next pass"),
    }
    round.progressed()
}
