//! The tasks an instance cannot work without (the claim loop, the outcome recorder, the
//! ingest writer, ...). Should one of them panic, the instance must not go on half alive:
//! without its outcome recorder every delivery would be sent again at each lease expiry,
//! for ever, while `/health` stayed green; without its ingest writer every webhook would be
//! refused. So a panic in such a task raises an [`Alarm`]: the instance stops as at a
//! SIGTERM and exits 1, for its supervisor (a container runtime, systemd) to start it
//! again. What the task held is lost with it: after a panic of the outcome recorder, the
//! outcomes of the sends under way are not written, and those deliveries are sent again
//! once their leases expire (at-least-once); after one of the ingest writer, the requests
//! waiting for it are answered 503.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Raised by the first essential task that panics; remembers which.
#[derive(Clone, Default)]
pub struct Alarm {
    raised: CancellationToken,
    task: Arc<OnceLock<&'static str>>,
}

impl Alarm {
    /// Returns once an essential task has panicked.
    pub async fn raised(&self) {
        self.raised.cancelled().await;
    }

    /// The essential task that panicked, if one did.
    pub fn task(&self) -> Option<&'static str> {
        self.task.get().copied()
    }

    fn raise(&self, task: &'static str, panic: &(dyn Any + Send)) {
        let message = panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("");
        tracing::error!(task, panic = message, "an essential task panicked; stopping the instance (exit 1) so that it is started again");
        let _ = self.task.set(task);
        self.raised.cancel();
    }
}

/// Spawns `task`, named `name` in the logs, raising `alarm` should it panic.
pub fn spawn_essential<F>(name: &'static str, alarm: &Alarm, task: F) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let alarm = alarm.clone();
    let task = async move {
        #[cfg(debug_assertions)]
        panic_if_asked(name);
        task.await
    };
    tokio::spawn(async move {
        if let Err(panic) = (CatchPanic { task: Box::pin(task) }).await {
            alarm.raise(name, panic.as_ref());
        }
    })
}

/// Debug builds (the tests') only: `WEBHOOKD_TEST_PANIC=<task name>` makes that essential
/// task panic as it starts. No input is known to make one panic, and the tests must see a
/// real task's panic stop the instance.
#[cfg(debug_assertions)]
fn panic_if_asked(name: &str) {
    if std::env::var("WEBHOOKD_TEST_PANIC").is_ok_and(|asked| asked == name) {
        panic!("WEBHOOKD_TEST_PANIC={name}");
    }
}

/// Polls a future, turning a panic in it into an error. (Boxed: the essential tasks are
/// few, long-lived, and some are large.)
struct CatchPanic<F> {
    task: Pin<Box<F>>,
}

impl<F: Future<Output = ()>> Future for CatchPanic<F> {
    type Output = Result<(), Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        // Unwind safety: after a panic the task is never polled again, only dropped.
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.task.as_mut().poll(context))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_raises_the_alarm_naming_the_task_and_a_return_does_not() {
        let alarm = Alarm::default();
        spawn_essential("returns", &alarm, async { tokio::task::yield_now().await }).await.unwrap();
        assert_eq!(alarm.task(), None);

        let panics = spawn_essential("panics", &alarm, async {
            tokio::task::yield_now().await;
            panic!("on purpose");
        });
        tokio::time::timeout(std::time::Duration::from_secs(5), alarm.raised()).await.expect("the alarm is raised");
        assert_eq!(alarm.task(), Some("panics"));
        panics.await.expect("the panic is caught, not passed on to whoever awaits the task");
    }
}
