//! The worker's wire format: one JSON object per line on stdin (requests) and stdout (events).
//! Images travel as base64 PNG. Every event carries the id of the request it answers.

use serde::{Deserialize, Serialize};

/// One wgpu adapter as the user sees it (the engine lists them in `device`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterInfo {
    pub index: usize,
    pub name: String,
    /// `discrete`, `integrated`, `virtual`, `cpu` (a software rasterizer such as lavapipe) or
    /// `other`.
    pub kind: String,
    pub backend: String,
    pub driver: String,
}

/// The provider setting `memory_limit`: empty or `off` (no limit), `low` (every saving on,
/// [`LoadRequest::low_memory`]), or a budget such as `6144`, `6144MiB`, `6GiB`, `6GB` (MiB when
/// no unit is given). A host passes the budget as `memory_limit_mib`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimit {
    Unlimited,
    Low,
    Mib(u64),
}

/// Parses the `memory_limit` setting; the error says what is accepted.
pub fn parse_memory_limit(value: &str) -> Result<MemoryLimit, String> {
    let v = value.trim().to_ascii_lowercase();
    match v.as_str() {
        "" | "off" | "none" | "no" | "false" => return Ok(MemoryLimit::Unlimited),
        "low" | "on" | "yes" | "true" => return Ok(MemoryLimit::Low),
        _ => {}
    }
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(digits);
    let scale = |mib: f64| -> Option<u64> {
        let n: f64 = number.parse::<u64>().ok()? as f64;
        Some((n * mib).ceil() as u64)
    };
    let mib = match unit.trim() {
        "" | "m" | "mb" | "mib" => scale(1.0),
        "g" | "gb" | "gib" => scale(1024.0),
        _ => None,
    };
    match mib {
        Some(m) if m > 0 => Ok(MemoryLimit::Mib(m)),
        _ => Err(format!(
            "memory_limit `{value}` is not understood; use `low`, `off`, or a size such as `6144` (MiB) or `6GiB`"
        )),
    }
}

/// A request from the host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Load (or replace) the model.
    Load {
        id: u64,
        #[serde(flatten)]
        load: LoadRequest,
        /// Peak memory budget in MiB (`"memory_limit_mib"` on the wire, beside the load
        /// fields): each generation estimates its peak and turns on the savings of
        /// `low_memory`, cheapest first, until it fits; a request that cannot fit fails with
        /// `invalid_request` naming its size. Kept out of [`LoadRequest`] so that hosts that
        /// build one field by field keep compiling; see [`parse_memory_limit`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory_limit_mib: Option<u64>,
    },
    /// Generate images with the loaded model; answered by `progress`… `image`… `done`.
    Generate {
        id: u64,
        #[serde(flatten)]
        generate: GenerateRequest,
    },
    /// Stop the running generation after the current step; it ends with a `cancelled` error.
    Cancel { id: u64 },
    /// Drop the model and free its device memory.
    Unload { id: u64 },
    /// List GPU adapters.
    ListDevices { id: u64 },
    /// Exit the worker.
    Shutdown { id: u64 },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct LoadRequest {
    /// A local diffusers folder or a Hugging Face repo id already in the cache.
    pub model: String,
    /// `auto`, `cpu`, an adapter index or part of its name.
    #[serde(default)]
    pub device: Option<String>,
    /// `fp32` or `fp16`.
    #[serde(default)]
    pub precision: Option<String>,
    /// Text encoder loaded per prompt and dropped, VAE decoded in tiles.
    #[serde(default)]
    pub low_memory: bool,
    /// Free the model's memory after this many idle seconds; the next generate reloads it.
    #[serde(default)]
    pub idle_unload_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct GenerateRequest {
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: Option<String>,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    #[serde(default)]
    pub steps: Option<u32>,
    #[serde(default)]
    pub guidance: Option<f32>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub n: Option<u32>,
    /// `ddim`, `pndm`, `euler`, `euler-a`, `dpm++2m`, `dpm++2m-karras`; default: the model's.
    #[serde(default)]
    pub scheduler: Option<String>,
    /// `leading`, `trailing` or `linspace`; default: the model's (`trailing` for Turbo).
    #[serde(default)]
    pub timestep_spacing: Option<String>,
    /// img2img/inpaint strength in [0, 1].
    #[serde(default)]
    pub strength: Option<f32>,
    /// Base64 PNG of the source image (img2img, inpaint).
    #[serde(default)]
    pub init_image_png: Option<String>,
    /// Base64 PNG mask; white = repaint (inpaint).
    #[serde(default)]
    pub mask_png: Option<String>,
    /// A safetensors file holding the initial latents (`[n, 4, h/8, w/8]`).
    #[serde(default)]
    pub init_noise: Option<String>,
    /// Send a low-resolution preview with each progress event.
    #[serde(default)]
    pub preview: bool,
}

/// What went wrong, for the host to decide what to show.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    InvalidRequest,
    ModelNotFound,
    Model,
    NoModel,
    OutOfMemory,
    DeviceLost,
    Cancelled,
    Internal,
}

/// An event from the worker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The worker is up (sent once, id 0).
    Ready {
        id: u64,
        version: String,
    },
    Loaded {
        id: u64,
        family: String,
        device: String,
        default_scheduler: String,
        default_size: u32,
    },
    Progress {
        id: u64,
        step: u32,
        total: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        preview_png: Option<String>,
    },
    Image {
        id: u64,
        index: u32,
        width: u32,
        height: u32,
        seed: u64,
        png: String,
    },
    Done {
        id: u64,
    },
    Unloaded {
        id: u64,
    },
    Devices {
        id: u64,
        adapters: Vec<AdapterInfo>,
    },
    Error {
        id: u64,
        kind: ErrorKind,
        message: String,
    },
}

impl Event {
    pub fn id(&self) -> u64 {
        match self {
            Self::Ready { id, .. }
            | Self::Loaded { id, .. }
            | Self::Progress { id, .. }
            | Self::Image { id, .. }
            | Self::Done { id }
            | Self::Unloaded { id }
            | Self::Devices { id, .. }
            | Self::Error { id, .. } => *id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limit_setting_parses() {
        assert_eq!(parse_memory_limit(""), Ok(MemoryLimit::Unlimited));
        assert_eq!(parse_memory_limit(" Low "), Ok(MemoryLimit::Low));
        assert_eq!(parse_memory_limit("6144"), Ok(MemoryLimit::Mib(6144)));
        assert_eq!(parse_memory_limit("512MiB"), Ok(MemoryLimit::Mib(512)));
        assert_eq!(parse_memory_limit("6 GiB"), Ok(MemoryLimit::Mib(6144)));
        assert_eq!(parse_memory_limit("6gb"), Ok(MemoryLimit::Mib(6144)));
        let err = parse_memory_limit("lots").unwrap_err();
        assert!(err.contains("6GiB"), "{err}");
        assert!(parse_memory_limit("0").is_err());
    }

    /// The limit travels beside the load fields, and a load without it reads as before.
    #[test]
    fn load_carries_the_memory_limit_compatibly() {
        let load = LoadRequest {
            model: "m".into(),
            ..Default::default()
        };
        let with = Request::Load {
            id: 3,
            load: load.clone(),
            memory_limit_mib: Some(4096),
        };
        let line = serde_json::to_string(&with).unwrap();
        assert!(line.contains(r#""memory_limit_mib":4096"#), "{line}");
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), with);
        let old = r#"{"op":"load","id":3,"model":"m","low_memory":false}"#;
        assert_eq!(
            serde_json::from_str::<Request>(old).unwrap(),
            Request::Load {
                id: 3,
                load,
                memory_limit_mib: None
            }
        );
    }
}
