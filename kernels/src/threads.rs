//! The thread pool that parallel kernels (GEMM) split their work over.
//!
//! Kernels themselves are single-threaded; drivers one level up split M or N blocks across this
//! pool. Its size is, in order of precedence: [`set_num_threads`], the `LITHE_THREADS` variable,
//! or the number of CPUs.

use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::{Arc, Mutex};

struct PoolState {
    threads: usize,
    pool: Option<Arc<ThreadPool>>,
}

static STATE: Mutex<PoolState> = Mutex::new(PoolState {
    threads: 0,
    pool: None,
});

fn default_threads() -> usize {
    std::env::var("LITHE_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Sets how many threads parallel kernels use; `0` restores the default (`LITHE_THREADS`, else
/// the number of CPUs). Takes effect for calls that start afterwards.
pub fn set_num_threads(n: usize) {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let n = if n == 0 { default_threads() } else { n };
    if state.threads != n {
        state.threads = n;
        state.pool = None;
    }
}

/// How many threads parallel kernels currently use.
pub fn num_threads() -> usize {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if state.threads == 0 {
        state.threads = default_threads();
    }
    state.threads
}

/// A pool of exactly `n` threads (`n >= 2`), reused while the requested size stays the same.
pub(crate) fn pool(n: usize) -> Arc<ThreadPool> {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pool) = &state.pool
        && pool.current_num_threads() == n
    {
        return pool.clone();
    }
    let pool = Arc::new(
        ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("lithe-{i}"))
            .build()
            .expect("failed to spawn lithe's thread pool"),
    );
    state.pool = Some(pool.clone());
    pool
}

/// Runs `f` on lithe's pool (sized [`num_threads`]), so rayon's parallel iterators inside it use
/// that many threads; with one thread `f` simply runs on the caller. Work split this way must call
/// the kernels single-threaded (e.g. `GemmOptions { threads: Some(1), .. }`).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match num_threads() {
        0 | 1 => f(),
        n => pool(n).install(f),
    }
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
        assert_eq!(install(|| 7), 7);
        set_num_threads(0);
    }
}
