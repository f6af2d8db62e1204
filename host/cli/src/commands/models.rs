//! `imageai models search|install|list|rm|import`: local Stable Diffusion models from the
//! Hugging Face Hub (or a single-file checkpoint), kept in the cache Python tools share.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use imageai_core::CancelToken;
use imageai_core::config::Config;
use imageai_core::keys::KeyStore;
use imageai_core::models::{
    self, DownloadEvent, InstallRequest, InstalledModel, ModelError, ModelManager, ModelsConfig,
    Precision, ProgressSink, human_bytes,
};
use imageai_core::paths::Paths;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::exit::{self, Failure};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// Search the Hugging Face Hub for text-to-image models in the diffusers layout.
    Search {
        /// Words to look for in model ids; leave out to list the most downloaded.
        query: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Show only the curated list of known-good models (works offline).
        #[arg(long)]
        curated: bool,
        /// Precision the download sizes are for.
        #[arg(long, value_enum, default_value_t = PrecisionArg::Fp16)]
        precision: PrecisionArg,
        #[arg(long)]
        json: bool,
    },
    /// Download a model (only the files the local engine needs) into the Hugging Face cache.
    Install {
        /// Hub model id, e.g. stable-diffusion-v1-5/stable-diffusion-v1-5.
        repo: String,
        /// Branch, tag or commit.
        #[arg(long, default_value = "main")]
        revision: String,
        #[arg(long, value_enum, default_value_t = PrecisionArg::Fp16)]
        precision: PrecisionArg,
        #[arg(long)]
        json: bool,
    },
    /// Installed models: Hub snapshots in the cache and imported checkpoints.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove an installed model and free its space.
    Rm {
        /// Hub model id, or the name of an imported model.
        repo: String,
        /// Only this revision's snapshot (branch, tag or commit); default: all of them.
        #[arg(long)]
        revision: Option<String>,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// The devices the local engine can run on (GPU adapters and the CPU), for `--device`.
    Devices {
        #[arg(long)]
        json: bool,
    },
    /// Convert a single-file SD 1.x checkpoint (.safetensors, original layout) for the local engine.
    Import {
        file: PathBuf,
        /// Name for the model (default: the file name without extension).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PrecisionArg {
    Fp16,
    Fp32,
}

impl From<PrecisionArg> for Precision {
    fn from(arg: PrecisionArg) -> Self {
        match arg {
            PrecisionArg::Fp16 => Precision::Fp16,
            PrecisionArg::Fp32 => Precision::Fp32,
        }
    }
}

pub fn run(action: ModelsAction) -> Result<(), Failure> {
    match action {
        ModelsAction::Search {
            query,
            limit,
            curated,
            precision,
            json,
        } => search(query.as_deref(), limit, curated, precision.into(), json),
        ModelsAction::Install {
            repo,
            revision,
            precision,
            json,
        } => install(&repo, &revision, precision.into(), json),
        ModelsAction::List { json } => list(json),
        ModelsAction::Rm {
            repo,
            revision,
            yes,
            json,
        } => remove(&repo, revision.as_deref(), yes, json),
        ModelsAction::Import { file, name, json } => import(&file, name.as_deref(), json),
        ModelsAction::Devices { json } => devices(json),
    }
}

impl From<ModelError> for Failure {
    fn from(err: ModelError) -> Self {
        let class = err.class();
        let code = match class {
            "auth" => exit::AUTH,
            "network" => exit::NETWORK,
            "server" => exit::SERVER,
            "invalid" | "not_found" => exit::INVALID,
            "cancelled" => exit::CANCELLED,
            _ => exit::OTHER,
        };
        Failure::new(code, class, err.to_string())
    }
}

/// The manager for this user's settings; with the Hugging Face token when `with_token`.
fn manager(with_token: bool) -> Result<ModelManager, Failure> {
    let paths = Paths::from_env().map_err(|err| Failure::other(err.to_string()))?;
    let loaded = Config::load(&paths).map_err(|err| Failure::other(err.to_string()))?;
    if let Some(warning) = &loaded.warning {
        output::warn(&warning.to_string());
    }
    let mut settings = ModelsConfig::from_settings(&paths, &loaded.config);
    if with_token && !settings.offline {
        let store = KeyStore::open(&paths);
        let token = models::resolve_token(&loaded.config, &store).map_err(ModelError::from)?;
        settings = settings.with_token(token);
    }
    Ok(ModelManager::new(settings)?)
}

/// A token cancelled by Ctrl+C.
fn ctrl_c_token() -> CancelToken {
    let cancel = CancelToken::new();
    let flag = cancel.clone();
    let _ = ctrlc::set_handler(move || {
        output::note("Stopping… (what was downloaded is kept)");
        flag.cancel();
    });
    cancel
}

fn size_text(size: Option<u64>) -> String {
    size.map_or_else(|| "?".to_owned(), human_bytes)
}

fn search(
    query: Option<&str>,
    limit: usize,
    curated_only: bool,
    precision: Precision,
    json: bool,
) -> Result<(), Failure> {
    if curated_only {
        if json {
            output::json(
                &serde_json::to_value(models::CURATED)
                    .map_err(|e| Failure::other(e.to_string()))?,
            );
            return Ok(());
        }
        output::line(&format!(
            "{:<52} {:<6} {:<14} {:>10}  NOTE",
            "ID",
            "FAMILY",
            "TASK",
            precision.as_str().to_uppercase()
        ));
        for model in models::CURATED {
            output::line(&format!(
                "{:<52} {:<6} {:<14} {:>10}  {}",
                model.id,
                model.family,
                model.task,
                format!("~{}", human_bytes(model.size(precision))),
                model.note
            ));
        }
        return Ok(());
    }
    let manager = manager(true)?;
    let results = manager.search(query, limit, precision)?;
    if json {
        output::json(&serde_json::to_value(&results).map_err(|e| Failure::other(e.to_string()))?);
        return Ok(());
    }
    if results.is_empty() {
        output::note(
            "No diffusers text-to-image models matched. Try fewer words, or `imageai models search --curated`.",
        );
        return Ok(());
    }
    output::line(&format!(
        "{:<60} {:>10} {:>7} {:>10}",
        "ID",
        "DOWNLOADS",
        "LIKES",
        format!("SIZE {precision}")
    ));
    for result in &results {
        let id = if result.curated {
            format!("{} *", result.id)
        } else {
            result.id.clone()
        };
        output::line(&format!(
            "{:<60} {:>10} {:>7} {:>10}",
            id,
            result
                .downloads
                .map_or_else(|| "?".into(), |d| d.to_string()),
            result.likes.map_or_else(|| "?".into(), |l| l.to_string()),
            size_text(result.download_size),
        ));
    }
    if results.iter().any(|r| r.curated) {
        output::note(
            "* on the curated list of known-good models (`imageai models search --curated`)",
        );
    }
    Ok(())
}

/// Draws install progress on stderr: one bar for the total (bytes, speed, time left) and one
/// per file in flight. Off a terminal, one line per finished file instead.
struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    files: Mutex<HashMap<String, ProgressBar>>,
    terminal: bool,
}

impl Bars {
    fn new(quiet: bool) -> Self {
        let terminal = !quiet && std::io::stderr().is_terminal();
        let multi = if terminal {
            MultiProgress::new()
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        };
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template(
                "{spinner} total {wide_bar} {bytes}/{total_bytes}  {bytes_per_sec}  {eta} left",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self {
            multi,
            total,
            files: Mutex::new(HashMap::new()),
            terminal,
        }
    }

    fn file_style() -> ProgressStyle {
        ProgressStyle::with_template("  {msg:<48!} {bar:30} {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
    }

    fn on(&self, event: &DownloadEvent) {
        match event {
            DownloadEvent::Planned { files, totals, .. } => {
                self.total.set_length(totals.total);
                self.total.set_position(totals.done);
                self.total.enable_steady_tick(Duration::from_millis(120));
                let cached = files.iter().filter(|f| f.cached).count();
                if cached > 0 {
                    self.note(&format!(
                        "{cached} of {} files are already in the cache",
                        files.len()
                    ));
                }
            }
            DownloadEvent::FileStarted {
                path,
                size,
                resume_from,
            } => {
                let bar = self.multi.add(ProgressBar::new(*size));
                bar.set_style(Self::file_style());
                bar.set_message(path.clone());
                bar.set_position(*resume_from);
                if *resume_from > 0 {
                    self.note(&format!("resuming {path} at {}", human_bytes(*resume_from)));
                }
                if let Ok(mut files) = self.files.lock()
                    && let Some(old) = files.insert(path.clone(), bar)
                {
                    old.finish_and_clear();
                    self.multi.remove(&old);
                }
            }
            DownloadEvent::Bytes {
                path,
                file_done,
                totals,
                ..
            } => {
                if let Ok(files) = self.files.lock()
                    && let Some(bar) = files.get(path)
                {
                    bar.set_position(*file_done);
                }
                self.total.set_position(totals.done);
            }
            DownloadEvent::FileDone { path, size, cached } => {
                if let Ok(mut files) = self.files.lock()
                    && let Some(bar) = files.remove(path)
                {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                if !self.terminal {
                    let how = if *cached { "in cache" } else { "fetched" };
                    output::note(&format!("  {how:<8} {path} ({})", human_bytes(*size)));
                }
            }
            DownloadEvent::Finished { totals } => {
                self.total.set_position(totals.done);
                self.total.finish_and_clear();
            }
        }
    }

    fn note(&self, text: &str) {
        if self.terminal {
            let _ = self.multi.println(text);
        } else {
            output::note(text);
        }
    }
}

fn install(repo: &str, revision: &str, precision: Precision, json: bool) -> Result<(), Failure> {
    let manager = manager(true)?;
    let cancel = ctrl_c_token();
    let bars = Arc::new(Bars::new(false));
    let sink_bars = bars.clone();
    let sink = ProgressSink::new(move |event| sink_bars.on(event));
    let request = InstallRequest {
        repo: repo.to_owned(),
        revision: revision.to_owned(),
        precision,
    };
    let result = manager.install(&request, &sink, &cancel);
    bars.total.finish_and_clear();
    let report = result?;
    if json {
        output::json(&serde_json::to_value(&report).map_err(|e| Failure::other(e.to_string()))?);
        return Ok(());
    }
    let short = report.commit.get(..7).unwrap_or(&report.commit);
    let how = if report.offline {
        "already installed (offline: the Hub was not asked)".to_owned()
    } else if report.downloaded_bytes == 0 {
        "everything was already in the cache".to_owned()
    } else {
        let speed = report.downloaded_bytes as f64 / report.elapsed_secs.max(0.001);
        format!(
            "downloaded {} in {:.1} s ({}/s)",
            human_bytes(report.downloaded_bytes),
            report.elapsed_secs,
            human_bytes(speed as u64)
        )
    };
    output::line(&format!(
        "Installed {} @ {} (commit {short}) in {}: {} files, {}; {how}.",
        report.repo,
        report.revision,
        report.precision,
        report.files.len(),
        human_bytes(report.total_bytes)
    ));
    output::line(&format!("Location: {}", report.path.display()));
    if !report.fallbacks.is_empty() {
        output::warn(&format!(
            "{} is not published in {}; the other precision was installed for it",
            report.fallbacks.join(", "),
            report.precision
        ));
    }
    if report.inspection.loadable {
        output::line("The local engine can load it.");
    } else {
        output::warn(&format!(
            "the local engine cannot load it: {}",
            report.inspection.problems.join("; ")
        ));
    }
    Ok(())
}

fn loadable_text(model: &InstalledModel) -> String {
    if model.inspection.loadable {
        "yes".into()
    } else {
        format!(
            "no: {}",
            model
                .inspection
                .problems
                .first()
                .map(String::as_str)
                .unwrap_or("unknown")
        )
    }
}

/// The local engine's devices, as its worker finds them.
fn devices(json: bool) -> Result<(), Failure> {
    let Some(worker) = imageai_core::local_sd::find_worker() else {
        return Err(Failure::new(
            exit::OTHER,
            "not_found",
            format!(
                "the local engine ({}) is not installed beside imageai; reinstall ImageAI, or set IMAGEAI_SD_WORKER to its path",
                imageai_core::local_sd::WORKER_FILE
            ),
        ));
    };
    let engine =
        imageai_core::local_sd::LocalSdProvider::new(worker, manager(false)?.config().clone());
    let devices = engine
        .devices()
        .map_err(|err| Failure::provider("local-sd", &err))?;
    engine.unload();
    if json {
        output::json(&serde_json::to_value(&devices).map_err(|e| Failure::other(e.to_string()))?);
        return Ok(());
    }
    output::line(&format!(
        "{:<6} {:<44} {:<11} {:<8} DRIVER",
        "INDEX", "NAME", "KIND", "BACKEND"
    ));
    for device in &devices {
        output::line(&format!(
            "{:<6} {:<44} {:<11} {:<8} {}",
            device.index, device.name, device.kind, device.backend, device.driver
        ));
    }
    output::note(
        "Pick one with --device NAME (or the local-sd `device` setting); `auto` takes a discrete GPU, then an integrated one, then the CPU; `cpu` runs without a GPU.",
    );
    Ok(())
}

fn list(json: bool) -> Result<(), Failure> {
    let manager = manager(false)?;
    let models = manager.list()?;
    if json {
        output::json(&serde_json::to_value(&models).map_err(|e| Failure::other(e.to_string()))?);
        return Ok(());
    }
    if models.is_empty() {
        output::note(&format!(
            "No models installed in {}. Find one with `imageai models search --curated`, then `imageai models install ID`.",
            manager.config().cache_dir.display()
        ));
        return Ok(());
    }
    output::line(&format!(
        "{:<48} {:<10} {:>10} {:<10} {:<8} LOCATION",
        "ID", "REVISION", "SIZE", "PRECISION", "LOADABLE"
    ));
    for model in &models {
        let revision = match (model.refs.first(), &model.commit) {
            (Some(r), _) => r.clone(),
            (None, Some(c)) => c.get(..8).unwrap_or(c).to_owned(),
            (None, None) => match model.source {
                models::ModelSource::Imported => "imported".into(),
                models::ModelSource::Hub => "-".into(),
            },
        };
        let mut size = human_bytes(model.size_on_disk);
        if model.partial_bytes > 0 {
            size = format!("{size} (+{} partial)", human_bytes(model.partial_bytes));
        }
        let precision = if model.inspection.precisions.is_empty() {
            "-".into()
        } else {
            model.inspection.precisions.join("+")
        };
        output::line(&format!(
            "{:<48} {:<10} {:>10} {:<10} {:<8} {}",
            model.id,
            revision,
            size,
            precision,
            loadable_text(model),
            model.path.display()
        ));
    }
    Ok(())
}

fn remove(id: &str, revision: Option<&str>, yes: bool, json: bool) -> Result<(), Failure> {
    let manager = manager(false)?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::usage(format!(
                "not removing {id} without confirmation: pass --yes"
            )));
        }
        let found: Vec<InstalledModel> = manager
            .list()?
            .into_iter()
            .filter(|m| m.id.eq_ignore_ascii_case(id))
            .collect();
        if found.is_empty() {
            return Err(ModelError::NotInstalled { id: id.to_owned() }.into());
        }
        let size: u64 = found.iter().map(|m| m.size_on_disk + m.partial_bytes).sum();
        let what = match revision {
            Some(rev) => format!("{id} at {rev}"),
            None => format!("{id} ({} snapshot(s), {})", found.len(), human_bytes(size)),
        };
        eprint!("Remove {what}? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            output::note("Nothing removed.");
            return Ok(());
        }
    }
    let report = manager.remove(id, revision)?;
    if json {
        output::json(&serde_json::to_value(&report).map_err(|e| Failure::other(e.to_string()))?);
    } else {
        output::line(&format!(
            "Removed {}; freed {}.",
            report.id,
            human_bytes(report.freed_bytes)
        ));
    }
    Ok(())
}

fn import(file: &std::path::Path, name: Option<&str>, json: bool) -> Result<(), Failure> {
    let manager = manager(true)?;
    let cancel = ctrl_c_token();
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("converting {wide_bar} {bytes}/{total_bytes}  {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let result = manager.import_checkpoint(file, name, &mut progress, &cancel);
    bar.finish_and_clear();
    let report = result?;
    if json {
        output::json(&serde_json::to_value(&report).map_err(|e| Failure::other(e.to_string()))?);
        return Ok(());
    }
    output::line(&format!(
        "Imported {} ({}, {}, {} tensors, {}) into {}",
        report.name,
        report.task,
        report.dtype,
        report.tensors,
        human_bytes(report.bytes),
        report.path.display()
    ));
    if report.tokenizer_from.is_none() {
        output::warn(
            "no SD 1.x tokenizer was found in the cache and none could be fetched; install one with \
             `imageai models install stable-diffusion-v1-5/stable-diffusion-v1-5`, then import again",
        );
    } else if report.inspection.loadable {
        output::line("The local engine can load it.");
    } else {
        output::warn(&format!(
            "the local engine cannot load it: {}",
            report.inspection.problems.join("; ")
        ));
    }
    Ok(())
}
