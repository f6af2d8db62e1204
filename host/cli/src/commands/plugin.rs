//! `imageai plugin new|build|install|list|remove`: what a plugin author and a user need.

use std::path::{Path, PathBuf};

use imageai_core::authoring::{self, SdkSource};
use imageai_core::plugin::manifest::{COMPONENT_FILE, MANIFEST_FILE};
use imageai_core::plugin::registry;

use crate::args::PluginAction;
use crate::exit::Failure;
use crate::output;

pub fn run(action: PluginAction) -> Result<(), Failure> {
    match action {
        PluginAction::New { name, dir } => new(&name, &dir),
        PluginAction::Build { path, release } => build(&path, release).map(|_| ()),
        PluginAction::Install { path } => install(&path),
        PluginAction::List { json } => list(json),
        PluginAction::Remove { id } => remove(&id),
    }
}

fn new(name: &str, dir: &Path) -> Result<(), Failure> {
    let created = authoring::new_plugin(name, dir, SdkSource::detect())
        .map_err(|err| Failure::usage(err.to_string()))?;
    output::note(&format!(
        "Created {}.\nNext: cd {} && imageai plugin build && imageai plugin install .",
        created.display(),
        created.display()
    ));
    Ok(())
}

fn build(path: &Path, release: bool) -> Result<PathBuf, Failure> {
    output::note(&format!("Building {} for wasm32-wasip2…", path.display()));
    let built =
        authoring::build_plugin(path, release).map_err(|err| Failure::other(err.to_string()))?;
    output::note(&format!(
        "Built plugin `{}` in {}",
        built.manifest_id,
        built.dir.display()
    ));
    Ok(built.dir)
}

/// Install a built plugin folder, or build a plugin crate first. Validated before copying.
fn install(path: &Path) -> Result<(), Failure> {
    let dir = if path.join(MANIFEST_FILE).is_file() && path.join(COMPONENT_FILE).is_file() {
        path.to_path_buf()
    } else if path.join("Cargo.toml").is_file() {
        build(path, true)?
    } else {
        return Err(Failure::usage(format!(
            "{} is neither a built plugin (plugin.toml + plugin.wasm) nor a plugin crate (Cargo.toml)",
            path.display()
        )));
    };
    let core = super::open_core(false)?;
    let manifest = registry::install(core.runtime(), &dir, &core.paths.plugins_dir())
        .map_err(|err| Failure::new(crate::exit::PLUGIN, "plugin", err.to_string()))?;
    output::note(&format!(
        "Installed {} {} ({}). It may reach: {}.",
        manifest.name,
        manifest.version,
        manifest.id,
        if manifest.allowed_hosts.is_empty() {
            "only its configured URLs".into()
        } else {
            manifest.allowed_hosts.join(", ")
        }
    ));
    Ok(())
}

fn list(json: bool) -> Result<(), Failure> {
    let core = super::open_core(json)?;
    if json {
        let value: Vec<serde_json::Value> = core
            .providers()
            .iter()
            .map(|entry| {
                let m = &entry.manifest;
                serde_json::json!({
                    "id": m.id, "name": m.name, "version": m.version, "contract": m.contract,
                    "allowed_hosts": m.allowed_hosts, "source": format!("{:?}", entry.source).to_lowercase(),
                    "enabled": core.config.is_plugin_enabled(&m.id), "path": entry.dir,
                })
            })
            .collect();
        output::json(&serde_json::Value::Array(value));
        return Ok(());
    }
    for entry in core.providers() {
        let m = &entry.manifest;
        let state = if core.config.is_plugin_enabled(&m.id) {
            ""
        } else {
            " [disabled]"
        };
        output::line(&format!(
            "{:<14} {} {} (contract {}, {:?}){state}\n{:<14} hosts: {}\n{:<14} {}",
            m.id,
            m.name,
            m.version,
            m.contract,
            entry.source,
            "",
            m.allowed_hosts.join(", "),
            "",
            entry.dir.display()
        ));
    }
    Ok(())
}

fn remove(id: &str) -> Result<(), Failure> {
    let core = super::open_core(false)?;
    registry::remove(id, &core.paths.plugins_dir())
        .map_err(|err| Failure::usage(err.to_string()))?;
    output::note(&format!("Removed plugin {id}."));
    Ok(())
}
