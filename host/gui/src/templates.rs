//! The Templates tab: list, create, edit and delete prompt templates with `[placeholder]`
//! defaults, optionally for one provider; "Use" sends one to the Generate tab.

use std::collections::BTreeMap;

use imageai_core::paths::Paths;
use imageai_core::templates::{Template, TemplateSource, TemplateStore};

use crate::app::{App, Tab};
use crate::widgets;

/// The template being edited.
#[derive(Default, Clone)]
pub struct Draft {
    /// The name it was loaded under (`None`: a new template).
    pub original: Option<String>,
    pub name: String,
    pub text: String,
    pub provider: String,
    pub description: String,
    pub negative: String,
    pub defaults: BTreeMap<String, String>,
}

pub struct TemplatesTab {
    pub store: TemplateStore,
    pub draft: Option<Draft>,
    pub error: Option<String>,
    warning: Option<String>,
}

impl TemplatesTab {
    pub fn new(paths: &Paths) -> Self {
        match TemplateStore::load(paths) {
            Ok(loaded) => Self {
                store: loaded.store,
                draft: None,
                error: None,
                warning: loaded.warning.map(|w| w.to_string()),
            },
            Err(err) => Self {
                store: builtins_only(),
                draft: None,
                error: None,
                warning: Some(format!(
                    "{err}. Only the built-in templates are shown; templates you save now go to a temporary file."
                )),
            },
        }
    }

    pub(crate) fn take_warning(&mut self) -> Option<String> {
        self.warning.take()
    }
}

/// A store with the built-in templates only, saving into a fresh temporary folder.
fn builtins_only() -> TemplateStore {
    let paths =
        Paths::at(std::env::temp_dir().join(format!("imageai-templates-{}", std::process::id())));
    match TemplateStore::load(&paths) {
        Ok(loaded) => loaded.store,
        // Loading from a folder that does not exist reads no file, so it cannot fail; stop
        // rather than run on without the templates module if that ever changes.
        Err(err) => {
            tracing::error!("no templates could be loaded: {err}");
            std::process::abort()
        }
    }
}

pub(crate) fn ui(app: &mut App, ui: &mut egui::Ui) {
    egui::Panel::left("template-list")
        .resizable(true)
        .default_size(260.0)
        .show(ui, |ui| list_ui(app, ui));
    egui::ScrollArea::vertical()
        .id_salt("template-editor")
        .show(ui, |ui| editor_ui(app, ui));
}

fn list_ui(app: &mut App, ui: &mut egui::Ui) {
    if ui.button("New template").clicked() {
        app.templates.draft = Some(Draft::default());
    }
    ui.separator();
    let listed: Vec<(Template, TemplateSource)> = app
        .templates
        .store
        .list(None)
        .into_iter()
        .map(|l| (l.template.clone(), l.source))
        .collect();
    egui::ScrollArea::vertical()
        .id_salt("template-names")
        .show(ui, |ui| {
            for (template, source) in listed {
                let selected = app
                    .templates
                    .draft
                    .as_ref()
                    .and_then(|d| d.original.as_deref())
                    == Some(template.name.as_str());
                let text = match (source, &template.provider) {
                    (TemplateSource::BuiltIn, _) => format!("{} (built-in)", template.name),
                    (_, Some(provider)) => format!("{} ({provider})", template.name),
                    _ => template.name.clone(),
                };
                if ui.selectable_label(selected, text).clicked() {
                    app.templates.draft = Some(Draft {
                        original: Some(template.name.clone()),
                        name: template.name.clone(),
                        text: template.template.clone(),
                        provider: template.provider.clone().unwrap_or_default(),
                        description: template.description.clone().unwrap_or_default(),
                        negative: template.negative.clone().unwrap_or_default(),
                        defaults: template.defaults.clone(),
                    });
                    app.templates.error = None;
                }
            }
        });
}

fn editor_ui(app: &mut App, ui: &mut egui::Ui) {
    let Some(draft) = app.templates.draft.as_mut() else {
        ui.label("Choose a template on the left, or make a new one.");
        return;
    };
    ui.heading(if draft.original.is_some() {
        "Edit template"
    } else {
        "New template"
    });
    widgets::text_field(ui, "Name", &mut draft.name);
    widgets::text_area(ui, "Template text (use [placeholders])", &mut draft.text, 4);
    widgets::text_field(ui, "Only for provider (blank: all)", &mut draft.provider);
    widgets::text_field(ui, "Description", &mut draft.description);
    widgets::text_field(ui, "Negative prompt", &mut draft.negative);
    let placeholders = Template::new("draft", draft.text.clone()).placeholders();
    if !placeholders.is_empty() {
        ui.label("Placeholder defaults:");
        for field in &placeholders {
            let value = draft.defaults.entry(field.clone()).or_default();
            widgets::text_field(ui, &format!("Default for {field}"), value);
        }
    }
    draft.defaults.retain(|k, _| placeholders.contains(k));
    let mut save = false;
    let mut delete = false;
    let mut use_it = false;
    ui.horizontal(|ui| {
        save = ui.button("Save template").clicked();
        use_it = ui.button("Use in Generate").clicked();
        delete = draft.original.is_some() && ui.button("Delete template").clicked();
    });
    if let Some(error) = &app.templates.error {
        ui.colored_label(ui.visuals().error_fg_color, error);
    }
    let draft = draft.clone();
    if save {
        save_draft(app, &draft);
    }
    if delete && let Some(name) = &draft.original {
        let mut store = app.templates.store.clone();
        let name = name.clone();
        app.background.spawn("delete-template", move || {
            let result = store.delete(&name);
            Box::new(move |app: &mut App| match result {
                Ok(()) => {
                    app.templates.store = store;
                    app.templates.draft = None;
                    app.info(format!("Deleted the template {name}."));
                }
                Err(err) => app.templates.error = Some(err.to_string()),
            })
        });
    }
    if use_it {
        app.generate.template = Some(draft.name.clone());
        app.generate.template_fields.clear();
        app.set_tab(Tab::Generate);
    }
}

fn optional(text: &str) -> Option<String> {
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

fn save_draft(app: &mut App, draft: &Draft) {
    let mut template = Template::new(draft.name.trim(), draft.text.trim());
    template.provider = optional(&draft.provider);
    template.description = optional(&draft.description);
    template.negative = optional(&draft.negative);
    template.defaults = draft
        .defaults
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k.clone(), v.trim().to_owned()))
        .collect();
    let mut store = app.templates.store.clone();
    let renamed_from = draft
        .original
        .clone()
        .filter(|o| !o.eq_ignore_ascii_case(template.name.trim()));
    app.background.spawn("save-template", move || {
        let name = template.name.clone();
        let result = store.save(template).and_then(|()| match &renamed_from {
            // A rename: the old user template goes (a built-in of that name stays).
            Some(old)
                if store
                    .get(old)
                    .is_some_and(|l| l.source == TemplateSource::User) =>
            {
                store.delete(old)
            }
            _ => Ok(()),
        });
        Box::new(move |app: &mut App| match result {
            Ok(()) => {
                app.templates.store = store;
                if let Some(draft) = &mut app.templates.draft {
                    draft.original = Some(name.clone());
                }
                app.templates.error = None;
                app.info(format!("Saved the template {name}."));
            }
            Err(err) => app.templates.error = Some(format!("Not saved: {err}")),
        })
    });
}
