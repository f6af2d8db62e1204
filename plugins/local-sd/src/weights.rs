//! Memory-mapped safetensors weights in diffusers layout, read by name with the shape the
//! model's config implies, and converted to the compute precision on the way to the device.

// Memory mapping is `unsafe` because another process could truncate or change the file while it
// is mapped. The files are model checkpoints the user chose and nothing writes them while the
// engine runs; every access is bounds-checked against the parsed header.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::{DType, Device, Tensor, TensorData};
use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::Dtype as StDtype;

use crate::error::{Error, Result};

/// One mapped `.safetensors` file and its parsed header.
struct MappedFile {
    path: PathBuf,
    mmap: Mmap,
    data_start: usize,
    tensors: HashMap<String, TensorEntry>,
}

#[derive(Clone)]
struct TensorEntry {
    dtype: StDtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

impl MappedFile {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io("weights", path, e))?;
        // SAFETY: see the module comment; the mapping is read-only.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io("weights", path, e))?;
        let bad = |reason: String| Error::BadSafetensors {
            path: path.to_path_buf(),
            reason,
        };
        let (header_len, metadata) =
            safetensors::SafeTensors::read_metadata(&mmap[..]).map_err(|e| bad(e.to_string()))?;
        let data_start = 8 + header_len;
        let mut tensors = HashMap::new();
        for (name, info) in metadata.tensors() {
            let (start, end) = info.data_offsets;
            if data_start + end > mmap.len() || start > end {
                return Err(bad(format!(
                    "tensor `{name}` lies past the end of the file"
                )));
            }
            tensors.insert(
                name.clone(),
                TensorEntry {
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start,
                    end,
                },
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
            data_start,
            tensors,
        })
    }

    fn bytes(&self, entry: &TensorEntry) -> &[u8] {
        &self.mmap[self.data_start + entry.start..self.data_start + entry.end]
    }
}

/// The weights of one component (`unet/`, `vae/`, ...), possibly sharded over several files.
#[derive(Clone)]
pub struct Weights {
    files: Arc<Vec<MappedFile>>,
    index: Arc<HashMap<String, usize>>,
    /// Benchmarks build real architectures without a download: every tensor is random.
    random: bool,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let paths: Vec<_> = self
            .files
            .iter()
            .map(|f| f.path.display().to_string())
            .collect();
        f.debug_struct("Weights").field("files", &paths).finish()
    }
}

impl Weights {
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            let file = MappedFile::open(path)?;
            for name in file.tensors.keys() {
                index.insert(name.clone(), i);
            }
            files.push(file);
        }
        Ok(Self {
            files: Arc::new(files),
            index: Arc::new(index),
            random: false,
        })
    }

    /// Weights that hold no file: every requested tensor is drawn from N(0, 0.02²) (biases and
    /// norm scales alike). For benchmarks and shape tests of full-size architectures.
    pub fn random() -> Self {
        Self {
            files: Arc::new(Vec::new()),
            index: Arc::new(HashMap::new()),
            random: true,
        }
    }

    /// The safetensors files of a component folder: the `.fp16` variant when `prefer_fp16`
    /// and present, else the full-precision file; sharded checkpoints through their index.
    pub fn find_in_dir(dir: &Path, prefer_fp16: bool) -> Result<Vec<PathBuf>> {
        let stems = ["diffusion_pytorch_model", "model"];
        let variants: &[&str] = if prefer_fp16 {
            &[".fp16", ""]
        } else {
            &["", ".fp16"]
        };
        for variant in variants {
            for stem in stems {
                let single = dir.join(format!("{stem}{variant}.safetensors"));
                if single.is_file() {
                    return Ok(vec![single]);
                }
                let index = dir.join(format!("{stem}.safetensors{variant}.index.json"));
                let index_alt = dir.join(format!("{stem}{variant}.safetensors.index.json"));
                for idx in [index, index_alt] {
                    if idx.is_file() {
                        return shards_from_index(&idx);
                    }
                }
            }
        }
        Err(Error::Config(format!(
            "no safetensors weights in {} (looked for diffusion_pytorch_model[.fp16].safetensors and model[.fp16].safetensors). Only safetensors checkpoints are supported; convert .bin/.ckpt files with diffusers first.",
            dir.display()
        )))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// How many values all tensors hold together (0 for random weights): the model's size
    /// for the memory estimate, whatever precision it is stored in.
    pub fn num_elements(&self) -> u64 {
        self.files
            .iter()
            .flat_map(|f| f.tensors.values())
            .map(|t| t.shape.iter().product::<usize>() as u64)
            .sum()
    }

    /// Every tensor's name and shape.
    pub fn shapes(&self) -> impl Iterator<Item = (&str, &[usize])> {
        self.files
            .iter()
            .flat_map(|f| f.tensors.iter())
            .map(|(name, t)| (name.as_str(), t.shape.as_slice()))
    }

    /// `preferred` if present, else the only tensor's name.
    pub fn single_or(&self, preferred: &str) -> Option<String> {
        if self.contains(preferred) {
            return Some(preferred.to_string());
        }
        if self.index.len() == 1 {
            self.index.keys().next().cloned()
        } else {
            None
        }
    }

    fn entry(&self, name: &str) -> Result<(&MappedFile, &TensorEntry)> {
        let file = self
            .index
            .get(name)
            .map(|&i| &self.files[i])
            .ok_or_else(|| Error::MissingTensor {
                name: name.to_string(),
                path: self
                    .files
                    .first()
                    .map(|f| f.path.clone())
                    .unwrap_or_default(),
            })?;
        let entry = file.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            path: file.path.clone(),
        })?;
        Ok((file, entry))
    }

    /// The shape stored for `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.entry(name)?.1.shape.clone())
    }

    /// Reads `name` as f32 values on the host, checking its shape.
    pub fn read_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (file, entry) = self.entry(name)?;
        check_shape(name, shape, &entry.shape, &file.path)?;
        to_f32(name, entry.dtype, file.bytes(entry), &file.path)
    }

    /// Loads `name` onto `device` in `dtype`, checking that its shape is `shape`.
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
        dtype: DType,
    ) -> Result<Tensor<D>> {
        if self.random {
            let t =
                Tensor::<D>::random(shape, burn::tensor::Distribution::Normal(0.0, 0.02), device);
            return Ok(crate::nn::to_dtype(t, dtype));
        }
        let (file, entry) = self.entry(name)?;
        check_shape(name, &shape, &entry.shape, &file.path)?;
        let bytes = file.bytes(entry);
        let data = match (entry.dtype, dtype) {
            (StDtype::F16, DType::F16) => TensorData::new(
                bytes
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]))
                    .collect(),
                shape,
            ),
            (_, DType::F16) => TensorData::new(
                to_f32(name, entry.dtype, bytes, &file.path)?
                    .into_iter()
                    .map(f16::from_f32)
                    .collect(),
                shape,
            ),
            _ => TensorData::new(to_f32(name, entry.dtype, bytes, &file.path)?, shape),
        };
        Ok(Tensor::from_data(data, (device, dtype)))
    }
}

fn check_shape(name: &str, expected: &[usize], found: &[usize], path: &Path) -> Result<()> {
    if expected != found {
        return Err(Error::ShapeMismatch {
            name: name.to_string(),
            expected: expected.to_vec(),
            found: found.to_vec(),
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

fn to_f32(name: &str, dtype: StDtype, bytes: &[u8], path: &Path) -> Result<Vec<f32>> {
    Ok(match dtype {
        StDtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        StDtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        StDtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(Error::UnsupportedDtype {
                name: name.to_string(),
                dtype: format!("{other:?}"),
                path: path.to_path_buf(),
            });
        }
    })
}

fn shards_from_index(index: &Path) -> Result<Vec<PathBuf>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|e| Error::io("weight index", index, e))?;
    let parsed: Index = serde_json::from_str(&text).map_err(|source| Error::Json {
        what: "weight index",
        path: index.to_path_buf(),
        source,
    })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<String> = parsed.weight_map.into_values().collect();
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// A view of [`Weights`] under a name prefix, as candle's `VarBuilder`: `vb.pp("down_blocks").pp(0)`
/// reads `down_blocks.0.…`, so module code uses diffusers' parameter names as they are.
#[derive(Clone, Debug)]
pub struct VarBuilder {
    weights: Weights,
    prefix: String,
    device: Device,
    dtype: DType,
}

impl VarBuilder {
    pub fn new(weights: Weights, device: Device, dtype: DType) -> Self {
        Self {
            weights,
            prefix: String::new(),
            device,
            dtype,
        }
    }

    /// The same weights under `prefix.name`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Self {
            prefix,
            ..self.clone()
        }
    }

    /// The same weights loaded in another precision (for parts kept in f32).
    pub fn with_dtype(&self, dtype: DType) -> Self {
        Self {
            dtype,
            ..self.clone()
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The full name this builder reads for its own prefix (for error messages).
    pub fn prefix_name(&self) -> &str {
        &self.prefix
    }

    pub fn contains(&self, name: &str) -> bool {
        self.weights.contains(&self.full_name(name))
    }

    pub fn get<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<Tensor<D>> {
        self.weights
            .tensor(&self.full_name(name), shape, &self.device, self.dtype)
    }

    /// The stored shape of `name` (for layers whose size the config does not give).
    pub fn shape_of(&self, name: &str) -> Result<Vec<usize>> {
        self.weights.shape(&self.full_name(name))
    }
}
