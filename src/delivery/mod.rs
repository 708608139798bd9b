//! The delivery engine: claim due deliveries, send them, record what happened.
//!
//! ```text
//!  ingest ──commit──▶ deliveries ◀──claim (SKIP LOCKED, lease)── claim loop
//!     │   └─ written claimed when a send slot is free (handoff) ──┐ │ spawn ≤ concurrency
//!     └─ wake() ─▶ local Notify ──────────────────────────────────┼─┘
//!                                                      send tasks ◀┘
//!              └▶ NOTIFY (debounced) ─▶ other instances' listeners
//!  send task ──HTTP──▶ receiver;  outcome ──▶ recorder ──one statement per batch──▶ DB
//! ```

pub mod backlog;
mod dispatch;
mod handoff;
mod in_flight;
mod listener;
mod operations;
mod recorder;
mod recovery;
mod relay;
mod scheduler;
pub(crate) mod ssrf;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::DeliverySettings;
use crate::domain::SubscriptionId;
use crate::metrics::Metrics;
use crate::subscription_cache::SubscriptionCache;
use crate::supervision::{spawn_essential, Alarm};

pub use dispatch::{build_client, install_tls_provider};
pub use handoff::{Handoff, HeldSlot};
pub use listener::{subscribe, Subscribed};

/// The NOTIFY channel on which instances tell each other that work is due.
pub const WORK_CHANNEL: &str = "webhookd_work";

/// Wakes delivery workers after new work was committed: at once in this process, and in
/// other instances through a NOTIFY sent at most every few milliseconds (a NOTIFY in every
/// ingest transaction would serialise commits on PostgreSQL's notification lock).
#[derive(Clone)]
pub struct Waker {
    local: Arc<Notify>,
    remote: Arc<Notify>,
    operations: Arc<Notify>,
    backlog: Arc<backlog::Requests>,
}

impl Waker {
    pub fn new() -> Self {
        Self {
            local: Arc::new(Notify::new()),
            remote: Arc::new(Notify::new()),
            operations: Arc::new(Notify::new()),
            backlog: Arc::default(),
        }
    }

    pub fn wake(&self) {
        self.local.notify_one();
        self.remote.notify_one();
    }

    /// Wakes this instance's operations task: a recovery was started or an operational
    /// event queued. (Other instances find such work at their next poll.)
    pub fn wake_operations(&self) {
        self.operations.notify_one();
    }

    /// Asks this instance's backlog task to move the rest of `subscription`'s waiting
    /// deliveries: its state changed, and its transaction moved a whole batch
    /// ([`backlog`]), so more may be waiting.
    pub fn move_backlog(&self, subscription: SubscriptionId) {
        self.backlog.add(subscription);
    }
}

impl Default for Waker {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything a delivery task needs.
pub struct DeliveryContext {
    pub pool: PgPool,
    /// The outcome recorder's connection comes from here (`db::connect_writers`).
    pub writers: PgPool,
    pub client: reqwest::Client,
    pub subscriptions: SubscriptionCache,
    pub settings: DeliverySettings,
    /// Longest the engine waits for one statement's answer (`db::within_deadline`).
    pub statement_deadline: Duration,
    pub allow_private_targets: bool,
    pub metrics: Arc<Metrics>,
    pub waker: Waker,
    /// Counts the engine's writes to deliveries (outcomes, releases, recoveries), so that a
    /// caller can wait for the queue to move instead of polling it (the tests do).
    pub progress: watch::Sender<u64>,
}

impl DeliveryContext {
    /// Something the engine wrote to deliveries was committed.
    fn progressed(&self) {
        self.progress.send_modify(|count| *count = count.wrapping_add(1));
    }
}

/// The running engine's tasks.
pub struct Engine {
    claim_loop: Option<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    in_flight: TaskTracker,
    abort_sends: CancellationToken,
    recorder: recorder::RecorderHandle,
    handoff: Option<Handoff>,
}

impl Engine {
    /// Starts the LISTEN task, the NOTIFY sender and the backlog task, and, unless the
    /// concurrency is 0 (an API-only instance), the claim loop, the recorder and the
    /// operations task (recoveries, operational events). Everything stops claiming when
    /// `shutdown` is cancelled; see [`Engine::stop`]. A panic in any of those tasks raises
    /// `alarm` (crate::supervision).
    pub fn start(context: DeliveryContext, listener: Option<Subscribed>, waker: &Waker, shutdown: CancellationToken, alarm: &Alarm) -> Self {
        let context = Arc::new(context);
        let (recorder, recorder_sender) = recorder::spawn(context.clone(), waker.local.clone(), alarm);
        let in_flight = TaskTracker::new();
        let abort_sends = CancellationToken::new();
        let senders = worker::Senders::new(context.clone(), in_flight.clone(), shutdown.clone(), abort_sends.clone(), recorder_sender);
        let delivers = context.settings.concurrency > 0;
        let handoff = delivers.then(|| Handoff::new(senders.clone(), waker.local.clone()));
        let claim_loop = delivers.then(|| {
            let claim_loop = worker::claim_loop(worker::ClaimLoop { senders, wake: waker.local.clone(), shutdown: shutdown.clone() });
            spawn_essential("claim loop", alarm, claim_loop)
        });
        let mut background = vec![
            spawn_essential("change listener", alarm, listener::listen(
                context.pool.clone(),
                context.statement_deadline,
                listener,
                waker.local.clone(),
                context.subscriptions.clone(),
                shutdown.clone(),
            )),
            spawn_essential(
                "wake-up sender",
                alarm,
                listener::notify_others(context.pool.clone(), context.statement_deadline, waker.remote.clone(), shutdown.clone()),
            ),
            spawn_essential("backlog mover", alarm, backlog::run(context.clone(), shutdown.clone())),
        ];
        if context.settings.concurrency > 0 {
            background.push(spawn_essential("operations", alarm, operations::run(context.clone(), shutdown)));
        }
        Self { claim_loop, background, in_flight, abort_sends, recorder, handoff }
    }

    /// Where ingest hands fresh webhooks to this instance's senders (`None`: an API-only
    /// instance, which delivers nothing).
    pub fn handoff(&self) -> Option<Handoff> {
        self.handoff.clone()
    }

    /// After shutdown was signalled: waits up to `grace` for in-flight deliveries, releases
    /// the ones still running back to the queue, and writes every recorded outcome.
    pub async fn stop(self, grace: Duration) {
        if let Some(handoff) = &self.handoff {
            handoff.close();
        }
        if let Some(claim_loop) = self.claim_loop {
            let _ = claim_loop.await;
        }
        self.in_flight.close();
        if tokio::time::timeout(grace, self.in_flight.wait()).await.is_err() {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over; releasing in-flight deliveries");
            self.abort_sends.cancel();
            self.in_flight.wait().await;
        }
        self.recorder.finish().await;
        for task in self.background {
            let _ = task.await;
        }
    }
}

/// Whether a notification has come, without waiting for one (taking it if it has).
pub(crate) fn notified_already(notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>) -> bool {
    use std::future::Future;
    notified.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())).is_ready()
}
