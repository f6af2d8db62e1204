//! The Plugins tab: installed provider plugins with version, contract and allowed hosts;
//! enable / disable; install from a folder or file (validated by loading it before it is
//! copied); remove user-installed ones.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use imageai_core::config::Config;
use imageai_core::plugin::manifest::{COMPONENT_FILE, MANIFEST_FILE};
use imageai_core::plugin::registry::{self, Source};

use crate::app::App;
use crate::widgets;

#[derive(Default)]
pub struct PluginsTab {
    pub install_path: String,
    pub installing: bool,
    pub error: Option<String>,
}

/// The plugin folder for what the user gave: the folder itself, or the folder of its
/// `plugin.toml` / `plugin.wasm`.
fn plugin_folder(given: &Path) -> PathBuf {
    let is_plugin_file = given
        .file_name()
        .is_some_and(|n| n == MANIFEST_FILE || n == COMPONENT_FILE);
    if is_plugin_file {
        given.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        given.to_path_buf()
    }
}

pub(crate) fn ui(app: &mut App, ui: &mut egui::Ui) {
    let dropped: Vec<PathBuf> = ui.ctx().input(|i| {
        i.raw
            .dropped_files
            .iter()
            .map(|f| f.path().to_path_buf())
            .collect()
    });
    if let Some(path) = dropped.first() {
        app.plugins.install_path = path.display().to_string();
    }
    ui.heading("Install a plugin");
    ui.horizontal(|ui| {
        let enter = widgets::hinted_field(
            ui,
            "Plugin folder or plugin.toml",
            &mut app.plugins.install_path,
            "drop a plugin folder here",
            360.0,
        );
        let ready = !app.plugins.install_path.trim().is_empty() && !app.plugins.installing;
        if (ui
            .add_enabled(ready, egui::Button::new("Install"))
            .clicked()
            || enter)
            && ready
        {
            install(app);
        }
        if app.plugins.installing {
            ui.spinner();
        }
    });
    if let Some(error) = &app.plugins.error {
        ui.colored_label(ui.visuals().error_fg_color, error);
    }
    ui.separator();
    ui.heading("Installed");
    let rows: Vec<_> = app
        .core
        .providers()
        .iter()
        .map(|e| (e.manifest.clone(), e.source, e.dir.clone()))
        .collect();
    if rows.is_empty() {
        ui.label("No plugins found. Build the bundled ones with `cargo xtask plugins`, or install one above.");
        return;
    }
    let mut toggle = None;
    let mut remove = None;
    egui::ScrollArea::vertical()
        .id_salt("plugins")
        .show(ui, |ui| {
            egui::Grid::new("plugins-grid")
                .num_columns(7)
                .striped(true)
                .show(ui, |ui| {
                    for title in [
                        "Enabled",
                        "Plugin",
                        "Version",
                        "Contract",
                        "Allowed hosts",
                        "Source",
                        "",
                    ] {
                        ui.strong(title);
                    }
                    ui.end_row();
                    for (manifest, source, dir) in &rows {
                        let mut enabled = app.core.config.is_plugin_enabled(&manifest.id);
                        if ui
                            .checkbox(&mut enabled, format!("Enable {}", manifest.name))
                            .changed()
                        {
                            toggle = Some((manifest.id.clone(), enabled));
                        }
                        ui.label(&manifest.name)
                            .on_hover_text(dir.display().to_string());
                        ui.label(&manifest.version);
                        ui.label(&manifest.contract);
                        ui.label(manifest.allowed_hosts.join(", "));
                        ui.label(match source {
                            Source::Bundled => "bundled",
                            Source::User => "installed",
                        });
                        if *source == Source::User
                            && ui.button(format!("Remove {}", manifest.name)).clicked()
                        {
                            remove = Some(manifest.id.clone());
                        } else if *source != Source::User {
                            ui.label("");
                        }
                        ui.end_row();
                    }
                });
        });
    if let Some((id, enabled)) = toggle {
        app.providers.remove(&id);
        app.change_config(Arc::new(move |c: &mut Config| {
            c.set_plugin_enabled(&id, enabled)
        }));
    }
    if let Some(id) = remove {
        let dir = app.core.paths.plugins_dir();
        app.background.spawn("remove-plugin", move || {
            let removed = registry::remove(&id, &dir);
            Box::new(move |app: &mut App| match removed {
                Ok(()) => {
                    app.info(format!("Removed the {id} plugin."));
                    app.reopen_core();
                }
                Err(err) => app.error(format!("The {id} plugin was not removed: {err}")),
            })
        });
    }
}

fn install(app: &mut App) {
    let given = imageai_core::paths::expand_tilde(app.plugins.install_path.trim());
    let folder = plugin_folder(&given);
    app.plugins.installing = true;
    app.plugins.error = None;
    let runtime = app.core.runtime().clone();
    let dir = app.core.paths.plugins_dir();
    app.background.spawn("install-plugin", move || {
        let installed = registry::install(&runtime, &folder, &dir);
        Box::new(move |app: &mut App| {
            app.plugins.installing = false;
            match installed {
                Ok(manifest) => {
                    app.plugins.install_path.clear();
                    app.info(format!("Installed {} {}.", manifest.name, manifest.version));
                    app.reopen_core();
                }
                Err(err) => {
                    app.plugins.error = Some(format!(
                        "Not installed: {err}. A plugin folder holds {MANIFEST_FILE} and {COMPONENT_FILE}."
                    ));
                }
            }
        })
    });
}
