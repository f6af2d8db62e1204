//! `imageai providers`: every installed provider with its models and what each can do.

use imageai_core::ModelInfo;

use crate::args::ProvidersArgs;
use crate::exit::Failure;
use crate::output;

pub fn run(args: ProvidersArgs) -> Result<(), Failure> {
    let core = super::open_core(args.json)?;
    let mut listed = Vec::new();
    for entry in core.providers() {
        let manifest = &entry.manifest;
        let models = match core
            .provider(&manifest.id)
            .and_then(|p| p.info().map_err(|e| load_error(&manifest.id, &e)))
        {
            Ok(info) => Ok(info.models),
            Err(err) => Err(err.to_string()),
        };
        let key = core.key_source(&manifest.id).ok().flatten();
        listed.push((entry, models, key));
    }
    if args.json {
        let value: Vec<serde_json::Value> = listed
            .iter()
            .map(|(entry, models, key)| {
                let m = &entry.manifest;
                serde_json::json!({
                    "id": m.id, "name": m.name, "version": m.version, "contract": m.contract,
                    "description": m.description, "source": format!("{:?}", entry.source).to_lowercase(),
                    "allowed_hosts": m.allowed_hosts, "native": entry.is_native(),
                    "key": key.as_ref().map(|k| k.to_string()),
                    "models": models.as_ref().ok(),
                    "error": models.as_ref().err(),
                })
            })
            .collect();
        output::json(&serde_json::Value::Array(value));
        return Ok(());
    }
    if listed.is_empty() {
        output::note(
            "No providers installed. Build the bundled ones with `cargo xtask plugins`, or install one with `imageai plugin install PATH`.",
        );
    }
    for (entry, models, key) in &listed {
        let m = &entry.manifest;
        let key = match (key, &m.key) {
            (Some(source), _) => format!("key: {source}"),
            (None, Some(_)) => format!("no key: `imageai keys set {}`", m.id),
            (None, None) => "no key needed".into(),
        };
        output::line(&format!("{} — {} {} ({key})", m.id, m.name, m.version));
        if entry.is_native() {
            output::line(&format!(
                "  runs on this machine (engine: {})",
                entry.dir.display()
            ));
        }
        match models {
            Ok(models) => models
                .iter()
                .for_each(|model| output::line(&describe(model))),
            Err(err) => output::line(&format!("  could not load: {err}")),
        }
    }
    Ok(())
}

fn load_error(id: &str, err: &imageai_core::ProviderError) -> imageai_core::app::CoreError {
    imageai_core::app::CoreError::Load {
        id: id.to_owned(),
        message: err.to_string(),
    }
}

fn describe(model: &ModelInfo) -> String {
    let caps: Vec<&str> = model.capabilities.iter().map(|c| c.as_str()).collect();
    let id = if model.id == imageai_core::jobs::ANY_MODEL {
        "(any model id)"
    } else {
        model.id.as_str()
    };
    let mut text = format!("  {id:<24} {}", caps.join(", "));
    if !model.sizes.is_empty() {
        text.push_str(&format!("; sizes {}", model.sizes.join(" ")));
    }
    if !model.aspect_ratios.is_empty() {
        text.push_str(&format!(
            "; aspect ratios {}",
            model.aspect_ratios.join(" ")
        ));
    }
    if model.max_n > 1 {
        text.push_str(&format!("; up to {} images", model.max_n));
    }
    text
}
