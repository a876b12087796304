//! The threads that parallel kernels split their work over.
//!
//! Kernels themselves are single-threaded; the GEMM drivers one level up split M or N blocks
//! across a team of workers that spin between calls (`run_parts`, see `team`), and per-sample
//! ops map over a rayon pool ([`install`], [`map`]). The thread count is, in order of
//! precedence: [`set_num_threads`], the `LITHE_THREADS` variable, or the number of CPUs.

use rayon::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::{Arc, Mutex, TryLockError};

mod team;

struct PoolState {
    threads: usize,
    /// One pool per size asked for (the GEMM drivers may ask for fewer threads than
    /// [`num_threads`]), so alternating sizes never respawns threads.
    pools: Vec<Arc<ThreadPool>>,
}

static STATE: Mutex<PoolState> = Mutex::new(PoolState {
    threads: 0,
    pools: Vec::new(),
});

/// The whole number in the environment variable `name`, if it is set and parses.
fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn default_threads() -> usize {
    env_number::<usize>("LITHE_THREADS")
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Sets how many threads parallel kernels use; `0` restores the default (`LITHE_THREADS`, else
/// the number of CPUs). Takes effect for calls that start afterwards.
pub fn set_num_threads(n: usize) {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let n = if n == 0 { default_threads() } else { n };
    state.threads = n;
}

/// How many threads parallel kernels currently use.
pub fn num_threads() -> usize {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if state.threads == 0 {
        state.threads = default_threads();
    }
    state.threads
}

/// A pool of exactly `n` threads (`n >= 1`), spawned on first use and kept.
pub(crate) fn pool(n: usize) -> Arc<ThreadPool> {
    let n = n.max(1);
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pool) = state.pools.iter().find(|p| p.current_num_threads() == n) {
        return pool.clone();
    }
    let pool = Arc::new(
        ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("lithe-{i}"))
            .build()
            .expect("failed to spawn lithe's thread pool"),
    );
    state.pools.push(pool.clone());
    pool
}

/// Runs `f(0)`, ..., `f(parts - 1)` in parallel and returns when all have returned: `f(0)` on the
/// calling thread, the others on lithe's team of spinning workers ([`team`]), or, when the team
/// is busy (another thread's call, or a call from inside a part), on a rayon pool of
/// `parts - 1` threads. The caller works on its part while the others start instead of
/// sleeping until all of them are done.
pub(crate) fn run_parts(parts: usize, f: impl Fn(usize) + Sync) {
    if parts <= 1 {
        f(0);
        return;
    }
    if parts > team::MAX_PARTS {
        return run_parts_on_pool(parts, &f);
    }
    static TEAM: Mutex<Option<team::Team>> = Mutex::new(None);
    let mut guard = match TEAM.try_lock() {
        Ok(guard) => guard,
        // A part panicked on an earlier call: the team finished that job before rethrowing, so
        // its state is whole.
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => return run_parts_on_pool(parts, &f),
    };
    guard
        .get_or_insert_with(|| team::Team::new(team::Team::spin_from_env()))
        .run(parts, &f);
}

/// [`run_parts`] on a rayon pool of `parts - 1` threads, part 0 on the caller.
fn run_parts_on_pool(parts: usize, f: &(dyn Fn(usize) + Sync)) {
    pool(parts - 1).in_place_scope(|scope| {
        for part in 1..parts {
            scope.spawn(move |_| f(part));
        }
        f(0);
    });
}

/// Runs `f` on lithe's pool of [`num_threads`] threads, so rayon's parallel iterators inside it
/// use that many threads, one thread included (on the caller's thread, a parallel iterator
/// would use rayon's global pool, one thread per CPU). A caller already on that pool runs `f`
/// in place. Work split this way must call the kernels single-threaded (e.g.
/// `GemmOptions { threads: Some(1), .. }`).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    pool(num_threads()).install(f)
}

/// Maps `f` over `items` on lithe's pool of [`num_threads`] threads; the results come back in
/// item order. With one thread, or one item, it runs in order on the caller: handing work to a
/// pool thread and waiting for it costs 10 to 50 microseconds on a virtual machine, more than a
/// small op.
pub fn map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    if num_threads() <= 1 || items.len() <= 1 {
        return items.into_iter().map(f).collect();
    }
    install(|| items.into_par_iter().map(f).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread count is process-wide and tests run in parallel: tests that set it and read it
    /// back take this lock so they do not see each other's settings.
    static SETTING: Mutex<()> = Mutex::new(());

    #[test]
    fn set_num_threads_is_honoured_and_zero_restores_default() {
        let _guard = SETTING.lock().unwrap_or_else(|e| e.into_inner());
        set_num_threads(3);
        assert_eq!(num_threads(), 3);
        assert_eq!(pool(3).current_num_threads(), 3);
        set_num_threads(0);
        assert_eq!(num_threads(), default_threads());
        assert!(num_threads() >= 1);
    }

    #[test]
    fn install_runs_on_a_pool_of_the_requested_size() {
        let _guard = SETTING.lock().unwrap_or_else(|e| e.into_inner());
        set_num_threads(2);
        assert_eq!(install(rayon::current_num_threads), 2);
        set_num_threads(1);
        assert_eq!(install(rayon::current_num_threads), 1);
        // A parallel iterator inside runs on that one thread only.
        let ids: std::collections::HashSet<_> = install(|| {
            (0..64)
                .into_par_iter()
                .map(|_| {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    std::thread::current().id()
                })
                .collect()
        });
        assert_eq!(ids.len(), 1);
        set_num_threads(0);
    }

    #[test]
    fn run_parts_runs_each_part_once_and_part_zero_on_the_caller() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let caller = std::thread::current().id();
        for parts in [1, 2, 3, 5] {
            let runs: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
            let on_caller: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
            run_parts(parts, |part| {
                runs[part].fetch_add(1, Ordering::SeqCst);
                if std::thread::current().id() == caller {
                    on_caller[part].fetch_add(1, Ordering::SeqCst);
                }
            });
            let runs: Vec<usize> = runs.iter().map(|r| r.load(Ordering::SeqCst)).collect();
            assert_eq!(runs, vec![1; parts], "{parts} parts");
            let on_caller: Vec<usize> =
                on_caller.iter().map(|r| r.load(Ordering::SeqCst)).collect();
            let mut want = vec![0; parts];
            want[0] = 1;
            assert_eq!(
                on_caller, want,
                "{parts} parts: only part 0 runs on the caller"
            );
        }
    }

    #[test]
    fn map_keeps_item_order_on_any_thread_count() {
        let _guard = SETTING.lock().unwrap_or_else(|e| e.into_inner());
        for threads in [1, 2, 3] {
            set_num_threads(threads);
            let caller = std::thread::current().id();
            let calls = std::sync::atomic::AtomicUsize::new(0);
            let got = map((0..100).collect(), |i: usize| {
                let call = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                (i * i, std::thread::current().id() == caller, call)
            });
            let squares: Vec<usize> = got.iter().map(|&(sq, _, _)| sq).collect();
            assert_eq!(squares, (0..100).map(|i| i * i).collect::<Vec<_>>());
            if threads == 1 {
                // Every item on the caller, in order.
                assert!(got.iter().all(|&(_, on_caller, _)| on_caller));
                let calls: Vec<usize> = got.iter().map(|&(_, _, c)| c).collect();
                assert_eq!(calls, (1..=100).collect::<Vec<_>>());
            } else {
                assert!(got.iter().all(|&(_, on_caller, _)| !on_caller));
            }
        }
        set_num_threads(0);
    }
}
