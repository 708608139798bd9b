//! The disk's own flush latency, measured beside a latency window. Every webhook's 202 waits
//! for a WAL flush, so when the machine's disk stops completing writes for a while, no
//! durable service on it can answer, or deliver, meanwhile. This probe makes that visible in
//! the same run: a thread writes 8 KiB and flushes it (fdatasync) at a steady rate, next to
//! the cluster's data directory, and records how late each flush completes, counted from
//! when it was due to start. A pause of the disk of D ms so shows up as it does for webhooks
//! arriving at a steady rate: every flush due during the pause waits for its end.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Flushes a second: a quarter of the latency windows' webhook rate, so that the probe adds
/// little to the disk's load, while its p99 still counts the same share of time stalled.
const FLUSHES_PER_SECOND: f64 = 50.0;
const BLOCK: usize = 8192;
/// The probe rewrites this many blocks in turn (1 MiB), so that flushes write data in
/// place and change no file size or allocation.
const BLOCKS: u64 = 128;

/// A running probe; `finish` stops it and returns what it measured (dropping it stops it too).
pub struct DiskProbe {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<std::io::Result<Vec<f64>>>>,
}

/// How late the probe's flushes completed, in ms from when each was due.
pub struct FlushLatency {
    pub p99: f64,
    pub max: f64,
}

impl std::fmt::Display for FlushLatency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p99 {:.1} ms, max {:.0} ms", self.p99, self.max)
    }
}

impl DiskProbe {
    /// Starts flushing to `path` (created, 1 MiB) in a thread of its own.
    pub fn start(path: PathBuf) -> std::io::Result<Self> {
        let mut file = File::create(&path)?;
        file.write_all(&vec![0u8; BLOCK * BLOCKS as usize])?;
        file.sync_all()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || flush_until(&file, &stopped));
        Ok(Self { stop, thread: Some(thread) })
    }

    /// Stops the probe and returns its figures. Its thread ends after the flush under way,
    /// which a pausing disk can hold for seconds: waited for off the async workers.
    pub async fn finish(mut self) -> anyhow::Result<FlushLatency> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("a probe is finished once");
        let joined = tokio::task::spawn_blocking(move || thread.join()).await?;
        let mut late = joined.map_err(|_| anyhow::anyhow!("the disk probe panicked"))??;
        anyhow::ensure!(!late.is_empty(), "the disk probe flushed nothing");
        late.sort_by(f64::total_cmp);
        Ok(FlushLatency { p99: super::percentile(&late, 0.99), max: late[late.len() - 1] })
    }
}

impl Drop for DiskProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Writes and flushes one block every 1/FLUSHES_PER_SECOND s until `stop`; returns how late
/// each flush completed, in ms. A flush that is already late starts at once.
fn flush_until(file: &File, stop: &AtomicBool) -> std::io::Result<Vec<f64>> {
    let block = vec![0x5au8; BLOCK];
    let interval = Duration::from_secs_f64(1.0 / FLUSHES_PER_SECOND);
    let started = Instant::now();
    let mut late = Vec::new();
    for n in 0u32.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let due = started + interval * n;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        file.write_all_at(&block, (u64::from(n) % BLOCKS) * BLOCK as u64)?;
        file.sync_data()?;
        late.push(due.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(late)
}
