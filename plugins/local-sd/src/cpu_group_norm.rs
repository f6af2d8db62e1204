//! `GroupNorm`, optionally followed by SiLU, on the CPU backend in one pass over the data after
//! the statistics, in place.
//!
//! Built from Burn's tensor ops, a group norm and the SiLU that follows it in every ResNet block
//! take five passes over the activations and allocate three new tensors, and Burn's SiLU calls
//! the scalar `expf` per element: at 512x512 that was a tenth of the VAE decode. Here each group
//! is read twice for its mean and variance (two passes, as PyTorch does, so a large mean cannot
//! cancel the variance) and written once, vectorised, groups in parallel.

use rayon::prelude::*;

use crate::cpu_math::{LANES, exp, simd_dispatch};

/// Elements summed in f32 lanes before the partial sum is added in f64: rounding stays at
/// f32's level for a block, not for a whole group of a million values.
const BLOCK: usize = 4096;

/// The layout of a `[batch, channels, spatial]` activation and its grouping.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub batch: usize,
    pub channels: usize,
    /// Height times width.
    pub spatial: usize,
    pub groups: usize,
}

/// Normalise each group of `x` to zero mean and unit variance (biased, with `eps`), scale and
/// shift each channel by `weight` and `bias`, then apply SiLU when `silu` is set.
///
/// # Panics
/// When the lengths do not match `shape` or `groups` does not divide `channels`.
pub fn group_norm(
    x: &mut [f32],
    shape: Shape,
    weight: &[f32],
    bias: &[f32],
    eps: f64,
    silu: bool,
) {
    let Shape {
        batch,
        channels,
        spatial,
        groups,
    } = shape;
    assert!(
        groups > 0 && channels.is_multiple_of(groups),
        "groups must divide channels"
    );
    assert_eq!(x.len(), batch * channels * spatial, "input length");
    assert_eq!(weight.len(), channels, "weight length");
    assert_eq!(bias.len(), channels, "bias length");
    let per_group = channels / groups;
    let group_len = per_group * spatial;
    if group_len == 0 {
        return;
    }
    x.par_chunks_mut(group_len)
        .enumerate()
        .for_each(|(index, values)| {
            let first_channel = (index % groups) * per_group;
            let len = values.len() as f64;
            let mean = sum(values, None) / len;
            let var = sum(values, Some(mean as f32)) / len;
            // A group of zeros gives 1 / sqrt(eps), as in PyTorch.
            let rstd = 1.0 / (var + eps).sqrt();
            for (j, channel) in values.chunks_exact_mut(spatial).enumerate() {
                let c = first_channel + j;
                let scale = f64::from(weight[c]) * rstd;
                let shift = f64::from(bias[c]) - mean * scale;
                affine(channel, scale as f32, shift as f32, silu);
            }
        });
}

/// The sum of `values`, or with `Some(center)` of their squared deviations from `center`.
fn sum(values: &[f32], center: Option<f32>) -> f64 {
    values
        .chunks(BLOCK)
        .map(|block| {
            f64::from(match center {
                None => block_sum(block),
                Some(center) => block_squares(block, center),
            })
        })
        .sum()
}

simd_dispatch! {
    fn block_sum(values: &[f32]) -> f32 = block_sum_lanes;
}

simd_dispatch! {
    fn block_squares(values: &[f32], center: f32) -> f32 = block_squares_lanes;
}

#[inline(always)]
fn block_sum_lanes(values: &[f32]) -> f32 {
    lanes_sum(values, |x| x)
}

#[inline(always)]
fn block_squares_lanes(values: &[f32], center: f32) -> f32 {
    lanes_sum(values, |x| (x - center) * (x - center))
}

/// `values.map(term).sum()` in `LANES` independent partial sums, so that it vectorises.
#[inline(always)]
fn lanes_sum(values: &[f32], term: impl Fn(f32) -> f32) -> f32 {
    let mut sums = [0f32; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (s, &x) in sums.iter_mut().zip(chunk) {
            *s += term(x);
        }
    }
    let rest: f32 = chunks.remainder().iter().map(|&x| term(x)).sum();
    sums.iter().sum::<f32>() + rest
}

simd_dispatch! {
    /// `x * scale + shift`, then SiLU if asked, in place.
    fn affine(values: &mut [f32], scale: f32, shift: f32, silu: bool) = affine_lanes;
}

#[inline(always)]
fn affine_lanes(values: &mut [f32], scale: f32, shift: f32, silu: bool) {
    if silu {
        values
            .iter_mut()
            .for_each(|x| *x = silu_of(*x * scale + shift));
    } else {
        values.iter_mut().for_each(|x| *x = *x * scale + shift);
    }
}

/// `x * sigmoid(x)` with `exp` of a non-positive argument only: `e = exp(-|x|)`, then
/// `sigmoid(x)` is `1 / (1 + e)` for `x >= 0` and `e / (1 + e)` below. Branch-free.
#[inline(always)]
fn silu_of(x: f32) -> f32 {
    let e = exp(-x.abs());
    let numerator = if x >= 0.0 { x } else { x * e };
    numerator / (1.0 + e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_math::testing::{max_abs_diff, noise};

    fn reference(x: &[f32], shape: Shape, weight: &[f32], bias: &[f32], eps: f64) -> Vec<f32> {
        let per_group = shape.channels / shape.groups;
        let group_len = per_group * shape.spatial;
        let mut out = vec![0f32; x.len()];
        for (index, (src, dst)) in x
            .chunks(group_len)
            .zip(out.chunks_mut(group_len))
            .enumerate()
        {
            let n = src.len() as f64;
            let mean = src.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = src
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            for (i, (s, d)) in src.iter().zip(dst.iter_mut()).enumerate() {
                let c = (index % shape.groups) * per_group + i / shape.spatial;
                let y = (f64::from(*s) - mean) / (var + eps).sqrt() * f64::from(weight[c])
                    + f64::from(bias[c]);
                *d = (y / (1.0 + (-y).exp())) as f32;
            }
        }
        out
    }

    #[test]
    fn silu_matches_its_definition() {
        let mut x = -100.0f32;
        while x <= 100.0 {
            let want = f64::from(x) / (1.0 + (-f64::from(x)).exp());
            let got = f64::from(silu_of(x));
            // A few f32 roundings (exp within 2 ulp, one product, one sum, one division);
            // below x = -87, where the result is under 1e-35, exp flushes to its floor.
            assert!(
                (got - want).abs() <= 1e-6 * want.abs() + 1e-30,
                "SiLU({x}) = {got}, want {want}"
            );
            x += 0.0137;
        }
        assert_eq!(silu_of(0.0), 0.0);
        assert!(silu_of(-1e4).abs() < 1e-30);
        assert_eq!(silu_of(1e4), 1e4);
    }

    /// Groups of several channels, spatial sizes that are not multiples of the lanes or the
    /// block, a batch, and a large common offset that a one-pass variance would cancel.
    #[test]
    fn matches_group_norm_then_silu_in_f64() {
        for (i, &(batch, channels, spatial, groups, offset)) in [
            (2usize, 8usize, 37usize, 4usize, 0.0f32),
            (1, 6, 5000, 3, 0.0),
            (1, 4, 4100, 2, 1000.0),
        ]
        .iter()
        .enumerate()
        {
            let shape = Shape {
                batch,
                channels,
                spatial,
                groups,
            };
            let x: Vec<f32> = noise(batch * channels * spatial, i as u32)
                .into_iter()
                .map(|v| v * 3.0 + offset)
                .collect();
            let weight = noise(channels, 100 + i as u32);
            let bias = noise(channels, 200 + i as u32);
            let want = reference(&x, shape, &weight, &bias, 1e-6);
            let mut got = x.clone();
            group_norm(&mut got, shape, &weight, &bias, 1e-6, true);
            let worst = max_abs_diff(&got, &want);
            // Normalised values are O(1); the offset case loses the bits f32 cannot hold of
            // 1000 + x (2^-14 relative to 1000 is 6e-5 before normalisation by std ~1.7).
            let tolerance = if offset == 0.0 { 1e-5 } else { 1e-4 };
            assert!(worst <= tolerance, "case {i}: max abs error {worst}");
        }
    }
}
