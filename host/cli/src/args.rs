//! Command-line arguments. The Python ImageAI's flags (`-p -m -o -k -K -s -t -H`) keep working
//! without a subcommand: `imageai -p "a red fox" -o fox.png` generates, `imageai -s -k KEY` stores a key.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "imageai",
    version,
    about = "AI image generation with many providers: cloud services as sandboxed plugins, and local Stable Diffusion.",
    after_help = "Run `imageai generate --help` for every generation flag. Exit codes: 0 ok, 1 other error, 2 usage, 3 auth, 4 content policy, 5 rate limit or quota, 6 network or timeout, 7 provider server error, 8 plugin failure, 9 invalid request, 130 cancelled."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// ImageAI's classic flags, used when no subcommand is given.
    #[command(flatten)]
    pub legacy: Legacy,

    #[command(flatten)]
    pub global: Global,
}

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// The Python ImageAI's top-level flags.
#[derive(Debug, Args, Clone, Default, PartialEq)]
pub struct Legacy {
    /// Store the key given with -k/-K for the provider (`imageai -s -k KEY --provider openai`).
    #[arg(short = 's', long = "set-key")]
    pub set_key: bool,
    /// Test the provider's key.
    #[arg(short = 't', long = "test")]
    pub test: bool,
    /// Where to get an API key for the provider.
    #[arg(short = 'H', long = "help-api-key")]
    pub help_api_key: bool,
    #[command(flatten)]
    pub generate: GenerateArgs,
}

// Parsed once per run: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate images from a prompt, or edit images given with --image.
    #[command(visible_alias = "gen")]
    Generate(GenerateArgs),
    /// Upscale an image.
    Upscale(UpscaleArgs),
    /// List providers with their models and capabilities.
    Providers(ProvidersArgs),
    /// Store, test or remove API keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Browse generated images and their settings.
    History {
        #[command(subcommand)]
        action: HistoryAction,
    },
    /// Prompt templates with [placeholder] slots.
    Templates {
        #[command(subcommand)]
        action: Option<TemplatesAction>,
    },
    /// Create, build, install and manage provider plugins.
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
    },
    /// Local Stable Diffusion models: search the Hugging Face Hub, install, list, remove, import.
    Models {
        #[command(subcommand)]
        action: crate::commands::models::ModelsAction,
    },
}

#[derive(Debug, Args, Clone, Default, PartialEq)]
pub struct KeyArgs {
    /// API key for this run (not stored).
    #[arg(short = 'k', long = "api-key", value_name = "KEY")]
    pub api_key: Option<String>,
    /// Read the API key from a file.
    #[arg(short = 'K', long = "api-key-file", value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
}

#[derive(Debug, Args, Clone, Default, PartialEq)]
pub struct GenerateArgs {
    /// The prompt; read from stdin when absent and stdin is not a terminal.
    #[arg(short = 'p', long)]
    pub prompt: Option<String>,
    /// Model id (see `imageai providers`); the provider's first model when absent.
    #[arg(short = 'm', long)]
    pub model: Option<String>,
    /// Also write the images here: a file (`out.png`; more images get `_2`, `_3`…) or a folder.
    #[arg(short = 'o', long = "out", value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Provider id (see `imageai providers`); defaults to the configured provider.
    #[arg(long)]
    pub provider: Option<String>,
    /// Number of images.
    #[arg(short = 'n', long = "num-images", visible_alias = "n")]
    pub n: Option<u32>,
    /// WIDTHxHEIGHT, e.g. 1024x1024.
    #[arg(long)]
    pub size: Option<String>,
    /// W:H, e.g. 16:9, for providers that take aspect ratios.
    #[arg(long)]
    pub aspect_ratio: Option<String>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Negative prompt: what to keep out of the image.
    #[arg(long, visible_alias = "negative-prompt")]
    pub negative: Option<String>,
    #[arg(long)]
    pub steps: Option<u32>,
    /// Guidance (CFG) scale.
    #[arg(long, visible_alias = "cfg")]
    pub guidance: Option<f32>,
    #[arg(long)]
    pub quality: Option<String>,
    #[arg(long)]
    pub style: Option<String>,
    /// png, jpeg or webp.
    #[arg(long)]
    pub output_format: Option<String>,
    /// transparent, opaque or auto (gpt-image).
    #[arg(long)]
    pub background: Option<String>,
    /// Source or reference image (repeatable): turns the request into an edit.
    #[arg(long = "image", visible_alias = "reference", value_name = "FILE")]
    pub images: Vec<PathBuf>,
    /// Mask image for inpainting (transparent = area to change).
    #[arg(long, value_name = "FILE")]
    pub mask: Option<PathBuf>,
    /// Edit mode when --image is given; default: inpaint with --mask, else edit.
    #[arg(long, value_enum)]
    pub mode: Option<EditModeArg>,
    /// Image-to-image strength, 0.0 (keep) to 1.0 (ignore the source).
    #[arg(long)]
    pub strength: Option<f32>,
    /// Provider-specific parameter, NAME=VALUE (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub extra: Vec<String>,
    /// Fill a saved template instead of --prompt.
    #[arg(long)]
    pub template: Option<String>,
    /// A template field, NAME=VALUE (repeatable).
    #[arg(long = "field", value_name = "NAME=VALUE")]
    pub fields: Vec<String>,
    /// Local Stable Diffusion: scheduler (ddim, pndm, euler, euler-a, dpm++2m, dpm++2m-karras).
    #[arg(long)]
    pub scheduler: Option<String>,
    /// Local Stable Diffusion: auto, cpu, or an adapter name.
    #[arg(long)]
    pub device: Option<String>,
    /// Local Stable Diffusion: fp16 or fp32.
    #[arg(long)]
    pub precision: Option<String>,
    /// Local Stable Diffusion: initial noise latents (safetensors).
    #[arg(long, value_name = "FILE")]
    pub init_noise: Option<PathBuf>,
    /// Print one JSON object with the result instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EditModeArg {
    Edit,
    Inpaint,
    Variations,
    Outpaint,
    Erase,
    SearchReplace,
}

#[derive(Debug, Args)]
pub struct UpscaleArgs {
    /// The image to upscale.
    #[arg(long = "image", value_name = "FILE")]
    pub image: PathBuf,
    #[arg(long)]
    pub provider: Option<String>,
    #[arg(short = 'm', long)]
    pub model: Option<String>,
    /// Upscale factor, when the provider takes one.
    #[arg(long)]
    pub scale: Option<u32>,
    #[arg(short = 'p', long)]
    pub prompt: Option<String>,
    #[arg(short = 'o', long = "out", value_name = "PATH")]
    pub out: Option<PathBuf>,
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub extra: Vec<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct ProvidersArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Store a key (from --api-key, --api-key-file, or stdin).
    Set {
        provider: String,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Check a key with the provider's cheapest authenticated call.
    Test {
        provider: String,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Remove a stored key.
    Remove { provider: String },
    /// Show which providers have a key and where it comes from (never the key itself).
    List,
}

#[derive(Debug, Subcommand)]
pub enum HistoryAction {
    /// Generated images, newest first.
    List {
        /// Only entries whose prompt, provider, model or date contain this text.
        #[arg(long, short = 'q')]
        search: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Every recorded setting of one image (by file name or path).
    Show {
        image: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TemplatesAction {
    /// List templates (optionally only one provider's).
    List {
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one template and its placeholders.
    Show { name: String },
    /// Fill a template and print the prompt.
    Fill {
        name: String,
        #[arg(long = "field", value_name = "NAME=VALUE")]
        fields: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginAction {
    /// Scaffold a new provider plugin crate that builds as is.
    New {
        name: String,
        /// Folder to create the crate in (default: the current folder).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build the plugin crate in PATH (default: the current folder) for wasm32-wasip2.
    Build {
        #[arg(default_value = ".")]
        path: PathBuf,
        #[arg(long)]
        release: bool,
    },
    /// Validate and install a built plugin (a folder with plugin.toml + plugin.wasm, or a crate).
    Install { path: PathBuf },
    /// Installed plugins with version, contract and allowed hosts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a user-installed plugin.
    Remove { id: String },
}
