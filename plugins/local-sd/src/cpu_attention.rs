//! Attention on the CPU backend, as PyTorch runs it there: for a block of query rows of one
//! head, the scores against every key in one matmul, a softmax with a vectorised `exp`, and the
//! values in a second matmul.
//!
//! Burn's CPU attention tiles the keys 64 at a time and calls the scalar `expf` once per score:
//! at 64x64 latents (4096 tokens, SD 1.5's first and last blocks) that is 268 million calls per
//! layer, a third of the UNet step. Here `exp` runs 4 to 16 lanes at a time (SSE2, AVX2 or
//! AVX-512, picked at run time), and query blocks of all heads run in parallel.
//!
//! Unsafe code: the `gemm` crate takes raw pointers and strides, the tasks share the output
//! buffer (each writes its own block).
#![allow(unsafe_code)]

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use crate::cpu_math::{LANES, SharedOut, exp, simd_dispatch};

/// Scores per task (4 MiB of f32): the query rows of a block are as many as fit, between
/// [`MIN_ROWS`] and [`MAX_ROWS`]. Each task has the matrix library repack its head's keys and
/// values, so more rows per task cost less; measured on SD 1.5's UNet step (4096 keys), 64 rows
/// took 6.04 s, 128 rows 5.87 s, 256 rows 5.78 s and 512 rows 5.79 s.
const SCORES: usize = 1 << 20;
const MIN_ROWS: usize = 16;
const MAX_ROWS: usize = 256;

/// The shapes of one attention call over `[batch, tokens, heads * head_dim]` row-major data.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub batch: usize,
    pub queries: usize,
    pub keys: usize,
    pub heads: usize,
    pub head_dim: usize,
}

/// `softmax(q k^T / sqrt(head_dim)) v` per head, written into `out` (same layout as `q`).
///
/// # Panics
/// When a slice's length does not match `shape`.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], out: &mut [f32], shape: Shape) {
    let Shape {
        batch,
        queries,
        keys,
        heads,
        head_dim,
    } = shape;
    let inner = heads * head_dim;
    assert_eq!(q.len(), batch * queries * inner, "query length");
    assert_eq!(k.len(), batch * keys * inner, "key length");
    assert_eq!(v.len(), batch * keys * inner, "value length");
    assert_eq!(out.len(), batch * queries * inner, "output length");
    if out.is_empty() {
        return;
    }
    if keys == 0 {
        out.fill(0.0);
        return;
    }
    let scale = 1.0 / (head_dim as f32).sqrt();
    // Keys per (batch, head) as `[head_dim][keys]`: the matrix library reads operands whose
    // rows run along the product's long side as they are, and would otherwise gather every
    // block's keys one float at a time.
    let mut keys_t = vec![0f32; k.len()];
    keys_t
        .par_chunks_mut(head_dim * keys)
        .enumerate()
        .for_each(|(bh, dst)| {
            let (b, h) = (bh / heads, bh % heads);
            for (key, src) in k[b * keys * inner..].chunks(inner).take(keys).enumerate() {
                for (c, &value) in src[h * head_dim..][..head_dim].iter().enumerate() {
                    dst[c * keys + key] = value;
                }
            }
        });
    let block_rows = (SCORES / keys).clamp(MIN_ROWS, MAX_ROWS);
    let blocks = queries.div_ceil(block_rows);
    let out = SharedOut::new(out);
    (0..batch * heads * blocks).into_par_iter().for_each_init(
        || vec![0f32; block_rows * keys],
        |scores, task| {
            let (b, rest) = (task / (heads * blocks), task % (heads * blocks));
            let (h, block) = (rest / blocks, rest % blocks);
            let first = block * block_rows;
            let rows = block_rows.min(queries - first);
            let q_at = (b * queries + first) * inner + h * head_dim;
            let kv_at = b * keys * inner + h * head_dim;
            let kt_at = (b * heads + h) * head_dim * keys;
            let scores = &mut scores[..rows * keys];
            // SAFETY: every pointer stays inside its slice (lengths checked above): rows
            // `first..first + rows` of batch `b`, columns `h * head_dim..(h + 1) * head_dim`,
            // with the row stride `inner`. Tasks write disjoint (row, head) blocks of `out`.
            unsafe {
                // scores[rows, keys] = scale * q[rows, d] * k_t[d, keys]
                gemm(
                    rows,
                    keys,
                    head_dim,
                    scores.as_mut_ptr(),
                    1,
                    keys as isize,
                    false,
                    q.as_ptr().add(q_at),
                    1,
                    inner as isize,
                    keys_t.as_ptr().add(kt_at),
                    1,
                    keys as isize,
                    0.0,
                    scale,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
            let mut sums = [0f32; MAX_ROWS];
            for (row, sum) in scores.chunks_exact_mut(keys).zip(&mut sums) {
                *sum = softmax_numerator(row);
            }
            // SAFETY: as above; `dst` addresses this task's block of `out`.
            unsafe {
                let dst = out.at(q_at);
                // out[rows, d] = exp_scores[rows, keys] * v[keys, d]
                gemm(
                    rows,
                    head_dim,
                    keys,
                    dst,
                    1,
                    inner as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    keys as isize,
                    v.as_ptr().add(kv_at),
                    1,
                    inner as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
                for (r, sum) in sums[..rows].iter().enumerate() {
                    let row = std::slice::from_raw_parts_mut(dst.add(r * inner), head_dim);
                    let inv = 1.0 / sum;
                    row.iter_mut().for_each(|x| *x *= inv);
                }
            }
        },
    );
}

simd_dispatch! {
    /// Replace `row` by `exp(row - max(row))` and return its sum (softmax before the division).
    fn softmax_numerator(row: &mut [f32]) -> f32 = softmax_numerator_lanes;
}

#[inline(always)]
fn softmax_numerator_lanes(row: &mut [f32]) -> f32 {
    let mut maxes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &x) in maxes.iter_mut().zip(chunk) {
            *m = if x > *m { x } else { *m };
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&maxes)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    if max == f32::NEG_INFINITY {
        // Only possible for a row of -inf scores; keep the sum finite.
        row.fill(0.0);
        return 1.0;
    }
    let mut sums = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (s, x) in sums.iter_mut().zip(chunk.iter_mut()) {
            *x = exp(*x - max);
            *s += *x;
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for x in chunks.into_remainder() {
        *x = exp(*x - max);
        sum += *x;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_math::testing::max_abs_diff;

    /// Attention computed the textbook way, in f64.
    fn reference(q: &[f32], k: &[f32], v: &[f32], s: Shape) -> Vec<f32> {
        let inner = s.heads * s.head_dim;
        let mut out = vec![0f32; q.len()];
        let scale = 1.0 / (s.head_dim as f64).sqrt();
        for b in 0..s.batch {
            for h in 0..s.heads {
                for i in 0..s.queries {
                    let qi = &q[(b * s.queries + i) * inner + h * s.head_dim..][..s.head_dim];
                    let scores: Vec<f64> = (0..s.keys)
                        .map(|j| {
                            let kj = &k[(b * s.keys + j) * inner + h * s.head_dim..][..s.head_dim];
                            qi.iter().zip(kj).map(|(a, c)| f64::from(a * c)).sum::<f64>() * scale
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f64 = weights.iter().sum();
                    for c in 0..s.head_dim {
                        let value: f64 = (0..s.keys)
                            .map(|j| {
                                weights[j]
                                    * f64::from(v[(b * s.keys + j) * inner + h * s.head_dim + c])
                            })
                            .sum();
                        out[(b * s.queries + i) * inner + h * s.head_dim + c] =
                            (value / total) as f32;
                    }
                }
            }
        }
        out
    }

    fn noise(len: usize, seed: u32, amplitude: f32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32 * 2.0 - 1.0) * amplitude
            })
            .collect()
    }

    #[test]
    fn matches_textbook_attention() {
        // Row blocks with a partial last one, key counts off the 16 lanes, one and several
        // heads, batches of one and two, cross-attention (77 text tokens), and large scores.
        for (shape, amplitude) in [
            (Shape { batch: 2, queries: 150, keys: 150, heads: 3, head_dim: 8 }, 1.0),
            (Shape { batch: 1, queries: 64, keys: 77, heads: 2, head_dim: 40 }, 1.0),
            (Shape { batch: 1, queries: 5, keys: 3, heads: 1, head_dim: 4 }, 1.0),
            (Shape { batch: 2, queries: 70, keys: 33, heads: 1, head_dim: 16 }, 8.0),
            // Two blocks of query rows, the second partial.
            (Shape { batch: 1, queries: 300, keys: 20, heads: 2, head_dim: 8 }, 1.0),
        ] {
            let inner = shape.heads * shape.head_dim;
            let q = noise(shape.batch * shape.queries * inner, 1, amplitude);
            let k = noise(shape.batch * shape.keys * inner, 2, amplitude);
            let v = noise(shape.batch * shape.keys * inner, 3, 1.0);
            let mut out = vec![f32::NAN; q.len()];
            attention(&q, &k, &v, &mut out, shape);
            let want = reference(&q, &k, &v, shape);
            let worst = max_abs_diff(&out, &want);
            // f32 sums of up to 150 products against an f64 reference.
            assert!(worst <= 1e-5, "{shape:?}: off by {worst}");
        }
    }
}
