//! The Settings tab: per provider its key (masked, with reveal, test and remove) and settings
//! such as the base URL; the output folder, default provider and theme. Saved at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use imageai_core::Secret;
use imageai_core::app::Core;
use imageai_core::config::Config;

use crate::app::{App, ProviderState, Theme, set_gui};
use crate::background::Background;
use crate::widgets;

/// What the user is editing for one provider.
#[derive(Default)]
pub struct ProviderForm {
    /// A new key being typed (never filled with the stored key).
    pub key: String,
    pub reveal: bool,
    pub settings: BTreeMap<String, String>,
    /// Where the current key comes from, or why none is found.
    pub key_source: Option<String>,
    pub testing: bool,
    pub test_result: Option<Result<String, String>>,
}

pub struct SettingsTab {
    pub forms: BTreeMap<String, ProviderForm>,
    pub output_dir: String,
}

impl SettingsTab {
    pub fn new(core: &Core) -> Self {
        let forms = core
            .providers()
            .iter()
            .map(|e| {
                let settings = core.config.provider_settings(e.id());
                let settings = e
                    .manifest
                    .settings
                    .iter()
                    .map(|s| {
                        (
                            s.name.clone(),
                            settings.get(&s.name).cloned().unwrap_or_default(),
                        )
                    })
                    .collect();
                (
                    e.id().to_owned(),
                    ProviderForm {
                        settings,
                        ..ProviderForm::default()
                    },
                )
            })
            .collect();
        Self {
            forms,
            output_dir: core.paths.output_dir().display().to_string(),
        }
    }

    /// Look up where each provider's key comes from (the keyring can be slow: in the background).
    pub fn refresh_key_sources(&mut self, core: &Core, background: &Background) {
        for entry in core.providers() {
            if entry.manifest.key.is_none() {
                if let Some(form) = self.forms.get_mut(entry.id()) {
                    form.key_source = Some("needs no key".into());
                }
                continue;
            }
            let id = entry.id().to_owned();
            let manifest = entry.manifest.clone();
            let keys = core.keys.clone();
            let config = core.config.clone();
            background.spawn("key-source", move || {
                let env = manifest
                    .key
                    .as_ref()
                    .and_then(|k| k.env.clone())
                    .or_else(|| {
                        imageai_core::keys::default_env_var(&manifest.id).map(str::to_owned)
                    });
                let text = match imageai_core::keys::resolve(
                    &id,
                    None,
                    None,
                    env.as_deref(),
                    &keys,
                    &config,
                ) {
                    Ok(Some(found)) => format!("key set (from {})", found.source),
                    Ok(None) => "no key set".to_owned(),
                    Err(err) => format!("the key could not be read: {err}"),
                };
                Box::new(move |app: &mut App| {
                    if let Some(form) = app.settings.forms.get_mut(&id) {
                        form.key_source = Some(text);
                    }
                })
            });
        }
    }
}

pub(crate) fn ui(app: &mut App, ui: &mut egui::Ui) {
    egui::ScrollArea::vertical()
        .id_salt("settings")
        .show(ui, |ui| {
            ui.heading("General");
            general_ui(app, ui);
            ui.separator();
            ui.heading("Providers");
            let entries: Vec<(String, String)> = app
                .core
                .providers()
                .iter()
                .map(|e| (e.id().to_owned(), e.manifest.name.clone()))
                .collect();
            if entries.is_empty() {
                ui.label("No providers installed. See the Plugins tab.");
            }
            for (id, name) in entries {
                egui::CollapsingHeader::new(&name)
                    .id_salt(("provider-settings", &id))
                    .default_open(true)
                    .show(ui, |ui| provider_ui(app, ui, &id, &name));
            }
        });
}

fn general_ui(app: &mut App, ui: &mut egui::Ui) {
    let response = widgets::text_field(ui, "Output folder", &mut app.settings.output_dir);
    if response.lost_focus() {
        let dir = app.settings.output_dir.trim().to_owned();
        let current = app.core.paths.output_dir().display().to_string();
        if !dir.is_empty() && dir != current {
            let path = imageai_core::paths::expand_tilde(&dir);
            app.core.paths = app.core.paths.clone().with_output_dir(Some(path.clone()));
            app.change_config(Arc::new(move |c: &mut Config| {
                c.set_output_dir(Some(&path))
            }));
            app.history.reload(&app.core, &app.background);
        }
    }
    let mut default = app.core.config.default_provider().unwrap_or_default();
    let mut choices = vec![(String::new(), "(ask each time)".to_owned())];
    choices.extend(
        app.core
            .providers()
            .iter()
            .map(|e| (e.id().to_owned(), e.manifest.name.clone())),
    );
    if widgets::choice(ui, "Default provider", &mut default, &choices) {
        app.change_config(Arc::new(move |c: &mut Config| {
            if default.is_empty() {
                c.remove("default_provider");
            } else {
                c.set_default_provider(&default);
            }
        }));
    }
    ui.horizontal(|ui| {
        ui.label("Theme:");
        let mut theme = app.theme;
        ui.radio_value(&mut theme, Theme::System, "System");
        ui.radio_value(&mut theme, Theme::Light, "Light");
        ui.radio_value(&mut theme, Theme::Dark, "Dark");
        if theme != app.theme {
            app.theme = theme;
            let name = theme.as_str();
            app.change_config(Arc::new(move |c: &mut Config| set_gui(c, "theme", name)));
        }
    });
}

fn provider_ui(app: &mut App, ui: &mut egui::Ui, id: &str, name: &str) {
    let Ok(entry) = app.core.entry(id) else {
        return;
    };
    let manifest = entry.manifest.clone();
    let Some(form) = app.settings.forms.get_mut(id) else {
        return;
    };
    if let Some(source) = &form.key_source {
        ui.weak(source);
    }
    let mut save_key = false;
    let mut remove_key = false;
    let mut test_key = false;
    if let Some(spec) = &manifest.key {
        ui.horizontal(|ui| {
            let label = ui.label(format!("{name} API key"));
            let edit = ui
                .add(
                    egui::TextEdit::singleline(&mut form.key)
                        .password(!form.reveal)
                        .hint_text("paste a new key")
                        .desired_width(320.0),
                )
                .labelled_by(label.id);
            if edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                save_key = true;
            }
            ui.checkbox(&mut form.reveal, format!("Show {name} key"));
        });
        ui.horizontal(|ui| {
            save_key |= ui
                .add_enabled(
                    !form.key.trim().is_empty(),
                    egui::Button::new(format!("Save {name} key")),
                )
                .clicked();
            test_key = ui
                .add_enabled(!form.testing, egui::Button::new(format!("Test {name} key")))
                .clicked();
            remove_key = ui.button(format!("Remove {name} key")).clicked();
            if form.testing {
                ui.spinner();
            }
        });
        if !spec.help.is_empty() {
            ui.weak(&spec.help);
        }
        match &form.test_result {
            Some(Ok(message)) => {
                ui.colored_label(egui::Color32::from_rgb(40, 160, 60), message);
            }
            Some(Err(message)) => {
                ui.colored_label(ui.visuals().error_fg_color, message);
            }
            None => {}
        }
    }
    let mut changed_setting = None;
    for spec in &manifest.settings {
        let value = form.settings.entry(spec.name.clone()).or_default();
        let label = if spec.label.is_empty() {
            spec.name.clone()
        } else {
            spec.label.clone()
        };
        let response = ui
            .horizontal(|ui| {
                let label = ui.label(format!("{name} {label}"));
                ui.add(
                    egui::TextEdit::singleline(value)
                        .hint_text(spec.default.clone().unwrap_or_default())
                        .desired_width(320.0),
                )
                .labelled_by(label.id)
            })
            .inner;
        if response.lost_focus() {
            changed_setting = Some((spec.name.clone(), value.trim().to_owned()));
        }
    }
    if let Some((setting, value)) = changed_setting
        && app
            .core
            .config
            .provider_setting(id, &setting)
            .unwrap_or_default()
            != value
    {
        let id = id.to_owned();
        app.change_config(Arc::new(move |c: &mut Config| {
            if value.is_empty() {
                c.remove_provider_setting(&id, &setting);
            } else {
                c.set_provider_setting(&id, &setting, &value);
            }
        }));
    }
    if save_key {
        save(app, id);
    }
    if remove_key {
        remove(app, id);
    }
    if test_key {
        test(app, id);
    }
}

fn save(app: &mut App, id: &str) {
    let Some(form) = app.settings.forms.get_mut(id) else {
        return;
    };
    let key = Secret::new(form.key.trim());
    form.key.clear();
    form.reveal = false;
    form.test_result = None;
    let keys = app.core.keys.clone();
    let id = id.to_owned();
    app.background.spawn("save-key", move || {
        let saved = keys.set(&id, &key);
        Box::new(move |app: &mut App| {
            match saved {
                Ok(()) => app.info(format!(
                    "Saved the {id} key in {}.",
                    app.core.keys.backend()
                )),
                Err(err) => app.error(format!("The {id} key was not saved: {err}")),
            }
            app.settings.refresh_key_sources(&app.core, &app.background);
        })
    });
}

fn remove(app: &mut App, id: &str) {
    let keys = app.core.keys.clone();
    let id = id.to_owned();
    let from_config = app.core.config.stored_key(&id).is_some();
    if from_config {
        let id = id.clone();
        app.change_config(Arc::new(move |c: &mut Config| {
            c.remove_stored_key(&id);
        }));
    }
    app.background.spawn("remove-key", move || {
        let removed = keys.remove(&id);
        Box::new(move |app: &mut App| {
            match removed {
                Ok(true) => app.info(format!("Removed the {id} key.")),
                Ok(false) if from_config => app.info(format!("Removed the {id} key.")),
                Ok(false) => app.info(format!("No {id} key was stored.")),
                Err(err) => app.error(format!("The {id} key was not removed: {err}")),
            }
            app.settings.refresh_key_sources(&app.core, &app.background);
        })
    });
}

/// Check the typed key (or, with none typed, the stored one) with the provider, in the background.
fn test(app: &mut App, id: &str) {
    let set_result = |app: &mut App, result: Result<String, String>| {
        if let Some(form) = app.settings.forms.get_mut(id) {
            form.test_result = Some(result);
        }
    };
    let loaded = match app.provider_state(id) {
        ProviderState::Ready { provider, .. } => Some(provider),
        ProviderState::Failed(message) => return set_result(app, Err(message)),
        ProviderState::Loading => None,
    };
    let plan = match app.context_plan(id) {
        Ok(plan) => plan,
        Err(message) => return set_result(app, Err(message)),
    };
    let loader = match app.loader(id) {
        Ok(loader) => loader,
        Err(message) => return set_result(app, Err(message)),
    };
    let Some(form) = app.settings.forms.get_mut(id) else {
        return;
    };
    let typed = Some(form.key.trim().to_owned())
        .filter(|k| !k.is_empty())
        .map(Secret::new);
    form.testing = true;
    form.test_result = None;
    let id = id.to_owned();
    app.background.spawn("test-key", move || {
        // Not loaded yet: load it here rather than make the user press Test again.
        let provider = match loaded {
            Some(provider) => Ok(provider),
            None => loader.load(&id),
        };
        let result = provider
            .and_then(|provider| {
                plan.context(typed).and_then(|ctx| {
                    provider.check_key(&ctx).map_err(|e| {
                        format!("The key did not work: {e}. Check it, or get a new one from the provider.")
                    })
                })
            })
            .map(|()| "The key works.".to_owned());
        Box::new(move |app: &mut App| {
            if let Some(form) = app.settings.forms.get_mut(&id) {
                form.testing = false;
                form.test_result = Some(result);
            }
        })
    });
}
