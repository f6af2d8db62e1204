//! `imageai templates`: list, show and fill prompt templates.

use std::collections::BTreeMap;

use imageai_core::templates::TemplateStore;

use crate::args::TemplatesAction;
use crate::exit::Failure;
use crate::output;

pub fn run(action: Option<TemplatesAction>) -> Result<(), Failure> {
    let core = super::open_core(false)?;
    let loaded = TemplateStore::load(&core.paths).map_err(|err| Failure::other(err.to_string()))?;
    if let Some(corrupt) = &loaded.warning {
        output::warn(&corrupt.to_string());
    }
    let store = loaded.store;
    match action.unwrap_or(TemplatesAction::List {
        provider: None,
        json: false,
    }) {
        TemplatesAction::List { provider, json } => {
            let listed = store.list(provider.as_deref());
            if json {
                let value: Vec<serde_json::Value> = listed
                    .iter()
                    .map(|l| {
                        let mut v = serde_json::to_value(l.template).unwrap_or_default();
                        if let Some(obj) = v.as_object_mut() {
                            obj.insert("source".into(), l.source.as_str().into());
                            obj.insert("placeholders".into(), l.template.placeholders().into());
                        }
                        v
                    })
                    .collect();
                output::json(&serde_json::Value::Array(value));
            } else {
                for l in listed {
                    let t = l.template;
                    let provider = t
                        .provider
                        .as_deref()
                        .map(|p| format!(" [{p}]"))
                        .unwrap_or_default();
                    output::line(&format!("{}{provider}: {}", t.name, t.template));
                }
            }
            Ok(())
        }
        TemplatesAction::Show { name } => {
            let listed = store.get(&name).ok_or_else(|| not_found(&name))?;
            let t = listed.template;
            output::line(&format!("{} ({})", t.name, listed.source.as_str()));
            if let Some(description) = &t.description {
                output::line(description);
            }
            output::line(&format!("template: {}", t.template));
            for slot in t.placeholders() {
                let default = t
                    .defaults
                    .get(&slot)
                    .map(|d| format!(" (default: {d})"))
                    .unwrap_or_default();
                output::line(&format!("  [{slot}]{default}"));
            }
            if let Some(negative) = &t.negative {
                output::line(&format!("negative: {negative}"));
            }
            Ok(())
        }
        TemplatesAction::Fill { name, fields } => {
            let listed = store.get(&name).ok_or_else(|| not_found(&name))?;
            let values = parse_fields(&fields)?;
            let filled = listed
                .template
                .fill(&values)
                .map_err(|err| Failure::usage(err.to_string()))?;
            output::line(&filled);
            Ok(())
        }
    }
}

pub fn parse_fields(fields: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    fields
        .iter()
        .map(|f| super::name_value(f, "--field"))
        .collect()
}

pub fn not_found(name: &str) -> Failure {
    Failure::usage(format!(
        "no template named `{name}`: list them with `imageai templates list`"
    ))
}
