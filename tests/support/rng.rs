//! A tiny deterministic PRNG: the crash tests print its seed, so a failing schedule of
//! kills or power cuts can be replayed with `FLOW_CRASH_SEED=<seed>`.

use std::time::{SystemTime, UNIX_EPOCH};

/// xorshift64*.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // Zero is xorshift's fixed point.
        XorShift(seed.max(1))
    }

    /// The seed from `FLOW_CRASH_SEED`, or one taken from the clock.
    pub fn seed_from_env_or_time() -> u64 {
        match std::env::var("FLOW_CRASH_SEED") {
            Ok(v) => v.trim().parse().expect("FLOW_CRASH_SEED must be a number"),
            Err(_) => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x9E37_79B9_7F4A_7C15),
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi);
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next_u64() % den < num
    }
}
