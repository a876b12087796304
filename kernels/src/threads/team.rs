//! A team of worker threads that spin between jobs, behind [`super::run_parts`].
//!
//! Why not a rayon scope: after a job, a rayon worker yields a few dozen times and then sleeps
//! on a futex, so the next GEMM has to wake it, and waking an idle virtual CPU takes 10 to 50
//! microseconds. At 128 x 384 x 1536 (60 microseconds of int8 work on one AMX core) that made
//! two threads slower than one. OpenMP runtimes and onnxruntime's pool keep their workers
//! spinning for a while after each parallel region instead; so does this team, for
//! `LITHE_SPIN_US` microseconds (default [`DEFAULT_SPIN_US`]), and then they park until the next
//! job.
//!
//! Protocol: one owner at a time (the caller holding the team's lock) writes the job, resets
//! `done` and publishes a new ticket (a sequence number and the part count in one word); each
//! worker whose index is below the ticket's part count runs its part and counts itself in
//! `done`; the owner runs part 0 itself and returns once every other part has counted. The part
//! count travels in the ticket, not beside it: a worker without a part in the job it saw must
//! not read a part count that a later job may already have written, or it would run a part of
//! a job it never acquired. A worker that parks first raises its `sleeping` flag and re-reads
//! the ticket (both sequentially consistent), and the owner, after publishing the ticket,
//! unparks every worker whose flag is up: one of the two always sees the other's write, so no
//! wake-up is lost.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long a worker spins for the next job before parking, when `LITHE_SPIN_US` is unset.
pub const DEFAULT_SPIN_US: u64 = 200;

/// Bits of a ticket that hold the part count.
const PART_BITS: u32 = 16;
/// The most parts one job may have.
pub(crate) const MAX_PARTS: usize = (1 << PART_BITS) - 1;

/// A part function with its lifetime erased: it is only called between the owner's post and
/// the owner's wait for `done`, while the owner's borrow is alive.
type JobFn = *const (dyn Fn(usize) + Sync + 'static);

/// What the owner and the workers share.
struct Shared {
    /// The current job's ticket: `sequence << PART_BITS | parts`, new for every job; a worker
    /// acts on each ticket it has not seen.
    ticket: AtomicUsize,
    /// The current job: written by the owner before the ticket's release, read by workers after
    /// its acquire.
    job: UnsafeCell<Option<JobFn>>,
    /// Workers that have finished their part of the current job.
    done: AtomicUsize,
    /// The first panic of the current job's worker parts, rethrown on the owner.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// How long workers spin before parking.
    spin: Duration,
}

// SAFETY: `job` is written only by the owner (one at a time, under the team's lock) while no
// worker reads it: before the ticket is published, or after every worker of the previous job has
// counted itself in `done`. The function it points to is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced under that protocol.
unsafe impl Send for Shared {}

/// One worker as the owner sees it.
struct Worker {
    thread: Thread,
    sleeping: Arc<AtomicBool>,
}

/// The team: worker `i` (from 1) runs part `i` of each job with more than `i` parts.
pub(crate) struct Team {
    shared: Arc<Shared>,
    workers: Vec<Worker>,
    /// The last job's sequence number.
    sequence: usize,
}

impl Team {
    /// A team with no workers yet (they are spawned by [`Team::run`] as jobs need them) whose
    /// workers spin for `spin` before parking.
    pub(crate) fn new(spin: Duration) -> Self {
        Team {
            shared: Arc::new(Shared {
                ticket: AtomicUsize::new(0),
                job: UnsafeCell::new(None),
                done: AtomicUsize::new(0),
                panic: Mutex::new(None),
                spin,
            }),
            workers: Vec::new(),
            sequence: 0,
        }
    }

    /// The spin time from `LITHE_SPIN_US`, else [`DEFAULT_SPIN_US`].
    pub(crate) fn spin_from_env() -> Duration {
        Duration::from_micros(super::env_number("LITHE_SPIN_US").unwrap_or(DEFAULT_SPIN_US))
    }

    /// Runs `f(0)`, ..., `f(parts - 1)`, `f(0)` on the calling thread, and returns when all
    /// have returned; a panic in any part is rethrown here after every part has finished.
    /// `parts` is at most [`MAX_PARTS`].
    pub(crate) fn run(&mut self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        assert!(parts <= MAX_PARTS, "{parts} parts: at most {MAX_PARTS}");
        if parts <= 1 {
            f(0);
            return;
        }
        self.spawn_up_to(parts - 1);
        let shared = &*self.shared;
        // SAFETY: lifetime erasure only; the pointer is dereferenced by workers between the
        // ticket below and their count in `done`, and this function does not return (or
        // unwind) before `done` reaches parts - 1.
        let job: &'static (dyn Fn(usize) + Sync) = unsafe {
            std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f)
        };
        let job: JobFn = job;
        // SAFETY: no worker reads `job` now: the previous job's workers have all counted
        // themselves, and a worker reads it only for a ticket with a part for it (the one below).
        unsafe { *shared.job.get() = Some(job) };
        shared.done.store(0, Ordering::Relaxed);
        self.sequence = self.sequence.wrapping_add(1) & (usize::MAX >> PART_BITS);
        shared
            .ticket
            .store(self.sequence << PART_BITS | parts, Ordering::SeqCst);
        for w in &self.workers[..parts - 1] {
            if w.sleeping.load(Ordering::SeqCst) {
                w.thread.unpark();
            }
        }
        let own = panic::catch_unwind(AssertUnwindSafe(|| f(0)));
        let mut waits = 0u32;
        while shared.done.load(Ordering::Acquire) < parts - 1 {
            // The other parts are running; yield only if they take very long (an oversubscribed
            // machine, where spinning would steal their core).
            waits = waits.saturating_add(1);
            if waits > 1 << 16 {
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        // SAFETY: every worker of this job has counted itself; none reads `job` until the next.
        unsafe { *shared.job.get() = None };
        let worker_panic = shared
            .panic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Err(payload) = own {
            panic::resume_unwind(payload);
        }
        if let Some(payload) = worker_panic {
            panic::resume_unwind(payload);
        }
    }

    /// Spawns workers until there are `count`.
    fn spawn_up_to(&mut self, count: usize) {
        while self.workers.len() < count {
            let index = self.workers.len() + 1;
            let shared = self.shared.clone();
            let sleeping = Arc::new(AtomicBool::new(false));
            let flag = sleeping.clone();
            // The ticket the worker starts from: no job is posted while the owner spawns.
            let seen = shared.ticket.load(Ordering::SeqCst);
            let handle = thread::Builder::new()
                .name(format!("lithe-team-{index}"))
                .spawn(move || worker_loop(&shared, &flag, index, seen))
                .expect("failed to spawn a lithe worker thread");
            self.workers.push(Worker {
                thread: handle.thread().clone(),
                sleeping,
            });
        }
    }
}

/// A worker's life: wait for a new ticket, run its part if the job has one for it, repeat.
fn worker_loop(shared: &Shared, sleeping: &AtomicBool, index: usize, mut seen: usize) {
    loop {
        seen = wait_for_job(shared, sleeping, seen);
        if index >= seen & MAX_PARTS {
            // No part here; nothing else of this job may be read (see the module docs).
            continue;
        }
        // SAFETY: the ticket's acquire in `wait_for_job` ordered the owner's write of the job
        // before this read, and the owner neither changes nor drops it until this worker counts
        // itself.
        let job = unsafe { (*shared.job.get()).expect("a posted job") };
        // SAFETY: as above: the function outlives this call.
        let result = panic::catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(index) }));
        if let Err(payload) = result {
            shared
                .panic
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(payload);
        }
        shared.done.fetch_add(1, Ordering::Release);
    }
}

/// Spins until the ticket moves past `seen`, parking once the spin time is spent; returns the
/// new ticket.
fn wait_for_job(shared: &Shared, sleeping: &AtomicBool, seen: usize) -> usize {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let ticket = shared.ticket.load(Ordering::Acquire);
        if ticket != seen {
            return ticket;
        }
        spins = spins.wrapping_add(1);
        // Reading the clock costs more than a spin; look at it every 64 spins.
        if spins.is_multiple_of(64) && start.elapsed() >= shared.spin {
            sleeping.store(true, Ordering::SeqCst);
            if shared.ticket.load(Ordering::SeqCst) == seen {
                // Returns on the owner's unpark (or spuriously: the loop checks again).
                thread::park();
            }
            sleeping.store(false, Ordering::SeqCst);
        } else {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `jobs` jobs of `parts` parts on `team` and checks each part ran exactly once per job.
    fn run_counted(team: &mut Team, parts: usize, jobs: usize, pause: Duration) {
        let runs: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
        for _ in 0..jobs {
            team.run(parts, &|part| {
                runs[part].fetch_add(1, Ordering::SeqCst);
            });
            thread::sleep(pause);
        }
        let runs: Vec<usize> = runs.iter().map(|r| r.load(Ordering::SeqCst)).collect();
        assert_eq!(runs, vec![jobs; parts], "{parts} parts");
    }

    #[test]
    fn spinning_and_parked_workers_both_take_every_job() {
        // No spin: every job finds its workers parked (or about to park) and must wake them.
        let mut parking = Team::new(Duration::ZERO);
        run_counted(&mut parking, 3, 50, Duration::from_micros(100));
        // A long spin: jobs arrive while the workers spin.
        let mut spinning = Team::new(Duration::from_millis(50));
        run_counted(&mut spinning, 3, 200, Duration::ZERO);
        // Fewer parts than workers, then more: idle workers skip, new ones join.
        run_counted(&mut spinning, 2, 20, Duration::ZERO);
        run_counted(&mut spinning, 4, 20, Duration::ZERO);
        assert_eq!(spinning.workers.len(), 3);
    }

    #[test]
    fn part_counts_that_change_every_job_run_each_part_once() {
        // A worker with no part in one job must not act on the next job's part count before it
        // has seen that job: alternating counts with workers spinning is where that would show,
        // as a part run twice or on a finished job.
        let mut team = Team::new(Duration::from_millis(50));
        let jobs = if cfg!(miri) { 60 } else { 3000 };
        let runs: Vec<AtomicUsize> = (0..4).map(|_| AtomicUsize::new(0)).collect();
        let mut want = [0usize; 4];
        for job in 0..jobs {
            let parts = [2, 4, 3, 2, 1, 4][job % 6];
            let seen: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
            team.run(parts, &|part| {
                seen[part].fetch_add(1, Ordering::SeqCst);
                runs[part].fetch_add(1, Ordering::SeqCst);
            });
            let seen: Vec<usize> = seen.iter().map(|r| r.load(Ordering::SeqCst)).collect();
            assert_eq!(seen, vec![1; parts], "job {job}, {parts} parts");
            for w in &mut want[..parts] {
                *w += 1;
            }
        }
        // No part ran after its job returned.
        thread::sleep(Duration::from_millis(5));
        let runs: Vec<usize> = runs.iter().map(|r| r.load(Ordering::SeqCst)).collect();
        assert_eq!(runs, want);
    }

    #[test]
    fn a_panicking_part_reaches_the_caller_after_all_parts_finish() {
        let mut team = Team::new(Duration::from_millis(1));
        for bad in [0, 1, 2] {
            let finished = AtomicUsize::new(0);
            let result = panic::catch_unwind(AssertUnwindSafe(|| {
                team.run(3, &|part| {
                    if part == bad {
                        panic!("part {part} fails");
                    }
                    thread::sleep(Duration::from_millis(2));
                    finished.fetch_add(1, Ordering::SeqCst);
                })
            }));
            let payload = result.expect_err("the part's panic must reach the caller");
            let message = payload
                .downcast_ref::<String>()
                .expect("a formatted message");
            assert_eq!(message, &format!("part {bad} fails"));
            // The caller returned only after the two other parts were done.
            assert_eq!(finished.load(Ordering::SeqCst), 2);
        }
        // The team still works.
        run_counted(&mut team, 3, 10, Duration::ZERO);
    }
}
