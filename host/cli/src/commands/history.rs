//! `imageai history list|show`: the images in the output folder, newest first, with their settings.

use imageai_core::history::{self, Entry};

use crate::args::HistoryAction;
use crate::exit::Failure;
use crate::output;

pub fn run(action: HistoryAction) -> Result<(), Failure> {
    let core = super::open_core(false)?;
    let dir = core.paths.output_dir();
    match action {
        HistoryAction::List {
            search,
            limit,
            json,
        } => {
            let entries = history::list(&dir).map_err(|err| Failure::other(err.to_string()))?;
            let shown: Vec<&Entry> = match &search {
                Some(query) => history::search(&entries, query),
                None => entries.iter().collect(),
            };
            let shown: Vec<&Entry> = shown.into_iter().take(limit).collect();
            if json {
                output::json(&serde_json::Value::Array(
                    shown.iter().map(|e| entry_json(e)).collect(),
                ));
                return Ok(());
            }
            if shown.is_empty() {
                output::note(&format!(
                    "No images yet in {}. Make one with `imageai generate -p \"…\"`.",
                    dir.display()
                ));
            }
            for entry in shown {
                let when = entry
                    .created_at
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default();
                let who = format!(
                    "{}/{}",
                    entry.provider().unwrap_or("?"),
                    entry.model().unwrap_or("?")
                );
                let prompt: String = entry.prompt().unwrap_or("").chars().take(60).collect();
                let problem = entry
                    .problem
                    .as_deref()
                    .map(|p| format!("  ({p})"))
                    .unwrap_or_default();
                output::line(&format!(
                    "{when:<16}  {:<44}  {who:<24}  {prompt}{problem}",
                    entry.name()
                ));
            }
            Ok(())
        }
        HistoryAction::Show { image, json } => {
            let entry =
                history::find(&dir, &image).map_err(|err| Failure::usage(err.to_string()))?;
            if json {
                output::json(&entry_json(&entry));
                return Ok(());
            }
            if let Some(path) = &entry.image {
                output::line(&format!("image:    {}", path.display()));
            }
            if let Some(problem) = &entry.problem {
                output::line(&format!("problem:  {problem}"));
            }
            if let Some(meta) = &entry.metadata {
                match serde_json::to_string_pretty(&meta.0) {
                    Ok(text) => output::line(&text),
                    Err(err) => output::warn(&err.to_string()),
                }
            }
            Ok(())
        }
    }
}

fn entry_json(entry: &Entry) -> serde_json::Value {
    serde_json::json!({
        "name": entry.name(),
        "image": entry.image,
        "sidecar": entry.sidecar,
        "created_at": entry.created_at.map(|t| t.to_rfc3339()),
        "problem": entry.problem,
        "metadata": entry.metadata.as_ref().map(|m| serde_json::Value::Object(m.0.clone())),
    })
}
