//! What the int8 examples share: deterministic operands and throughput samples in thread CPU
//! time (`crate::cpu_time`, which each example includes beside this module).

/// `len` values in [-127, 127] from a linear congruential generator seeded with `seed`.
pub fn values(len: usize, seed: u64) -> Vec<i8> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % 255) as i32 - 127
        })
        .map(|v| v as i8)
        .collect()
}

/// `samples` rates of `f` in G(OP)/s, sorted ascending (the median is the middle one). Each
/// sample times, in thread CPU time, enough calls of `ops_per_call` operations for about 1e10
/// of them (20 ms at 500 GOP/s), at least one.
pub fn rates(ops_per_call: f64, samples: usize, mut f: impl FnMut()) -> Vec<f64> {
    let calls = ((1e10 / ops_per_call) as usize).max(1);
    let mut rates: Vec<f64> = (0..samples)
        .map(|_| {
            let t0 = crate::cpu_time::cpu_now();
            for _ in 0..calls {
                f();
            }
            ops_per_call * calls as f64 / (crate::cpu_time::cpu_now() - t0) / 1e9
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates
}
