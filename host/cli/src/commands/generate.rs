//! `imageai generate` and `imageai upscale`: build the request from the flags, run it as a job
//! with a progress spinner and Ctrl+C cancellation, save to the history and print the result.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use imageai_core::app::{Core, KeyOverride};
use imageai_core::history::SavedImage;
use imageai_core::jobs::{self, Job, JobError, JobOutput, JobRequest};
use imageai_core::templates::{self, TemplateStore};
use imageai_core::{
    CallContext, EditMode, EditRequest, GenerateRequest, Image, ProviderError, UpscaleRequest,
};

use crate::args::{EditModeArg, GenerateArgs, KeyArgs, UpscaleArgs};
use crate::exit::Failure;
use crate::output;

/// Providers that run locally and take the engine flags.
const LOCAL_SD: &str = "local-sd";

pub fn run(args: GenerateArgs) -> Result<(), Failure> {
    let core = super::open_core(args.json)?;
    let id = core
        .choose_provider(args.provider.as_deref())?
        .manifest
        .id
        .clone();

    let (prompt, template_use) = prompt_of(&core, &args, &id)?;
    let mut extra = parse_extra(&args.extra)?;
    let local_flags = [
        ("scheduler", args.scheduler.clone()),
        ("device", args.device.clone()),
        ("precision", args.precision.clone()),
        (
            "init_noise",
            args.init_noise.as_ref().map(|p| p.display().to_string()),
        ),
    ];
    for (name, value) in local_flags {
        if let Some(value) = value {
            if id != LOCAL_SD {
                return Err(Failure::usage(format!(
                    "--{} applies only to local Stable Diffusion (--provider {LOCAL_SD}), not {id}",
                    name.replace('_', "-")
                )));
            }
            extra.insert(name.to_owned(), value);
        }
    }
    let base = GenerateRequest {
        model: args.model.clone().unwrap_or_default(),
        prompt,
        negative_prompt: args.negative.clone(),
        n: args.n.unwrap_or(0),
        size: args.size.clone(),
        aspect_ratio: args.aspect_ratio.clone(),
        seed: args.seed,
        steps: args.steps,
        guidance: args.guidance,
        quality: args.quality.clone(),
        style: args.style.clone(),
        output_format: args.output_format.clone(),
        background: args.background.clone(),
        extra,
    };
    let request = if args.images.is_empty() {
        if args.mask.is_some() || args.mode.is_some() || args.strength.is_some() {
            return Err(Failure::usage(
                "--mask, --mode and --strength need a source image: add --image FILE",
            ));
        }
        JobRequest::Generate(base)
    } else {
        let images = args
            .images
            .iter()
            .map(|p| read_image(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mask = args.mask.as_deref().map(read_image).transpose()?;
        let mode = match args.mode {
            Some(mode) => edit_mode(mode),
            None if mask.is_some() => EditMode::Inpaint,
            None => EditMode::Edit,
        };
        let sources = args.images.iter().map(|p| file_name(p)).collect();
        JobRequest::Edit {
            request: EditRequest {
                mode,
                base,
                images,
                mask,
                strength: args.strength,
            },
            sources,
        }
    };
    let job = Job {
        provider: id.clone(),
        request,
        template: template_use,
    };
    let result = execute(&core, &id, &job, &args.key, args.json)?;
    if let Some(used) = &job.template {
        let _ = imageai_core::history::append_event(&core.paths, &used.event());
    }
    report(&result, args.out.as_deref(), args.json)
}

pub fn upscale(args: UpscaleArgs) -> Result<(), Failure> {
    let core = super::open_core(args.json)?;
    let id = core
        .choose_provider(args.provider.as_deref())?
        .manifest
        .id
        .clone();
    let request = UpscaleRequest {
        model: args.model.clone().unwrap_or_default(),
        image: read_image(&args.image)?,
        scale: args.scale,
        prompt: args.prompt.clone(),
        negative_prompt: None,
        seed: None,
        output_format: None,
        extra: parse_extra(&args.extra)?,
    };
    let job = Job {
        provider: id.clone(),
        request: JobRequest::Upscale {
            request,
            source: file_name(&args.image),
        },
        template: None,
    };
    let result = execute(&core, &id, &job, &args.key, args.json)?;
    report(&result, args.out.as_deref(), args.json)
}

/// Run the job in the foreground with a spinner; Ctrl+C cancels it (a second Ctrl+C exits).
fn execute(
    core: &Core,
    id: &str,
    job: &Job,
    key: &KeyArgs,
    json: bool,
) -> Result<JobOutput, Failure> {
    let over = KeyOverride {
        key: key.api_key.clone(),
        key_file: key.api_key_file.clone(),
    };
    let mut ctx: CallContext = core.context(id, &over)?;
    let provider = core.provider(id)?;
    let bar = output::progress(json || !std::io::stderr().is_terminal());
    bar.set_message(format!("{id}: generating…"));
    let progress_bar = bar.clone();
    ctx.progress = Some(Arc::new(move |fraction, message: &str| {
        progress_bar.set_message(format!("{:>3.0}% {message}", fraction * 100.0));
    }));
    let cancel = ctx.cancel.clone();
    let _ = ctrlc::set_handler(move || {
        if cancel.is_cancelled() {
            std::process::exit(crate::exit::CANCELLED);
        }
        cancel.cancel();
        eprintln!("\ncancelling… (press Ctrl+C again to quit at once)");
    });
    let output_dir = core.paths.output_dir();
    let result = jobs::run(provider.as_ref(), job, &ctx, &output_dir);
    bar.finish_and_clear();
    result.map_err(|err| match err {
        // The local engine's own messages already say what to do; the generic plugin hint
        // (reinstall a WASM plugin) does not apply to it.
        JobError::Provider(ProviderError::Plugin(message)) if id == LOCAL_SD => {
            Failure::new(crate::exit::PLUGIN, "plugin", format!("{id}: {message}"))
        }
        JobError::Provider(err) => Failure::provider(id, &err),
        JobError::Save(err) => Failure::other(err.to_string()),
    })
}

/// The prompt: `--template` filled with `--field`s (appended to `--prompt` when both are
/// given), else `--prompt`, else stdin when it is not a terminal.
fn prompt_of(
    core: &Core,
    args: &GenerateArgs,
    provider: &str,
) -> Result<(String, Option<templates::TemplateUse>), Failure> {
    if let Some(name) = &args.template {
        let loaded =
            TemplateStore::load(&core.paths).map_err(|err| Failure::other(err.to_string()))?;
        if let Some(corrupt) = &loaded.warning {
            output::warn(&corrupt.to_string());
        }
        let listed = loaded
            .store
            .get(name)
            .ok_or_else(|| super::templates::not_found(name))?;
        let template = listed.template;
        if !template.suits(provider) {
            output::warn(&format!(
                "template `{name}` was written for another provider; using it with {provider}"
            ));
        }
        let fields = super::templates::parse_fields(&args.fields)?;
        let filled = template
            .fill(&fields)
            .map_err(|err| Failure::usage(err.to_string()))?;
        let current = args.prompt.clone().unwrap_or_default();
        let append = !current.trim().is_empty();
        let prompt = templates::apply(&current, &filled, append);
        let used = template.record_use(fields, prompt.clone(), append, listed.source);
        return Ok((prompt, Some(used)));
    }
    if !args.fields.is_empty() {
        return Err(Failure::usage("--field needs --template NAME"));
    }
    let prompt = match &args.prompt {
        Some(prompt) => prompt.clone(),
        None if !std::io::stdin().is_terminal() => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|err| {
                Failure::usage(format!("could not read the prompt from stdin: {err}"))
            })?;
            text
        }
        None => String::new(),
    };
    let prompt = prompt.trim().to_owned();
    if prompt.is_empty() {
        return Err(Failure::usage(
            "no prompt: pass -p \"…\", pipe one on stdin, or use --template NAME",
        ));
    }
    Ok((prompt, None))
}

fn parse_extra(pairs: &[String]) -> Result<std::collections::BTreeMap<String, String>, Failure> {
    pairs
        .iter()
        .map(|p| super::name_value(p, "--set"))
        .collect()
}

fn edit_mode(mode: EditModeArg) -> EditMode {
    match mode {
        EditModeArg::Edit => EditMode::Edit,
        EditModeArg::Inpaint => EditMode::Inpaint,
        EditModeArg::Variations => EditMode::Variations,
        EditModeArg::Outpaint => EditMode::Outpaint,
        EditModeArg::Erase => EditMode::Erase,
        EditModeArg::SearchReplace => EditMode::SearchReplace,
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Read an input image and tell its type from its first bytes.
fn read_image(path: &Path) -> Result<Image, Failure> {
    let data = std::fs::read(path).map_err(|err| {
        Failure::usage(format!(
            "could not read the image ({err}): {}",
            path.display()
        ))
    })?;
    let mime = match data.as_slice() {
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [0xFF, 0xD8, 0xFF, ..] => "image/jpeg",
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => "image/webp",
        [b'G', b'I', b'F', b'8', ..] => "image/gif",
        _ => {
            return Err(Failure::usage(format!(
                "not a PNG, JPEG, WebP or GIF image: {} (convert it to PNG and try again)",
                path.display()
            )));
        }
    };
    Ok(Image {
        mime: mime.to_owned(),
        data,
    })
}

/// Copy the saved images (and their sidecars) to `-o`, then print what was made.
fn report(result: &JobOutput, out: Option<&Path>, json: bool) -> Result<(), Failure> {
    let copies = match out {
        Some(out) => copy_out(&result.saved, out)?,
        None => Vec::new(),
    };
    let record = &result.record;
    if json {
        let images: Vec<serde_json::Value> = result
            .saved
            .iter()
            .enumerate()
            .map(|(i, s)| {
                serde_json::json!({
                    "path": s.image, "sidecar": s.sidecar, "out": copies.get(i),
                    "width": s.size.map(|(w, _)| w), "height": s.size.map(|(_, h)| h),
                })
            })
            .collect();
        output::json(&serde_json::json!({
            "provider": record.provider, "model": record.model, "prompt": record.prompt,
            "images": images, "seed": record.seed, "revised_prompt": record.revised_prompt,
            "note": record.output_text, "request_id": record.request_id, "warnings": all_warnings(result),
        }));
        return Ok(());
    }
    for (i, saved) in result.saved.iter().enumerate() {
        match copies.get(i) {
            Some(copy) => output::line(&copy.display().to_string()),
            None => output::line(&saved.image.display().to_string()),
        }
    }
    if let Some(revised) = &record.revised_prompt {
        output::note(&format!("revised prompt: {revised}"));
    }
    if let Some(note) = &record.output_text {
        output::note(note);
    }
    for warning in all_warnings(result) {
        output::warn(&warning);
    }
    Ok(())
}

fn all_warnings(result: &JobOutput) -> Vec<String> {
    let mut warnings = result.record.warnings.clone();
    warnings.extend(result.saved.iter().flat_map(|s| s.warnings.iter().cloned()));
    warnings
}

/// `-o out.png` writes the first image there and the others as `out_2.png`, …; `-o folder/`
/// keeps the history's file names. Each copy gets its sidecar beside it.
fn copy_out(saved: &[SavedImage], out: &Path) -> Result<Vec<PathBuf>, Failure> {
    let is_dir = out.is_dir()
        || out
            .as_os_str()
            .to_string_lossy()
            .ends_with(std::path::MAIN_SEPARATOR);
    let mut copies = Vec::new();
    for (i, image) in saved.iter().enumerate() {
        let dest = if is_dir {
            out.join(image.image.file_name().unwrap_or_default())
        } else if i == 0 {
            out.to_path_buf()
        } else {
            let stem = out
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let ext = out
                .extension()
                .map(|e| format!(".{}", e.to_string_lossy()))
                .unwrap_or_default();
            out.with_file_name(format!("{stem}_{}{ext}", i + 1))
        };
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|err| {
                Failure::other(format!(
                    "could not create the folder ({err}): {}",
                    parent.display()
                ))
            })?;
        }
        let bytes = std::fs::read(&image.image).map_err(|err| {
            Failure::other(format!(
                "could not read the saved image ({err}): {}",
                image.image.display()
            ))
        })?;
        imageai_core::atomic::write_atomic(&dest, &bytes)
            .map_err(|err| Failure::other(format!("could not write the image: {err}")))?;
        if let Ok(sidecar) = std::fs::read(&image.sidecar) {
            let mut name = dest.as_os_str().to_owned();
            name.push(".json");
            imageai_core::atomic::write_atomic(Path::new(&name), &sidecar)
                .map_err(|err| Failure::other(format!("could not write the sidecar: {err}")))?;
        }
        copies.push(dest);
    }
    Ok(copies)
}
