//! The Models tab: installed local models (name, size, location) with delete. Listing and
//! deleting run in the background through the core's models manager.

use imageai_core::models::{InstalledModel, ModelManager, ModelsConfig, human_bytes};

use crate::app::App;

#[derive(Default)]
pub struct ModelsTab {
    pub models: Option<Result<Vec<InstalledModel>, String>>,
    pub loading: bool,
    pub deleting: Option<String>,
    pub confirm_delete: Option<String>,
    pub cache_dir: Option<String>,
}

impl ModelsTab {
    pub fn reload(app: &mut App) {
        app.models.loading = true;
        let config = ModelsConfig::from_settings(&app.core.paths, &app.core.config);
        app.models.cache_dir = Some(config.cache_dir.display().to_string());
        app.background.spawn("models", move || {
            let listed = ModelManager::new(config)
                .and_then(|m| m.list())
                .map_err(|e| e.to_string());
            Box::new(move |app: &mut App| {
                app.models.loading = false;
                app.models.models = Some(listed);
            })
        });
    }
}

pub(crate) fn ui(app: &mut App, ui: &mut egui::Ui) {
    if app.models.models.is_none() && !app.models.loading {
        ModelsTab::reload(app);
    }
    ui.horizontal(|ui| {
        ui.heading("Installed models");
        if ui.button("Refresh models").clicked() {
            ModelsTab::reload(app);
        }
        if app.models.loading || app.models.deleting.is_some() {
            ui.spinner();
        }
    });
    if let Some(dir) = &app.models.cache_dir {
        ui.weak(format!("Model cache: {dir}"));
    }
    ui.weak("Install models with `imageai models install <org/name>`; browsing and downloading here come next.");
    ui.separator();
    let mut delete = None;
    match &app.models.models {
        None => {
            ui.label("Looking for installed models…");
        }
        Some(Err(message)) => {
            ui.colored_label(ui.visuals().error_fg_color, message);
        }
        Some(Ok(models)) if models.is_empty() => {
            ui.label("No models installed. Install one with `imageai models install stable-diffusion-v1-5/stable-diffusion-v1-5`.");
        }
        Some(Ok(models)) => {
            egui::ScrollArea::vertical()
                .id_salt("models")
                .show(ui, |ui| {
                    egui::Grid::new("models-grid")
                        .num_columns(4)
                        .striped(true)
                        .show(ui, |ui| {
                            for title in ["Model", "Size", "", "Location"] {
                                ui.strong(title);
                            }
                            ui.end_row();
                            for model in models {
                                ui.label(&model.id);
                                ui.label(human_bytes(model.size_on_disk));
                                if app.models.confirm_delete.as_deref() == Some(model.id.as_str()) {
                                    ui.horizontal(|ui| {
                                        if ui
                                            .button(format!("Really delete {}", model.id))
                                            .clicked()
                                        {
                                            delete = Some(model.id.clone());
                                        }
                                        if ui.button("Keep it").clicked() {
                                            app.models.confirm_delete = None;
                                        }
                                    });
                                } else if ui.button(format!("Delete {}", model.id)).clicked() {
                                    app.models.confirm_delete = Some(model.id.clone());
                                }
                                // Last, so a long path moves nothing else.
                                ui.label(model.path.display().to_string());
                                ui.end_row();
                            }
                        });
                });
        }
    }
    if let Some(id) = delete {
        app.models.confirm_delete = None;
        app.models.deleting = Some(id.clone());
        let config = ModelsConfig::from_settings(&app.core.paths, &app.core.config);
        app.background.spawn("delete-model", move || {
            let removed = ModelManager::new(config)
                .and_then(|m| m.remove(&id, None))
                .map_err(|e| e.to_string());
            Box::new(move |app: &mut App| {
                app.models.deleting = None;
                match removed {
                    Ok(report) => app.info(format!(
                        "Deleted {} and freed {}.",
                        report.id,
                        human_bytes(report.freed_bytes)
                    )),
                    Err(message) => app.error(format!("{id} was not deleted: {message}")),
                }
                ModelsTab::reload(app);
            })
        });
    }
}
