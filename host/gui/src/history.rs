//! The History tab: a virtualized thumbnail grid over the output folder, search, a details panel
//! with all metadata, re-run, and delete with undo (files are moved aside until the next delete).

use std::path::{Path, PathBuf};

use imageai_core::app::Core;
use imageai_core::history::{self, Entry};

use crate::app::{App, Tab};
use crate::background::Background;
use crate::widgets;

/// The grid cell, thumbnail plus margin.
const CELL: f32 = 168.0;
const THUMB: f32 = 160.0;

#[derive(Default)]
pub struct HistoryTab {
    pub entries: Vec<Entry>,
    /// Indices into `entries` matching the search.
    pub shown: Vec<usize>,
    pub query: String,
    searched: Option<String>,
    pub selected: Option<PathBuf>,
    pub loading: bool,
    pub error: Option<String>,
    /// The last deletion: where each file was moved, and where it came from.
    pub undo: Option<Vec<(PathBuf, PathBuf)>>,
    /// The folder typed in to import.
    pub import_path: String,
    pub importing: bool,
}

impl HistoryTab {
    /// Read the output folder again, in the background.
    pub fn reload(&mut self, core: &Core, background: &Background) {
        self.loading = true;
        let dir = core.paths.output_dir();
        background.spawn("history", move || {
            let listed = history::list(&dir);
            Box::new(move |app: &mut App| {
                app.history.loading = false;
                match listed {
                    Ok(entries) => {
                        app.history.set_entries(entries);
                        app.history.error = None;
                    }
                    Err(err) => app.history.error = Some(err.to_string()),
                }
            })
        });
    }

    /// Replace the entries (the benchmark feeds synthetic ones this way).
    pub fn set_entries(&mut self, entries: Vec<Entry>) {
        self.entries = entries;
        self.searched = None;
        self.filter();
    }

    fn filter(&mut self) {
        if self.searched.as_deref() == Some(self.query.as_str()) {
            return;
        }
        let query = self.query.as_str();
        self.shown = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| !history::search(std::slice::from_ref(*e), query).is_empty())
            .map(|(i, _)| i)
            .collect();
        self.searched = Some(self.query.clone());
    }

    fn selected_entry(&self) -> Option<&Entry> {
        let selected = self.selected.as_ref()?;
        self.entries
            .iter()
            .find(|e| e.image.as_ref() == Some(selected) || e.sidecar.as_ref() == Some(selected))
    }
}

fn entry_key(entry: &Entry) -> Option<PathBuf> {
    entry.image.clone().or_else(|| entry.sidecar.clone())
}

pub(crate) fn ui(app: &mut App, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        let label = ui.label("Search");
        ui.add(
            egui::TextEdit::singleline(&mut app.history.query)
                .hint_text("prompt, provider, model or date (2026-11-23)")
                .desired_width(320.0),
        )
        .labelled_by(label.id);
        if ui.button("Refresh").clicked() {
            app.history.reload(&app.core, &app.background);
        }
        if app.history.loading {
            ui.spinner();
        }
        ui.label(format!(
            "{} of {} images",
            app.history.shown.len(),
            app.history.entries.len()
        ));
        if app.history.undo.is_some() && ui.button("Undo delete").clicked() {
            undo_delete(app);
        }
    });
    ui.horizontal(|ui| {
        let mut go = widgets::hinted_field(
            ui,
            "Folder to import",
            &mut app.history.import_path,
            "another ImageAI output folder (images with .json sidecars)",
            360.0,
        );
        go |= ui
            .add_enabled(!app.history.importing, egui::Button::new("Import folder"))
            .clicked();
        if ui
            .add_enabled(
                !app.history.importing,
                egui::Button::new("Choose folder to import…"),
            )
            .clicked()
        {
            crate::files::pick_folder(app, import);
        }
        if app.history.importing {
            ui.spinner();
        }
        if go && !app.history.import_path.trim().is_empty() {
            let folder = imageai_core::paths::expand_tilde(app.history.import_path.trim());
            import(app, folder);
        }
    });
    app.history.filter();
    if let Some(error) = &app.history.error {
        ui.colored_label(ui.visuals().error_fg_color, error);
    }
    if app.history.selected_entry().is_some() {
        egui::Panel::right("history-details")
            .resizable(true)
            .default_size(340.0)
            .show(ui, |ui| details_ui(app, ui));
    }
    if app.history.entries.is_empty() && !app.history.loading {
        ui.label(format!(
            "No images yet in {}. Make some on the Generate tab.",
            app.core.paths.output_dir().display()
        ));
        return;
    }
    grid_ui(app, ui);
}

fn grid_ui(app: &mut App, ui: &mut egui::Ui) {
    let columns = ((ui.available_width() / CELL).floor() as usize).max(1);
    let rows = app.history.shown.len().div_ceil(columns);
    let mut clicked = None;
    egui::ScrollArea::vertical()
        .id_salt("history-grid")
        .auto_shrink([false, false])
        .show_rows(ui, CELL, rows, |ui, range| {
            for row in range {
                ui.horizontal(|ui| {
                    for col in 0..columns {
                        let Some(&index) = app.history.shown.get(row * columns + col) else {
                            break;
                        };
                        let entry = &app.history.entries[index];
                        let name = entry.name();
                        let response = match &entry.image {
                            Some(path) => crate::thumbs::thumbnail(
                                ui,
                                &mut app.thumbs,
                                path,
                                egui::vec2(THUMB, THUMB),
                                &name,
                            ),
                            None => ui.add_sized(
                                [THUMB, THUMB],
                                egui::Button::new(format!("missing image\n{name}")),
                            ),
                        };
                        let response = match entry.prompt() {
                            Some(prompt) => response.on_hover_text(prompt),
                            None => response,
                        };
                        if response.clicked() {
                            clicked = entry_key(entry);
                        }
                    }
                });
            }
        });
    if clicked.is_some() {
        app.history.selected = clicked;
    }
}

fn details_ui(app: &mut App, ui: &mut egui::Ui) {
    let Some(entry) = app.history.selected_entry().cloned() else {
        return;
    };
    ui.heading("Details");
    ui.label(entry.name());
    if let Some(problem) = &entry.problem {
        ui.colored_label(ui.visuals().warn_fg_color, problem);
    }
    ui.horizontal(|ui| {
        if ui.button("Re-run").clicked() {
            rerun(app, &entry);
        }
        if ui.button("Delete").clicked() {
            delete(app, &entry);
        }
        if let Some(dir) = entry.image.as_ref().and_then(|p| p.parent())
            && ui.button("Open folder").clicked()
        {
            open_in_file_manager(app, dir.to_path_buf());
        }
        if ui.button("Close details").clicked() {
            app.history.selected = None;
        }
    });
    ui.separator();
    egui::ScrollArea::vertical()
        .id_salt("history-metadata")
        .show(ui, |ui| match &entry.metadata {
            Some(sidecar) => {
                egui::Grid::new("metadata")
                    .num_columns(2)
                    .striped(true)
                    .show(ui, |ui| {
                        for (key, value) in &sidecar.0 {
                            ui.label(key);
                            let text = match value {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            ui.add(egui::Label::new(text).wrap());
                            ui.end_row();
                        }
                    });
            }
            None => {
                ui.weak("No metadata (no sidecar file).");
            }
        });
}

/// Put the entry's prompt and model back on the Generate tab.
fn rerun(app: &mut App, entry: &Entry) {
    if let Some(prompt) = entry.prompt() {
        app.generate.prompt = prompt.to_owned();
    }
    if let Some(negative) = entry.metadata.as_ref().and_then(|m| m.negative_prompt()) {
        app.generate.negative_prompt = negative.to_owned();
    }
    if let Some(provider) = entry.provider() {
        app.generate.provider = Some(provider.to_owned());
    }
    app.generate.model = entry.model().map(str::to_owned);
    if let Some(seed) = entry.metadata.as_ref().and_then(|m| m.seed()) {
        app.generate.last_seed = Some(seed);
    }
    app.set_tab(Tab::Generate);
}

/// Move the entry's files into the trash folder (so Undo can put them back), in the background.
fn delete(app: &mut App, entry: &Entry) {
    let trash = app.core.paths.cache_dir().join("trash");
    let files: Vec<PathBuf> = [&entry.image, &entry.sidecar]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let name = entry.name();
    for file in &files {
        app.thumbs.forget(file);
    }
    // Deleting a second entry makes the first one's deletion final.
    if let Some(previous) = app.history.undo.take() {
        app.background.spawn("empty-trash", move || {
            for (moved, _) in previous {
                let _ = std::fs::remove_file(moved);
            }
            Box::new(|_: &mut App| {})
        });
    }
    app.history.selected = None;
    app.background.spawn("delete", move || {
        let moved = move_all(&files, &trash);
        Box::new(move |app: &mut App| {
            match moved {
                Ok(moved) => {
                    app.history.undo = Some(moved);
                    app.info(format!(
                        "Deleted {name}. Press Undo delete on the History tab to bring it back."
                    ));
                }
                Err(message) => app.error(message),
            }
            app.history.reload(&app.core, &app.background);
        })
    });
}

fn move_all(files: &[PathBuf], trash: &Path) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S%3f").to_string();
    let dir = trash.join(stamp);
    std::fs::create_dir_all(&dir).map_err(|e| {
        format!("could not delete: the trash folder could not be made ({e}); check the cache folder's permissions: {}", dir.display())
    })?;
    let mut moved = Vec::new();
    for file in files {
        let Some(name) = file.file_name() else {
            continue;
        };
        let to = dir.join(name);
        let result = std::fs::rename(file, &to).or_else(|_| {
            // Another file system: copy, then remove.
            std::fs::copy(file, &to).and_then(|_| std::fs::remove_file(file))
        });
        match result {
            Ok(()) => moved.push((to, file.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "could not delete {} ({e}); check the folder's permissions",
                    file.display()
                ));
            }
        }
    }
    Ok(moved)
}

fn undo_delete(app: &mut App) {
    let Some(moved) = app.history.undo.take() else {
        return;
    };
    app.background.spawn("undo-delete", move || {
        let mut failed = Vec::new();
        for (from, to) in moved {
            let result = std::fs::rename(&from, &to)
                .or_else(|_| std::fs::copy(&from, &to).and_then(|_| std::fs::remove_file(&from)));
            if let Err(e) = result {
                failed.push(format!("{} ({e})", to.display()));
            }
        }
        Box::new(move |app: &mut App| {
            if failed.is_empty() {
                app.info("Restored the deleted image.");
            } else {
                app.error(format!("Could not restore: {}", failed.join(", ")));
            }
            app.history.reload(&app.core, &app.background);
        })
    });
}

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub copied: usize,
    /// Already in the output folder (same name and size).
    pub present: usize,
    /// Sidecars whose image is missing.
    pub skipped: usize,
}

/// Copy the images of another ImageAI output folder (the Python app's `generated/`, an older
/// install's) with their sidecars into `output`, where History reads them. Nothing is
/// overwritten: a different file of the same name is copied under a new name.
pub fn import_folder(from: &Path, output: &Path) -> Result<Imported, String> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !from.is_dir() {
        return Err(format!("There is no folder at {}", from.display()));
    }
    if same(from, output) {
        return Err(format!(
            "That is already the output folder, so its images are in History: {}",
            from.display()
        ));
    }
    let entries = history::list(from).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(output).map_err(|e| {
        format!(
            "could not create the output folder ({e}); check its permissions: {}",
            output.display()
        )
    })?;
    let mut done = Imported::default();
    for entry in entries {
        let Some(image) = &entry.image else {
            done.skipped += 1;
            continue;
        };
        let Some(name) = image.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let size = std::fs::metadata(image).map(|m| m.len()).ok();
        let mut target = output.join(&name);
        if target.exists() {
            if std::fs::metadata(&target).map(|m| m.len()).ok() == size {
                done.present += 1;
                continue;
            }
            let (stem, ext) = name.rsplit_once('.').unwrap_or((name.as_str(), "png"));
            let mut n = 2;
            while target.exists() {
                target = output.join(format!("{stem}-{n}.{ext}"));
                n += 1;
            }
        }
        std::fs::copy(image, &target).map_err(|e| {
            format!(
                "could not copy {} ({e}); check free space and the folder's permissions: {}",
                image.display(),
                output.display()
            )
        })?;
        if let Some(sidecar) = &entry.sidecar {
            let to = history::sidecar_path(&target);
            std::fs::copy(sidecar, &to).map_err(|e| {
                format!(
                    "could not copy {} ({e}); check free space and the folder's permissions",
                    sidecar.display()
                )
            })?;
        }
        done.copied += 1;
    }
    Ok(done)
}

/// Import `folder` in the background, then show History again.
pub(crate) fn import(app: &mut App, folder: PathBuf) {
    app.history.importing = true;
    let output = app.core.paths.output_dir();
    app.background.spawn("import-history", move || {
        let imported = import_folder(&folder, &output);
        Box::new(move |app: &mut App| {
            app.history.importing = false;
            match imported {
                Ok(done) => {
                    app.history.import_path.clear();
                    let mut message = format!(
                        "Imported {} image(s) from {}.",
                        done.copied,
                        folder.display()
                    );
                    if done.present > 0 {
                        message.push_str(&format!(" {} were already here.", done.present));
                    }
                    if done.skipped > 0 {
                        message.push_str(&format!(
                            " {} sidecar(s) without an image were left out.",
                            done.skipped
                        ));
                    }
                    app.info(message);
                }
                Err(message) => app.error(format!("Nothing was imported: {message}")),
            }
            app.history.reload(&app.core, &app.background);
        })
    });
}

/// Open a folder in the system's file manager (in the background: it may take a moment).
pub(crate) fn open_in_file_manager(app: &mut App, dir: PathBuf) {
    app.background.spawn("open-folder", move || {
        let program = if cfg!(target_os = "windows") {
            "explorer"
        } else if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        let result = std::process::Command::new(program).arg(&dir).spawn();
        Box::new(move |app: &mut App| {
            if let Err(err) = result {
                app.error(format!(
                    "Could not open the folder with {program} ({err}); it is {}",
                    dir.display()
                ));
            }
        })
    });
}
