//! LSD radix sort of `u64` entries by their upper 32 bits.
//!
//! A category of MVTec AD at full resolution has ~10^8 pixels; a comparison sort of that many
//! entries takes tens of seconds on two cores, three counting passes take a few.

/// Maps an `f32` to a `u32` whose unsigned order is the float order (finite values; `-0.0`
/// and `0.0` map to the same key because they compare equal).
#[inline]
pub fn f32_order_key(x: f32) -> u32 {
    let x = if x == 0.0 { 0.0 } else { x };
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Inverse of [`f32_order_key`].
#[cfg(test)]
fn f32_from_order_key(k: u32) -> f32 {
    let b = if k & 0x8000_0000 != 0 {
        k & 0x7fff_ffff
    } else {
        !k
    };
    f32::from_bits(b)
}

/// Sorts `v` ascending by `v[i] >> 32`, stably. Small inputs use the standard library;
/// large ones an LSD radix sort whose counting and scattering run in parallel (rayon).
pub fn sort_by_high_u32(v: &mut Vec<u64>) {
    if v.len() < 1 << 16 {
        v.sort_by_key(|&e| e >> 32);
        return;
    }
    // Three passes of 11, 11 and 10 bits over bits 32..64.
    const PASSES: [(u32, u32); 3] = [(32, 11), (43, 11), (54, 10)];
    let mut scratch = vec![0u64; v.len()];
    let mut in_scratch = false;
    for (shift, bits) in PASSES {
        let moved = if in_scratch {
            scatter_pass(&scratch, v, shift, bits)
        } else {
            scatter_pass(v, &mut scratch, shift, bits)
        };
        if moved {
            in_scratch = !in_scratch;
        }
    }
    if in_scratch {
        std::mem::swap(v, &mut scratch);
    }
}

/// A raw pointer that may cross threads: every thread writes a disjoint set of indices.
#[derive(Clone, Copy)]
struct SharedOut(*mut u64);
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// One stable counting-sort pass on the digit `(e >> shift) & (2^bits - 1)` from `src` into
/// `dst`. Returns `false` (and leaves `dst` untouched) when every entry has the same digit.
fn scatter_pass(src: &[u64], dst: &mut [u64], shift: u32, bits: u32) -> bool {
    use rayon::prelude::*;
    assert_eq!(
        src.len(),
        dst.len(),
        "scatter_pass: buffers of different lengths"
    );
    let n = src.len();
    let radix = 1usize << bits;
    let mask = (radix - 1) as u64;
    let chunks = (2 * rayon::current_num_threads()).max(1);
    let chunk_len = n.div_ceil(chunks);
    let histograms: Vec<Vec<usize>> = src
        .par_chunks(chunk_len)
        .map(|c| {
            let mut h = vec![0usize; radix];
            for &e in c {
                h[((e >> shift) & mask) as usize] += 1;
            }
            h
        })
        .collect();
    let mut totals = vec![0usize; radix];
    for h in &histograms {
        for (t, &c) in totals.iter_mut().zip(h) {
            *t += c;
        }
    }
    if totals.contains(&n) {
        return false;
    }
    // Chunk c writes digit d from: (entries with smaller digits) + (digit d in earlier chunks),
    // which keeps the pass stable.
    let mut offsets = vec![vec![0usize; radix]; histograms.len()];
    let mut base = 0;
    for d in 0..radix {
        for (c, h) in histograms.iter().enumerate() {
            offsets[c][d] = base;
            base += h[d];
        }
    }
    let out = SharedOut(dst.as_mut_ptr());
    src.par_chunks(chunk_len)
        .zip(offsets.into_par_iter())
        .for_each(move |(c, mut off)| {
            let out = out;
            for &e in c {
                let d = ((e >> shift) & mask) as usize;
                // SAFETY: the offsets partition 0..n: each index is written by exactly one
                // thread exactly once, and `dst` has length n.
                unsafe { *out.0.add(off[d]) = e };
                off[d] += 1;
            }
        });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_key_preserves_float_order() {
        let xs = [
            f32::MIN,
            -1e30,
            -2.5,
            -1e-40,
            -0.0,
            0.0,
            1e-40,
            0.5,
            1.0,
            3e38,
            f32::MAX,
        ];
        for w in xs.windows(2) {
            let (a, b) = (f32_order_key(w[0]), f32_order_key(w[1]));
            if w[0] == w[1] {
                assert_eq!(a, b);
            } else {
                assert!(a < b, "{} !< {}", w[0], w[1]);
            }
        }
        for x in xs {
            let back = f32_from_order_key(f32_order_key(x));
            assert_eq!(back, x);
        }
    }

    #[test]
    fn radix_matches_std_sort_and_is_stable() {
        // A deterministic pseudo-random sequence (xorshift), many ties in the high bits.
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let mut v: Vec<u64> = (0..200_000u64)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s % 5000) << 32) ^ ((s >> 40) << 48) | i
            })
            .collect();
        let mut expected = v.clone();
        expected.sort_by_key(|&e| e >> 32); // stable
        sort_by_high_u32(&mut v);
        assert_eq!(v, expected);
    }

    #[test]
    fn radix_with_constant_digits() {
        let mut v: Vec<u64> = (0..100_000u64).rev().map(|i| (7u64 << 32) | i).collect();
        let expected = v.clone();
        sort_by_high_u32(&mut v);
        assert_eq!(v, expected);
    }
}
