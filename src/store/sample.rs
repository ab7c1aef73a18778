//! A cheap random source for sampling (eviction candidates, tracked keys to
//! drop): no need for quality randomness, only for not always picking the
//! same entries.

/// xorshift64*.
#[derive(Default)]
pub struct Sampler {
    state: u64,
}

impl Sampler {
    pub fn next(&mut self) -> u64 {
        if self.state == 0 {
            self.state = 0x9E37_79B9_7F4A_7C15;
        }
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// An index below `len` (which must not be 0).
    pub fn index(&mut self, len: usize) -> usize {
        (self.next() % len as u64) as usize
    }
}
