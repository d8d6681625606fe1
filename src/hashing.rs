//! A small thread pool of its own for password hashing.
//!
//! One argon2 verification is milliseconds of pure CPU and 19 MiB of memory.
//! Run on the async runtime, it would stall every other request on that
//! worker, `/metrics` included. So hashing gets threads of its own:
//!
//! * **One thread per core, and a permit per thread.** A request waits for a
//!   permit on the runtime (cheap, cancellable) before its job is handed to the
//!   pool, so at most one hash per core runs, memory stays bounded, and a
//!   client that hangs up while waiting costs nothing. The wait shows up
//!   honestly in the latency histogram.
//! * **The pool's threads run at the lowest priority** (Linux: nice 19). When
//!   logins saturate every core, the runtime threads, which only ever run
//!   briefly, still get a core the moment a scrape or a cheap request arrives,
//!   and the hashes take all the CPU that is left. Measured in the appendix
//!   "What monitoring costs": scrape latency under a login flood drops several
//!   fold, login throughput does not. The price: on a shared host, hashing
//!   also yields to every other busy process.
//!
//! A pool of our own (rather than tokio's `spawn_blocking`) keeps that lower
//! priority away from any other blocking work the application does.

use tokio::sync::Semaphore;

/// The job did not complete: it panicked, so there is no answer.
#[derive(Debug, thiserror::Error)]
#[error("the hashing job did not complete")]
pub struct JobFailed;

// ANCHOR: pool
/// Threads for CPU-heavy jobs, with one permit per thread.
#[derive(Debug)]
pub struct HashingPool {
    pool: rayon::ThreadPool,
    permits: Semaphore,
}

impl HashingPool {
    /// A pool with one thread per core.
    #[must_use]
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
    }

    /// A pool with `threads` threads at the lowest priority.
    #[must_use]
    pub fn new(threads: usize) -> Self {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|index| format!("hashing-{index}"))
            .start_handler(|_| lower_priority())
            // Without a handler rayon aborts the process on a panic; with it
            // the job's answer channel is dropped and the caller sees JobFailed.
            .panic_handler(|_| tracing::error!("a hashing job panicked"))
            .build()
            .expect("building the hashing thread pool");
        Self {
            pool,
            permits: Semaphore::new(threads),
        }
    }

    /// Runs `job` on the pool once a thread is free, and returns its result.
    pub async fn run<T, F>(&self, job: F) -> Result<T, JobFailed>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|_| JobFailed)?;
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let _ = answer.send(job());
        });
        answered.await.map_err(|_| JobFailed)
    }
}
// ANCHOR_END: pool

// ANCHOR: priority
/// Lowers the calling thread to the lowest priority (Linux: nice 19, which
/// belongs to the thread, not the process). Best effort: where it is not
/// allowed, only scrape latency under load suffers.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        const LOWEST: i32 = 19;
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), LOWEST);
    }
}
// ANCHOR_END: priority

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_return_their_result() {
        let pool = HashingPool::new(2);
        assert_eq!(pool.run(|| 6 * 7).await.unwrap(), 42);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_not_an_abort() {
        let pool = HashingPool::new(1);
        let failed = pool.run(|| -> u8 { panic!("bug in a job") }).await;
        assert!(failed.is_err());
        assert_eq!(pool.run(|| 1).await.unwrap(), 1, "the pool still works");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn pool_threads_run_at_the_lowest_priority() {
        let pool = HashingPool::new(1);
        let nice = pool
            .run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(nice, 19);
        let runtime_nice =
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        assert!(runtime_nice < 19, "the caller's thread keeps its priority");
    }

    #[tokio::test]
    async fn at_most_one_job_per_thread_runs_at_once() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pool = Arc::new(HashingPool::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let jobs = (0..8).map(|_| {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            tokio::spawn(async move {
                pool.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            })
        });
        for job in jobs.collect::<Vec<_>>() {
            job.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }
}
