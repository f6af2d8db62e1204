//! The Help tab: quick start, where keys come from, keyboard shortcuts and the command line.

pub(crate) fn ui(ui: &mut egui::Ui) {
    egui::ScrollArea::vertical().id_salt("help").show(ui, |ui| {
        ui.heading("Quick start");
        ui.label("1. Open Settings and paste an API key for a provider (or use a local model, which needs none).");
        ui.label("2. Open Generate, choose the provider and model, type a prompt and press Generate (Ctrl+Enter).");
        ui.label("3. Your images are saved with their settings; find them again on the History tab.");
        ui.label("4. To edit an image, drop it on the window (or press Edit under a result), describe the change and press Generate. Paint a mask with the brush to change only part of it.");
        ui.label("5. Local models: install them on the Models tab, or import a single-file .safetensors checkpoint there. Images from another ImageAI folder: import them on the History tab.");
        ui.add_space(8.0);
        ui.heading("Where to get keys");
        ui.label("Each provider's section on the Settings tab says where to get its key. Keys are kept in the OS keyring when there is one, else in a private file; they are never shown unless you press Show.");
        ui.add_space(8.0);
        ui.heading("Keyboard shortcuts");
        egui::Grid::new("shortcuts").num_columns(2).show(ui, |ui| {
            for (keys, what) in [
                ("Ctrl+Enter", "Generate with the current prompt"),
                ("Tab / Shift+Tab", "Move between controls"),
            ] {
                ui.monospace(keys);
                ui.label(what);
                ui.end_row();
            }
        });
        ui.add_space(8.0);
        ui.heading("Command line");
        ui.label("`imageai` with no arguments opens this window. With arguments it is the command line:");
        for line in [
            "imageai generate -p \"a lighthouse at dusk\" --provider openai",
            "imageai keys set openai",
            "imageai history list",
            "imageai templates list",
            "imageai models list",
            "imageai plugin install ./my-plugin",
            "imageai --help",
        ] {
            ui.monospace(line);
        }
    });
}
