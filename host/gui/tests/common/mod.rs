//! Set-up shared by the GUI's integration tests (`mod common;` in each test file).
// Each test file is its own crate and uses only some of these helpers; the rest would warn.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use imageai_core::app::Core;
use imageai_core::keys::{KeyStore, KeyringMode};
use imageai_core::paths::Paths;
use imageai_gui::App;

/// The workspace root, two levels above this crate (`host/gui`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// Copies the built OpenAI plugin (`plugin.toml`, `plugin.wasm`) into `bundled/openai`.
pub fn bundle_openai(bundled: &Path) {
    let plugin = imageai_tests::plugins::plugin_dir("imageai-plugin-openai");
    let dest = bundled.join("openai");
    std::fs::create_dir_all(&dest).unwrap();
    for file in ["plugin.toml", "plugin.wasm"] {
        std::fs::copy(plugin.join(file), dest.join(file)).unwrap();
    }
}

/// An app over the config folder `paths` whose bundled plugins are in `bundled`, with a key
/// store that never touches the OS keyring.
pub fn open_with_plugins(paths: Paths, bundled: PathBuf) -> App {
    let mut core = Core::open(paths, std::slice::from_ref(&bundled)).unwrap();
    core.keys = KeyStore::open_with(&core.paths, KeyringMode::Off);
    App::new(core, vec![bundled], &egui::Context::default())
}

/// A window 1280 points wide and `height` tall, drawn with egui_kittest's default renderer.
pub fn harness_with_height(app: App, height: f32) -> Harness<'static, App> {
    Harness::builder()
        .with_size(egui::vec2(1280.0, height))
        .build_ui_state(|ui, app: &mut App| app.ui(ui), app)
}

/// A 1280×900 window.
pub fn harness(app: App) -> Harness<'static, App> {
    harness_with_height(app, 900.0)
}

/// Step frames until `done` holds, failing after `secs` with `what` and the app's messages.
pub fn wait_until(
    harness: &mut Harness<'_, App>,
    secs: u64,
    what: &str,
    done: impl Fn(&App) -> bool,
) {
    let start = Instant::now();
    loop {
        harness.step();
        if done(harness.state()) {
            // A few more frames so the result is drawn.
            harness.step();
            harness.step();
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}; messages: {:?}",
            harness.state().messages()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Focus the `role` field labelled `label` and type `text` into it.
pub fn type_into(harness: &mut Harness<'_, App>, role: Role, label: &str, text: &str) {
    harness.get_by_role_and_label(role, label).focus();
    harness.step();
    harness.get_by_role_and_label(role, label).type_text(text);
    harness.step();
}

/// Type `prompt` into the Generate tab's prompt.
pub fn type_prompt(harness: &mut Harness<'_, App>, prompt: &str) {
    type_into(harness, Role::MultilineTextInput, "Prompt", prompt);
}

/// Type `prompt` into the Generate tab's prompt and click Generate.
pub fn prompt_and_generate(harness: &mut Harness<'_, App>, prompt: &str) {
    type_prompt(harness, prompt);
    harness.get_by_label("Generate").click();
}

/// Fail, listing the app's messages, unless one of them starts with `prefix`.
pub fn assert_message(harness: &Harness<'_, App>, prefix: &str) {
    let messages = harness.state().messages();
    assert!(
        messages.iter().any(|m| m.starts_with(prefix)),
        "{messages:?}"
    );
}

/// Open the combo box labelled `label`.
pub fn open_combo(harness: &mut Harness<'_, App>, label: &str) {
    harness.get_by_role_and_label(Role::ComboBox, label).click();
    harness.run_steps(2);
}

/// Click `label` (a button, a tab, an open combo box's entry) and run two frames.
pub fn press(harness: &mut Harness<'_, App>, label: &str) {
    harness.get_by_label(label).click();
    harness.run_steps(2);
}

/// Pick `option` in the combo box labelled `label`.
pub fn pick(harness: &mut Harness<'_, App>, label: &str, option: &str) {
    open_combo(harness, label);
    press(harness, option);
}
