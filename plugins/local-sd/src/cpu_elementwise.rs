//! Element-wise steps of the UNet on the CPU backend, on all cores: residual sums, the time
//! embedding's per-channel add, and GEGLU (`value * gelu(gate)`).
//!
//! The CPU backend runs element-wise operations on one thread with the scalar `erff`: in SD's
//! UNet step, one core idled for about a seventh of the time.

use burn::tensor::{DType, Device, Tensor};
use rayon::prelude::*;

use crate::cpu_math::{LANES, exp, simd_dispatch};
use crate::cpu_tensor::{self, CpuTensor};

/// Elements per parallel task: large enough that scheduling costs nothing next to the work.
const CHUNK: usize = 1 << 16;

/// `a + b` for tensors of the same shape; on the CPU backend in f32, in place in whichever
/// buffer nothing else holds.
pub fn add<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    if a.device() != Device::flex()
        || a.dtype() != DType::F32
        || b.dtype() != DType::F32
        || a.dims() != b.dims()
    {
        return a + b;
    }
    let dims = a.dims();
    let (mut a, mut b) = (CpuTensor::new(a), CpuTensor::new(b));
    if a.values_mut().is_none()
        && let Some(dst) = b.values_mut()
    {
        add_into(dst, a.values());
        return b.into_tensor(dims);
    }
    a.update(dims, |dst| add_into(dst, b.values()))
}

fn add_into(dst: &mut [f32], src: &[f32]) {
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d += s));
}

/// `x + t` with `t` of shape `[batch, channels]` added to every pixel of `x`
/// (`[batch, channels, height, width]`), as `x + t.reshape([b, c, 1, 1])`.
pub fn add_per_channel(x: Tensor<4>, t: Tensor<2>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    if x.device() != Device::flex() || x.dtype() != DType::F32 || t.dims() != [b, c] {
        return x + t.reshape([b, c, 1, 1]);
    }
    let t = CpuTensor::new(t);
    let plane = h * w;
    CpuTensor::new(x).update([b, c, h, w], |values| {
        if plane > 0 {
            values
                .par_chunks_mut(plane)
                .zip(t.values().par_iter())
                .for_each(|(p, &v)| p.iter_mut().for_each(|x| *x += v));
        }
    })
}

/// diffusers' GEGLU after its projection: `h` (`[batch, tokens, 2 * inner]`) split into value
/// and gate along the last axis, `value * gelu(gate)` with the exact (erf) GELU. `None` when `h`
/// is not an f32 CPU backend tensor: the caller uses the tensor operations.
pub fn geglu(h: &Tensor<3>, inner: usize) -> Option<Tensor<3>> {
    let [b, n, width] = h.dims();
    if h.device() != Device::flex() || h.dtype() != DType::F32 || width != 2 * inner {
        return None;
    }
    let h = CpuTensor::new(h.clone());
    let mut out = vec![0f32; b * n * inner];
    if let Some(rows) = CHUNK.checked_div(inner) {
        let rows = rows.max(1);
        out.par_chunks_mut(rows * inner)
            .zip(h.values().par_chunks(rows * width))
            .for_each(|(out, h)| {
                for (out, h) in out.chunks_exact_mut(inner).zip(h.chunks_exact(width)) {
                    let (value, gate) = h.split_at(inner);
                    geglu_row(out, value, gate);
                }
            });
    }
    Some(cpu_tensor::tensor_from(out, [b, n, inner], DType::F32))
}

simd_dispatch! {
    /// `out = value * gelu(gate)`, element by element.
    fn geglu_row(out: &mut [f32], value: &[f32], gate: &[f32]) = geglu_lanes;
}

#[inline(always)]
fn geglu_lanes(out: &mut [f32], value: &[f32], gate: &[f32]) {
    let mut outs = out.chunks_exact_mut(LANES);
    let mut values = value.chunks_exact(LANES);
    let mut gates = gate.chunks_exact(LANES);
    for ((o, v), g) in (&mut outs).zip(&mut values).zip(&mut gates) {
        for ((o, &v), &g) in o.iter_mut().zip(v).zip(g) {
            *o = v * gelu(g);
        }
    }
    let rest = outs.into_remainder().iter_mut();
    for ((o, &v), &g) in rest.zip(values.remainder()).zip(gates.remainder()) {
        *o = v * gelu(g);
    }
}

/// `x * (1 + erf(x / sqrt(2))) / 2`.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `erf(x)` within 6.5e-7 (Abramowitz and Stegun 7.1.26's 1.5e-7, plus f32 rounding), branch-free so that loops calling it
/// vectorise.
#[inline(always)]
fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_math::testing::max_abs_diff;
    use burn::tensor::TensorData;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
        Tensor::from_data(TensorData::new(values, shape), (&Device::flex(), DType::F32))
    }

    #[test]
    fn erf_is_within_its_bound() {
        let mut worst = 0f64;
        let mut x = -6.0f64;
        while x <= 6.0 {
            worst = worst.max((f64::from(erf(x as f32)) - erf_f64(x)).abs());
            x += 0.001_7;
        }
        // The approximation's 1.5e-7, plus f32 rounding of `poly * exp(-x^2)` (a value up to 1,
        // through about eight roundings of 6e-8 each: the division, the polynomial and exp's
        // 2 ulp) before it is subtracted from 1.
        assert!(worst <= 6.5e-7, "erf is off by {worst}");
    }

    /// erf in f64: its Maclaurin series up to 3, past that 1 - erfc by erfc's continued
    /// fraction (both accurate to about 1e-12 there).
    fn erf_f64(x: f64) -> f64 {
        let a = x.abs();
        let value = if a <= 3.0 {
            let (mut term, mut sum) = (a, a);
            for n in 1..200 {
                let n = f64::from(n);
                term *= -a * a / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let mut t = a;
            for k in (1..=100).rev() {
                t = a + f64::from(k) / 2.0 / t;
            }
            1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / t
        };
        value.copysign(x)
    }

    #[test]
    fn geglu_matches_the_tensor_operations() {
        let (b, n, inner) = (2, 37, 21);
        let data: Vec<f32> = (0..b * n * 2 * inner)
            .map(|i| ((i * 7919) % 1000) as f32 / 125.0 - 4.0)
            .collect();
        let h = tensor(data, [b, n, 2 * inner]);
        let got = values(geglu(&h, inner).unwrap());
        let value = h.clone().slice([0..b, 0..n, 0..inner]);
        let gate = h.slice([0..b, 0..n, inner..2 * inner]);
        let want = values(value * burn::tensor::activation::gelu(gate));
        let worst = max_abs_diff(&got, &want);
        // |value * gate / 2| <= 8 times erf's 6.5e-7, plus f32 rounding.
        assert!(worst <= 6e-6, "max abs error {worst}");
    }

    #[test]
    fn sums_match_and_keep_shared_inputs() {
        let a = tensor((0..300_000).map(|i| i as f32).collect(), [3, 100_000]);
        let b = tensor((0..300_000).map(|i| -2.0 * i as f32).collect(), [3, 100_000]);
        let kept = a.clone();
        let sum = values(add(a, b.clone()));
        assert!(sum.iter().enumerate().all(|(i, &v)| v == -(i as f32)));
        // `a` was shared: it is unchanged.
        assert_eq!(values(kept)[5], 5.0);
        let x = tensor((0..2 * 3 * 4).map(|i| i as f32).collect(), [2, 3, 2, 2]);
        let t = tensor(vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0], [2, 3]);
        let want = values(x.clone() + t.clone().reshape([2, 3, 1, 1]));
        assert_eq!(values(add_per_channel(x, t)), want);
    }
}
