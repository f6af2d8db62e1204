//! Shared helpers for the parity tests: fixture paths, reference tensors, comparisons, devices.
#![allow(dead_code, clippy::unwrap_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::path::PathBuf;

use burn::tensor::{DType, Device, Tensor, TensorData};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// A reference tensor: its shape and values as f32 (ints are converted).
#[derive(Debug, Clone)]
pub struct Ref {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
    pub ints: Vec<i64>,
}

pub fn load_refs(path: PathBuf) -> HashMap<String, Ref> {
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let (values, ints): (Vec<f32>, Vec<i64>) = match view.dtype() {
            safetensors::Dtype::F32 => (
                data.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                vec![],
            ),
            safetensors::Dtype::F16 => (
                data.chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                vec![],
            ),
            safetensors::Dtype::I64 => {
                let ints: Vec<i64> = data
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                (ints.iter().map(|&i| i as f32).collect(), ints)
            }
            other => panic!("unexpected dtype {other:?} for {name}"),
        };
        out.insert(
            name.to_string(),
            Ref {
                shape: view.shape().to_vec(),
                values,
                ints,
            },
        );
    }
    out
}

pub fn tensor<const D: usize>(r: &Ref, device: &Device) -> Tensor<D> {
    let shape: [usize; D] = r.shape.clone().try_into().unwrap();
    Tensor::from_data(
        TensorData::new(r.values.clone(), shape),
        (device, DType::F32),
    )
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert_dtype(DType::F32)
        .try_to_vec::<f32>()
        .unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn mean_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    (a.iter()
        .zip(b)
        .map(|(x, y)| f64::from((x - y).abs()))
        .sum::<f64>()
        / a.len() as f64) as f32
}

/// Asserts `max |a - b| <= tol`, printing the worst element on failure.
pub fn assert_close(what: &str, got: &[f32], want: &Ref, tol: f32) {
    let d = max_abs_diff(got, &want.values);
    println!("{what}: max abs diff {d:.3e} (tolerance {tol:.0e})");
    assert!(d <= tol, "{what}: max abs diff {d} > {tol}");
}

/// The devices a parity test runs on: the CPU always; a wgpu adapter when one exists (CI has
/// lavapipe). Without one, the wgpu half is skipped with the reason printed.
pub fn devices() -> Vec<(&'static str, Device)> {
    let mut out = vec![("cpu", Device::flex())];
    match imageai_local_sd::device::first_wgpu_device() {
        Some(d) => out.push(("wgpu", d)),
        None => println!(
            "SKIPPED on wgpu: no Vulkan/Metal/DX12 adapter on this machine (install mesa-vulkan-drivers for lavapipe)"
        ),
    }
    out
}
