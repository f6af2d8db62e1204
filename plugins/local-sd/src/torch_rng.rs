//! PyTorch's CPU random number generator, reproduced exactly, so a seed gives the same initial
//! latents as diffusers with `torch.Generator("cpu").manual_seed(seed)`.
//!
//! torch draws from an MT19937 engine and turns the draws into normals in one of three ways
//! (`aten/src/ATen/native/cpu/DistributionTemplates.h`):
//! - float32 tensors of 16 or more contiguous elements: all uniforms first, then Box-Muller on
//!   blocks of 16 (`normal_fill_16_AVX2` on x86-64 with AVX2, which evaluates log/sin/cos with
//!   the Cephes polynomials of `avx_mathfun.h`; plain libm `normal_fill_16` elsewhere),
//! - float16 tensors of 16 or more elements: the same blocks, in half precision,
//! - anything smaller: one double-precision normal per element, caching the second Box-Muller
//!   value in the generator.
//!
//! The last partial block is redrawn: torch regenerates the *last 16* values with fresh uniforms.

// The Cephes constants are written with the digits `avx_mathfun.h` gives them; each rounds to
// the same f32 as there.
#![allow(clippy::excessive_precision)]

use std::f64::consts::PI;

use half::f16;

/// Which Box-Muller kernel torch used on the machine whose images are to be reproduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NormalKernel {
    /// x86-64 with AVX2 (every desktop CPU since 2013): torch's vectorised kernel.
    #[default]
    X86Avx2,
    /// Other CPUs (Apple silicon, ARM): torch's scalar kernel, libm log/sin/cos.
    Scalar,
}

const MT_N: usize = 624;
const MT_M: usize = 397;

/// MT19937 with torch's seeding and its `random()`/`random64()` draws.
#[derive(Clone)]
pub struct TorchGenerator {
    state: Box<[u32; MT_N]>,
    index: usize,
    /// torch caches the second value of a double Box-Muller pair between calls.
    next_double_normal: Option<f64>,
    kernel: NormalKernel,
}

impl std::fmt::Debug for TorchGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchGenerator")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl TorchGenerator {
    /// `torch.Generator("cpu").manual_seed(seed)`.
    pub fn new(seed: u64) -> Self {
        Self::with_kernel(seed, NormalKernel::default())
    }

    pub fn with_kernel(seed: u64, kernel: NormalKernel) -> Self {
        let mut state = Box::new([0u32; MT_N]);
        // torch seeds its engine with the low 32 bits of the seed.
        state[0] = (seed & 0xffff_ffff) as u32;
        for j in 1..MT_N {
            let prev = state[j - 1];
            state[j] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(j as u32);
        }
        Self {
            state,
            index: MT_N,
            next_double_normal: None,
            kernel,
        }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..MT_N {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % MT_N] & LOWER);
            let mut next = self.state[(i + MT_M) % MT_N] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= MATRIX_A;
            }
            self.state[i] = next;
        }
        self.index = 0;
    }

    /// One 32-bit draw (`CPUGeneratorImpl::random`).
    pub fn random(&mut self) -> u32 {
        if self.index >= MT_N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// One 64-bit draw (`CPUGeneratorImpl::random64`): the first 32-bit draw is the high half.
    pub fn random64(&mut self) -> u64 {
        let hi = u64::from(self.random());
        let lo = u64::from(self.random());
        (hi << 32) | lo
    }

    /// `uniform_real_distribution<float>(0, 1)`: 24 random bits over 2^24.
    fn uniform_f32(&mut self) -> f32 {
        ((self.random() & 0x00ff_ffff) as f64 / f64::from(1u32 << 24)) as f32
    }

    /// `uniform_real_distribution<double>(0, 1)`: 53 random bits over 2^53.
    fn uniform_f64(&mut self) -> f64 {
        (self.random64() & ((1u64 << 53) - 1)) as f64 / (1u64 << 53) as f64
    }

    /// `normal_distribution<double>(0, 1)`, with torch's cached second sample.
    fn normal_f64(&mut self) -> f64 {
        if let Some(cached) = self.next_double_normal.take() {
            return cached;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * PI * u1;
        self.next_double_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    /// `torch.randn(n, generator=g)` in float32, flattened in row-major order.
    pub fn randn_f32(&mut self, n: usize) -> Vec<f32> {
        if n < 16 {
            return (0..n).map(|_| self.normal_f64() as f32).collect();
        }
        let mut data: Vec<f32> = (0..n).map(|_| self.uniform_f32()).collect();
        let fill = self.fill_kernel();
        let mut i = 0;
        while i + 16 <= n {
            fill(&mut data[i..i + 16]);
            i += 16;
        }
        if !n.is_multiple_of(16) {
            let tail = &mut data[n - 16..];
            for v in tail.iter_mut() {
                *v = self.uniform_f32();
            }
            fill(tail);
        }
        data
    }

    /// `torch.randn(n, generator=g, dtype=torch.float16)`, flattened in row-major order.
    ///
    /// Recent torch (verified: 2.15) draws each block of 16 in float32 precision, transforms it with
    /// the float32 kernel and rounds to half; the last partial block is redrawn like the float32
    /// path, but the uniforms are not drawn ahead for the whole tensor, so the redraw starts
    /// right after the last full block.
    pub fn randn_f16(&mut self, n: usize) -> Vec<f16> {
        if n < 16 {
            // `static_cast<Half>(double)` goes through float.
            return (0..n)
                .map(|_| f16::from_f32(self.normal_f64() as f32))
                .collect();
        }
        let fill = self.fill_kernel();
        let mut out = vec![f16::ZERO; n];
        let mut block = [0f32; 16];
        let mut i = 0;
        while i + 16 <= n {
            block.iter_mut().for_each(|v| *v = self.uniform_f32());
            fill(&mut block);
            for (o, v) in out[i..i + 16].iter_mut().zip(block) {
                *o = f16::from_f32(v);
            }
            i += 16;
        }
        if !n.is_multiple_of(16) {
            block.iter_mut().for_each(|v| *v = self.uniform_f32());
            fill(&mut block);
            for (o, v) in out[n - 16..].iter_mut().zip(block) {
                *o = f16::from_f32(v);
            }
        }
        out
    }

    fn fill_kernel(&self) -> fn(&mut [f32]) {
        match self.kernel {
            NormalKernel::X86Avx2 => normal_fill_16_avx2,
            NormalKernel::Scalar => normal_fill_16_scalar,
        }
    }
}

/// `2.0f * c10::pi<double>` rounded to float, as `_mm256_set1_ps` stores it.
const TWO_PI_F32: f32 = (2.0 * PI) as f32;

/// torch's `normal_fill_16` for float32 on CPUs without AVX2.
fn normal_fill_16_scalar(data: &mut [f32]) {
    for j in 0..8 {
        let u1 = 1.0 - data[j];
        let u2 = data[j + 8];
        let radius = (-2.0 * u1.ln()).sqrt();
        // `2.0f * pi<double> * u2` is evaluated in double, then stored as float.
        let theta = (2.0 * PI * f64::from(u2)) as f32;
        data[j] = radius * theta.cos();
        data[j + 8] = radius * theta.sin();
    }
}

/// torch's `normal_fill_16_AVX2`, one lane at a time: each vector instruction is an IEEE f32
/// operation per lane, so evaluating the same operations in the same order gives the same bits.
/// torch's wheels are built by GCC with FMA enabled and floating-point contraction on, so some
/// multiply-adds of `avx_mathfun.h` are fused: the `mul_add` calls below are exactly those
/// (found by matching 64,000 values from torch 2.15 bit for bit; see tests/torch_rng.rs).
fn normal_fill_16_avx2(data: &mut [f32]) {
    for j in 0..8 {
        let u1 = 1.0f32 - data[j];
        let u2 = data[j + 8];
        let radius = (-2.0f32 * cephes_logf(u1)).sqrt();
        let theta = TWO_PI_F32 * u2;
        let (sin, cos) = cephes_sincosf(theta);
        data[j] = radius * cos;
        data[j + 8] = radius * sin;
    }
}

/// `log256_ps` from `avx_mathfun.h` (Cephes `logf`), for one lane. Inputs are in (0, 1].
fn cephes_logf(x: f32) -> f32 {
    const SQRTHF: f32 = 0.707_106_77;
    const P: [f32; 9] = [
        7.037_683_6E-2,
        -1.151_461_1E-1,
        1.167_699_9E-1,
        -1.242_014_1E-1,
        1.424_932_3E-1,
        -1.666_805_8E-1,
        2.000_071_4E-1,
        -2.499_999_4E-1,
        3.333_333_1E-1,
    ];
    const Q1: f32 = -2.121_944_4e-4;
    const Q2: f32 = 0.693_359_4;
    if x <= 0.0 {
        return f32::NAN;
    }
    let x = x.max(f32::from_bits(0x0080_0000));
    let bits = x.to_bits();
    let exponent = (bits >> 23) as i32 - 0x7f;
    let mut x = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    let mut e = exponent as f32 + 1.0;
    let below = x < SQRTHF;
    let tmp = if below { x } else { 0.0 };
    x -= 1.0;
    if below {
        e -= 1.0;
    }
    x += tmp;
    let z = x * x;
    let mut y = P[0];
    for p in &P[1..] {
        y = y.mul_add(x, *p);
    }
    y *= x;
    y = y.mul_add(z, e * Q1);
    y -= z * 0.5;
    x += y;
    x + e * Q2
}

/// `sincos256_ps` from `avx_mathfun.h` (Cephes `sinf`/`cosf`), for one lane.
fn cephes_sincosf(x: f32) -> (f32, f32) {
    const FOPI: f32 = 1.273_239_5;
    const DP1: f32 = -0.785_156_25;
    const DP2: f32 = -2.418_756_5e-4;
    const DP3: f32 = -3.774_895e-8;
    const SIN_P: [f32; 3] = [-1.951_529_6E-4, 8.332_161E-3, -1.666_665_5E-1];
    const COS_P: [f32; 3] = [2.443_315_7E-5, -1.388_731_6E-3, 4.166_664_6E-2];
    let sign_sin_in = x.to_bits() & 0x8000_0000;
    let mut x = f32::from_bits(x.to_bits() & 0x7fff_ffff);
    // `_mm256_cvttps_epi32` truncates toward zero.
    let mut j = (x * FOPI) as i32;
    j = (j + 1) & !1;
    let y = j as f32;
    let swap_sign_sin = ((j & 4) as u32) << 29;
    let use_sin_poly = (j & 2) == 0;
    x += y * DP1;
    x += y * DP2;
    x += y * DP3;
    let sign_cos = ((!(j - 2) & 4) as u32) << 29;
    let sign_sin = sign_sin_in ^ swap_sign_sin;

    let z = x * x;
    let mut yc = COS_P[0];
    yc = yc * z + COS_P[1];
    yc = yc * z + COS_P[2];
    yc *= z;
    yc = yc.mul_add(z, -(z * 0.5));
    yc += 1.0;

    let mut ys = SIN_P[0];
    ys = ys.mul_add(z, SIN_P[1]);
    ys = ys.mul_add(z, SIN_P[2]);
    ys *= z;
    ys = ys.mul_add(x, x);

    // The vector code selects with masks and then adds/subtracts zeros; +0.0 leaves a value
    // unchanged bit for bit (a -0.0 polynomial result cannot occur for these inputs).
    let (sin, cos) = if use_sin_poly { (ys, yc) } else { (yc, ys) };
    (
        f32::from_bits(sin.to_bits() ^ sign_sin),
        f32::from_bits(cos.to_bits() ^ sign_cos),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values printed by torch 2.x on x86-64 (`torch.randn((1,4,8,8), generator=g)` with
    /// `g = torch.Generator("cpu").manual_seed(42)`).
    #[test]
    fn matches_torch_randn_f32_seed_42() {
        let mut g = TorchGenerator::new(42);
        let x = g.randn_f32(256);
        let expected_head = [1.926_915_3f32, 1.487_284_1, 0.900_717_2, -2.105_521];
        assert_eq!(&x[..4], &expected_head);
        assert_eq!(&x[253..], &[0.565_505_03f32, 0.505_791_7, 0.222_453_65]);
    }

    /// A size that is not a multiple of 16 regenerates the last 16 values.
    #[test]
    fn matches_torch_randn_f32_partial_block() {
        let mut g = TorchGenerator::new(42);
        let x = g.randn_f32(37);
        assert_eq!(&x[..3], &[1.926_915_3f32, 1.487_284_1, 0.900_717_2]);
        assert_eq!(&x[34..], &[0.049_905_386f32, 2.266_718, 1.178_950_9]);
    }

    #[test]
    fn matches_torch_randn_small_tensor_double_path() {
        let mut g = TorchGenerator::new(42);
        let x: Vec<f64> = (0..5).map(|_| g.normal_f64()).collect();
        let expected = [
            0.336_690_354_383_858_86,
            0.128_809_405_136_589_7,
            0.234_462_363_361_531_73,
            0.230_333_027_914_611_9,
            -1.122_856_376_738_170_3,
        ];
        for (a, b) in x.iter().zip(expected) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
    }

    #[test]
    fn matches_torch_randn_f16() {
        let mut g = TorchGenerator::new(42);
        let x = g.randn_f16(40);
        let head: Vec<f32> = x[..4].iter().map(|v| v.to_f32()).collect();
        assert_eq!(
            head,
            vec![1.926_757_8, 1.487_304_7, 0.900_878_9, -2.105_468_8]
        );
    }
}
