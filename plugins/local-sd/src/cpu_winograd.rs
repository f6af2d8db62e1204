//! 3x3 convolutions (stride 1, padding 1) on the CPU backend by Winograd's minimal filtering
//! F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
//!
//! Each 2x2 block of output pixels ("tile") is computed from the 4x4 block of input pixels
//! around it: the input block is transformed (`B^T d B`, additions only), multiplied element by
//! element with the transformed weights (`G g G^T`, computed once at load), summed over the
//! input channels, and transformed back (`A^T m A`, additions only). Summed over channels, the
//! element-wise products of one of the 16 positions are a matrix product
//! `[tiles][in] x [in][out]`, so the work is 16 products per band of tiles instead of the 9 per
//! band of pixels of the direct method: 16 multiplications per tile and channel pair against
//! 36, 2.25 times fewer. The transforms are additions over channels-last data, 16 lanes at a
//! time.
//!
//! The input is the zero-padded channels-last image of [`crate::cpu_conv`] (with one more zero
//! row or column when the output's height or width is odd, so that every tile is whole).
//! Products write `[tiles][out]`; each band's output rows are transposed into the NCHW output
//! with the bias, as the direct method does.
//!
//! Rounding: the transforms only add and subtract (with weights 1 and 1/2), so the rounding
//! stays of the direct method's order: the unit tests hold both to the same 1e-4 of an f64
//! reference, and the diffusers parity tests pass unchanged.
//!
//! Unsafe code: the `gemm` crate takes raw pointers and strides, and parallel tasks share the
//! output buffer (each writes its own rows).
#![allow(unsafe_code)]

use std::sync::{Mutex, PoisonError};

use gemm::gemm;
use rayon::prelude::*;

use crate::cpu_conv::transpose;
use crate::cpu_math::{Bands, LANES, SharedOut, simd_dispatch};

/// Positions of a transformed 4x4 tile.
const POSITIONS: usize = 16;

/// Floats of transformed input and products per band (16 MiB): `16 * tiles * (in + out)`.
/// At SD 1.5's 320 channels that is 409 tiles per band, at the VAE's 128 channels 1024: enough
/// rows per product that packing the weights stays a small part of it.
const BAND_FLOATS: usize = 1 << 22;

/// Tiles per band below which bands do not run in parallel (see [`convolve`]).
const PARALLEL_TILES: usize = 128;
/// Tiles per band when they do not, however many channels there are.
const SPLIT_TILES: usize = 256;

/// The weights transformed to `G g G^T` per channel pair, laid out `[16][in][out]`: for each
/// position, the right operand of that position's product. `tap(o, c, t)` is the weight of
/// output channel `o`, input channel `c` and tap `t = 3 * kh + kw`, wherever the caller keeps
/// it.
pub fn transform_weights(
    tap: impl Fn(usize, usize, usize) -> f32 + Sync,
    out_channels: usize,
    in_channels: usize,
) -> Vec<f32> {
    let pairs = in_channels * out_channels;
    // The 16 values of each output channel, per input channel.
    let mut tiles: Vec<Vec<[f32; POSITIONS]>> = Vec::new();
    (0..in_channels)
        .into_par_iter()
        .map(|c| {
            (0..out_channels)
                .map(|o| weight_tile(&std::array::from_fn(|t| tap(o, c, t))))
                .collect()
        })
        .collect_into_vec(&mut tiles);
    let mut transformed = vec![0f32; POSITIONS * pairs];
    for (c, of_c) in tiles.iter().enumerate() {
        for (o, tile) in of_c.iter().enumerate() {
            for (position, &value) in tile.iter().enumerate() {
                transformed[(position * in_channels + c) * out_channels + o] = value;
            }
        }
    }
    transformed
}

/// `G g G^T` for one 3x3 kernel `g` (row-major), with
/// `G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]`.
fn weight_tile(g: &[f32; 9]) -> [f32; POSITIONS] {
    // `G v` for a 3-vector.
    let expand = |v: [f32; 3]| {
        [
            v[0],
            0.5 * (v[0] + v[1] + v[2]),
            0.5 * (v[0] - v[1] + v[2]),
            v[2],
        ]
    };
    // G g: each column of g expanded to 4 rows.
    let columns: [[f32; 4]; 3] = std::array::from_fn(|col| expand([g[col], g[3 + col], g[6 + col]]));
    let mut tile = [0f32; POSITIONS];
    for row in 0..4 {
        let expanded = expand([columns[0][row], columns[1][row], columns[2][row]]);
        tile[row * 4..][..4].copy_from_slice(&expanded);
    }
    tile
}

/// The sizes of one call.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    /// The output's height and width (the input's, before padding).
    pub height: usize,
    pub width: usize,
}

impl Shape {
    /// The padded input's height and width: one zero row and column around, and one more
    /// at the bottom or right when the height or width is odd.
    pub fn padded_size(&self) -> [usize; 2] {
        [
            2 * self.height.div_ceil(2) + 2,
            2 * self.width.div_ceil(2) + 2,
        ]
    }
}

/// The convolution of `padded` (`[batch][padded height][padded width][in]`, see
/// [`Shape::padded_size`]) with the transformed weights `weight` (see [`transform_weights`])
/// into `out` (`[batch][out][height][width]`), plus the bias. Every element of `out` is
/// written.
///
/// # Panics
/// When a slice's length does not match `shape`.
pub fn convolve(
    weight: &[f32],
    bias: Option<&[f32]>,
    padded: &[f32],
    shape: Shape,
    out: &mut [f32],
) {
    let Shape {
        batch,
        in_channels: ins,
        out_channels: outs,
        height,
        width,
    } = shape;
    let [pad_h, pad_w] = shape.padded_size();
    assert_eq!(weight.len(), POSITIONS * ins * outs, "weight length");
    assert_eq!(padded.len(), batch * pad_h * pad_w * ins, "padded length");
    assert_eq!(out.len(), batch * outs * height * width, "output length");
    if let Some(bias) = bias {
        assert_eq!(bias.len(), outs, "bias length");
    }
    if out.is_empty() {
        return;
    }
    let (tiles_h, tiles_w) = (height.div_ceil(2), width.div_ceil(2));
    // Bands of whole tile rows, counted across the images of the batch (row `r` is row
    // `r % tiles_h` of image `r / tiles_h`), within the budget and as even as it allows. Each
    // product reads its position's weights once per band, so bands are never smaller than
    // `PARALLEL_TILES`: with fewer tiles than that per thread, bands of `SPLIT_TILES` run one
    // at a time and the library splits each product across the threads.
    let all_rows = batch * tiles_h;
    let threads = rayon::current_num_threads();
    let budget_rows = (BAND_FLOATS / (POSITIONS * (ins + outs) * tiles_w)).max(1);
    let split_products = all_rows.div_ceil(threads) * tiles_w < PARALLEL_TILES;
    let bands = if split_products {
        all_rows.div_ceil(budget_rows.max(SPLIT_TILES.div_ceil(tiles_w)))
    } else {
        let bands = all_rows.div_ceil(budget_rows).max(threads);
        bands.next_multiple_of(threads).min(all_rows)
    };
    let band_rows = all_rows.div_ceil(bands);
    let bands = all_rows.div_ceil(band_rows);
    let schedule = Bands { split_products };
    let inner = schedule.products();
    let plane = height * width;
    let image_len = pad_h * pad_w * ins;
    let shared = SharedOut::new(out);
    let band = |scratch: &mut Scratch, band: usize| {
        let first = band * band_rows;
        let rows = band_rows.min(all_rows - first);
        let tiles = rows * tiles_w;
        let Buffers {
            input,
            products,
            pixels,
        } = &mut scratch.0;
        resize(input, POSITIONS * tiles * ins);
        resize(products, POSITIONS * tiles * outs);
        resize(pixels, 4 * tiles * outs);
        for row in 0..rows {
            let (b, y) = ((first + row) / tiles_h, (first + row) % tiles_h);
            let image = &padded[b * image_len..][..image_len];
            for col in 0..tiles_w {
                let at = (2 * y * pad_w + 2 * col) * ins;
                let tile = row * tiles_w + col;
                let from = Grid {
                    at,
                    row_stride: pad_w * ins,
                    col_stride: ins,
                    cols: 4,
                };
                transform_input(image, from, input, positions(tiles * ins, tile * ins), ins);
            }
        }
        for position in 0..POSITIONS {
            // SAFETY: dst[m, j] = products[position][j][m] for m < outs, j < tiles;
            // lhs[m, c] = weight[position][c][m] for c < ins; rhs[c, j] =
            // input[position][j][c]: all inside their buffers, sized above.
            unsafe {
                gemm(
                    outs,
                    tiles,
                    ins,
                    products.as_mut_ptr().add(position * tiles * outs),
                    outs as isize,
                    1,
                    false,
                    weight.as_ptr().add(position * ins * outs),
                    outs as isize,
                    1,
                    input.as_ptr().add(position * tiles * ins),
                    ins as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    inner,
                );
            }
        }
        // Output pixels of the band's tiles, channels-last, on the tiles' width.
        let pixels_w = 2 * tiles_w;
        for tile in 0..tiles {
            let (row, col) = (tile / tiles_w, tile % tiles_w);
            let at = (2 * row * pixels_w + 2 * col) * outs;
            let to = Grid {
                at,
                row_stride: pixels_w * outs,
                col_stride: outs,
                cols: 2,
            };
            transform_output(products, positions(tiles * outs, tile * outs), pixels, to, outs);
        }
        for row in 0..rows {
            let (b, y) = ((first + row) / tiles_h, (first + row) % tiles_h);
            for dy in 0..2.min(height - 2 * y) {
                let src = &pixels[(2 * row + dy) * pixels_w * outs..][..width * outs];
                // SAFETY: row `2 * y + dy` of every channel of image `b`: this band's, as
                // `width` values at `b * outs * plane + (2 * y + dy) * width + m * plane`.
                unsafe {
                    let dst = shared.at(b * outs * plane + (2 * y + dy) * width);
                    transpose(src, outs, width, outs, dst, plane, bias);
                }
            }
        }
    };
    schedule.run(bands, Scratch::take, band);
}

/// The 16 positions of one tile in `[16][tiles][channels]` buffers: position `i` at
/// `at + i * position_stride`.
fn positions(position_stride: usize, at: usize) -> Grid {
    Grid {
        at,
        row_stride: 4 * position_stride,
        col_stride: position_stride,
        cols: 4,
    }
}

/// Set the length to `len` in the same allocation: kept elements keep their old values (every
/// element is written before it is read), only growth is zeroed.
fn resize(buffer: &mut Vec<f32>, len: usize) {
    buffer.truncate(len);
    buffer.resize(len, 0.0);
}

/// One task's buffers, taken from a pool and given back when the task is done, so that calls
/// after the first reuse pages already mapped.
#[derive(Default)]
struct Buffers {
    input: Vec<f32>,
    products: Vec<f32>,
    pixels: Vec<f32>,
}

static POOL: Mutex<Vec<Buffers>> = Mutex::new(Vec::new());

struct Scratch(Buffers);

impl Scratch {
    fn take() -> Self {
        let pool = POOL.lock().unwrap_or_else(PoisonError::into_inner).pop();
        Self(pool.unwrap_or_default())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buffers = std::mem::take(&mut self.0);
        POOL.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buffers);
    }
}

/// Free the buffers kept between calls.
pub fn release_scratch() {
    POOL.lock().unwrap_or_else(PoisonError::into_inner).clear();
}

/// Where the 4x4 or 2x2 values of one tile lie in a buffer, for every channel: value `i` of
/// channel `c` at `at + (i / cols) * row_stride + (i % cols) * col_stride + c`.
#[derive(Clone, Copy)]
struct Grid {
    at: usize,
    row_stride: usize,
    col_stride: usize,
    cols: usize,
}

impl Grid {
    fn offset(self, i: usize) -> usize {
        self.at + (i / self.cols) * self.row_stride + (i % self.cols) * self.col_stride
    }
}

simd_dispatch! {
    /// `B^T d B` of one tile's 4x4 input pixels `d` (at `from` in `image`) for every channel,
    /// into its 16 positions (at `to` in `input`), with
    /// `B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`.
    fn transform_input(image: &[f32], from: Grid, input: &mut [f32], to: Grid, channels: usize)
        = transform_input_lanes;
}

#[inline(always)]
fn transform_input_lanes(image: &[f32], from: Grid, input: &mut [f32], to: Grid, channels: usize) {
    transform_lanes(image, from, input, to, channels, input_tile);
}

simd_dispatch! {
    /// `A^T m A` of one tile's 16 products `m` (at `from` in `products`) for every channel,
    /// into its 2x2 output pixels (at `to` in `pixels`), with
    /// `A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]`.
    fn transform_output(products: &[f32], from: Grid, pixels: &mut [f32], to: Grid, channels: usize)
        = transform_output_lanes;
}

#[inline(always)]
fn transform_output_lanes(
    products: &[f32],
    from: Grid,
    pixels: &mut [f32],
    to: Grid,
    channels: usize,
) {
    transform_lanes(products, from, pixels, to, channels, output_tile);
}

/// `transform` of the `N` values at `from` in `src` into the `M` values at `to` in `dst`, for
/// every channel, 16 channels at a time.
#[inline(always)]
fn transform_lanes<const N: usize, const M: usize>(
    src: &[f32],
    from: Grid,
    dst: &mut [f32],
    to: Grid,
    channels: usize,
    transform: impl Fn(&[[f32; LANES]; N]) -> [[f32; LANES]; M],
) {
    for start in (0..channels).step_by(LANES) {
        let lanes = LANES.min(channels - start);
        let mut values = [[0f32; LANES]; N];
        for (i, lane_values) in values.iter_mut().enumerate() {
            lane_values[..lanes].copy_from_slice(&src[from.offset(i) + start..][..lanes]);
        }
        for (i, lane_values) in transform(&values).iter().enumerate() {
            dst[to.offset(i) + start..][..lanes].copy_from_slice(&lane_values[..lanes]);
        }
    }
}

#[inline(always)]
fn input_tile(d: &[[f32; LANES]; POSITIONS]) -> [[f32; LANES]; POSITIONS] {
    let mut v = [[0f32; LANES]; POSITIONS];
    for l in 0..LANES {
        // t = B^T d, then v = t B.
        let mut t = [0f32; POSITIONS];
        for col in 0..4 {
            let d = |row: usize| d[row * 4 + col][l];
            t[col] = d(0) - d(2);
            t[4 + col] = d(1) + d(2);
            t[8 + col] = d(2) - d(1);
            t[12 + col] = d(1) - d(3);
        }
        for row in 0..4 {
            let t = |col: usize| t[row * 4 + col];
            v[row * 4][l] = t(0) - t(2);
            v[row * 4 + 1][l] = t(1) + t(2);
            v[row * 4 + 2][l] = t(2) - t(1);
            v[row * 4 + 3][l] = t(1) - t(3);
        }
    }
    v
}

#[inline(always)]
fn output_tile(m: &[[f32; LANES]; POSITIONS]) -> [[f32; LANES]; 4] {
    let mut y = [[0f32; LANES]; 4];
    for l in 0..LANES {
        // s = A^T m (two rows of 4), then y = s A.
        let mut s = [0f32; 8];
        for col in 0..4 {
            let m = |row: usize| m[row * 4 + col][l];
            s[col] = m(0) + m(1) + m(2);
            s[4 + col] = m(1) - m(2) - m(3);
        }
        for row in 0..2 {
            let s = |col: usize| s[row * 4 + col];
            y[row * 2][l] = s(0) + s(1) + s(2);
            y[row * 2 + 1][l] = s(1) - s(2) - s(3);
        }
    }
    y
}
