//! Small helpers for labelled controls: every input gets an accessible name from its label.

/// A label followed by a single-line text field named by it.
pub fn text_field(ui: &mut egui::Ui, label: &str, value: &mut String) -> egui::Response {
    ui.horizontal(|ui| {
        let label = ui.label(label);
        ui.add(egui::TextEdit::singleline(value).desired_width(360.0))
            .labelled_by(label.id)
    })
    .inner
}

/// A label followed by a single-line field named by it, `width` wide, showing `hint` while
/// empty (in a row the caller lays out); whether Enter was pressed in it this frame.
pub fn hinted_field(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut String,
    hint: &str,
    width: f32,
) -> bool {
    let label = ui.label(label);
    let field = ui
        .add(
            egui::TextEdit::singleline(value)
                .hint_text(hint)
                .desired_width(width),
        )
        .labelled_by(label.id);
    field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter))
}

/// A label above a multi-line text field named by it.
pub fn text_area(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut String,
    rows: usize,
) -> egui::Response {
    let label = ui.label(label);
    ui.add(
        egui::TextEdit::multiline(value)
            .desired_rows(rows)
            .desired_width(f32::INFINITY),
    )
    .labelled_by(label.id)
}

/// A combo box of `(value, text)` choices named `label`.
pub fn choice<T: PartialEq + Clone>(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut T,
    choices: &[(T, String)],
) -> bool {
    let selected = choices
        .iter()
        .find(|(v, _)| v == value)
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    let mut changed = false;
    egui::ComboBox::from_label(label)
        .selected_text(selected)
        .show_ui(ui, |ui| {
            for (v, text) in choices {
                if ui.selectable_label(v == value, text).clicked() && v != value {
                    *value = v.clone();
                    changed = true;
                }
            }
        });
    changed
}

/// A button showing `text` whose accessible name is `name` (a short label in a list of many,
/// named in full for screen readers and tests: "Copy" → "Copy sunset_1.png").
pub fn named_button(ui: &mut egui::Ui, text: &str, name: &str) -> egui::Response {
    let response = ui.button(text).on_hover_text(name);
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, name));
    response
}

/// A label above a single-line text field as wide as the space (for narrow side panels).
pub fn stacked_field(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut String,
    hint: &str,
) -> egui::Response {
    let label = ui.label(label);
    ui.add(
        egui::TextEdit::singleline(value)
            .hint_text(hint)
            .desired_width(ui.available_width()),
    )
    .labelled_by(label.id)
}
