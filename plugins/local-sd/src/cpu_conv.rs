//! 2-D convolution (stride 1) on the CPU backend as matrix products over the input itself, with
//! no im2col buffer.
//!
//! Burn's CPU convolution copies every 3x3 patch into an im2col tile (nine copies of the input),
//! transposes its weights on every call, and scatters each tile's result into the output one
//! element at a time. Here the input is copied once into a zero-padded, channels-last image.
//! In that layout, for one kernel row `kh`, the patch values of output pixel `(y, x)` for all
//! kernel columns and channels are `k * channels` consecutive floats, and the next pixel's start
//! `channels` floats later. So the product over one kernel row is a single matrix product
//! whose right operand is the padded image read with a stride (`k` of them per output band,
//! accumulated in place), and the matrix library blocks it for the caches as it blocks any
//! product. Rows of the output are computed on the padded width (the extra `k - 1` columns per
//! row are never copied out), which lets one product cover several output rows. Each band is
//! computed into a buffer, `[out][pixels]` or `[pixels][out]` (whichever the matrix library
//! runs faster for the layer, see [`Kernel::from_torch`]), then copied into the output.
//!
//! 3x3 layers with padding 1 within [`WINOGRAD_MIN_IN`] and [`WINOGRAD_MAX_OUT`] channels run
//! Winograd's method instead ([`crate::cpu_winograd`]), on the same padded image.
//!
//! Unsafe code: the `gemm` crate takes raw pointers and strides, and parallel tasks share the
//! output buffer (each writes its own rows).
#![allow(unsafe_code)]

use std::sync::{Mutex, PoisonError};

use gemm::gemm;
use rayon::prelude::*;

use crate::cpu_math::{Bands, SharedOut};
use crate::cpu_winograd;

/// Winograd's method runs the 3x3 convolutions (padding 1) with at least this many input
/// channels (below, the products over channels are too short to gain from it: SD's first
/// layers have 4)...
const WINOGRAD_MIN_IN: usize = 16;
/// ... and at most this many output channels. Its weights are 16/9 the size of the direct ones
/// and read once per band, so on small images the direct method is as fast, and takes less
/// memory. A layer does not know its image size until it runs, and a layer's method must not
/// depend on what ran before (the same request gives the same image), so the choice is by
/// shape: in SD 1.5 at 512x512 the 1280-channel layers are the only ones at 16x16 and 8x8
/// latents. Measured per layer (2 threads, ms per call, direct / Winograd): 640 channels at
/// 32x32, batch 2: 40.7 / 23.0; 1280 at 16x16: 47.6 / 29.8, at 8x8: 16.8 / 17.5, and at 16x16
/// batch 1: 23.8 / 26.1. Winograd's weights for the 1280-channel layers too would make the UNet
/// step ~5 % faster (5.3 -> 5.1 s) for 1.4 GiB more memory in fp32.
const WINOGRAD_MAX_OUT: usize = 640;

/// Output pixels (on the padded width) per matrix product: the band's partial sums
/// (`out_channels x PIXELS` f32, 256 KiB at 128 channels) stay in the core's L2 cache while the
/// kernel rows accumulate into them.
const PIXELS: usize = 512;

/// A convolution's weights in the layout the products read, and its bias.
#[derive(Debug)]
pub struct Kernel {
    /// The weights in the layout of `method`.
    weight: Vec<f32>,
    method: Method,
    bias: Option<Vec<f32>>,
    out_channels: usize,
    in_channels: usize,
    size: usize,
    padding: usize,
}

/// How a kernel's products run, and so its weights' layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// One product per kernel row and band, writing `[out][pixels]` (weights
    /// `[out][kh][kw][in]`).
    ChannelsFirst,
    /// The same writing `[pixels][out]` (weights `[kh][kw][in][out]`).
    ChannelsLast,
    /// 3x3 with padding 1 by [`cpu_winograd`] (weights `[16][in][out]`, transformed).
    Winograd,
}

impl Kernel {
    /// From torch's `[out][in][kh][kw]` weight layout.
    ///
    /// # Panics
    /// When a slice's length does not match the shape.
    pub fn from_torch(
        weight: &[f32],
        bias: Option<Vec<f32>>,
        out_channels: usize,
        in_channels: usize,
        size: usize,
        padding: usize,
    ) -> Self {
        // Measured on SD 1.5 (bench `sd15`, VAE decode and UNet step on the CPU): writing
        // `[pixels][out]` is faster up to 512 output channels (the VAE: 8.0 against 8.7 s),
        // `[out][pixels]` above (the UNet's 640 and 1280-channel layers).
        let method = if runs_winograd(out_channels, in_channels, size, padding) {
            Method::Winograd
        } else if out_channels <= 512 {
            Method::ChannelsLast
        } else {
            Method::ChannelsFirst
        };
        Self::with_method(weight, bias, out_channels, in_channels, size, padding, method)
    }

    /// As [`Self::from_torch`], with the method chosen by the caller.
    #[allow(clippy::too_many_arguments)]
    fn with_method(
        weight: &[f32],
        bias: Option<Vec<f32>>,
        out_channels: usize,
        in_channels: usize,
        size: usize,
        padding: usize,
        method: Method,
    ) -> Self {
        let taps = size * size;
        assert_eq!(
            weight.len(),
            out_channels * in_channels * taps,
            "weight length"
        );
        if let Some(bias) = &bias {
            assert_eq!(bias.len(), out_channels, "bias length");
        }
        if method == Method::Winograd {
            assert!(size == 3 && padding == 1, "Winograd's method is for 3x3 with padding 1");
        }
        let packed = match method {
            Method::Winograd => {
                let tap = |o: usize, c: usize, tap: usize| weight[(o * in_channels + c) * 9 + tap];
                cpu_winograd::transform_weights(tap, out_channels, in_channels)
            }
            Method::ChannelsLast => {
                let mut packed = vec![0f32; weight.len()];
                let per_tap = in_channels * out_channels;
                if per_tap > 0 {
                    packed
                        .par_chunks_mut(per_tap)
                        .enumerate()
                        .for_each(|(tap, dst)| {
                            for (c, row) in dst.chunks_exact_mut(out_channels).enumerate() {
                                for (o, value) in row.iter_mut().enumerate() {
                                    *value = weight[(o * in_channels + c) * taps + tap];
                                }
                            }
                        });
                }
                packed
            }
            Method::ChannelsFirst => {
                let mut packed = vec![0f32; weight.len()];
                let per_out = in_channels * taps;
                if per_out > 0 {
                    packed
                        .par_chunks_mut(per_out)
                        .zip(weight.par_chunks(per_out))
                        .for_each(|(dst, src)| {
                            for (c, taps_of_c) in src.chunks_exact(taps).enumerate() {
                                for (tap, &value) in taps_of_c.iter().enumerate() {
                                    dst[tap * in_channels + c] = value;
                                }
                            }
                        });
                }
                packed
            }
        };
        Self {
            weight: packed,
            method,
            bias,
            out_channels,
            in_channels,
            size,
            padding,
        }
    }

    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// The output's height and width for an input of `height x width`.
    pub fn output_size(&self, height: usize, width: usize) -> (usize, usize) {
        let span = |n: usize| (n + 2 * self.padding + 1).saturating_sub(self.size);
        (span(height), span(width))
    }

    /// Convolve `x` (`[batch][in][height][width]`, row-major) into a new
    /// `[batch][out][out_height][out_width]` buffer: [`Self::pad`] then [`Self::convolve`].
    ///
    /// # Panics
    /// As [`Self::pad`].
    pub fn forward(
        &self,
        x: &[f32],
        batch: usize,
        height: usize,
        width: usize,
        scale: usize,
    ) -> Vec<f32> {
        let padded = self.pad(x, batch, height, width, scale);
        let mut out = vec![0f32; padded.output_len()];
        self.convolve(padded, &mut out);
        out
    }

    /// The first half of a convolution: `x` (`[batch][in][height][width]`), upscaled `scale`
    /// times by nearest-neighbour sampling (`torch`'s `interpolate(mode="nearest")` to exactly
    /// `scale` times the size; 1 for none), copied into a zero-padded channels-last image. The
    /// upscaled image itself is never made. After this, `x` is no longer read: its buffer may
    /// receive the output.
    ///
    /// # Panics
    /// When `x`'s length does not match the shape, or `scale` is 0.
    pub fn pad(&self, x: &[f32], batch: usize, height: usize, width: usize, scale: usize) -> Padded {
        assert!(scale > 0, "scale 0");
        assert_eq!(
            x.len(),
            batch * self.in_channels * height * width,
            "input length"
        );
        let (out_h, out_w) = self.output_size(height * scale, width * scale);
        let size = if self.method == Method::Winograd {
            self.winograd_shape(batch, out_h, out_w).padded_size()
        } else {
            let p = self.padding;
            [height * scale + 2 * p, width * scale + 2 * p]
        };
        let mut values = take_workspace();
        if out_h * out_w > 0 && self.in_channels > 0 {
            let source = [height, width];
            let padding = (self.padding, size);
            pad_channels_last(x, &mut values, batch, self.in_channels, source, scale, padding);
        }
        Padded {
            values,
            batch,
            height: height * scale,
            width: width * scale,
            size,
            out_len: batch * self.out_channels * out_h * out_w,
        }
    }

    /// The second half: the convolution of the padded image into `out`
    /// (`[batch][out][out_height][out_width]` for the upscaled size). Every element of `out`
    /// is written; its old values are never read.
    ///
    /// # Panics
    /// When `out`'s length is not [`Padded::output_len`].
    pub fn convolve(&self, padded: Padded, out: &mut [f32]) {
        let Self {
            out_channels: outs,
            in_channels: ins,
            size: k,
            ..
        } = *self;
        let Padded {
            values: padded,
            batch,
            height,
            width,
            size: [pad_h, pad_w],
            out_len,
        } = padded;
        assert_eq!(out.len(), out_len, "output length");
        let (out_h, out_w) = self.output_size(height, width);
        if out_len == 0 || ins == 0 {
            out.fill(0.0);
            self.add_bias(out, out_h * out_w);
            return_workspace(padded);
            return;
        }
        if self.method == Method::Winograd {
            let shape = self.winograd_shape(batch, out_h, out_w);
            cpu_winograd::convolve(&self.weight, self.bias.as_deref(), &padded, shape, out);
            return_workspace(padded);
            return;
        }
        // A band is `rows` output rows of one image: one product per kernel row.
        let rows = (PIXELS / pad_w).clamp(1, out_h);
        let channels_last_out = self.method == Method::ChannelsLast;
        let bands = out_h.div_ceil(rows);
        let tasks = batch * bands;
        let schedule = Bands {
            split_products: tasks < 2 * rayon::current_num_threads(),
        };
        let inner = schedule.products();
        let plane = out_h * out_w;
        let shared = SharedOut::new(out);
        let band = |buffer: &mut Vec<f32>, task: usize| {
            let (b, first) = (task / bands, (task % bands) * rows);
            let rows = rows.min(out_h - first);
            // Output pixels on the padded width; the last row stops at `out_w`.
            let n = (rows - 1) * pad_w + out_w;
            let image_at = b * outs * plane + first * out_w;
            // The band as `[n][out]`, transposed into the output, or as `[out][n]`; both
            // copied out without the padding columns.
            let (dst_cs, dst_rs) = if channels_last_out { (outs, 1) } else { (1, n) };
            let (lhs_at, lhs_cs, lhs_rs) = if channels_last_out {
                (k * ins * outs, outs, 1)
            } else {
                (k * ins, 1, k * k * ins)
            };
            buffer.resize(n * outs, 0.0);
            let dst = buffer.as_mut_ptr();
            for kh in 0..k {
                let rhs_at = ((b * pad_h + first + kh) * pad_w) * ins;
                // SAFETY: dst[m, j] at `dst + m * dst_rs + j * dst_cs` for m < outs, j < n
                // stays in `buffer` (n * outs). lhs[m, c] (c < k * ins) is weight[kh][c / ins]
                // [c % ins][m] or weight[m][kh][c / ins][c % ins], in `weight`. rhs[c, j]
                // = padded[rhs_at + j * ins + c]: the largest index is the band's last output
                // pixel's last tap, `((b * pad_h + first + rows - 1 + kh) * pad_w + out_w - 1
                // + k - 1) * ins + ins - 1`, inside `padded` because out_w + k - 1 = pad_w
                // and first + rows - 1 + kh <= out_h - 1 + k - 1 = pad_h - 1.
                unsafe {
                    gemm(
                        outs,
                        n,
                        k * ins,
                        dst,
                        dst_cs as isize,
                        dst_rs as isize,
                        kh > 0,
                        self.weight.as_ptr().add(kh * lhs_at),
                        lhs_cs as isize,
                        lhs_rs as isize,
                        padded.as_ptr().add(rhs_at),
                        ins as isize,
                        1,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        inner,
                    );
                }
            }
            if channels_last_out {
                for row in 0..rows {
                    let src = &buffer[row * pad_w * outs..][..out_w * outs];
                    // SAFETY: row `first + row` of every channel of image `b`: this band's,
                    // as `out_w` values at `image_at + row * out_w + m * plane`, m < outs.
                    unsafe {
                        let dst = shared.at(image_at + row * out_w);
                        transpose(src, outs, out_w, outs, dst, plane, self.bias.as_deref());
                    }
                }
                return;
            }
            for m in 0..outs {
                let bias = self.bias.as_ref().map_or(0.0, |bias| bias[m]);
                for row in 0..rows {
                    let at = image_at + m * plane + row * out_w;
                    // SAFETY: row `first + row` of channel `m` of image `b`: this band's.
                    let dst = unsafe { std::slice::from_raw_parts_mut(shared.at(at), out_w) };
                    let src = &buffer[m * n + row * pad_w..][..out_w];
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d = s + bias);
                }
            }
        };
        schedule.run(tasks, Vec::new, band);
        return_workspace(padded);
    }

    fn winograd_shape(&self, batch: usize, height: usize, width: usize) -> cpu_winograd::Shape {
        cpu_winograd::Shape {
            batch,
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            height,
            width,
        }
    }

    fn add_bias(&self, out: &mut [f32], plane: usize) {
        if let Some(bias) = &self.bias
            && plane > 0
        {
            for (channel, values) in out.chunks_exact_mut(plane).enumerate() {
                values.fill(bias[channel % self.out_channels]);
            }
        }
    }
}

/// Whether [`Kernel::from_torch`] runs a convolution of this shape by Winograd's method.
fn runs_winograd(out_channels: usize, in_channels: usize, size: usize, padding: usize) -> bool {
    size == 3
        && padding == 1
        && in_channels >= WINOGRAD_MIN_IN
        && out_channels <= WINOGRAD_MAX_OUT
}

/// How many values Winograd's weights add (7 per 9: 16 values per channel pair instead of 9)
/// for the convolutions among `shapes` that run it (weight tensors named as diffusers names
/// them, torch's `[out][in][kh][kw]`; the stride-2 downsamplers do not run here), for the
/// memory estimate.
pub fn winograd_extra_values<'a>(shapes: impl Iterator<Item = (&'a str, &'a [usize])>) -> u64 {
    shapes
        .filter(|(name, _)| name.ends_with(".weight") && !name.contains("downsamplers"))
        .filter_map(|(_, shape)| match *shape {
            // Every 3x3 convolution but the downsamplers has padding 1.
            [outs, ins, kh, kw] if kh == kw && runs_winograd(outs, ins, kh, 1) => {
                Some((outs * ins * 7) as u64)
            }
            _ => None,
        })
        .sum()
}

/// The padded input of the last convolution, kept for the next one: a fresh buffer of that size
/// (up to 270 MB in SD's VAE) costs a page fault and the kernel's zeroing per 4 KiB page.
static WORKSPACE: Mutex<Vec<f32>> = Mutex::new(Vec::new());

fn take_workspace() -> Vec<f32> {
    std::mem::take(&mut *WORKSPACE.lock().unwrap_or_else(PoisonError::into_inner))
}

fn return_workspace(buffer: Vec<f32>) {
    let mut kept = WORKSPACE.lock().unwrap_or_else(PoisonError::into_inner);
    if buffer.capacity() > kept.capacity() {
        *kept = buffer;
    }
}

/// Free the buffer convolutions keep between calls (after a generation's last decode).
pub fn release_workspace() {
    *WORKSPACE.lock().unwrap_or_else(PoisonError::into_inner) = Vec::new();
    cpu_winograd::release_scratch();
}

/// `x` (`[batch][channels][height][width]`, `[height, width]` = `source`), upscaled `scale`
/// times by nearest-neighbour sampling, written into `padded` as
/// `[batch][pad_h][pad_w][channels]` with `p` rows and columns of zeros above and to the left,
/// and zeros in the rest of the `[pad_h, pad_w]` of `padding = (p, [pad_h, pad_w])` (at least
/// `p` more). Every element is written: `padded` may hold an earlier call's values.
fn pad_channels_last(
    x: &[f32],
    padded: &mut Vec<f32>,
    batch: usize,
    channels: usize,
    source: [usize; 2],
    scale: usize,
    padding: (usize, [usize; 2]),
) {
    let [source_h, source_w] = source;
    let (height, width) = (source_h * scale, source_w * scale);
    let (p, [pad_h, pad_w]) = padding;
    debug_assert!(pad_h >= height + 2 * p && pad_w >= width + 2 * p, "padded size");
    let plane = source_h * source_w;
    let len = batch * pad_h * pad_w * channels;
    padded.truncate(len);
    padded.resize(len, 0.0);
    padded
        .par_chunks_mut(pad_w * channels)
        .enumerate()
        .for_each(|(row, dst)| {
            let (b, y) = (row / pad_h, row % pad_h);
            if y < p || y >= p + height {
                dst.fill(0.0);
                return;
            }
            let src = &x[b * channels * plane + (y - p) / scale * source_w..];
            let (left, rest) = dst.split_at_mut(p * channels);
            let (dst, right) = rest.split_at_mut(width * channels);
            left.fill(0.0);
            right.fill(0.0);
            // SAFETY: `dst[col * channels + c]` for col < source_w, c < channels lies in `dst`
            // (`width * channels` long), which this task holds alone.
            unsafe { transpose(src, plane, channels, source_w, dst.as_mut_ptr(), channels, None) };
            // Spread the source pixels right to left: pixel `col` goes to `scale * col ..`,
            // never before where it is read from.
            if scale > 1 {
                for col in (0..source_w).rev() {
                    let from = col * channels;
                    for copy in (0..scale).rev() {
                        dst.copy_within(from..from + channels, (col * scale + copy) * channels);
                    }
                }
            }
        });
}

/// An input made ready by [`Kernel::pad`] for [`Kernel::convolve`].
#[derive(Debug)]
pub struct Padded {
    values: Vec<f32>,
    batch: usize,
    /// The (upscaled) input's size.
    height: usize,
    width: usize,
    /// The padded image's height and width.
    size: [usize; 2],
    out_len: usize,
}

impl Padded {
    /// The length of the convolution's output.
    pub fn output_len(&self) -> usize {
        self.out_len
    }
}

/// `dst[j * dst_stride + i] = src[i * src_stride + j] + bias[j]` (no addition without a bias)
/// for `i < rows`, `j < cols`: between one row of an NCHW image (its channels `src_stride`
/// apart) and channels-last pixels, either way. Whole 16 x 16 tiles go through a local array,
/// so that both the loads and the stores are contiguous runs of 16.
///
/// # Safety
/// `dst + j * dst_stride + i` for those `i` and `j` must be valid for writes, and not accessed
/// elsewhere meanwhile (other tasks may write other rows of the same image).
pub(crate) unsafe fn transpose(
    src: &[f32],
    src_stride: usize,
    rows: usize,
    cols: usize,
    dst: *mut f32,
    dst_stride: usize,
    bias: Option<&[f32]>,
) {
    const T: usize = 16;
    let bias_of = |j: usize| bias.map_or(0.0, |bias| bias[j]);
    // SAFETY: the caller's contract.
    let run = |j: usize, i: usize, len: usize| unsafe {
        std::slice::from_raw_parts_mut(dst.add(j * dst_stride + i), len)
    };
    let (full_i, full_j) = (rows - rows % T, cols - cols % T);
    for i0 in (0..full_i).step_by(T) {
        for j0 in (0..full_j).step_by(T) {
            let mut tile = [[0f32; T]; T];
            for (ii, values) in tile.iter_mut().enumerate() {
                values.copy_from_slice(&src[(i0 + ii) * src_stride + j0..][..T]);
            }
            // `jj` indexes the tile's inner axis.
            #[allow(clippy::needless_range_loop)]
            for jj in 0..T {
                let bias = bias_of(j0 + jj);
                for (ii, value) in run(j0 + jj, i0, T).iter_mut().enumerate() {
                    *value = tile[ii][jj] + bias;
                }
            }
        }
    }
    // The edges: the last rows (all columns), the last columns (the other rows).
    for j in 0..cols {
        let bias = bias_of(j);
        let first = if j < full_j { full_i } else { 0 };
        for (i, value) in run(j, first, rows - first).iter_mut().enumerate() {
            *value = src[(first + i) * src_stride + j] + bias;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_math::testing::{max_abs_diff, noise};

    /// The textbook definition in f64.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        batch: usize,
        ins: usize,
        outs: usize,
        h: usize,
        wd: usize,
        k: usize,
        p: usize,
    ) -> Vec<f32> {
        let oh = (h + 2 * p + 1).saturating_sub(k);
        let ow = (wd + 2 * p + 1).saturating_sub(k);
        let mut out = vec![0f32; batch * outs * oh * ow];
        for b in 0..batch {
            for o in 0..outs {
                for y in 0..oh {
                    for xx in 0..ow {
                        let mut sum = bias.map_or(0.0, |bias| f64::from(bias[o]));
                        for c in 0..ins {
                            for kh in 0..k {
                                for kw in 0..k {
                                    let (iy, ix) = (y + kh, xx + kw);
                                    if iy < p || ix < p || iy - p >= h || ix - p >= wd {
                                        continue;
                                    }
                                    let xv = x[((b * ins + c) * h + iy - p) * wd + ix - p];
                                    let wv = w[((o * ins + c) * k + kh) * k + kw];
                                    sum += f64::from(xv) * f64::from(wv);
                                }
                            }
                        }
                        out[((b * outs + o) * oh + y) * ow + xx] = sum as f32;
                    }
                }
            }
        }
        out
    }

    /// The methods for a kernel of size `k` and padding `p`.
    fn methods(k: usize, p: usize) -> Vec<Method> {
        let mut methods = vec![Method::ChannelsFirst, Method::ChannelsLast];
        if k == 3 && p == 1 {
            methods.push(Method::Winograd);
        }
        methods
    }

    /// Shapes that exercise one-row bands (wide images), multi-row bands with a partial last
    /// band, products split by the library (few bands), kernels of 1, 3 and 5, no padding,
    /// channel counts that are not multiples of the copy block, and no bias. Each case reuses
    /// the padded buffer of the one before, larger or smaller.
    #[test]
    fn matches_textbook_convolution() {
        let cases = [
            // (batch, in, out, h, w, k, p, bias)
            (2, 5, 7, 9, 11, 3, 1, true),
            (1, 3, 4, 6, 600, 3, 1, true),
            (2, 17, 9, 37, 29, 3, 1, false),
            (1, 8, 6, 12, 10, 5, 2, true),
            (1, 4, 3, 7, 8, 3, 0, true),
            (3, 6, 5, 5, 4, 1, 0, true),
            (1, 33, 40, 3, 3, 3, 1, true),
            // Whole 16 x 16 tiles and edges when transposing the output.
            (1, 20, 35, 6, 37, 3, 1, true),
            (1, 7, 33, 2, 530, 3, 1, true),
            // Same input and output size: also computed into the input's buffer.
            (2, 6, 6, 10, 9, 3, 1, true),
        ];
        for (i, &(batch, ins, outs, h, w, k, p, with_bias)) in cases.iter().enumerate() {
            let seed = i as u32 * 10;
            let x = noise(batch * ins * h * w, seed);
            let weight = noise(outs * ins * k * k, seed + 1);
            let bias = with_bias.then(|| noise(outs, seed + 2));
            let want = reference(&x, &weight, bias.as_deref(), batch, ins, outs, h, w, k, p);
            for method in methods(k, p) {
                let kernel = Kernel::with_method(&weight, bias.clone(), outs, ins, k, p, method);
                let got = kernel.forward(&x, batch, h, w, 1);
                // Into the input's own buffer, as the layers do when the sizes match.
                if x.len() == got.len() {
                    let mut buffer = x.clone();
                    let padded = kernel.pad(&buffer, batch, h, w, 1);
                    kernel.convolve(padded, &mut buffer);
                    assert_eq!(buffer, got, "case {i} ({method:?}): in place");
                }
                assert_eq!(got.len(), want.len(), "case {i}: length");
                // f32 sums of up to 33 * 9 products of values in [-1, 1]: rounding stays far
                // below 1e-4.
                let worst = max_abs_diff(&got, &want);
                assert!(worst <= 1e-4, "case {i} ({method:?}): max abs error {worst}");
            }
        }
    }

    /// Nearest-neighbour upscaling by an integer factor, as torch's `interpolate` to exactly
    /// that size: output pixel `(y, x)` is input pixel `(y / scale, x / scale)`.
    fn upscale(x: &[f32], planes: usize, h: usize, w: usize, scale: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(x.len() * scale * scale);
        for plane in x.chunks_exact(h * w).take(planes) {
            for y in 0..h * scale {
                for xx in 0..w * scale {
                    out.push(plane[(y / scale) * w + xx / scale]);
                }
            }
        }
        out
    }

    /// The upscaling convolution against upscaling then the textbook convolution, with
    /// several bands per image, odd sizes and channel counts, and a padding of 0 and 1.
    #[test]
    fn upscaled_input_matches_upscaling_first() {
        let cases = [
            // (batch, in, out, h, w, k, p, scale)
            (2, 5, 7, 9, 11, 3, 1, 2),
            (1, 19, 6, 13, 40, 3, 1, 2),
            (1, 4, 3, 7, 8, 3, 0, 2),
            (2, 3, 4, 5, 6, 3, 1, 3),
        ];
        for (i, &(batch, ins, outs, h, w, k, p, scale)) in cases.iter().enumerate() {
            let seed = 100 + i as u32 * 10;
            let x = noise(batch * ins * h * w, seed);
            let weight = noise(outs * ins * k * k, seed + 1);
            let bias = noise(outs, seed + 2);
            let big = upscale(&x, batch * ins, h, w, scale);
            let (bh, bw) = (h * scale, w * scale);
            let want = reference(&big, &weight, Some(&bias), batch, ins, outs, bh, bw, k, p);
            for method in methods(k, p) {
                let bias = Some(bias.clone());
                let kernel = Kernel::with_method(&weight, bias, outs, ins, k, p, method);
                let got = kernel.forward(&x, batch, h, w, scale);
                assert_eq!(got.len(), want.len(), "case {i}: length");
                // As in `matches_textbook_convolution`: f32 rounding of short sums.
                let worst = max_abs_diff(&got, &want);
                assert!(worst <= 1e-4, "case {i} ({method:?}): max abs error {worst}");
            }
        }
    }

    /// `from_torch` runs Winograd's method for the 3x3 convolutions with padding 1 within its
    /// channel bounds, and the direct one for the others.
    #[test]
    fn picks_winograd_by_shape() {
        let cases = [
            // (in, out, k, p, Winograd)
            (WINOGRAD_MIN_IN, WINOGRAD_MAX_OUT, 3, 1, true),
            (WINOGRAD_MIN_IN - 1, 8, 3, 1, false),
            (WINOGRAD_MIN_IN, WINOGRAD_MAX_OUT + 1, 3, 1, false),
            (WINOGRAD_MIN_IN, 8, 3, 0, false),
            (WINOGRAD_MIN_IN, 8, 5, 2, false),
        ];
        for (ins, outs, k, p, winograd) in cases {
            let kernel = Kernel::from_torch(&vec![0.5; outs * ins * k * k], None, outs, ins, k, p);
            let method = kernel.method;
            assert_eq!(method == Method::Winograd, winograd, "{ins} -> {outs}, {k}x{k}, p {p}");
        }
        let shapes = [
            ("up.0.conv1.weight", vec![640, 1920, 3, 3]),
            ("up.0.conv2.weight", vec![1280, 1280, 3, 3]),
            ("down.0.downsamplers.0.conv.weight", vec![320, 320, 3, 3]),
            ("conv_in.weight", vec![320, 4, 3, 3]),
            ("proj.weight", vec![320, 320, 1, 1]),
        ];
        let extra = winograd_extra_values(shapes.iter().map(|(n, s)| (*n, s.as_slice())));
        assert_eq!(extra, 640 * 1920 * 7);
    }

    #[test]
    fn an_input_smaller_than_the_kernel_gives_an_empty_output() {
        let kernel = Kernel::from_torch(&noise(2 * 3 * 25, 1), None, 2, 3, 5, 0);
        assert_eq!(kernel.output_size(3, 9), (0, 5));
        assert!(kernel.forward(&noise(3 * 3 * 9, 2), 1, 3, 9, 1).is_empty());
    }
}
