//! Prompt templates: text with `[placeholder]` slots and default values, in the Python ImageAI's
//! format, plus built-in ones and the user's own in `<config>/templates.json`.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::atomic::{self, AtomicError, CorruptFile};
use crate::config::same_id;
use crate::paths::Paths;

/// A template could not be filled, found, changed or read.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template \"{template}\" needs a value for {}; give {} as name=value, or add defaults to the template", quoted(fields), if fields.len() == 1 { "it" } else { "them" })]
    MissingFields {
        template: String,
        fields: Vec<String>,
    },
    #[error("no template named \"{name}\"; list the templates to see their names")]
    NotFound { name: String },
    #[error(
        "\"{name}\" is a built-in template and can't be deleted; save a template with the same name to replace it"
    )]
    BuiltIn { name: String },
    #[error("the template is incomplete: {reason}")]
    Invalid { reason: String },
    #[error("could not read the templates file ({reason}); check its permissions: {}", path.display())]
    Read { path: PathBuf, reason: io::Error },
    #[error("could not import templates ({reason}); the file should be a JSON list of {{\"name\", \"template\", \"defaults\"}} objects: {}", path.display())]
    Import { path: PathBuf, reason: String },
    #[error(transparent)]
    File(#[from] AtomicError),
}

fn quoted(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| format!("[{f}]"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A prompt template. `name`, `template` and `defaults` are the Python app's fields; the rest
/// are ours, and fields neither knows are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub name: String,
    /// The prompt, with `[placeholder]` slots.
    pub template: String,
    /// A default value per slot name.
    #[serde(default, deserialize_with = "text_map")]
    pub defaults: BTreeMap<String, String>,
    /// The provider this template is written for; `None` suits every provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A negative prompt to go with it (for providers that take one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Defaults as text: the Python app allows any JSON scalar there.
fn text_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let map = Option::<Map<String, Value>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .collect())
}

/// The `[slot]`s in `text`, as the Python app's pattern `\[([^\[\]]+)\]` finds them: the byte
/// range of the whole slot and the name inside.
fn slots(text: &str) -> Vec<(Range<usize>, &str)> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'[' {
            i += 1;
            continue;
        }
        match bytes[i + 1..].iter().position(|&b| b == b'[' || b == b']') {
            Some(offset) if bytes[i + 1 + offset] == b']' && offset > 0 => {
                let end = i + 1 + offset;
                found.push((i..end + 1, &text[i + 1..end]));
                i = end + 1;
            }
            // `[]`, or another `[` first: this one opens no slot.
            Some(offset) => i += 1 + offset,
            None => break,
        }
    }
    found
}

impl Template {
    /// A template with just a name and text (no defaults, for every provider).
    pub fn new(name: impl Into<String>, template: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            template: template.into(),
            defaults: BTreeMap::new(),
            provider: None,
            description: None,
            negative: None,
            extra: Map::new(),
        }
    }

    /// The slot names in order of first appearance, each once.
    pub fn placeholders(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (_, name) in slots(&self.template) {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
        names
    }

    /// The prompt with every slot replaced: the value given, else the template's default. Blank
    /// values count as missing. A slot with neither is an error that names every missing slot.
    /// Values are inserted as they are: a `[word]` inside a value is not filled again.
    pub fn fill(&self, values: &BTreeMap<String, String>) -> Result<String, TemplateError> {
        let pick = |map: &BTreeMap<String, String>, name: &str| {
            map.get(name)
                .or_else(|| map.get(name.trim()))
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let mut out = String::with_capacity(self.template.len());
        let mut missing: Vec<String> = Vec::new();
        let mut last = 0;
        for (range, name) in slots(&self.template) {
            out.push_str(&self.template[last..range.start]);
            match pick(values, name).or_else(|| pick(&self.defaults, name)) {
                Some(value) => out.push_str(&value),
                None if !missing.iter().any(|m| m == name) => missing.push(name.to_owned()),
                None => {}
            }
            last = range.end;
        }
        out.push_str(&self.template[last..]);
        if missing.is_empty() {
            Ok(out)
        } else {
            Err(TemplateError::MissingFields {
                template: self.name.clone(),
                fields: missing,
            })
        }
    }

    /// Whether it suits `provider` (templates without a provider suit all).
    pub fn suits(&self, provider: &str) -> bool {
        self.provider
            .as_deref()
            .is_none_or(|p| same_id(p, provider))
    }

    /// What the history sidecar and `details.jsonl` record about one use of this template.
    pub fn record_use(
        &self,
        fields: BTreeMap<String, String>,
        assembled_prompt: impl Into<String>,
        append: bool,
        source: TemplateSource,
    ) -> TemplateUse {
        TemplateUse {
            name: self.name.clone(),
            template: self.template.clone(),
            fields,
            assembled_prompt: assembled_prompt.into(),
            append,
            source: source.as_str().to_owned(),
        }
    }

    fn validate(&self) -> Result<(), TemplateError> {
        let invalid = |reason: &str| {
            Err(TemplateError::Invalid {
                reason: reason.to_owned(),
            })
        };
        if self.name.trim().is_empty() {
            return invalid("it has no name");
        }
        if self.template.trim().is_empty() {
            return invalid("its text is empty");
        }
        Ok(())
    }
}

/// The prompt after using a template: `filled` alone, or with `append` added to the end of
/// `current_prompt` (the Python app's append mode). An empty current prompt is replaced.
pub fn apply(current_prompt: &str, filled: &str, append: bool) -> String {
    let current = current_prompt.trim_end();
    if !append || current.is_empty() {
        return filled.to_owned();
    }
    let separator = if current.ends_with([',', ';', '.', '!', '?', ':']) {
        " "
    } else {
        ", "
    };
    format!("{current}{separator}{}", filled.trim_start())
}

/// One use of a template, as recorded in a history sidecar's `template` field (the Python app's
/// shape) and in `details.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateUse {
    pub name: String,
    pub template: String,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    pub assembled_prompt: String,
    #[serde(default)]
    pub append: bool,
    /// Where the template came from (`built-in`, `user`, or what the Python app wrote).
    #[serde(default)]
    pub source: String,
}

impl TemplateUse {
    /// The line for `details.jsonl` (see `history::append_event`).
    pub fn event(&self) -> Value {
        let mut event = Map::new();
        event.insert("type".to_owned(), Value::from("template"));
        event.insert(
            "created_at".to_owned(),
            Value::from(chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false)),
        );
        if let Ok(Value::Object(fields)) = serde_json::to_value(self) {
            event.extend(fields);
        }
        Value::Object(event)
    }
}

/// Whether a template ships with ImageAI or is the user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateSource {
    BuiltIn,
    User,
}

impl TemplateSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BuiltIn => "built-in",
            Self::User => "user",
        }
    }
}

impl fmt::Display for TemplateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A template as the store offers it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Listed<'a> {
    pub template: &'a Template,
    pub source: TemplateSource,
    /// A user template that replaces the built-in one of the same name.
    pub overrides_builtin: bool,
}

/// What [`TemplateStore::load`] found.
#[derive(Debug, Clone)]
pub struct LoadedTemplates {
    pub store: TemplateStore,
    /// Set when `templates.json` was corrupt: it was copied aside. Show it to the user.
    pub warning: Option<CorruptFile>,
}

/// What [`TemplateStore::import`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub added: Vec<String>,
    /// User templates replaced by an imported one of the same name.
    pub replaced: Vec<String>,
    /// Entries left out: their position in the file and why.
    pub skipped: Vec<(usize, String)>,
}

/// Built-in templates and the user's own. User templates override built-ins by name (names
/// compare without regard to case).
#[derive(Debug, Clone)]
pub struct TemplateStore {
    path: PathBuf,
    builtins: Vec<Template>,
    user: Vec<Template>,
    /// Entries of the file we could not read as templates; written back unchanged.
    unreadable: Vec<Value>,
}

impl TemplateStore {
    /// Read `<config>/templates.json` (missing: no user templates). A damaged file is copied
    /// aside and reported; the built-ins stay available.
    pub fn load(paths: &Paths) -> Result<LoadedTemplates, TemplateError> {
        let path = paths.templates_file();
        let file = read_file(&path)?;
        Ok(LoadedTemplates {
            store: Self {
                path,
                builtins: builtin_templates(),
                user: file.user,
                unreadable: file.unreadable,
            },
            warning: file.warning,
        })
    }

    /// Every template, or those that suit `provider` (general ones included): built-ins first
    /// (each replaced by the user's template of the same name), then the user's in file order.
    pub fn list(&self, provider: Option<&str>) -> Vec<Listed<'_>> {
        let mut out = Vec::new();
        for builtin in &self.builtins {
            out.push(match self.user_index(&builtin.name) {
                Some(i) => Listed {
                    template: &self.user[i],
                    source: TemplateSource::User,
                    overrides_builtin: true,
                },
                None => Listed {
                    template: builtin,
                    source: TemplateSource::BuiltIn,
                    overrides_builtin: false,
                },
            });
        }
        for user in &self.user {
            if self.builtin(&user.name).is_none() {
                out.push(Listed {
                    template: user,
                    source: TemplateSource::User,
                    overrides_builtin: false,
                });
            }
        }
        if let Some(provider) = provider {
            out.retain(|l| l.template.suits(provider));
        }
        out
    }

    /// The template called `name` (the user's when both exist).
    pub fn get(&self, name: &str) -> Option<Listed<'_>> {
        let builtin = self.builtin(name);
        match self.user_index(name) {
            Some(i) => Some(Listed {
                template: &self.user[i],
                source: TemplateSource::User,
                overrides_builtin: builtin.is_some(),
            }),
            None => builtin.map(|template| Listed {
                template,
                source: TemplateSource::BuiltIn,
                overrides_builtin: false,
            }),
        }
    }

    /// Create or replace a user template (one with a built-in's name overrides it), then write
    /// the file.
    pub fn save(&mut self, template: Template) -> Result<(), TemplateError> {
        template.validate()?;
        self.update(|store| {
            match store.user_index(&template.name) {
                Some(i) => store.user[i] = template,
                None => store.user.push(template),
            }
            Ok(())
        })
    }

    /// Delete a user template. Deleting a user template that overrides a built-in brings the
    /// built-in back; a built-in itself can't be deleted.
    pub fn delete(&mut self, name: &str) -> Result<(), TemplateError> {
        self.update(|store| {
            if let Some(i) = store.user_index(name) {
                store.user.remove(i);
                return Ok(());
            }
            match store.builtin(name) {
                Some(b) => Err(TemplateError::BuiltIn {
                    name: b.name.clone(),
                }),
                None => Err(TemplateError::NotFound {
                    name: name.to_owned(),
                }),
            }
        })
    }

    /// Add the templates in a Python ImageAI templates file (a JSON list of `{"name",
    /// "template", "defaults"}`, or an object with such a list under `templates`) as user
    /// templates, then write the file.
    pub fn import(&mut self, path: &Path) -> Result<ImportReport, TemplateError> {
        let import_error = |reason: String| TemplateError::Import {
            path: path.to_owned(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| import_error(e.to_string()))?;
        let entries = parse_list(&bytes).map_err(import_error)?;
        self.update(|store| store.add_imported(entries))
    }

    fn add_imported(&mut self, entries: Vec<Value>) -> Result<ImportReport, TemplateError> {
        let mut report = ImportReport::default();
        for (index, entry) in entries.into_iter().enumerate() {
            let template = match serde_json::from_value::<Template>(entry) {
                Ok(t) => t,
                Err(e) => {
                    report.skipped.push((index, format!("not a template: {e}")));
                    continue;
                }
            };
            if let Err(e) = template.validate() {
                report.skipped.push((index, e.to_string()));
                continue;
            }
            match self.user_index(&template.name) {
                Some(i) => {
                    report.replaced.push(template.name.clone());
                    self.user[i] = template;
                }
                None => {
                    report.added.push(template.name.clone());
                    self.user.push(template);
                }
            }
        }
        Ok(report)
    }

    /// Make one change to the user's templates as the file has them now (another window or the
    /// CLI may have saved since this store was read), then write the file; the file's lock is
    /// held throughout, so two changes at once both land. A change that fails writes nothing.
    fn update<T>(
        &mut self,
        change: impl FnOnce(&mut Self) -> Result<T, TemplateError>,
    ) -> Result<T, TemplateError> {
        let _lock = atomic::lock_for_update(&self.path)?;
        // A file damaged since the store was read is copied aside (and logged) by read_file.
        let file = read_file(&self.path)?;
        self.user = file.user;
        self.unreadable = file.unreadable;
        let out = change(self)?;
        self.write()?;
        Ok(out)
    }

    fn user_index(&self, name: &str) -> Option<usize> {
        self.user.iter().position(|t| t.name == name).or_else(|| {
            self.user
                .iter()
                .position(|t| t.name.eq_ignore_ascii_case(name))
        })
    }

    fn builtin(&self, name: &str) -> Option<&Template> {
        self.builtins.iter().find(|t| t.name == name).or_else(|| {
            self.builtins
                .iter()
                .find(|t| t.name.eq_ignore_ascii_case(name))
        })
    }

    fn write(&self) -> Result<(), TemplateError> {
        let mut list: Vec<Value> = Vec::with_capacity(self.user.len() + self.unreadable.len());
        for template in &self.user {
            // A template is plain data: this cannot fail.
            list.push(serde_json::to_value(template).unwrap_or(Value::Null));
        }
        list.extend(self.unreadable.iter().cloned());
        let mut bytes = serde_json::to_vec_pretty(&list).map_err(|e| AtomicError::Write {
            path: self.path.clone(),
            reason: io::Error::other(e),
        })?;
        bytes.push(b'\n');
        atomic::write_atomic(&self.path, &bytes)?;
        Ok(())
    }
}

/// What `templates.json` holds.
#[derive(Default)]
struct UserFile {
    user: Vec<Template>,
    /// Entries that are not templates; written back unchanged.
    unreadable: Vec<Value>,
    /// Set when the file was damaged (and copied aside): it read as empty.
    warning: Option<CorruptFile>,
}

/// The user's templates in `path`; missing means none. A damaged file is copied aside and
/// reported, and reads as empty.
fn read_file(path: &Path) -> Result<UserFile, TemplateError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(UserFile::default()),
        Err(reason) => {
            return Err(TemplateError::Read {
                path: path.to_owned(),
                reason,
            });
        }
    };
    match parse_list(&bytes) {
        Ok(entries) => {
            let mut user = Vec::new();
            let mut unreadable = Vec::new();
            for entry in entries {
                match serde_json::from_value::<Template>(entry.clone()) {
                    Ok(t) if t.validate().is_ok() => user.push(t),
                    _ => unreadable.push(entry),
                }
            }
            Ok(UserFile {
                user,
                unreadable,
                warning: None,
            })
        }
        Err(reason) => {
            let backup = atomic::backup_corrupt(path)?;
            tracing::warn!(path = %path.display(), backup = %backup.display(), "templates.json is corrupt");
            let warning = CorruptFile {
                path: path.to_owned(),
                backup,
                reason,
                fallback: "starting with the built-in templates only",
            };
            Ok(UserFile {
                warning: Some(warning),
                ..UserFile::default()
            })
        }
    }
}

/// A JSON list of entries, or an object holding one under `templates`.
fn parse_list(bytes: &[u8]) -> Result<Vec<Value>, String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Array(list)) => Ok(list),
        Ok(Value::Object(mut map)) => match map.remove("templates") {
            Some(Value::Array(list)) => Ok(list),
            _ => Err("the file is a JSON object without a \"templates\" list".to_owned()),
        },
        Ok(_) => Err("the file is JSON but not a list".to_owned()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

fn builtin(
    name: &str,
    provider: Option<&str>,
    description: &str,
    template: &str,
    defaults: &[(&str, &str)],
    negative: Option<&str>,
) -> Template {
    Template {
        name: name.to_owned(),
        template: template.to_owned(),
        defaults: defaults
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        provider: provider.map(str::to_owned),
        description: Some(description.to_owned()),
        negative: negative.map(str::to_owned),
        extra: Map::new(),
    }
}

/// The templates that ship with ImageAI.
pub fn builtin_templates() -> Vec<Template> {
    vec![
        builtin(
            "Simple subject",
            None,
            "The Python ImageAI's starter template.",
            "A [adjective] [subject] in [setting]",
            &[
                ("adjective", "beautiful"),
                ("subject", "sunset"),
                ("setting", "the mountains"),
            ],
            None,
        ),
        builtin(
            "Photorealistic portrait",
            None,
            "A natural-looking portrait photograph with shallow depth of field.",
            "Photorealistic portrait of [subject], [lighting] lighting, shot on an 85mm lens at f/1.8, shallow depth of field, natural skin texture, [background] in the background",
            &[
                (
                    "subject",
                    "an elderly fisherman with a weathered face and a knitted cap",
                ),
                ("lighting", "soft window"),
                ("background", "a softly blurred harbour"),
            ],
            None,
        ),
        builtin(
            "Product shot",
            None,
            "A clean catalogue photograph of one product.",
            "Studio product photograph of [product] on [surface], [lighting], clean [backdrop] backdrop, sharp focus, high detail, commercial catalogue style",
            &[
                ("product", "a matte black ceramic coffee mug"),
                ("surface", "a light oak table"),
                (
                    "lighting",
                    "soft diffused key light with a gentle rim light",
                ),
                ("backdrop", "warm grey"),
            ],
            None,
        ),
        builtin(
            "Landscape",
            None,
            "A wide scenic view with a strong sky and foreground.",
            "Wide-angle landscape photograph of [place] at [time of day], [weather], dramatic sky, rich natural colour, strong foreground interest, ultra-detailed",
            &[
                ("place", "a glacial lake surrounded by jagged peaks"),
                ("time of day", "golden hour"),
                ("weather", "low clouds clearing after rain"),
            ],
            None,
        ),
        builtin(
            "Storybook illustration",
            None,
            "A warm, friendly picture-book illustration.",
            "Children's book illustration of [subject] [action], [medium], warm palette, gentle rounded shapes, whimsical and friendly, plenty of small details to discover",
            &[
                ("subject", "a small dragon"),
                ("action", "learning to paint with oversized brushes"),
                ("medium", "watercolour and coloured pencil"),
            ],
            None,
        ),
        builtin(
            "Isometric diorama",
            None,
            "A miniature 3D scene seen from above at an angle.",
            "Isometric 3D diorama of [scene], miniature tilt-shift look, soft global illumination, [palette] colours, clean plain background, highly detailed",
            &[
                ("scene", "a tiny island with waterfalls flowing into space"),
                ("palette", "soft pastel"),
            ],
            None,
        ),
        builtin(
            "Flat logo mark",
            None,
            "A simple vector-style logo mark without lettering.",
            "Minimal flat vector logo mark for [brand], a stylised [symbol], [colors], simple geometric shapes, centred on a plain white background, no text",
            &[
                ("brand", "a neighbourhood bakery"),
                ("symbol", "wheat stalk forming a circle"),
                ("colors", "warm brown and cream"),
            ],
            None,
        ),
        builtin(
            "Cinematic concept art",
            None,
            "A moody, painterly key frame for a film or game.",
            "Cinematic concept art of [scene], [mood] atmosphere, volumetric light, matte painting, wide composition, highly detailed",
            &[
                ("scene", "an ancient city built into a canyon wall"),
                ("mood", "mysterious dusk"),
            ],
            None,
        ),
        builtin(
            "Poster with headline",
            Some("openai"),
            "GPT Image renders lettering well: put the exact words in quotes.",
            "A [style] poster for [event] with the headline \"[headline]\" in bold, clean lettering, [colors] colour scheme, balanced layout with generous margins, print-ready",
            &[
                ("style", "mid-century modern"),
                ("event", "a summer jazz night in the park"),
                ("headline", "Jazz Under the Stars"),
                ("colors", "navy, mustard and cream"),
            ],
            None,
        ),
        builtin(
            "Die-cut sticker",
            Some("openai"),
            "Set the background to transparent for a ready-to-print sticker.",
            "A die-cut sticker of [subject] in [style] style, thick white border, bold outlines, vivid colours, on a transparent background",
            &[
                ("subject", "a cheerful cactus wearing sunglasses"),
                ("style", "kawaii cartoon"),
            ],
            None,
        ),
        builtin(
            "Edit the given image",
            Some("google"),
            "For Gemini image editing: describe only the change and ask to keep the rest.",
            "Using the provided image, [change]. Keep everything else exactly the same, preserving the original style, lighting and composition.",
            &[("change", "replace the sky with a dramatic sunset")],
            None,
        ),
        builtin(
            "Narrative scene",
            Some("google"),
            "Gemini and Imagen follow descriptive sentences better than keyword lists.",
            "A photorealistic [shot] of [subject], [action], set in [environment]. The scene is lit by [lighting], creating a [mood] atmosphere. Captured with [camera].",
            &[
                ("shot", "close-up portrait"),
                (
                    "subject",
                    "an elderly Japanese ceramicist with deep, sun-etched wrinkles",
                ),
                ("action", "inspecting a freshly glazed tea bowl"),
                ("environment", "a rustic, sun-drenched workshop"),
                (
                    "lighting",
                    "soft golden-hour light streaming through a window",
                ),
                ("mood", "serene and masterful"),
                (
                    "camera",
                    "an 85mm portrait lens, soft blurred background (bokeh)",
                ),
            ],
            None,
        ),
        builtin(
            "Stable Image photo",
            Some("stability"),
            "Short descriptive prompt with a negative prompt for Stable Image / SD3.",
            "[subject], [setting], professional photography, [lighting], high detail, sharp focus, natural colours",
            &[
                ("subject", "a red fox curled up in fresh snow"),
                ("setting", "a quiet birch forest"),
                ("lighting", "overcast winter light"),
            ],
            Some("blurry, low quality, distorted, oversaturated, watermark, text, signature"),
        ),
        builtin(
            "FLUX candid photo",
            Some("replicate"),
            "FLUX models on Replicate like plain, camera-aware descriptions.",
            "Candid photograph of [subject] in [setting], shot on [camera], natural light, realistic skin and fabric textures, subtle film grain",
            &[
                ("subject", "two friends laughing over street food"),
                ("setting", "a busy night market in Taipei"),
                ("camera", "a 35mm film camera"),
            ],
            None,
        ),
        builtin(
            "SDXL cinematic still",
            Some("huggingface"),
            "The classic SDXL cinematic style, with its negative prompt.",
            "cinematic film still of [subject], [setting], shallow depth of field, vignette, highly detailed, high budget, bokeh, cinemascope, moody, epic, film grain",
            &[
                ("subject", "a lone astronaut"),
                ("setting", "walking through a flooded neon-lit street"),
            ],
            Some(
                "anime, cartoon, graphic, text, painting, crayon, graphite, abstract, glitch, deformed, mutated, ugly, disfigured",
            ),
        ),
        builtin(
            "SD 1.5 portrait",
            Some("local-sd"),
            "Keyword-style prompt with a negative prompt, as Stable Diffusion 1.5 models expect.",
            "portrait photo of [subject], [clothing], detailed face, soft studio lighting, 50mm lens, bokeh, highly detailed, sharp focus",
            &[
                ("subject", "a young woman with freckles and auburn hair"),
                ("clothing", "wearing a green wool sweater"),
            ],
            Some(
                "lowres, bad anatomy, bad hands, extra fingers, blurry, jpeg artifacts, watermark, text, deformed, cropped",
            ),
        ),
        builtin(
            "SD fantasy landscape",
            Some("local-sd"),
            "A painterly landscape that small local models handle well.",
            "fantasy landscape, [scene], [time], epic scale, matte painting, trending on artstation, highly detailed, vibrant colours",
            &[
                ("scene", "floating islands with waterfalls"),
                ("time", "sunrise"),
            ],
            Some("blurry, low quality, jpeg artifacts, watermark, text, people"),
        ),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on the first surprise
mod tests {
    use super::*;
    use serde_json::json;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn placeholders_follow_the_python_pattern() {
        let t = Template::new(
            "t",
            "A [adjective] [subject] in [setting] with [subject], [] [a[b]] [x y]",
        );
        assert_eq!(
            t.placeholders(),
            vec!["adjective", "subject", "setting", "b", "x y"]
        );
        assert!(Template::new("t", "no slots [").placeholders().is_empty());
    }

    #[test]
    fn fill_uses_values_then_defaults() {
        let mut t = Template::new("Simple", "A [adjective] [subject] in [setting]");
        t.defaults = values(&[("adjective", "beautiful"), ("setting", "the mountains")]);
        let filled = t
            .fill(&values(&[("subject", "cat"), ("setting", " [a meadow] ")]))
            .unwrap();
        assert_eq!(filled, "A beautiful cat in [a meadow]");
    }

    #[test]
    fn fill_names_every_missing_field() {
        let mut t = Template::new("Scene", "[subject] in [place] at [time], [subject] again");
        t.defaults = values(&[("time", "noon")]);
        let err = t.fill(&values(&[("place", "   ")])).unwrap_err();
        match &err {
            TemplateError::MissingFields { template, fields } => {
                assert_eq!(template, "Scene");
                assert_eq!(fields, &["subject".to_owned(), "place".to_owned()]);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "template \"Scene\" needs a value for [subject], [place]; give them as name=value, or add defaults to the template"
        );
    }

    #[test]
    fn apply_replaces_or_appends() {
        assert_eq!(apply("old prompt", "new", false), "new");
        assert_eq!(apply("a cat", "oil painting", true), "a cat, oil painting");
        assert_eq!(
            apply("a cat.  ", "oil painting", true),
            "a cat. oil painting"
        );
        assert_eq!(apply("   ", "oil painting", true), "oil painting");
    }

    #[test]
    fn reads_python_templates_and_keeps_unknown_fields() {
        let text = r#"[{"name": "Py", "template": "A [x]", "defaults": {"x": "dog", "n": 3, "skip": null}, "category": "art"}]"#;
        let entries = parse_list(text.as_bytes()).unwrap();
        let t: Template = serde_json::from_value(entries[0].clone()).unwrap();
        assert_eq!(t.defaults, values(&[("x", "dog"), ("n", "3")]));
        assert_eq!(t.extra.get("category"), Some(&json!("art")));
        let back = serde_json::to_value(&t).unwrap();
        assert_eq!(back["category"], json!("art"));
        assert_eq!(back["defaults"], json!({"n": "3", "x": "dog"}));
        assert!(
            back.get("provider").is_none(),
            "our optional fields stay out of Python files"
        );
    }

    #[test]
    fn store_save_override_delete() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path());
        let mut store = TemplateStore::load(&paths).unwrap().store;
        let builtins = builtin_templates().len();
        assert_eq!(store.list(None).len(), builtins);

        store.save(Template::new("Mine", "a [thing]")).unwrap();
        let mut override_ = Template::new("simple subject", "my own [subject]");
        override_.provider = Some("local-sd".to_owned());
        store.save(override_).unwrap();
        store.save(Template::new("Mine", "a [thing] v2")).unwrap();

        let reloaded = TemplateStore::load(&paths).unwrap().store;
        let listed = reloaded.list(None);
        assert_eq!(listed.len(), builtins + 1);
        assert_eq!(listed[0].template.template, "my own [subject]");
        assert!(listed[0].overrides_builtin);
        assert_eq!(listed[0].source, TemplateSource::User);
        let mine = reloaded.get("mine").unwrap();
        assert_eq!(mine.template.template, "a [thing] v2");
        assert_eq!(mine.source, TemplateSource::User);

        let mut store = reloaded;
        let err = store.delete("Landscape").unwrap_err();
        assert!(matches!(err, TemplateError::BuiltIn { .. }));
        assert!(err.to_string().contains("can't be deleted"));
        assert!(matches!(
            store.delete("Nope"),
            Err(TemplateError::NotFound { .. })
        ));
        store.delete("Simple subject").unwrap();
        assert_eq!(
            store.get("Simple subject").unwrap().source,
            TemplateSource::BuiltIn,
            "the built-in is back"
        );
        store.delete("Mine").unwrap();
        let on_disk: Value =
            serde_json::from_slice(&std::fs::read(paths.templates_file()).unwrap()).unwrap();
        assert_eq!(on_disk, json!([]));

        assert!(matches!(
            store.save(Template::new(" ", "x")),
            Err(TemplateError::Invalid { .. })
        ));
    }

    /// Two windows (or a window and the CLI) each read the templates, then each saves one:
    /// both are kept, and a delete in one does not bring back what the other removed.
    #[test]
    fn two_stores_saving_keep_each_others_templates() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path());
        let mut first = TemplateStore::load(&paths).unwrap().store;
        let mut second = TemplateStore::load(&paths).unwrap().store;
        first.save(Template::new("One", "a [thing]")).unwrap();
        second.save(Template::new("Two", "two [things]")).unwrap();
        assert!(
            second.get("One").is_some(),
            "the saving store sees the other's"
        );
        first.delete("Two").unwrap();
        second.save(Template::new("Three", "[n] things")).unwrap();
        let names: Vec<String> = TemplateStore::load(&paths)
            .unwrap()
            .store
            .list(None)
            .iter()
            .filter(|l| l.source == TemplateSource::User)
            .map(|l| l.template.name.clone())
            .collect();
        assert_eq!(names, ["One", "Three"]);
    }

    #[test]
    fn list_filters_by_provider() {
        let dir = tempfile::tempdir().unwrap();
        let store = TemplateStore::load(&Paths::at(dir.path())).unwrap().store;
        let for_openai = store.list(Some("openai"));
        assert!(
            for_openai
                .iter()
                .any(|l| l.template.name == "Poster with headline")
        );
        assert!(
            for_openai.iter().any(|l| l.template.name == "Landscape"),
            "general templates suit everyone"
        );
        assert!(
            !for_openai
                .iter()
                .any(|l| l.template.provider.as_deref() == Some("local-sd"))
        );
        let for_local = store.list(Some("local_sd"));
        assert!(
            for_local
                .iter()
                .any(|l| l.template.name == "SD 1.5 portrait")
        );
        for provider in [
            "openai",
            "google",
            "stability",
            "replicate",
            "huggingface",
            "local-sd",
        ] {
            assert!(
                store
                    .list(Some(provider))
                    .iter()
                    .any(|l| l.template.provider.is_some()),
                "{provider} has a template of its own"
            );
        }
    }

    #[test]
    fn every_builtin_fills_from_its_defaults() {
        for t in builtin_templates() {
            let filled = t.fill(&BTreeMap::new()).unwrap();
            assert!(!filled.contains('['), "{}: {filled}", t.name);
            assert!(t.description.is_some());
        }
    }

    #[test]
    fn corrupt_file_is_backed_up_and_unreadable_entries_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path());
        std::fs::write(paths.templates_file(), "[{\"name\": ").unwrap();
        let loaded = TemplateStore::load(&paths).unwrap();
        let warning = loaded.warning.unwrap();
        assert!(
            warning
                .to_string()
                .starts_with("templates.json was corrupt")
        );
        assert_eq!(
            std::fs::read_to_string(&warning.backup).unwrap(),
            "[{\"name\": "
        );
        assert_eq!(loaded.store.list(None).len(), builtin_templates().len());

        std::fs::write(
            paths.templates_file(),
            r#"[{"name": "ok", "template": "fine"}, {"oops": true}]"#,
        )
        .unwrap();
        let mut store = TemplateStore::load(&paths).unwrap().store;
        store.save(Template::new("new", "text")).unwrap();
        let on_disk: Value =
            serde_json::from_slice(&std::fs::read(paths.templates_file()).unwrap()).unwrap();
        assert_eq!(on_disk[2], json!({"oops": true}), "never dropped");
    }

    #[test]
    fn imports_a_python_templates_file() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path());
        let mut store = TemplateStore::load(&paths).unwrap().store;
        store.save(Template::new("Portrait", "old")).unwrap();
        let file = dir.path().join("python_templates.json");
        std::fs::write(
            &file,
            r#"{"templates": [
                {"name": "Portrait", "template": "Portrait of [who]", "defaults": {"who": "a knight"}},
                {"name": "Scene", "template": "[place] at night", "defaults": {}},
                {"name": "", "template": "nameless"},
                {"template": "no name at all"}
            ]}"#,
        )
        .unwrap();
        let report = store.import(&file).unwrap();
        assert_eq!(report.added, vec!["Scene".to_owned()]);
        assert_eq!(report.replaced, vec!["Portrait".to_owned()]);
        assert_eq!(
            report.skipped.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![2, 3]
        );
        let reloaded = TemplateStore::load(&paths).unwrap().store;
        assert_eq!(
            reloaded
                .get("portrait")
                .unwrap()
                .template
                .fill(&BTreeMap::new())
                .unwrap(),
            "Portrait of a knight"
        );

        std::fs::write(&file, "42").unwrap();
        let err = store.import(&file).unwrap_err();
        assert!(err.to_string().ends_with(&file.display().to_string()));
    }

    #[test]
    fn template_use_is_recorded_in_the_python_shape() {
        let t = Template::new("Simple", "A [x]");
        let used = t.record_use(
            values(&[("x", "cat")]),
            "A cat",
            false,
            TemplateSource::BuiltIn,
        );
        let v = serde_json::to_value(&used).unwrap();
        assert_eq!(
            v,
            json!({"name": "Simple", "template": "A [x]", "fields": {"x": "cat"}, "assembled_prompt": "A cat", "append": false, "source": "built-in"})
        );
        let event = used.event();
        assert_eq!(event["type"], json!("template"));
        assert_eq!(event["assembled_prompt"], json!("A cat"));
        assert!(event["created_at"].is_string());
    }
}
