//! Which files of a Hub repository a diffusers pipeline needs in a chosen precision: the
//! safetensors of each component (the `.fp16` variant when fp16 is chosen and present), configs
//! and tokenizer files — never `.bin`, `.ckpt`, flax, ONNX, root-level single files or a second
//! copy of the same weights.

use std::collections::BTreeMap;

/// The precision to fetch weights in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Half precision: the `.fp16` variant files when the repository has them (half the size).
    #[default]
    Fp16,
    /// Full precision: the files without a variant.
    Fp32,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fp16 => "fp16",
            Self::Fp32 => "fp32",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp16" | "f16" | "half" | "float16" => Ok(Self::Fp16),
            "fp32" | "f32" | "full" | "float32" => Ok(Self::Fp32),
            other => Err(format!("unknown precision `{other}`; use fp16 or fp32")),
        }
    }
}

/// One file of a repository as the Hub lists it (`siblings` of `?blobs=true`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RepoFile {
    /// Path inside the repository, `/`-separated.
    pub path: String,
    /// Size in bytes, when the Hub said.
    pub size: Option<u64>,
    /// SHA-256 of the content for LFS files.
    pub sha256: Option<String>,
}

/// Component folders whose weights the engine loads.
pub const WEIGHT_COMPONENTS: &[&str] = &["unet", "vae", "text_encoder", "text_encoder_2"];
/// Component folders the engine reads configs or vocabularies from.
pub const CONFIG_COMPONENTS: &[&str] = &["tokenizer", "tokenizer_2", "scheduler"];

/// The files to fetch, and what could not be satisfied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    /// Sorted by path; `model_index.json` included.
    pub files: Vec<RepoFile>,
    /// Weight components present in the repository with no safetensors at all (only `.bin`…).
    pub without_safetensors: Vec<String>,
    /// Components where the asked precision was missing and the other one was taken.
    pub fallbacks: Vec<String>,
}

impl Selection {
    /// The sum of the known sizes.
    pub fn total_size(&self) -> u64 {
        self.files.iter().filter_map(|f| f.size).sum()
    }

    pub fn has_model_index(&self) -> bool {
        self.files.iter().any(|f| f.path == "model_index.json")
    }

    /// Whether at least one weight component has safetensors selected.
    pub fn has_weights(&self) -> bool {
        self.files.iter().any(|f| f.path.ends_with(".safetensors"))
    }
}

/// The weights-variant of a file name (`fp16` in `diffusion_pytorch_model.fp16.safetensors` and
/// in both shard spellings `model.fp16-00001-of-00002.safetensors` /
/// `model-00001-of-00002.fp16.safetensors`, and in `….safetensors.index.fp16.json`), or `None`.
fn variant(name: &str) -> Option<&str> {
    let mut segments = name.split('.');
    segments.next(); // the stem, e.g. `diffusion_pytorch_model` or `model-00001-of-00002`
    segments
        .map(strip_shard_suffix)
        .find(|s| matches!(*s, "fp16" | "bf16" | "fp32" | "ema" | "non_ema" | "fp8"))
}

/// `fp16-00001-of-00002` → `fp16`.
fn strip_shard_suffix(segment: &str) -> &str {
    match segment.split_once('-') {
        Some((head, tail)) if tail.contains("-of-") => head,
        _ => segment,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Weights,
    WeightsIndex,
    Config,
    Skip,
}

fn kind(name: &str) -> Kind {
    if name.ends_with(".safetensors") {
        Kind::Weights
    } else if name.contains(".safetensors.index") && name.ends_with(".json") {
        Kind::WeightsIndex
    } else if (name.ends_with(".json") && !name.contains(".index"))
        || name.ends_with(".txt")
        || name.ends_with(".model")
    {
        Kind::Config
    } else {
        Kind::Skip
    }
}

/// Choose the files a diffusers pipeline needs in `precision`. Root-level files other than
/// `model_index.json` (single-file checkpoints, README, images) and folders the engine does not
/// use (`safety_checker`, `feature_extractor`, ONNX/OpenVINO exports…) are left out.
pub fn select(files: &[RepoFile], precision: Precision) -> Selection {
    let mut chosen: Vec<RepoFile> = Vec::new();
    // component → variant (None = plain) → weight files and index files
    let mut weights: BTreeMap<&str, BTreeMap<Option<&str>, Vec<&RepoFile>>> = BTreeMap::new();
    let mut components_seen: Vec<&str> = Vec::new();

    for file in files {
        let path = file.path.as_str();
        let Some((component, name)) = path.split_once('/') else {
            if path == "model_index.json" {
                chosen.push(file.clone());
            }
            continue;
        };
        if name.contains('/') {
            continue; // deeper folders are not part of a diffusers component
        }
        let is_weight_component = WEIGHT_COMPONENTS.contains(&component);
        if !is_weight_component && !CONFIG_COMPONENTS.contains(&component) {
            continue;
        }
        if is_weight_component && !components_seen.contains(&component) {
            components_seen.push(component);
        }
        match kind(name) {
            Kind::Config => chosen.push(file.clone()),
            Kind::Weights | Kind::WeightsIndex if is_weight_component => {
                weights
                    .entry(component)
                    .or_default()
                    .entry(variant(name))
                    .or_default()
                    .push(file);
            }
            _ => {}
        }
    }

    let mut without_safetensors = Vec::new();
    let mut fallbacks = Vec::new();
    for component in components_seen {
        let groups = weights.get(component);
        let plain = groups
            .and_then(|g| g.get(&None))
            .filter(|v| has_weight_file(v));
        let half = groups
            .and_then(|g| g.get(&Some("fp16")))
            .filter(|v| has_weight_file(v));
        let (group, fell_back) = match precision {
            Precision::Fp16 => match (half, plain) {
                (Some(h), _) => (Some(h), false),
                (None, Some(p)) => (Some(p), true),
                (None, None) => (None, false),
            },
            Precision::Fp32 => match (plain, half) {
                (Some(p), _) => (Some(p), false),
                (None, Some(h)) => (Some(h), true),
                (None, None) => (None, false),
            },
        };
        match group {
            Some(group) => {
                chosen.extend(group.iter().map(|f| (*f).clone()));
                if fell_back {
                    fallbacks.push(component.to_owned());
                }
            }
            None => without_safetensors.push(component.to_owned()),
        }
    }

    chosen.sort_by(|a, b| a.path.cmp(&b.path));
    chosen.dedup_by(|a, b| a.path == b.path);
    Selection {
        files: chosen,
        without_safetensors,
        fallbacks,
    }
}

fn has_weight_file(files: &[&RepoFile]) -> bool {
    files.iter().any(|f| f.path.ends_with(".safetensors"))
}

/// What a diffusers folder on disk holds, and whether the local engine can load it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Inspection {
    /// A diffusers folder with `model_index.json`, and safetensors plus a config for the UNet,
    /// the VAE and each text encoder, tokenizer files and a scheduler config.
    pub loadable: bool,
    /// `model_index.json`'s `_class_name`, e.g. `StableDiffusionPipeline`.
    pub pipeline: Option<String>,
    /// The precisions the weights are in (`fp16`, `fp32`, `bf16`), from their headers.
    pub precisions: Vec<String>,
    /// Weight files found, relative to the folder.
    pub weight_files: Vec<String>,
    /// Why it cannot be loaded, when it cannot.
    pub problems: Vec<String>,
}

/// Look at the diffusers folder `dir` (a snapshot or an imported model) without loading it.
pub fn inspect(dir: &std::path::Path) -> Inspection {
    let mut out = Inspection::default();
    let index: serde_json::Value = match std::fs::read(dir.join("model_index.json")) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(value) => value,
            Err(e) => {
                out.problems
                    .push(format!("model_index.json is not valid JSON ({e})"));
                return out;
            }
        },
        Err(_) => {
            out.problems.push("no model_index.json: the download is incomplete or this is not a diffusers pipeline".into());
            return out;
        }
    };
    out.pipeline = index
        .get("_class_name")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let components: Vec<&str> = index
        .as_object()
        .map(|map| {
            map.iter()
                .filter(|(k, v)| {
                    !k.starts_with('_')
                        && v.as_array()
                            .is_some_and(|a| a.len() == 2 && a.iter().all(|x| !x.is_null()))
                })
                .map(|(k, _)| k.as_str())
                .collect()
        })
        .unwrap_or_default();
    for required in ["unet", "vae", "text_encoder"] {
        if !components.contains(&required) {
            out.problems
                .push(format!("model_index.json lists no {required}"));
        }
    }
    let mut precisions = std::collections::BTreeSet::new();
    for component in components {
        let folder = dir.join(component);
        if WEIGHT_COMPONENTS.contains(&component) {
            if !folder.join("config.json").is_file() {
                out.problems
                    .push(format!("{component}/config.json is missing"));
            }
            let weights = weight_files(&folder);
            if weights.is_empty() {
                out.problems
                    .push(format!("{component} has no .safetensors weights"));
            }
            for missing in missing_shards(&folder, &weights) {
                out.problems.push(format!(
                    "{component}/{missing} is missing (a shard listed in the index)"
                ));
            }
            for name in weights {
                match super::safetensors::read_header(&folder.join(&name)) {
                    Ok(header) => {
                        if let Some(dtype) = header.main_float_dtype() {
                            precisions.insert(precision_name(dtype));
                        }
                    }
                    Err(e) => out
                        .problems
                        .push(format!("{component}/{name} is damaged ({e})")),
                }
                out.weight_files.push(format!("{component}/{name}"));
            }
        } else if component.starts_with("tokenizer") {
            for name in ["vocab.json", "merges.txt"] {
                if !folder.join(name).is_file() {
                    out.problems.push(format!("{component}/{name} is missing"));
                }
            }
        } else if component == "scheduler" {
            if !folder.join("scheduler_config.json").is_file() {
                out.problems
                    .push("scheduler/scheduler_config.json is missing".into());
            }
        } else if !matches!(
            component,
            "safety_checker" | "feature_extractor" | "image_encoder"
        ) {
            out.problems.push(format!(
                "the local engine has no support for the `{component}` component"
            ));
        }
    }
    out.precisions = precisions.into_iter().collect();
    out.weight_files.sort();
    out.loadable = out.problems.is_empty();
    out
}

/// `F16` → `fp16`, `BF16` → `bf16`, `F32` → `fp32`.
fn precision_name(dtype: &str) -> String {
    match dtype {
        "F16" => "fp16".into(),
        "F32" => "fp32".into(),
        "F64" => "fp64".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// Shards named by a `*.safetensors.index*.json` in `folder` that are not among `present`.
fn missing_shards(folder: &std::path::Path, present: &[String]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut missing = std::collections::BTreeSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.contains(".safetensors.index") && name.ends_with(".json")) {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let Ok(index) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        if let Some(map) = index.get("weight_map").and_then(|m| m.as_object()) {
            for shard in map.values().filter_map(|v| v.as_str()) {
                if !present.iter().any(|p| p == shard) {
                    missing.insert(shard.to_owned());
                }
            }
        }
    }
    missing.into_iter().collect()
}

/// The `.safetensors` files (that resolve: a dangling snapshot pointer is no file) in `folder`.
fn weight_files(folder: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".safetensors") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on the first surprise
mod tests {
    use super::*;

    fn repo(paths: &[&str]) -> Vec<RepoFile> {
        paths
            .iter()
            .map(|p| RepoFile {
                path: (*p).to_owned(),
                size: Some(10),
                sha256: None,
            })
            .collect()
    }

    fn paths(selection: &Selection) -> Vec<&str> {
        selection.files.iter().map(|f| f.path.as_str()).collect()
    }

    /// The file list of `stable-diffusion-v1-5/stable-diffusion-v1-5` (abridged to the kinds).
    const SD15: &[&str] = &[
        ".gitattributes",
        "README.md",
        "model_index.json",
        "v1-5-pruned-emaonly.ckpt",
        "v1-5-pruned-emaonly.safetensors",
        "v1-inference.yaml",
        "feature_extractor/preprocessor_config.json",
        "safety_checker/config.json",
        "safety_checker/model.fp16.safetensors",
        "safety_checker/model.safetensors",
        "safety_checker/pytorch_model.bin",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.fp16.safetensors",
        "text_encoder/model.safetensors",
        "text_encoder/pytorch_model.bin",
        "text_encoder/flax_model.msgpack",
        "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.bin",
        "unet/diffusion_pytorch_model.fp16.bin",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.non_ema.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_flax_model.msgpack",
        "vae/config.json",
        "vae/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "vae_decoder/model.onnx",
        "unet/model.onnx",
        "unet/model.onnx_data",
    ];

    #[test]
    fn fp16_takes_the_variant_files_and_nothing_else() {
        let selection = select(&repo(SD15), Precision::Fp16);
        assert_eq!(
            paths(&selection),
            [
                "model_index.json",
                "scheduler/scheduler_config.json",
                "text_encoder/config.json",
                "text_encoder/model.fp16.safetensors",
                "tokenizer/merges.txt",
                "tokenizer/special_tokens_map.json",
                "tokenizer/tokenizer_config.json",
                "tokenizer/vocab.json",
                "unet/config.json",
                "unet/diffusion_pytorch_model.fp16.safetensors",
                "vae/config.json",
                "vae/diffusion_pytorch_model.fp16.safetensors",
            ]
        );
        assert!(selection.fallbacks.is_empty());
        assert!(selection.without_safetensors.is_empty());
        assert_eq!(selection.total_size(), 120);
    }

    #[test]
    fn fp32_takes_the_plain_files() {
        let selection = select(&repo(SD15), Precision::Fp32);
        let weights: Vec<&str> = paths(&selection)
            .into_iter()
            .filter(|p| p.ends_with(".safetensors"))
            .collect();
        assert_eq!(
            weights,
            [
                "text_encoder/model.safetensors",
                "unet/diffusion_pytorch_model.safetensors",
                "vae/diffusion_pytorch_model.safetensors",
            ]
        );
    }

    #[test]
    fn a_missing_variant_falls_back_per_component() {
        let files = repo(&[
            "model_index.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors",
            "vae/config.json",
            "vae/diffusion_pytorch_model.fp16.safetensors",
        ]);
        let half = select(&files, Precision::Fp16);
        assert!(paths(&half).contains(&"unet/diffusion_pytorch_model.safetensors"));
        assert!(paths(&half).contains(&"vae/diffusion_pytorch_model.fp16.safetensors"));
        assert_eq!(half.fallbacks, ["unet"]);
        let full = select(&files, Precision::Fp32);
        assert!(paths(&full).contains(&"vae/diffusion_pytorch_model.fp16.safetensors"));
        assert_eq!(full.fallbacks, ["vae"]);
    }

    #[test]
    fn sharded_weights_come_with_their_index_in_one_precision() {
        let files = repo(&[
            "model_index.json",
            "text_encoder_2/config.json",
            "text_encoder_2/model.safetensors.index.json",
            "text_encoder_2/model-00001-of-00002.safetensors",
            "text_encoder_2/model-00002-of-00002.safetensors",
            "text_encoder_2/model.safetensors.index.fp16.json",
            "text_encoder_2/model.fp16-00001-of-00002.safetensors",
            "text_encoder_2/model.fp16-00002-of-00002.safetensors",
            "unet/diffusion_pytorch_model-00001-of-00002.fp16.safetensors",
            "unet/diffusion_pytorch_model-00002-of-00002.fp16.safetensors",
            "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
        ]);
        let half = select(&files, Precision::Fp16);
        assert_eq!(
            paths(&half),
            [
                "model_index.json",
                "text_encoder_2/config.json",
                "text_encoder_2/model.fp16-00001-of-00002.safetensors",
                "text_encoder_2/model.fp16-00002-of-00002.safetensors",
                "text_encoder_2/model.safetensors.index.fp16.json",
                "unet/diffusion_pytorch_model-00001-of-00002.fp16.safetensors",
                "unet/diffusion_pytorch_model-00002-of-00002.fp16.safetensors",
                "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
            ]
        );
        let full = select(&files, Precision::Fp32);
        assert!(paths(&full).contains(&"text_encoder_2/model.safetensors.index.json"));
        assert!(
            !paths(&full)
                .iter()
                .any(|p| p.starts_with("text_encoder_2/model.fp16"))
        );
        assert_eq!(full.fallbacks, ["unet"]);
    }

    #[test]
    fn bin_only_components_are_reported_not_fetched() {
        let files = repo(&[
            "model_index.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.bin",
        ]);
        let selection = select(&files, Precision::Fp16);
        assert_eq!(paths(&selection), ["model_index.json", "unet/config.json"]);
        assert_eq!(selection.without_safetensors, ["unet"]);
        assert!(!selection.has_weights());
    }

    #[test]
    fn a_single_file_repo_has_no_model_index() {
        let files = repo(&["sd_xl_base_1.0.safetensors", "README.md"]);
        let selection = select(&files, Precision::Fp16);
        assert!(selection.files.is_empty());
        assert!(!selection.has_model_index());
    }

    #[test]
    fn variants_are_read_from_every_spelling() {
        assert_eq!(
            variant("diffusion_pytorch_model.fp16.safetensors"),
            Some("fp16")
        );
        assert_eq!(variant("diffusion_pytorch_model.safetensors"), None);
        assert_eq!(
            variant("model.fp16-00001-of-00002.safetensors"),
            Some("fp16")
        );
        assert_eq!(
            variant("model-00001-of-00002.fp16.safetensors"),
            Some("fp16")
        );
        assert_eq!(variant("model-00001-of-00002.safetensors"), None);
        assert_eq!(
            variant("diffusion_pytorch_model.safetensors.index.fp16.json"),
            Some("fp16")
        );
        assert_eq!(
            variant("diffusion_pytorch_model.non_ema.safetensors"),
            Some("non_ema")
        );
        assert_eq!("FP32".parse::<Precision>(), Ok(Precision::Fp32));
        assert!("int8".parse::<Precision>().is_err());
    }
}
