//! Seeded random bytes for the parsers' robustness tests (`crates/*/tests/robustness.rs`):
//! every run feeds the same inputs.
#![allow(dead_code)] // each test crate uses its own part

/// xorshift64*: a tiny seeded generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// Random text drawn from the characters that TOML and JSON are made of.
    pub fn syntax(&mut self, len: usize) -> Vec<u8> {
        const ALPHABET: &[u8] = b"[]{}=,.:\"'#\n -+_0123456789eEinfatrusl";
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len())])
            .collect()
    }
}

/// `valid` with one byte in `range` replaced by a different random value.
pub fn mutate_one_in(rng: &mut Rng, valid: &[u8], range: std::ops::Range<usize>) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    let i = range.start + rng.below(range.len());
    bytes[i] ^= 1 + rng.below(255) as u8;
    bytes
}

/// `valid` with one byte replaced by a different random value.
pub fn mutate_one(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    mutate_one_in(rng, valid, 0..valid.len())
}
