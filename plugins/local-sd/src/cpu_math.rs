//! Vectorisable math for the CPU kernels: loops written 16 lanes wide, which the compiler turns
//! into one AVX-512 instruction, two AVX2 ones or four SSE2 ones, inside functions compiled
//! for each and picked at run time.

/// Lanes the loops are written in.
pub(crate) const LANES: usize = 16;

/// Defines `fn $name(args) -> ret` that runs the `#[inline(always)]` function `$generic`
/// compiled for AVX-512, for AVX2 with FMA, or for the baseline, whichever the CPU has.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $generic:ident;) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $generic($($arg),*)
                }
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked above).
                    return unsafe { avx512($($arg),*) };
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA (checked above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

/// `e^x` for `x <= 0` (scores minus their row's maximum), within 2 ulp: Cody-Waite reduction to
/// `x = n ln 2 + r`, Cephes' degree-6 polynomial for `e^r`, and `2^n` built in the exponent
/// bits. Branch-free, so the loops calling it vectorise.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    // Below this, e^x is under f32's smallest normal number: flush to zero.
    let x = if x < -87.0 { -87.0 } else { x };
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    let n = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    e_r * f32::from_bits(((n + 127) << 23) as u32)
}

/// How a kernel's bands of work run: in parallel, one band per thread at a time; or, for a few
/// large bands (small images, many channels), one after another with each band's matrix
/// products split across the threads by the library.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bands {
    pub(crate) split_products: bool,
}

impl Bands {
    /// The parallelism to give each band's matrix products.
    pub(crate) fn products(self) -> gemm::Parallelism {
        if self.split_products {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        }
    }

    /// `band(scratch, index)` for every `index < count`, each thread with its own `scratch`
    /// from `init`.
    pub(crate) fn run<S: Send>(
        self,
        count: usize,
        init: impl Fn() -> S + Sync + Send,
        band: impl Fn(&mut S, usize) + Sync + Send,
    ) {
        use rayon::prelude::*;
        if self.split_products {
            let mut scratch = init();
            (0..count).for_each(|index| band(&mut scratch, index));
        } else {
            (0..count)
                .into_par_iter()
                .for_each_init(init, |scratch, index| band(scratch, index));
        }
    }
}

/// An output buffer shared by parallel tasks that each write their own part of it (their own
/// rows or blocks; see the callers).
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(*mut f32);

// SAFETY: the callers' tasks write disjoint elements, and the buffer outlives them.
#[allow(unsafe_code)]
unsafe impl Send for SharedOut {}
#[allow(unsafe_code)]
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub(crate) fn new(buffer: &mut [f32]) -> Self {
        Self(buffer.as_mut_ptr())
    }

    /// The element at `offset`.
    ///
    /// # Safety
    /// `offset` must lie inside the buffer, which must still be alive.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller's contract.
        unsafe { self.0.add(offset) }
    }
}

/// Helpers shared by the CPU kernels' tests.
#[cfg(test)]
pub(crate) mod testing {
    /// `len` deterministic values in [-1, 1) from `seed` (a linear congruential generator).
    pub(crate) fn noise(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
                (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// The largest `|a[i] - b[i]|`.
    pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "lengths");
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            let ulp = f64::from(f32::EPSILON) * want;
            worst = worst.max(((got - want) / ulp).abs() as f32);
            x += 0.000_731;
        }
        assert!(worst <= 2.0, "exp is off by {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1e9) < 1e-37 && exp(f32::NEG_INFINITY) < 1e-37);
    }

}
