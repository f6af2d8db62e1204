//! `x @ w^T + b` on the CPU backend: one matrix product into a buffer that already holds the
//! bias.
//!
//! The CPU backend's matmul allocates its output twice (a zeroed byte buffer, then an aligned
//! copy of it) and adds the bias in a second, single-threaded pass: together about a tenth of
//! the time of SD's transformer blocks.
//!
//! Unsafe code: the `gemm` crate takes raw pointers and strides.
#![allow(unsafe_code)]

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// A linear layer's weights as the product reads them, `[in][out]`, and its bias.
#[derive(Debug)]
pub struct Weights {
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    in_features: usize,
    out_features: usize,
}

impl Weights {
    /// From torch's `[out][in]` layout.
    ///
    /// # Panics
    /// When a slice's length does not match the sizes.
    pub fn from_torch(
        weight: &[f32],
        bias: Option<Vec<f32>>,
        in_features: usize,
        out_features: usize,
    ) -> Self {
        assert_eq!(weight.len(), in_features * out_features, "weight length");
        if let Some(bias) = &bias {
            assert_eq!(bias.len(), out_features, "bias length");
        }
        let mut transposed = vec![0f32; weight.len()];
        if out_features > 0 {
            transposed
                .par_chunks_mut(out_features)
                .enumerate()
                .for_each(|(c, row)| {
                    for (o, value) in row.iter_mut().enumerate() {
                        *value = weight[o * in_features + c];
                    }
                });
        }
        Self {
            weight: transposed,
            bias,
            in_features,
            out_features,
        }
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// `x` (`[rows][in]`, row-major) times the weights, plus the bias: `[rows][out]`.
    ///
    /// # Panics
    /// When `x`'s length is not a multiple of the input size.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let (ins, outs) = (self.in_features, self.out_features);
        let rows = x.len().checked_div(ins).unwrap_or(0);
        assert_eq!(rows * ins, x.len(), "input length");
        let mut out = vec![0f32; rows * outs];
        if out.is_empty() {
            return out;
        }
        if let Some(bias) = &self.bias {
            out.par_chunks_mut(outs)
                .for_each(|row| row.copy_from_slice(bias));
        }
        if ins == 0 {
            return out;
        }
        // SAFETY: dst[r, o] at r * outs + o stays in `out` (rows * outs); lhs[r, c] at
        // r * ins + c in `x` (rows * ins); rhs[c, o] at c * outs + o in `weight` (ins * outs).
        unsafe {
            gemm(
                rows,
                outs,
                ins,
                out.as_mut_ptr(),
                1,
                outs as isize,
                self.bias.is_some(),
                x.as_ptr(),
                1,
                ins as isize,
                self.weight.as_ptr(),
                1,
                outs as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                Parallelism::Rayon(0),
            );
        }
        out
    }
}

impl Weights {
    /// A 1x1 convolution: `x` as `[batch][in][pixels]` (NCHW) to `[batch][out][pixels]`, the
    /// weights applied at every pixel, plus the bias.
    ///
    /// # Panics
    /// When `x`'s length is not `batch` times a multiple of the input size.
    pub fn forward_channels_first(&self, x: &[f32], batch: usize) -> Vec<f32> {
        let (ins, outs) = (self.in_features, self.out_features);
        let pixels = x.len().checked_div(batch * ins).unwrap_or(0);
        assert_eq!(batch * ins * pixels, x.len(), "input length");
        let mut out = vec![0f32; batch * outs * pixels];
        if out.is_empty() {
            return out;
        }
        if let Some(bias) = &self.bias {
            out.par_chunks_mut(pixels)
                .enumerate()
                .for_each(|(plane, values)| values.fill(bias[plane % outs]));
        }
        if ins == 0 {
            return out;
        }
        for (x, out) in x.chunks_exact(ins * pixels).zip(out.chunks_exact_mut(outs * pixels)) {
            // SAFETY: dst[o, p] at o * pixels + p stays in this image's `out` (outs * pixels);
            // lhs[o, c] at c * outs + o in `weight` (ins * outs); rhs[c, p] at c * pixels + p
            // in this image's `x` (ins * pixels).
            unsafe {
                gemm(
                    outs,
                    pixels,
                    ins,
                    out.as_mut_ptr(),
                    1,
                    pixels as isize,
                    self.bias.is_some(),
                    self.weight.as_ptr(),
                    outs as isize,
                    1,
                    x.as_ptr(),
                    1,
                    pixels as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::Rayon(0),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_textbook_product() {
        for (rows, ins, outs, with_bias) in [(5, 7, 3, true), (300, 40, 33, false), (1, 1, 1, true)] {
            let x: Vec<f32> = (0..rows * ins).map(|i| ((i * 37) % 19) as f32 / 9.0 - 1.0).collect();
            let w: Vec<f32> = (0..outs * ins).map(|i| ((i * 53) % 23) as f32 / 11.0 - 1.0).collect();
            let bias = with_bias.then(|| (0..outs).map(|o| o as f32 * 0.25).collect::<Vec<_>>());
            let got = Weights::from_torch(&w, bias.clone(), ins, outs).forward(&x);
            for r in 0..rows {
                for o in 0..outs {
                    let mut want = bias.as_ref().map_or(0.0, |b| f64::from(b[o]));
                    for c in 0..ins {
                        want += f64::from(x[r * ins + c]) * f64::from(w[o * ins + c]);
                    }
                    // f32 sums of up to 40 products of values in [-1, 1].
                    let error = (f64::from(got[r * outs + o]) - want).abs();
                    assert!(error <= 1e-5, "({rows}, {ins}, {outs}) [{r}, {o}]: off by {error}");
                }
            }
        }
    }

    /// As a 1x1 convolution: the same product with pixels for rows, on NCHW images.
    #[test]
    fn pointwise_convolution_matches_the_product_per_pixel() {
        let (batch, ins, outs, pixels) = (2, 9, 5, 37);
        let x: Vec<f32> = (0..batch * ins * pixels).map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0).collect();
        let w: Vec<f32> = (0..outs * ins).map(|i| ((i * 29) % 13) as f32 / 6.0 - 1.0).collect();
        let bias: Vec<f32> = (0..outs).map(|o| o as f32 - 2.0).collect();
        let weights = Weights::from_torch(&w, Some(bias), ins, outs);
        let got = weights.forward_channels_first(&x, batch);
        for b in 0..batch {
            // The same pixels as rows of `[pixels][in]`.
            let rows: Vec<f32> = (0..pixels)
                .flat_map(|p| (0..ins).map(move |c| (b, c, p)))
                .map(|(b, c, p)| x[(b * ins + c) * pixels + p])
                .collect();
            let want = weights.forward(&rows);
            for p in 0..pixels {
                for o in 0..outs {
                    let (g, w) = (got[(b * outs + o) * pixels + p], want[p * outs + o]);
                    assert!((g - w).abs() <= 1e-5, "[{b}, {o}, {p}]: {g} against {w}");
                }
            }
        }
    }
}
