//! PNG in and out of the worker, and the initial-noise file format.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Error, Result};
use crate::pipeline::{GeneratedImage, InputImage};

/// Encodes an image as PNG (8-bit RGB).
pub fn encode_png(image: &GeneratedImage) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, image.width as u32, image.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc
            .write_header()
            .map_err(|e| Error::Device(format!("PNG encoding failed: {e}")))?;
        writer
            .write_image_data(&image.to_rgb8())
            .map_err(|e| Error::Device(format!("PNG encoding failed: {e}")))?;
    }
    Ok(out)
}

pub fn encode_png_base64(image: &GeneratedImage) -> Result<String> {
    Ok(STANDARD.encode(encode_png(image)?))
}

/// Decodes a PNG (any 8-bit colour type) to RGB in [0, 1], and a per-pixel luminance channel.
pub fn decode_png(bytes: &[u8]) -> Result<(InputImage, Vec<f32>)> {
    let bad =
        |e: String| Error::InvalidRequest(format!("the input image is not a readable PNG: {e}"));
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| bad(e.to_string()))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| bad("image too large".into()))?;
    let mut buf = vec![0u8; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(e.to_string()))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let mut rgb = Vec::with_capacity(w * h * 3);
    let mut luma = Vec::with_capacity(w * h);
    for px in buf[..w * h * channels].chunks_exact(channels) {
        let (r, g, b) = match channels {
            1 | 2 => (px[0], px[0], px[0]),
            _ => (px[0], px[1], px[2]),
        };
        rgb.extend([r, g, b].map(|v| f32::from(v) / 255.0));
        luma.push((0.299 * f32::from(r) + 0.587 * f32::from(g) + 0.114 * f32::from(b)) / 255.0);
    }
    Ok((
        InputImage {
            width: w,
            height: h,
            rgb,
        },
        luma,
    ))
}

pub fn decode_base64(text: &str) -> Result<Vec<u8>> {
    STANDARD
        .decode(text.trim())
        .map_err(|e| Error::InvalidRequest(format!("invalid base64 image data: {e}")))
}

/// Reads initial latents from a safetensors file: the tensor named `noise`, else the only
/// tensor. Returns its shape and values.
pub fn read_init_noise(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let weights = crate::weights::Weights::open(&[path.to_path_buf()])?;
    let name = weights.single_or("noise").ok_or_else(|| {
        Error::InvalidRequest(format!(
            "the noise file must hold one tensor, or one named `noise`: {}",
            path.display()
        ))
    })?;
    let shape = weights.shape(&name)?;
    let values = weights.read_f32(&name, &shape)?;
    Ok((shape, values))
}
