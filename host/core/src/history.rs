//! Saving generated images with their metadata, and the history rebuilt from the output folder.
//! Files are named and described as the Python ImageAI does, so both apps share one history.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, SecondsFormat, TimeZone};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::atomic::{self, AtomicError};
use crate::paths::Paths;
use crate::provider::{EditRequest, GenerateRequest, Generation, Image};
use crate::secret::{Secret, redact};
use crate::templates::TemplateUse;

/// Written into every sidecar as `app_version`.
pub const APP_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How many characters of the prompt go into a file name.
const STUB_CHARS: usize = 40;

/// Image file extensions the history recognises.
const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "webp", "gif"];

/// Saving, reading or deleting history failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("could not read the output folder ({reason}); check that it exists and that you may read it: {}", path.display())]
    ReadDir { path: PathBuf, reason: io::Error },
    #[error("could not create a file for the image ({reason}); check free disk space and the folder's permissions: {}", path.display())]
    Reserve { path: PathBuf, reason: io::Error },
    #[error(transparent)]
    File(#[from] AtomicError),
    #[error("no history entry matches \"{query}\"; list the history to see the file names in {}", dir.display())]
    NotFound { query: String, dir: PathBuf },
    #[error("\"{query}\" matches {count} history entries; give more of the file name")]
    Ambiguous { query: String, count: usize },
    #[error("could not delete the file ({reason}); check the folder's permissions: {}", path.display())]
    Delete { path: PathBuf, reason: io::Error },
    #[error("could not add to the events log ({reason}); check free disk space and its permissions: {}", path.display())]
    Append { path: PathBuf, reason: io::Error },
}

/// What one job produced, minus the image bytes: everything a sidecar records. It never holds
/// an API key: build it from the request and the provider's answer, not from the `CallContext`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub provider: String,
    pub model: String,
    pub prompt: String,
    pub negative_prompt: Option<String>,
    /// Every request parameter except `prompt` and `model` (the sidecar's `settings`).
    pub settings: Map<String, Value>,
    pub template: Option<TemplateUse>,
    /// When the images were made; the file names' time stamp too.
    pub created_at: DateTime<FixedOffset>,
    /// The provider's note (`Generation::note`), the Python app's `output_text`.
    pub output_text: Option<String>,
    pub seed: Option<u64>,
    pub revised_prompt: Option<String>,
    pub request_id: Option<String>,
    pub finish_reason: Option<String>,
    pub warnings: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    /// File names of the images an edit started from.
    pub source_images: Vec<String>,
}

impl Record {
    /// A record made now, with nothing but who made it and the prompt.
    pub fn new(
        provider: impl Into<String>,
        model: impl Into<String>,
        prompt: impl Into<String>,
    ) -> Self {
        Self {
            provider: provider.into(),
            model: model.into(),
            prompt: prompt.into(),
            negative_prompt: None,
            settings: Map::new(),
            template: None,
            created_at: Local::now().fixed_offset(),
            output_text: None,
            seed: None,
            revised_prompt: None,
            request_id: None,
            finish_reason: None,
            warnings: Vec::new(),
            metadata: BTreeMap::new(),
            source_images: Vec::new(),
        }
    }

    /// The record of a text-to-image job.
    pub fn from_generate(
        provider: &str,
        request: &GenerateRequest,
        generation: &Generation,
    ) -> Self {
        let mut record = Self::new(provider, &request.model, &request.prompt);
        record.negative_prompt = request.negative_prompt.clone();
        record.settings = settings_of(request);
        record.with_generation(generation)
    }

    /// The record of an edit job; `source_images` names the input images.
    pub fn from_edit(
        provider: &str,
        request: &EditRequest,
        generation: &Generation,
        source_images: Vec<String>,
    ) -> Self {
        let mut record = Self::new(provider, &request.base.model, &request.base.prompt);
        record.negative_prompt = request.base.negative_prompt.clone();
        record.settings = settings_of(request);
        record.source_images = source_images;
        record.with_generation(generation)
    }

    /// Note the template the prompt was made with.
    #[must_use]
    pub fn with_template(mut self, used: TemplateUse) -> Self {
        self.template = Some(used);
        self
    }

    fn with_generation(mut self, generation: &Generation) -> Self {
        self.seed = generation.seed;
        self.revised_prompt = generation.revised_prompt.clone();
        self.output_text = generation.note.clone();
        self.request_id = generation.request_id.clone();
        self.finish_reason = generation.finish_reason.clone();
        self.warnings = generation.warnings.clone();
        self.metadata = generation.metadata.clone();
        self
    }

    /// Replace every occurrence of `secrets` in every text of the record with `***`: a guard
    /// against a provider that echoes a key back in its note or metadata.
    pub fn redact_secrets(&mut self, secrets: &[Secret]) {
        let fix = |s: &mut String| *s = redact(s, secrets);
        fix(&mut self.prompt);
        fix(&mut self.model);
        fix(&mut self.provider);
        for s in [
            &mut self.negative_prompt,
            &mut self.output_text,
            &mut self.revised_prompt,
            &mut self.request_id,
            &mut self.finish_reason,
        ]
        .into_iter()
        .flatten()
        {
            fix(s);
        }
        self.warnings.iter_mut().for_each(fix);
        self.source_images.iter_mut().for_each(fix);
        self.metadata.values_mut().for_each(fix);
        for value in self.settings.values_mut() {
            redact_value(value, secrets);
        }
        if let Some(t) = &mut self.template {
            fix(&mut t.template);
            fix(&mut t.assembled_prompt);
            t.fields.values_mut().for_each(fix);
        }
    }

    /// The sidecar for one image of this record (`width`/`height` when known).
    pub fn sidecar(&self, size: Option<(u32, u32)>) -> Sidecar {
        let mut m = Map::new();
        let text = |s: &Option<String>| s.as_deref().map_or(Value::Null, Value::from);
        m.insert("prompt".into(), Value::from(self.prompt.as_str()));
        if let Some(negative) = &self.negative_prompt {
            m.insert("negative_prompt".into(), Value::from(negative.as_str()));
        }
        m.insert("model".into(), Value::from(self.model.as_str()));
        m.insert("provider".into(), Value::from(self.provider.as_str()));
        m.insert(
            "created_at".into(),
            Value::from(self.created_at.to_rfc3339_opts(SecondsFormat::Secs, false)),
        );
        m.insert("app_version".into(), Value::from(APP_VERSION));
        m.insert("output_text".into(), text(&self.output_text));
        m.insert("settings".into(), Value::Object(self.settings.clone()));
        if let Some(template) = &self.template
            && let Ok(value) = serde_json::to_value(template)
        {
            m.insert("template".into(), value);
        }
        if let Some(seed) = self.seed {
            m.insert("seed".into(), Value::from(seed));
        }
        for (key, value) in [
            ("revised_prompt", &self.revised_prompt),
            ("request_id", &self.request_id),
            ("finish_reason", &self.finish_reason),
        ] {
            if value.is_some() {
                m.insert(key.into(), text(value));
            }
        }
        if !self.warnings.is_empty() {
            m.insert("warnings".into(), Value::from(self.warnings.clone()));
        }
        if let Some((w, h)) = size {
            m.insert("width".into(), Value::from(w));
            m.insert("height".into(), Value::from(h));
        }
        if !self.source_images.is_empty() {
            m.insert(
                "source_images".into(),
                Value::from(self.source_images.clone()),
            );
        }
        if !self.metadata.is_empty() {
            let meta: Map<String, Value> = self
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            m.insert("metadata".into(), Value::Object(meta));
        }
        Sidecar(m)
    }
}

/// A request serialised, without `prompt` and `model`, numbers from `f32` fields written as
/// typed (`7.3`, not `7.300000190734863`).
fn settings_of(request: &impl Serialize) -> Map<String, Value> {
    let mut map = match serde_json::to_value(request) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    map.shift_remove("prompt");
    map.shift_remove("model");
    for value in map.values_mut() {
        tidy_floats(value);
    }
    map
}

fn tidy_floats(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(x) = n.as_f64() {
                #[allow(clippy::cast_possible_truncation)]
                // checked: only values that are exact f32s
                let narrow = x as f32;
                if f64::from(narrow) == x
                    && let Ok(shortest) = narrow.to_string().parse::<f64>()
                    && let Some(tidy) = serde_json::Number::from_f64(shortest)
                {
                    *n = tidy;
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(tidy_floats),
        Value::Object(map) => map.values_mut().for_each(tidy_floats),
        _ => {}
    }
}

fn redact_value(value: &mut Value, secrets: &[Secret]) {
    match value {
        Value::String(s) => *s = redact(s, secrets),
        Value::Array(items) => items.iter_mut().for_each(|v| redact_value(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| redact_value(v, secrets)),
        _ => {}
    }
}

/// An image's sidecar JSON (`<image file name>.json`). Any JSON object is accepted and kept
/// whole, so fields from the Python app or a later version survive; the accessors read the
/// known ones and ignore values of the wrong type.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sidecar(pub Map<String, Value>);

impl Sidecar {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    pub fn prompt(&self) -> Option<&str> {
        self.text("prompt")
    }

    pub fn negative_prompt(&self) -> Option<&str> {
        self.text("negative_prompt")
    }

    pub fn model(&self) -> Option<&str> {
        self.text("model")
    }

    pub fn provider(&self) -> Option<&str> {
        self.text("provider")
    }

    pub fn output_text(&self) -> Option<&str> {
        self.text("output_text")
    }

    pub fn revised_prompt(&self) -> Option<&str> {
        self.text("revised_prompt")
    }

    /// `created_at`, or the older Python `timestamp`: ISO 8601 with or without an offset (local
    /// time assumed), or seconds since 1970.
    pub fn created_at(&self) -> Option<DateTime<FixedOffset>> {
        self.0
            .get("created_at")
            .and_then(parse_time)
            .or_else(|| self.0.get("timestamp").and_then(parse_time))
    }

    pub fn settings(&self) -> Option<&Map<String, Value>> {
        self.0.get("settings").and_then(Value::as_object)
    }

    pub fn template(&self) -> Option<TemplateUse> {
        self.0
            .get("template")
            .and_then(|t| TemplateUse::deserialize(t).ok())
    }

    pub fn seed(&self) -> Option<u64> {
        self.0
            .get("seed")
            .and_then(Value::as_u64)
            .or_else(|| self.settings()?.get("seed")?.as_u64())
    }

    pub fn size(&self) -> Option<(u32, u32)> {
        let dim = |k: &str| {
            self.0
                .get(k)
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        Some((dim("width")?, dim("height")?))
    }
}

fn parse_time(value: &Value) -> Option<DateTime<FixedOffset>> {
    match value {
        Value::String(s) => {
            let s = s.trim();
            DateTime::parse_from_rfc3339(s).ok().or_else(|| {
                [
                    "%Y-%m-%dT%H:%M:%S%.f",
                    "%Y-%m-%d %H:%M:%S%.f",
                    "%Y%m%d_%H%M%S",
                ]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
                .and_then(|naive| Local.from_local_datetime(&naive).earliest())
                .map(|local| local.fixed_offset())
            })
        }
        Value::Number(n) => {
            let secs = n.as_f64()?;
            if !secs.is_finite() {
                return None;
            }
            #[allow(clippy::cast_possible_truncation)]
            // whole seconds and nanoseconds of a finite time
            let (whole, nanos) = (secs.floor() as i64, ((secs - secs.floor()) * 1e9) as u32);
            DateTime::from_timestamp(whole, nanos)
                .map(|utc| utc.with_timezone(&Local).fixed_offset())
        }
        _ => None,
    }
}

/// One image written by [`save`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedImage {
    pub image: PathBuf,
    pub sidecar: PathBuf,
    /// Pixel size, when the file's header told.
    pub size: Option<(u32, u32)>,
    /// Things the user should know (e.g. a PNG saved without embedded metadata).
    pub warnings: Vec<String>,
}

/// Save `images` in `output_dir` as `{prompt stub}_{YYYYmmdd_HHMMSS}_{n}.{ext}` (never over an
/// existing file), each with a sidecar `<file name>.json`. PNGs also carry the metadata inside:
/// a `parameters` text chunk in AUTOMATIC1111's format and an `imageai` iTXt chunk with the
/// sidecar JSON, added without re-encoding the pixels. An image that is not a valid PNG is
/// saved as it came, with a warning.
pub fn save(
    output_dir: &Path,
    record: &Record,
    images: &[Image],
) -> Result<Vec<SavedImage>, HistoryError> {
    let stub = prompt_stub(&record.prompt);
    let stamp = record.created_at.format("%Y%m%d_%H%M%S").to_string();
    fs::create_dir_all(output_dir).map_err(|reason| HistoryError::Reserve {
        path: output_dir.to_owned(),
        reason,
    })?;
    let mut saved = Vec::with_capacity(images.len());
    for (index, image) in images.iter().enumerate() {
        let format = Format::sniff(&image.data);
        let extension = format.map_or_else(|| image.extension(), Format::extension);
        let image_path = reserve(
            output_dir,
            &format!("{stub}_{stamp}_{}", index + 1),
            extension,
        )?;
        match write_one(&image_path, record, image, format) {
            Ok(one) => saved.push(one),
            Err(e) => {
                // Free the name we reserved; the caller still holds the bytes.
                let _ = fs::remove_file(&image_path);
                return Err(e);
            }
        }
    }
    Ok(saved)
}

fn write_one(
    image_path: &Path,
    record: &Record,
    image: &Image,
    format: Option<Format>,
) -> Result<SavedImage, HistoryError> {
    let mut warnings = Vec::new();
    if image.data.is_empty() {
        warnings.push("the provider sent an empty image; saved it as it came".to_owned());
    }
    let png = (format == Some(Format::Png)).then(|| png::Layout::parse(&image.data));
    let size = match &png {
        Some(Ok(layout)) => Some((layout.width, layout.height)),
        _ => format.and_then(|f| f.size(&image.data)),
    };
    let sidecar = record.sidecar(size);
    let bytes = match png {
        Some(Ok(layout)) => {
            let parameters = a1111_parameters(record, size);
            let embedded = serde_json::to_string(&sidecar.0).unwrap_or_default();
            layout.with_text(
                &image.data,
                &[
                    ("parameters", &parameters, png::TextChunk::Latin1OrUtf8),
                    ("imageai", &embedded, png::TextChunk::Utf8),
                ],
            )
        }
        Some(Err(reason)) => {
            warnings.push(format!("the PNG could not be read ({reason}); saved it as it came, without embedded metadata"));
            image.data.clone()
        }
        None => image.data.clone(),
    };
    atomic::write_atomic(image_path, &bytes)?;
    let sidecar_path = sidecar_path(image_path);
    let mut json = serde_json::to_vec_pretty(&sidecar.0).map_err(|e| AtomicError::Write {
        path: sidecar_path.clone(),
        reason: io::Error::other(e),
    })?;
    json.push(b'\n');
    atomic::write_atomic(&sidecar_path, &json)?;
    for warning in &warnings {
        tracing::warn!(image = %image_path.display(), "{warning}");
    }
    Ok(SavedImage {
        image: image_path.to_owned(),
        sidecar: sidecar_path,
        size,
        warnings,
    })
}

/// Claim `<base>.<ext>` (or `<base>-2.<ext>`, `-3`, … when taken) by creating it empty, so two
/// saves at the same second never pick the same name.
fn reserve(dir: &Path, base: &str, extension: &str) -> Result<PathBuf, HistoryError> {
    for attempt in 1u32.. {
        let name = if attempt == 1 {
            format!("{base}.{extension}")
        } else {
            format!("{base}-{attempt}.{extension}")
        };
        let path = dir.join(&name);
        if sidecar_path(&path).exists() {
            continue;
        }
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(reason) => return Err(HistoryError::Reserve { path, reason }),
        }
    }
    Err(HistoryError::Reserve {
        path: dir.join(base),
        reason: io::Error::other("no free file name"),
    })
}

/// `<image file name>.json`.
pub fn sidecar_path(image: &Path) -> PathBuf {
    let mut name = image
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".json");
    image.with_file_name(name)
}

/// The file-name stub of a prompt: its first line, lowercase ASCII letters and digits with `_`
/// for everything else, at most 40 characters; `gen` (the Python app's) when nothing is left.
pub fn prompt_stub(prompt: &str) -> String {
    let first_line = prompt.trim().lines().next().unwrap_or("");
    let mut stub = String::new();
    for c in first_line.chars() {
        if c.is_ascii_alphanumeric() {
            stub.push(c.to_ascii_lowercase());
        } else if !stub.is_empty() && !stub.ends_with('_') {
            stub.push('_');
        }
        if stub.len() >= STUB_CHARS {
            break;
        }
    }
    let stub = stub.trim_end_matches('_');
    if stub.is_empty() {
        "gen".to_owned()
    } else {
        stub.to_owned()
    }
}

/// The `parameters` text AUTOMATIC1111 writes, with the fields this job has:
/// `<prompt>\nNegative prompt: <neg>\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42,
/// Size: 512x512, Model: <model>, Provider: <provider>`.
fn a1111_parameters(record: &Record, size: Option<(u32, u32)>) -> String {
    let setting = |names: &[&str]| {
        names.iter().find_map(|name| {
            record
                .settings
                .get(*name)
                .or_else(|| record.settings.get("extra").and_then(|e| e.get(*name)))
                .filter(|v| !v.is_null())
                .map(number_text)
        })
    };
    let mut fields: Vec<(&str, String)> = Vec::new();
    if let Some(steps) = setting(&["steps"]) {
        fields.push(("Steps", steps));
    }
    if let Some(sampler) = setting(&["sampler", "scheduler"]) {
        fields.push(("Sampler", sampler));
    }
    if let Some(cfg) = setting(&["guidance", "cfg_scale", "guidance_scale"]) {
        fields.push(("CFG scale", cfg));
    }
    if let Some(seed) = record
        .seed
        .map(|s| s.to_string())
        .or_else(|| setting(&["seed"]))
    {
        fields.push(("Seed", seed));
    }
    if let Some(size) = size
        .map(|(w, h)| format!("{w}x{h}"))
        .or_else(|| setting(&["size"]))
    {
        fields.push(("Size", size));
    }
    if !record.model.is_empty() {
        fields.push(("Model", record.model.clone()));
    }
    if !record.provider.is_empty() {
        fields.push(("Provider", record.provider.clone()));
    }
    let mut text = record.prompt.clone();
    if let Some(negative) = record
        .negative_prompt
        .as_deref()
        .filter(|n| !n.trim().is_empty())
    {
        text.push_str("\nNegative prompt: ");
        text.push_str(negative);
    }
    if !fields.is_empty() {
        text.push('\n');
        let joined: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        text.push_str(&joined.join(", "));
    }
    text
}

/// A setting as A1111 prints it: whole numbers without `.0`, text as is.
fn number_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(x) if n.is_f64() && x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Image formats recognised from their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Jpeg,
    Webp,
    Gif,
}

impl Format {
    fn sniff(data: &[u8]) -> Option<Self> {
        if data.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
            Some(Self::Gif)
        } else {
            None
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Webp => "webp",
            Self::Gif => "gif",
        }
    }

    /// Width and height from the file header.
    fn size(self, d: &[u8]) -> Option<(u32, u32)> {
        let le16 = |i: usize| {
            d.get(i..i + 2)
                .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))
        };
        let be16 = |i: usize| {
            d.get(i..i + 2)
                .map(|b| u32::from(u16::from_be_bytes([b[0], b[1]])))
        };
        let le24 = |i: usize| {
            d.get(i..i + 3)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], 0]))
        };
        match self {
            Self::Png => png::Layout::parse(d).ok().map(|l| (l.width, l.height)),
            Self::Gif => Some((le16(6)?, le16(8)?)),
            Self::Webp => match d.get(12..16)? {
                b"VP8X" => Some((le24(24)? + 1, le24(27)? + 1)),
                b"VP8 " if d.get(23..26)? == [0x9d, 0x01, 0x2a] => {
                    Some((le16(26)? & 0x3fff, le16(28)? & 0x3fff))
                }
                b"VP8L" if *d.get(20)? == 0x2f => {
                    let bits = u32::from_le_bytes(d.get(21..25)?.try_into().ok()?);
                    Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
                }
                _ => None,
            },
            Self::Jpeg => {
                let mut i = 2;
                while i + 4 <= d.len() {
                    if d[i] != 0xFF {
                        return None;
                    }
                    let marker = d[i + 1];
                    if marker == 0xFF {
                        i += 1; // fill byte
                        continue;
                    }
                    if matches!(marker, 0x01 | 0xD0..=0xD8) {
                        i += 2; // markers without a length
                        continue;
                    }
                    let length = usize::try_from(be16(i + 2)?).ok()?;
                    if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
                        return Some((be16(i + 7)?, be16(i + 5)?));
                    }
                    if length < 2 {
                        return None;
                    }
                    i += 2 + length;
                }
                None
            }
        }
    }
}

/// Adding text chunks to a PNG without touching its image data.
mod png {
    use std::ops::Range;

    const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

    /// Where a PNG's chunks are, checked: every length in bounds and every CRC right.
    pub(super) struct Layout {
        pub width: u32,
        pub height: u32,
        chunks: Vec<Chunk>,
        /// Start of the IEND chunk.
        iend: usize,
    }

    struct Chunk {
        kind: [u8; 4],
        /// The whole chunk: length, type, data and CRC.
        span: Range<usize>,
        data: Range<usize>,
    }

    impl Layout {
        pub fn parse(bytes: &[u8]) -> Result<Self, String> {
            if !bytes.starts_with(SIGNATURE) {
                return Err("no PNG signature".to_owned());
            }
            let mut chunks = Vec::new();
            let mut at = SIGNATURE.len();
            loop {
                let header = bytes
                    .get(at..at + 8)
                    .ok_or("the file ends before its IEND chunk")?;
                let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
                let kind = [header[4], header[5], header[6], header[7]];
                if length > 0x7fff_ffff || !kind.iter().all(u8::is_ascii_alphabetic) {
                    return Err(format!("a damaged chunk header at byte {at}"));
                }
                let data = at + 8..at + 8 + length as usize;
                let crc_bytes = bytes
                    .get(data.end..data.end + 4)
                    .ok_or("the file ends inside a chunk")?;
                let stored =
                    u32::from_be_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
                if crc32(&bytes[at + 4..data.end]) != stored {
                    return Err(format!(
                        "the {} chunk at byte {at} fails its CRC check",
                        String::from_utf8_lossy(&kind)
                    ));
                }
                let span = at..data.end + 4;
                at = span.end;
                let is_end = &kind == b"IEND";
                chunks.push(Chunk { kind, span, data });
                if is_end {
                    break;
                }
            }
            let first = chunks
                .first()
                .filter(|c| &c.kind == b"IHDR" && c.data.len() == 13)
                .ok_or("the first chunk is not IHDR")?;
            let word =
                |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
            let (width, height) = (word(first.data.start), word(first.data.start + 4));
            let iend = chunks.last().map_or(at, |c| c.span.start);
            Ok(Self {
                width,
                height,
                chunks,
                iend,
            })
        }

        /// `bytes` with the given text chunks added just before the first IDAT (where PIL, and
        /// so AUTOMATIC1111, puts them, and where readers that stop at the pixels find them),
        /// replacing any text chunk that had one of their keywords.
        pub fn with_text(&self, bytes: &[u8], texts: &[(&str, &str, TextChunk)]) -> Vec<u8> {
            let mut out = Vec::with_capacity(
                bytes.len()
                    + texts
                        .iter()
                        .map(|(k, t, _)| k.len() + t.len() + 32)
                        .sum::<usize>(),
            );
            out.extend_from_slice(SIGNATURE);
            let mut inserted = false;
            for chunk in &self.chunks {
                if chunk.span.start == self.iend {
                    break;
                }
                if !inserted && (&chunk.kind == b"IDAT") {
                    push_texts(&mut out, texts);
                    inserted = true;
                }
                let replaced = matches!(&chunk.kind, b"tEXt" | b"iTXt" | b"zTXt") && {
                    let data = &bytes[chunk.data.clone()];
                    let keyword = data.split(|&b| b == 0).next().unwrap_or_default();
                    texts.iter().any(|(k, _, _)| k.as_bytes() == keyword)
                };
                if !replaced {
                    out.extend_from_slice(&bytes[chunk.span.clone()]);
                }
            }
            if !inserted {
                push_texts(&mut out, texts);
            }
            out.extend_from_slice(&bytes[self.iend..]);
            out
        }
    }

    /// How a text chunk is written.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum TextChunk {
        /// tEXt when the text is Latin-1 (as PIL writes A1111's `parameters`), else iTXt.
        Latin1OrUtf8,
        /// Always iTXt (UTF-8).
        Utf8,
    }

    fn push_texts(out: &mut Vec<u8>, texts: &[(&str, &str, TextChunk)]) {
        for (keyword, text, kind) in texts {
            let latin1: Option<Vec<u8>> = match kind {
                TextChunk::Utf8 => None,
                TextChunk::Latin1OrUtf8 => text
                    .chars()
                    .map(|c| u8::try_from(u32::from(c)).ok())
                    .collect(),
            };
            match latin1 {
                Some(latin1) => {
                    let mut data = Vec::with_capacity(keyword.len() + 1 + latin1.len());
                    data.extend_from_slice(keyword.as_bytes());
                    data.push(0);
                    data.extend(latin1.into_iter().filter(|&b| b != 0));
                    push_chunk(out, b"tEXt", &data);
                }
                None => {
                    let mut data = Vec::with_capacity(keyword.len() + 5 + text.len());
                    data.extend_from_slice(keyword.as_bytes());
                    // Separator, not compressed, method 0, empty language and translated keyword.
                    data.extend_from_slice(&[0, 0, 0, 0, 0]);
                    data.extend_from_slice(text.as_bytes());
                    push_chunk(out, b"iTXt", &data);
                }
            }
        }
    }

    fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        // Text chunks are far below the 2 GiB chunk limit.
        let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&length.to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }

    /// The CRC-32 PNG uses (ISO 3309, reflected, polynomial 0xEDB88320).
    pub(super) fn crc32(bytes: &[u8]) -> u32 {
        const TABLE: [u32; 256] = {
            let mut table = [0u32; 256];
            let mut n = 0;
            while n < 256 {
                let mut c = n as u32;
                let mut k = 0;
                while k < 8 {
                    c = if c & 1 == 1 {
                        0xEDB8_8320 ^ (c >> 1)
                    } else {
                        c >> 1
                    };
                    k += 1;
                }
                table[n] = c;
                n += 1;
            }
            table
        };
        let mut c = 0xFFFF_FFFFu32;
        for &b in bytes {
            c = TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        c ^ 0xFFFF_FFFF
    }
}

/// One history item: an image and its sidecar (either may be missing).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub image: Option<PathBuf>,
    pub sidecar: Option<PathBuf>,
    /// The sidecar's content, when it could be read.
    pub metadata: Option<Sidecar>,
    /// Why this entry is incomplete (damaged sidecar, missing image); for display.
    pub problem: Option<String>,
    pub created_at: Option<DateTime<FixedOffset>>,
    /// The image's modification time (the sidecar's when there is no image).
    pub modified: Option<SystemTime>,
}

impl Entry {
    /// The image's file name (the sidecar's without `.json` when the image is gone): the id
    /// [`find`] takes.
    pub fn name(&self) -> String {
        let from = |p: &Option<PathBuf>| {
            p.as_ref()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        };
        from(&self.image)
            .or_else(|| from(&self.sidecar).map(|n| n.trim_end_matches(".json").to_owned()))
            .unwrap_or_default()
    }

    pub fn prompt(&self) -> Option<&str> {
        self.metadata.as_ref()?.prompt()
    }

    pub fn provider(&self) -> Option<&str> {
        self.metadata.as_ref()?.provider()
    }

    pub fn model(&self) -> Option<&str> {
        self.metadata.as_ref()?.model()
    }

    fn sort_key(&self) -> (i64, i64) {
        let modified = self
            .modified
            .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        (
            self.created_at.map_or(modified, |c| c.timestamp_millis()),
            modified,
        )
    }

    fn from_files(image: Option<PathBuf>, sidecar: Option<PathBuf>) -> Self {
        let mut problems = Vec::new();
        let metadata = sidecar.as_ref().and_then(|path| match read_sidecar(path) {
            Ok(sidecar) => Some(sidecar),
            Err(problem) => {
                problems.push(problem);
                None
            }
        });
        if image.is_none() {
            problems.push("the image file is missing".to_owned());
        }
        let modified = image
            .as_ref()
            .or(sidecar.as_ref())
            .and_then(|p| fs::metadata(p).ok())
            .and_then(|m| m.modified().ok());
        let created_at = metadata.as_ref().and_then(Sidecar::created_at);
        let problem = (!problems.is_empty()).then(|| problems.join("; "));
        Self {
            image,
            sidecar,
            metadata,
            problem,
            created_at,
            modified,
        }
    }
}

fn read_sidecar(path: &Path) -> Result<Sidecar, String> {
    let bytes = fs::read(path).map_err(|e| format!("the sidecar could not be read: {e}"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(Sidecar(map)),
        Ok(_) => Err("the sidecar is JSON but not an object".to_owned()),
        Err(e) => Err(format!("the sidecar is damaged (not valid JSON: {e})")),
    }
}

fn has_image_extension(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| IMAGE_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

/// The history in `output_dir`, newest first (by `created_at`, then modification time). Every
/// image is an entry, with or without a sidecar, and so is a sidecar whose image is gone. A
/// damaged sidecar shows up as the entry's `problem`. A missing folder is an empty history.
pub fn list(output_dir: &Path) -> Result<Vec<Entry>, HistoryError> {
    let read_dir = match fs::read_dir(output_dir) {
        Ok(read_dir) => read_dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(reason) => {
            return Err(HistoryError::ReadDir {
                path: output_dir.to_owned(),
                reason,
            });
        }
    };
    let mut images: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut sidecars: HashMap<String, PathBuf> = HashMap::new();
    for item in read_dir {
        let item = item.map_err(|reason| HistoryError::ReadDir {
            path: output_dir.to_owned(),
            reason,
        })?;
        let Ok(name) = item.file_name().into_string() else {
            continue;
        };
        // Temporary files of writes in progress start with a dot.
        if name.starts_with('.') || !item.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if let Some(image_name) = name.strip_suffix(".json") {
            if has_image_extension(image_name) {
                sidecars.insert(image_name.to_owned(), item.path());
            }
        } else if has_image_extension(&name) {
            images.insert(name, item.path());
        }
    }
    let mut entries = Vec::with_capacity(images.len());
    for (name, image) in images {
        let sidecar = sidecars.remove(&name);
        // A name reserved by a save still writing its bytes.
        if sidecar.is_none() && fs::metadata(&image).is_ok_and(|m| m.len() == 0) {
            continue;
        }
        entries.push(Entry::from_files(Some(image), sidecar));
    }
    entries.extend(
        sidecars
            .into_values()
            .map(|sidecar| Entry::from_files(None, Some(sidecar))),
    );
    entries.sort_by(|a, b| {
        b.sort_key()
            .cmp(&a.sort_key())
            .then_with(|| b.name().cmp(&a.name()))
    });
    Ok(entries)
}

/// The entry for `id_or_path`: a path to an image or sidecar, or an image file name in
/// `output_dir` (its stem, or the start of it when only one entry begins that way).
pub fn find(output_dir: &Path, id_or_path: &str) -> Result<Entry, HistoryError> {
    let query = id_or_path.trim();
    let path = Path::new(query);
    if path.components().count() > 1 && path.is_file() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(match name.strip_suffix(".json") {
            Some(image_name) => {
                let image = path.with_file_name(image_name);
                Entry::from_files(image.is_file().then_some(image), Some(path.to_owned()))
            }
            None => {
                let sidecar = sidecar_path(path);
                Entry::from_files(Some(path.to_owned()), sidecar.is_file().then_some(sidecar))
            }
        });
    }
    let mut entries = list(output_dir)?;
    let stem = |name: &str| {
        name.rsplit_once('.')
            .map_or(name.to_owned(), |(s, _)| s.to_owned())
    };
    if let Some(i) = entries.iter().position(|e| {
        let name = e.name();
        name == query || stem(&name) == query || format!("{name}.json") == query
    }) {
        return Ok(entries.swap_remove(i));
    }
    let mut matching: Vec<Entry> = entries
        .into_iter()
        .filter(|e| !query.is_empty() && e.name().starts_with(query))
        .collect();
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => Err(HistoryError::NotFound {
            query: query.to_owned(),
            dir: output_dir.to_owned(),
        }),
        count => Err(HistoryError::Ambiguous {
            query: query.to_owned(),
            count,
        }),
    }
}

/// The entries whose prompt, provider, model, date or file name contain every word of `query`
/// (case does not matter). An empty query matches all.
pub fn search<'a>(entries: &'a [Entry], query: &str) -> Vec<&'a Entry> {
    let terms: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    entries
        .iter()
        .filter(|entry| {
            let mut haystack = entry.name();
            for text in [entry.prompt(), entry.provider(), entry.model()]
                .into_iter()
                .flatten()
            {
                haystack.push('\n');
                haystack.push_str(text);
            }
            if let Some(created) = entry.created_at {
                haystack.push('\n');
                haystack.push_str(&created.format("%Y-%m-%d %H:%M:%S %Y%m%d").to_string());
            }
            let haystack = haystack.to_lowercase();
            terms.iter().all(|t| haystack.contains(t.as_str()))
        })
        .collect()
}

/// Delete an entry's image and sidecar. Files already gone are fine.
pub fn delete(entry: &Entry) -> Result<(), HistoryError> {
    for path in [&entry.image, &entry.sidecar].into_iter().flatten() {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(reason) => {
                return Err(HistoryError::Delete {
                    path: path.clone(),
                    reason,
                });
            }
        }
    }
    Ok(())
}

/// Append one event (e.g. `TemplateUse::event`) as a line of `details.jsonl`, as the Python app
/// records template use.
pub fn append_event(paths: &Paths, event: &Value) -> Result<(), HistoryError> {
    let path = paths.details_file();
    let append_error = |reason: io::Error| HistoryError::Append {
        path: path.clone(),
        reason,
    };
    let mut line = serde_json::to_string(event).map_err(|e| append_error(io::Error::other(e)))?;
    line.push('\n');
    fs::create_dir_all(paths.config_dir()).map_err(append_error)?;
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(append_error)?;
    // One write per line, so lines from two processes never interleave.
    file.write_all(line.as_bytes()).map_err(append_error)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on the first surprise
mod tests {
    use super::*;
    use crate::provider::CallContext;
    use crate::templates::{Template, TemplateSource};
    use serde_json::json;
    use std::io::Cursor;

    fn tiny_png() -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = ::png::Encoder::new(&mut out, 3, 2);
        encoder.set_color(::png::ColorType::Rgb);
        encoder.set_depth(::png::BitDepth::Eight);
        encoder
            .add_text_chunk("parameters".to_owned(), "old parameters".to_owned())
            .unwrap();
        encoder
            .add_text_chunk("Software".to_owned(), "a painter".to_owned())
            .unwrap();
        let mut writer = encoder.write_header().unwrap();
        writer
            .write_image_data(&(0u8..18).collect::<Vec<_>>())
            .unwrap();
        writer.finish().unwrap();
        out
    }

    /// Decode a PNG fully with the `png` crate: pixels and every text chunk.
    fn decode(bytes: &[u8]) -> (Vec<u8>, Vec<(String, String)>) {
        let mut reader = ::png::Decoder::new(Cursor::new(bytes)).read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut pixels).unwrap();
        reader.finish().unwrap();
        let info = reader.info();
        let mut texts: Vec<(String, String)> = info
            .uncompressed_latin1_text
            .iter()
            .map(|t| (t.keyword.clone(), t.text.clone()))
            .collect();
        texts.extend(
            info.utf8_text
                .iter()
                .map(|t| (t.keyword.clone(), t.get_text().unwrap())),
        );
        (pixels, texts)
    }

    fn sample_record() -> Record {
        let request = GenerateRequest {
            model: "sd-1.5".into(),
            prompt: "A cat on a mat, oil painting!".into(),
            negative_prompt: Some("blurry".into()),
            n: 1,
            seed: Some(7),
            steps: Some(20),
            guidance: Some(7.5),
            extra: BTreeMap::from([("scheduler".to_owned(), "Euler a".to_owned())]),
            ..GenerateRequest::default()
        };
        let generation = Generation {
            seed: Some(42),
            note: Some("done".into()),
            warnings: vec!["resized".into()],
            metadata: BTreeMap::from([("elapsed_ms".to_owned(), "1234".to_owned())]),
            ..Generation::default()
        };
        let mut record = Record::from_generate("local-sd", &request, &generation);
        record.created_at = DateTime::parse_from_rfc3339("2026-01-01T12:00:00+01:00").unwrap();
        record
    }

    fn png_image(data: Vec<u8>) -> Image {
        Image {
            mime: "image/png".into(),
            data,
        }
    }

    #[test]
    fn png_gets_parameters_and_sidecar_chunks_without_touching_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let original = tiny_png();
        let saved = save(dir.path(), &sample_record(), &[png_image(original.clone())]).unwrap();
        assert_eq!(saved.len(), 1);
        let one = &saved[0];
        assert_eq!(
            one.image.file_name().unwrap(),
            "a_cat_on_a_mat_oil_painting_20260101_120000_1.png"
        );
        assert_eq!(
            one.sidecar.file_name().unwrap(),
            "a_cat_on_a_mat_oil_painting_20260101_120000_1.png.json"
        );
        assert_eq!(one.size, Some((3, 2)));
        assert!(one.warnings.is_empty());

        let written = fs::read(&one.image).unwrap();
        let (pixels, texts) = decode(&written);
        let (original_pixels, _) = decode(&original);
        assert_eq!(pixels, original_pixels);
        let find = |k: &str| {
            texts
                .iter()
                .filter(|(key, _)| key == k)
                .map(|(_, t)| t.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            find("parameters"),
            vec![
                "A cat on a mat, oil painting!\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 3x2, Model: sd-1.5, Provider: local-sd"
                    .to_owned()
            ],
            "the old parameters chunk was replaced"
        );
        assert_eq!(
            find("Software"),
            vec!["a painter".to_owned()],
            "other chunks are kept"
        );
        let embedded: Value = serde_json::from_str(&find("imageai")[0]).unwrap();
        let sidecar: Value = serde_json::from_slice(&fs::read(&one.sidecar).unwrap()).unwrap();
        assert_eq!(embedded, sidecar);

        // The image data chunk is byte for byte the same.
        let idat = |bytes: &[u8]| {
            let at = bytes.windows(4).position(|w| w == b"IDAT").unwrap();
            let length = u32::from_be_bytes(bytes[at - 4..at].try_into().unwrap()) as usize;
            bytes[at - 4..at + 4 + length + 4].to_vec()
        };
        assert_eq!(idat(&written), idat(&original));
    }

    #[test]
    fn sidecar_has_the_python_fields_and_ours() {
        let dir = tempfile::tempdir().unwrap();
        let template = Template::new("Simple", "A [x] on a mat, oil painting!");
        let used = template.record_use(
            BTreeMap::from([("x".into(), "cat".into())]),
            "A cat on a mat, oil painting!",
            false,
            TemplateSource::User,
        );
        let record = sample_record().with_template(used);
        let saved = save(dir.path(), &record, &[png_image(tiny_png())]).unwrap();
        let sidecar: Value = serde_json::from_slice(&fs::read(&saved[0].sidecar).unwrap()).unwrap();
        assert_eq!(sidecar["prompt"], json!("A cat on a mat, oil painting!"));
        assert_eq!(sidecar["model"], json!("sd-1.5"));
        assert_eq!(sidecar["provider"], json!("local-sd"));
        assert_eq!(sidecar["created_at"], json!("2026-01-01T12:00:00+01:00"));
        assert_eq!(sidecar["app_version"], json!(APP_VERSION));
        assert_eq!(sidecar["output_text"], json!("done"));
        assert_eq!(
            sidecar["settings"],
            json!({"negative_prompt": "blurry", "n": 1, "seed": 7, "steps": 20, "guidance": 7.5, "extra": {"scheduler": "Euler a"}})
        );
        assert_eq!(sidecar["template"]["name"], json!("Simple"));
        assert_eq!(sidecar["template"]["fields"], json!({"x": "cat"}));
        assert_eq!(sidecar["template"]["source"], json!("user"));
        assert_eq!(sidecar["seed"], json!(42));
        assert_eq!(sidecar["negative_prompt"], json!("blurry"));
        assert_eq!(sidecar["warnings"], json!(["resized"]));
        assert_eq!(
            (sidecar["width"].clone(), sidecar["height"].clone()),
            (json!(3), json!(2))
        );
        assert_eq!(sidecar["metadata"], json!({"elapsed_ms": "1234"}));
    }

    #[test]
    fn edit_records_keep_mode_strength_and_sources() {
        let request = EditRequest {
            mode: crate::provider::EditMode::Inpaint,
            base: GenerateRequest {
                model: "m".into(),
                prompt: "p".into(),
                guidance: Some(7.3),
                ..GenerateRequest::default()
            },
            images: vec![png_image(tiny_png())],
            mask: None,
            strength: Some(0.6),
        };
        let record = Record::from_edit(
            "openai",
            &request,
            &Generation::default(),
            vec!["in.png".into()],
        );
        assert_eq!(record.settings.get("mode"), Some(&json!("inpaint")));
        assert_eq!(record.settings.get("strength"), Some(&json!(0.6)));
        assert_eq!(
            record.settings.get("guidance"),
            Some(&json!(7.3)),
            "no f32 noise"
        );
        assert!(!record.settings.contains_key("prompt") && !record.settings.contains_key("model"));
        assert_eq!(
            record.sidecar(None).get("source_images"),
            Some(&json!(["in.png"]))
        );
    }

    #[test]
    fn names_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let record = sample_record();
        let images = [png_image(tiny_png()), png_image(tiny_png())];
        let first = save(dir.path(), &record, &images).unwrap();
        let second = save(dir.path(), &record, &images).unwrap();
        let names: Vec<String> = first
            .iter()
            .chain(&second)
            .map(|s| s.image.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "a_cat_on_a_mat_oil_painting_20260101_120000_1.png",
                "a_cat_on_a_mat_oil_painting_20260101_120000_2.png",
                "a_cat_on_a_mat_oil_painting_20260101_120000_1-2.png",
                "a_cat_on_a_mat_oil_painting_20260101_120000_2-2.png",
            ]
        );
    }

    #[test]
    fn prompt_stubs() {
        assert_eq!(
            prompt_stub("  A Cat, on a MAT!\nsecond line"),
            "a_cat_on_a_mat"
        );
        assert_eq!(prompt_stub("日本の猫"), "gen");
        assert_eq!(prompt_stub(""), "gen");
        let long = prompt_stub(&"word ".repeat(30));
        assert!(long.len() <= STUB_CHARS && !long.ends_with('_'), "{long}");
        assert!(
            prompt_stub("../../etc/passwd")
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
    }

    #[test]
    fn a_broken_png_is_saved_as_it_came() {
        let dir = tempfile::tempdir().unwrap();
        let mut broken = tiny_png();
        let last = broken.len() - 20;
        broken[last] ^= 0xff; // corrupt a byte inside a chunk: its CRC no longer matches
        let saved = save(dir.path(), &sample_record(), &[png_image(broken.clone())]).unwrap();
        assert_eq!(fs::read(&saved[0].image).unwrap(), broken);
        assert!(
            saved[0].warnings[0].starts_with("the PNG could not be read"),
            "{:?}",
            saved[0].warnings
        );
        assert!(saved[0].sidecar.exists());

        let truncated = tiny_png()[..30].to_vec();
        let saved = save(
            dir.path(),
            &sample_record(),
            &[png_image(truncated.clone())],
        )
        .unwrap();
        assert_eq!(fs::read(&saved[0].image).unwrap(), truncated);
        assert_eq!(saved[0].warnings.len(), 1);
    }

    #[test]
    fn jpeg_and_webp_are_saved_as_is_with_their_size() {
        let dir = tempfile::tempdir().unwrap();
        // SOI, APP0 (length 4), SOF0 with height 480 and width 640.
        let jpeg = [
            &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00][..],
            &[0xFF, 0xC0, 0x00, 0x11, 0x08, 0x01, 0xE0, 0x02, 0x80, 0x03][..],
            &[0u8; 12][..],
        ]
        .concat();
        let mut webp = b"RIFF\0\0\0\0WEBPVP8X".to_vec();
        webp.extend_from_slice(&[10, 0, 0, 0, 0, 0, 0, 0]); // chunk size, flags, reserved
        webp.extend_from_slice(&[0xFF, 0x03, 0x00, 0xFF, 0x01, 0x00]); // 1024 x 512, minus one
        let images = [
            Image {
                mime: "image/jpeg".into(),
                data: jpeg.clone(),
            },
            // A mislabelled WebP still gets its own extension.
            Image {
                mime: "image/png".into(),
                data: webp.clone(),
            },
        ];
        let saved = save(dir.path(), &sample_record(), &images).unwrap();
        assert_eq!(saved[0].image.extension().unwrap(), "jpg");
        assert_eq!(saved[0].size, Some((640, 480)));
        assert_eq!(fs::read(&saved[0].image).unwrap(), jpeg);
        assert_eq!(saved[1].image.extension().unwrap(), "webp");
        assert_eq!(saved[1].size, Some((1024, 512)));
        assert_eq!(fs::read(&saved[1].image).unwrap(), webp);
    }

    #[test]
    fn non_latin1_parameters_go_in_itxt() {
        let dir = tempfile::tempdir().unwrap();
        let mut record = sample_record();
        record.prompt = "一匹の猫 🐈".into();
        let saved = save(dir.path(), &record, &[png_image(tiny_png())]).unwrap();
        let (_, texts) = decode(&fs::read(&saved[0].image).unwrap());
        let parameters = texts.iter().find(|(k, _)| k == "parameters").unwrap();
        assert!(
            parameters
                .1
                .starts_with("一匹の猫 🐈\nNegative prompt: blurry\n")
        );
    }

    #[test]
    fn history_is_newest_first_and_reports_damaged_sidecars() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
        for (prompt, when) in [
            ("old", "2025-01-01T00:00:00Z"),
            ("newest", "2026-06-01T00:00:00+02:00"),
            ("middle", "2025-06-01T00:00:00Z"),
        ] {
            let mut record = Record::new("openai", "gpt-image-1", prompt);
            record.created_at = at(when);
            save(out, &record, &[png_image(tiny_png())]).unwrap();
        }
        // A Python sidecar with a naive timestamp and a field we do not know.
        fs::write(out.join("py_20240101_000000_1.png"), tiny_png()).unwrap();
        fs::write(
            out.join("py_20240101_000000_1.png.json"),
            r#"{"prompt": "from python", "provider": "google", "model": "gemini", "created_at": "2024-01-01T00:00:00.123456", "usage": {"cost_usd": 0.04}}"#,
        )
        .unwrap();
        // A damaged sidecar, an image without one, a sidecar without its image, and noise.
        fs::write(out.join("broken_20200101_000000_1.png"), tiny_png()).unwrap();
        fs::write(out.join("broken_20200101_000000_1.png.json"), "{not json").unwrap();
        fs::write(out.join("bare.jpg"), [0xFF, 0xD8, 0xFF, 0xD9]).unwrap();
        fs::write(
            out.join("orphan_1.png.json"),
            r#"{"prompt": "lost", "created_at": "2023-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        fs::write(out.join("notes.json"), "{}").unwrap();
        fs::write(out.join(".bare.jpg.123.tmp"), "x").unwrap();
        fs::write(out.join("reserved.png"), "").unwrap();

        let entries = list(out).unwrap();
        let prompts: Vec<Option<&str>> = entries.iter().map(Entry::prompt).collect();
        // bare.jpg and the damaged one have no created_at: they sort by their mtime instead.
        let dated: Vec<Option<&str>> = prompts.iter().copied().filter(|p| p.is_some()).collect();
        assert_eq!(
            dated,
            [
                Some("newest"),
                Some("middle"),
                Some("old"),
                Some("from python"),
                Some("lost")
            ]
        );
        assert_eq!(entries.len(), 7);

        let python = entries
            .iter()
            .find(|e| e.prompt() == Some("from python"))
            .unwrap();
        assert_eq!(
            python.metadata.as_ref().unwrap().get("usage"),
            Some(&json!({"cost_usd": 0.04})),
            "unknown fields kept"
        );
        assert!(python.created_at.is_some());

        let broken = entries
            .iter()
            .find(|e| e.name() == "broken_20200101_000000_1.png")
            .unwrap();
        assert!(
            broken
                .problem
                .as_deref()
                .unwrap()
                .starts_with("the sidecar is damaged")
        );
        assert!(broken.image.is_some());
        let orphan = entries.iter().find(|e| e.name() == "orphan_1.png").unwrap();
        assert_eq!(orphan.problem.as_deref(), Some("the image file is missing"));
        let bare = entries.iter().find(|e| e.name() == "bare.jpg").unwrap();
        assert!(bare.sidecar.is_none() && bare.problem.is_none());

        assert!(list(&out.join("missing")).unwrap().is_empty());
    }

    #[test]
    fn find_search_delete() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let mut record = Record::new("openai", "gpt-image-1", "red fox in snow");
        record.created_at = DateTime::parse_from_rfc3339("2026-02-03T04:05:06Z").unwrap();
        let fox = save(out, &record, &[png_image(tiny_png())])
            .unwrap()
            .remove(0);
        let mut record = Record::new("google", "imagen-4", "blue whale");
        record.created_at = DateTime::parse_from_rfc3339("2025-02-03T04:05:06Z").unwrap();
        let whale = save(out, &record, &[png_image(tiny_png())])
            .unwrap()
            .remove(0);

        let by_name = find(out, "red_fox_in_snow_20260203_040506_1.png").unwrap();
        assert_eq!(by_name.image.as_deref(), Some(fox.image.as_path()));
        assert_eq!(
            find(out, "red_fox_in_snow_20260203_040506_1")
                .unwrap()
                .image,
            by_name.image
        );
        assert_eq!(
            find(out, "blue").unwrap().image.as_deref(),
            Some(whale.image.as_path())
        );
        assert_eq!(
            find(out, whale.sidecar.to_str().unwrap())
                .unwrap()
                .image
                .as_deref(),
            Some(whale.image.as_path())
        );
        assert_eq!(
            find(out, fox.image.to_str().unwrap())
                .unwrap()
                .sidecar
                .as_deref(),
            Some(fox.sidecar.as_path())
        );
        assert!(matches!(
            find(out, "zebra"),
            Err(HistoryError::NotFound { .. })
        ));
        save(
            out,
            &Record::new("openai", "m", "blue sky"),
            &[png_image(tiny_png())],
        )
        .unwrap();
        assert!(matches!(
            find(out, "blue_"),
            Err(HistoryError::Ambiguous { count: 2, .. })
        ));

        let entries = list(out).unwrap();
        let names = |found: Vec<&Entry>| {
            found
                .iter()
                .map(|e| e.prompt().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(search(&entries, "FOX openai")), ["red fox in snow"]);
        assert_eq!(names(search(&entries, "imagen")), ["blue whale"]);
        assert_eq!(names(search(&entries, "2025-02-03")), ["blue whale"]);
        assert_eq!(search(&entries, "").len(), 3);
        assert!(search(&entries, "fox whale").is_empty());

        delete(&by_name).unwrap();
        assert!(!fox.image.exists() && !fox.sidecar.exists());
        delete(&by_name).unwrap();
        assert_eq!(list(out).unwrap().len(), 2);
    }

    #[test]
    fn events_are_appended_as_lines() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path().join("cfg"));
        let used = Template::new("T", "[a]").record_use(
            BTreeMap::new(),
            "x",
            true,
            TemplateSource::BuiltIn,
        );
        append_event(&paths, &used.event()).unwrap();
        append_event(&paths, &json!({"type": "other", "text": "line\nbreak"})).unwrap();
        let text = fs::read_to_string(paths.details_file()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["name"], json!("T"));
        assert_eq!(lines[1]["text"], json!("line\nbreak"));
    }

    #[test]
    fn secrets_never_reach_any_output() {
        const KEY: &str = "sk-test-DO-NOT-LEAK-8c1f2e";
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path());
        let request = GenerateRequest {
            model: "gpt-image-1".into(),
            prompt: "a lighthouse".into(),
            ..GenerateRequest::default()
        };
        let ctx = CallContext::new(
            Some(Secret::new(KEY)),
            BTreeMap::from([("base_url".to_owned(), "http://127.0.0.1:1".to_owned())]),
        );
        // A provider that echoes the key back must not get it into the files either.
        let generation = Generation {
            note: Some(format!("used key {KEY}")),
            metadata: BTreeMap::from([("auth".to_owned(), format!("Bearer {KEY}"))]),
            ..Generation::default()
        };
        let mut record = Record::from_generate("openai", &request, &generation);
        record.redact_secrets(std::slice::from_ref(ctx.api_key.as_ref().unwrap()));
        assert!(!format!("{record:?} {ctx:?}").contains(KEY));
        let used = Template::new("T", "a [thing]").record_use(
            BTreeMap::new(),
            "a lighthouse",
            false,
            TemplateSource::User,
        );
        let record = record.with_template(used.clone());
        save(
            &paths.output_dir(),
            &record,
            &[
                png_image(tiny_png()),
                Image {
                    mime: "image/jpeg".into(),
                    data: vec![0xFF, 0xD8, 0xFF, 0xD9],
                },
            ],
        )
        .unwrap();
        append_event(&paths, &used.event()).unwrap();

        let mut checked = 0;
        let mut stack = vec![dir.path().to_owned()];
        while let Some(path) = stack.pop() {
            for item in fs::read_dir(&path).unwrap() {
                let item = item.unwrap();
                if item.file_type().unwrap().is_dir() {
                    stack.push(item.path());
                    continue;
                }
                let bytes = fs::read(item.path()).unwrap();
                assert!(
                    !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
                    "{}",
                    item.path().display()
                );
                assert!(!item.file_name().to_string_lossy().contains(KEY));
                checked += 1;
            }
        }
        assert_eq!(checked, 5, "two images, two sidecars, details.jsonl");
    }

    #[test]
    fn crc_matches_the_reference_value() {
        assert_eq!(png::crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(png::crc32(b"IEND"), 0xAE42_6082);
    }

    #[test]
    fn python_timestamps_parse() {
        let python = Sidecar(
            json!({"timestamp": "20240102_030405"})
                .as_object()
                .unwrap()
                .clone(),
        );
        let local = python.created_at().unwrap();
        assert_eq!(
            local.format("%Y-%m-%d %H:%M:%S").to_string(),
            "2024-01-02 03:04:05"
        );
        let epoch = Sidecar(
            json!({"created_at": 1_700_000_000.5})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(epoch.created_at().unwrap().timestamp(), 1_700_000_000);
        let wrong = Sidecar(
            json!({"created_at": ["no"], "prompt": 3})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert!(wrong.created_at().is_none() && wrong.prompt().is_none());
    }
}
