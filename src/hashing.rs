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
//! * **A login never waits longer than a bound.** Under a flood, a queue
//!   without bound makes every login slow and holds memory for each waiting
//!   request. A login that has not got a thread within the bound it is given
//!   is refused ([`Refused::Shed`]), so the logins that are answered stay
//!   fast. It is refused *at* the bound, not before: a refusal that comes at
//!   once invites the client straight back, and a flood of instant refusals
//!   took more CPU than the hashing it protected when we measured it (the
//!   book's Step 8); refused after the wait, each connection can come back a
//!   few times a second at most.
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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Why a job did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// It would have waited longer than allowed for a thread: try again after
    /// `retry_after`, when the queue ahead should be gone.
    #[error("the hashing queue is too long: retry after {retry_after:?}")]
    Shed {
        /// About when the queue ahead will have drained.
        retry_after: Duration,
    },
    /// The job panicked, so there is no answer.
    #[error("the hashing job did not complete")]
    Failed,
}

/// The time per job assumed before any job has run: an argon2 verification
/// with the crate's defaults on a current core.
const FIRST_GUESS: Duration = Duration::from_millis(15);

// ANCHOR: pool
/// Threads for CPU-heavy jobs, with one permit per thread.
#[derive(Debug)]
pub struct HashingPool {
    pool: rayon::ThreadPool,
    permits: Arc<Semaphore>,
    threads: usize,
    jobs: Arc<Jobs>,
}

/// What the pool is doing: jobs in it and waiting for it, and how long jobs take.
#[derive(Debug, Default)]
struct Jobs {
    /// How many were handed to the pool and are not finished.
    in_pool: AtomicUsize,
    /// The most there ever were in the pool at once.
    peak_in_pool: AtomicUsize,
    /// Waiting for a permit.
    queued: AtomicUsize,
    /// Moving average of a job's duration, in nanoseconds (0: none yet).
    average_nanos: AtomicU64,
    /// The longest any job waited for its permit, in nanoseconds.
    longest_wait_nanos: AtomicU64,
}

impl Jobs {
    fn average(&self) -> Duration {
        match self.average_nanos.load(Ordering::Relaxed) {
            0 => FIRST_GUESS,
            nanos => Duration::from_nanos(nanos),
        }
    }

    /// Folds one job's duration into the moving average (weight 1/8).
    fn record(&self, took: Duration) {
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .average_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    took
                } else {
                    old - old / 8 + took / 8
                })
            });
    }
}

/// Keeps the count of waiting jobs right, however the wait ends.
struct Waiting<'a>(&'a Jobs);

impl<'a> Waiting<'a> {
    fn start(jobs: &'a Jobs) -> Self {
        jobs.queued.fetch_add(1, Ordering::SeqCst);
        Self(jobs)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::SeqCst);
    }
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
            // the job's answer channel is dropped and the caller sees Refused::Failed.
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

    /// Runs `job` on the pool once a thread is free, and returns its result,
    /// unless the wait for a thread would be longer than `max_wait`.
    ///
    /// Dropping the returned future while it waits for a permit cancels the
    /// job; once the job is handed over it runs to the end, and the permit
    /// goes with it, so a caller that gives up never frees a core that is
    /// still busy.
    pub async fn run<T, F>(&self, job: F, max_wait: Duration) -> Result<T, Refused>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        // ANCHOR: shed
        let waiting = Waiting::start(&self.jobs);
        let asked = Instant::now();
        let permit = tokio::time::timeout(max_wait, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| Refused::Shed {
                retry_after: self.expected_wait(),
            })?
            .map_err(|_| Refused::Failed)?;
        drop(waiting);
        // ANCHOR_END: shed
        let waited = u64::try_from(asked.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.jobs
            .longest_wait_nanos
            .fetch_max(waited, Ordering::Relaxed);
        let slot = Slot::take(permit, &self.jobs);
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let started = Instant::now();
            let _ = answer.send(job());
            slot.jobs.record(started.elapsed());
            drop(slot);
        });
        answered.await.map_err(|_| Refused::Failed)
    }

    /// How long a job arriving now would wait for a thread: the jobs ahead of
    /// it (waiting, and running beyond the free threads) shared among the
    /// threads, at the recent time per job. What a refused client is told to
    /// wait (`Retry-After`).
    #[must_use]
    pub fn expected_wait(&self) -> Duration {
        let ahead = self.jobs.queued.load(Ordering::SeqCst).saturating_sub(1)
            + self.jobs.in_pool.load(Ordering::SeqCst);
        let rounds = ahead / self.threads.max(1);
        self.jobs.average() * u32::try_from(rounds).unwrap_or(u32::MAX)
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
        let in_pool = jobs.in_pool.fetch_add(1, Ordering::SeqCst) + 1;
        jobs.peak_in_pool.fetch_max(in_pool, Ordering::SeqCst);
        Self {
            _permit: permit,
            jobs: Arc::clone(jobs),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.jobs.in_pool.fetch_sub(1, Ordering::SeqCst);
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
    /// clients that hang up mid-hash. (For tests: the `testing` feature.)
    #[cfg(any(test, feature = "testing"))]
    #[must_use]
    pub fn peak_jobs(&self) -> usize {
        self.jobs.peak_in_pool.load(Ordering::SeqCst)
    }

    /// A handle on the pool's load that outlives a borrow of the pool, for the
    /// gauges the metrics read at each scrape.
    #[must_use]
    pub fn load(&self) -> Load {
        Load(Arc::clone(&self.jobs))
    }

    /// The longest any job has waited for a thread. Never much more than the
    /// `max_wait` the callers give: the tests check it under a flood. (For
    /// tests: the `testing` feature.)
    #[cfg(any(test, feature = "testing"))]
    #[must_use]
    pub fn longest_wait(&self) -> Duration {
        Duration::from_nanos(self.jobs.longest_wait_nanos.load(Ordering::Relaxed))
    }
}

/// How busy a [`HashingPool`] is; see [`HashingPool::load`].
#[derive(Debug, Clone)]
pub struct Load(Arc<Jobs>);

impl Load {
    /// Jobs in the pool now.
    #[must_use]
    pub fn busy(&self) -> usize {
        self.0.in_pool.load(Ordering::SeqCst)
    }

    /// Jobs waiting for a thread now.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.0.queued.load(Ordering::SeqCst)
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

    /// Longer than any test: no bound on the wait.
    const NO_BOUND: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn jobs_return_their_result() {
        let pool = HashingPool::new(2);
        assert_eq!(pool.run(|| 6 * 7, NO_BOUND).await.unwrap(), 42);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_not_an_abort() {
        let pool = HashingPool::new(1);
        let failed = pool
            .run(|| -> u8 { panic!("bug in a job") }, NO_BOUND)
            .await;
        assert!(matches!(failed, Err(Refused::Failed)));
        assert_eq!(
            pool.run(|| 1, NO_BOUND).await.unwrap(),
            1,
            "the pool still works"
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn pool_threads_run_at_the_lowest_priority() {
        use rustix::process::getpriority_process;
        // What this process started with (`nice cargo test` raises it): the
        // runtime's threads keep it, whatever it is.
        let process = getpriority_process(None).unwrap();
        let pool = HashingPool::new(1);
        let nice = pool
            .run(
                || getpriority_process(Some(rustix::thread::gettid())),
                NO_BOUND,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(nice, 19);
        let runtime = getpriority_process(Some(rustix::thread::gettid())).unwrap();
        assert_eq!(
            runtime, process,
            "the caller's thread keeps the process's priority"
        );
    }

    /// A job that holds its thread until told to finish.
    fn held(
        pool: &Arc<HashingPool>,
    ) -> (
        tokio::task::JoinHandle<Result<(), Refused>>,
        std::sync::mpsc::Sender<()>,
        tokio::sync::oneshot::Receiver<()>,
    ) {
        let (started, has_started) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let job = tokio::spawn({
            let pool = Arc::clone(pool);
            async move {
                pool.run(
                    move || {
                        started.send(()).unwrap();
                        let _ = released.recv();
                    },
                    NO_BOUND,
                )
                .await
            }
        });
        (job, release, has_started)
    }

    #[tokio::test]
    async fn a_job_keeps_its_permit_when_its_caller_gives_up() {
        let pool = Arc::new(HashingPool::new(1));
        let (first, release, has_started) = held(&pool);
        has_started.await.unwrap();
        // The caller hangs up mid-job, as a client that disconnects does.
        first.abort();
        let _ = first.await;
        let second = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.run(|| 2, NO_BOUND).await }
        });
        // The second job is queued behind the first, which still holds the thread.
        while pool.load().queued() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.load().busy(), 1);
        assert_eq!(pool.peak_jobs(), 1, "a second job joined the first");
        release.send(()).unwrap();
        assert_eq!(second.await.unwrap().unwrap(), 2);
        assert_eq!(pool.peak_jobs(), 1);
    }

    #[tokio::test]
    async fn at_most_one_job_per_thread_is_in_the_pool() {
        let pool = Arc::new(HashingPool::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        // Jobs pass a two-party barrier: each needs another job running beside
        // it, which proves two run together, without any sleep.
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let jobs = (0..8).map(|_| {
            let (pool, running, peak, barrier) =
                (pool.clone(), running.clone(), peak.clone(), barrier.clone());
            tokio::spawn(async move {
                pool.run(
                    move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        barrier.wait();
                        running.fetch_sub(1, Ordering::SeqCst);
                    },
                    NO_BOUND,
                )
                .await
            })
        });
        for job in jobs.collect::<Vec<_>>() {
            job.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(pool.peak_jobs(), 2);
    }

    #[tokio::test]
    async fn a_job_that_gets_no_thread_within_the_bound_is_refused() {
        let pool = Arc::new(HashingPool::new(1));
        let (first, release, has_started) = held(&pool);
        has_started.await.unwrap();
        // The only thread is busy with a job that does not end.
        let bound = Duration::from_millis(100);
        let refused = pool.run(|| (), bound).await;
        let Err(Refused::Shed { retry_after }) = refused else {
            panic!("expected a refusal, got {refused:?}");
        };
        assert!(retry_after >= FIRST_GUESS, "one job ahead: {retry_after:?}");
        assert_eq!(pool.load().queued(), 0);
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        assert!(
            pool.longest_wait() < bound,
            "only jobs that got a thread count"
        );
    }
}
