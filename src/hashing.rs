//! A small thread pool of its own for password hashing.
//!
//! One argon2 verification is milliseconds of pure CPU and 19 MiB of memory.
//! Run on the async runtime, it would stall every other request on that
//! worker, `/metrics` included. So hashing gets threads of its own:
//!
//! * **One thread per core, and a permit per thread.** A request waits for a
//!   permit on the runtime (cheap, cancellable) before its job is handed to the
//!   pool, and the job keeps the permit until the hash is done, even if the
//!   client hangs up meanwhile: at most one hash per core is ever in the pool,
//!   memory stays bounded, and a client that hangs up while waiting costs
//!   nothing. The wait shows up honestly in the latency histogram.
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

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    permits: Arc<Semaphore>,
    threads: usize,
    jobs: Arc<Jobs>,
}

/// Jobs handed to the pool and not finished yet, and the most there ever were.
#[derive(Debug, Default)]
struct Jobs {
    now: AtomicUsize,
    peak: AtomicUsize,
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
            permits: Arc::new(Semaphore::new(threads)),
            threads,
            jobs: Arc::default(),
        }
    }

    /// Runs `job` on the pool once a thread is free, and returns its result.
    ///
    /// Dropping the returned future while it waits for a permit cancels the
    /// job; once the job is handed over it runs to the end, and the permit
    /// goes with it, so a caller that gives up never frees a core that is
    /// still busy.
    pub async fn run<T, F>(&self, job: F) -> Result<T, JobFailed>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        // The one place a request waits for hashing: where a bound on the
        // wait (load shedding) belongs.
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| JobFailed)?;
        let slot = Slot::take(permit, &self.jobs);
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let _ = answer.send(job());
            drop(slot);
        });
        answered.await.map_err(|_| JobFailed)
    }
}
// ANCHOR_END: pool

/// A job's place in the pool: its permit, given back when the job ends,
/// panics included.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    jobs: Arc<Jobs>,
}

impl Slot {
    fn take(permit: tokio::sync::OwnedSemaphorePermit, jobs: &Arc<Jobs>) -> Self {
        let now = jobs.now.fetch_add(1, Ordering::SeqCst) + 1;
        jobs.peak.fetch_max(now, Ordering::SeqCst);
        Self {
            _permit: permit,
            jobs: Arc::clone(jobs),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.jobs.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl HashingPool {
    /// Number of threads, and so of jobs that may be in the pool at once.
    #[must_use]
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The most jobs that were ever in the pool (running or queued) at once.
    /// Never more than [`threads`](Self::threads): the tests check it with
    /// clients that hang up mid-hash.
    #[must_use]
    pub fn peak_jobs(&self) -> usize {
        self.jobs.peak.load(Ordering::SeqCst)
    }
}

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
    async fn a_job_keeps_its_permit_when_its_caller_gives_up() {
        let pool = Arc::new(HashingPool::new(1));
        let (started, has_started) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let first = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move {
                pool.run(move || {
                    started.send(()).unwrap();
                    released.recv().unwrap();
                })
                .await
            }
        });
        has_started.await.unwrap();
        // The caller hangs up mid-job, as a client that disconnects does.
        first.abort();
        let _ = first.await;
        let second = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.run(|| 2).await }
        });
        // Time for the second job to be handed over, were the permit free.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(pool.peak_jobs(), 1, "a second job joined the first");
        release.send(()).unwrap();
        assert_eq!(second.await.unwrap().unwrap(), 2);
        assert_eq!(pool.peak_jobs(), 1);
    }

    #[tokio::test]
    async fn at_most_one_job_per_thread_runs_at_once() {
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
