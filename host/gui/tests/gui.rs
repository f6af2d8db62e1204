#![allow(clippy::unwrap_used)] // test helpers fail loudly on the first surprise

//! The GUI driven the way a user drives it, through egui_kittest: real plugins in the real
//! runtime, real HTTP to a local server that speaks OpenAI's wire format.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use imageai_core::config::Config;
use imageai_core::keys::{KeyStore, KeyringMode};
use imageai_core::paths::Paths;
use imageai_gui::{App, JobStatus, Tab};
use imageai_tests::openai_server::{OpenAiServer, Scripted, TEST_KEY};

mod common;
use common::{
    assert_message, bundle_openai, harness_with_height as tall_harness, open_with_plugins, pick,
    prompt_and_generate, type_into, type_prompt, wait_until,
};

/// A config folder in `tmp` with the OpenAI plugin as the only bundled plugin, pointed at
/// `server`, and a key store that never touches the OS keyring.
fn open_app(tmp: &Path, server: Option<&OpenAiServer>, key: Option<&str>) -> App {
    let bundled = tmp.join("bundled");
    bundle_openai(&bundled);
    let paths = Paths::at(tmp.join("config"));
    if let Some(server) = server {
        let url = server.base_url();
        Config::update(&paths, |c| {
            c.set_provider_setting("openai", "base_url", &url)
        })
        .unwrap();
    }
    if let Some(key) = key {
        // The store is the file in `paths` (no OS keyring): the app's own store reads it.
        KeyStore::open_with(&paths, KeyringMode::Off)
            .set("openai", &imageai_core::Secret::new(key))
            .unwrap();
    }
    open_with_plugins(paths, bundled)
}

/// An 860-point-tall window (`tall_harness` for tests that need the whole Generate tab).
fn harness(app: App) -> Harness<'static, App> {
    tall_harness(app, 860.0)
}

/// A file dropped on the window, as the windowing layer hands it over.
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

/// Press at `from`, move through `to` and let go.
fn drag(harness: &mut Harness<'_, App>, from: egui::Pos2, to: egui::Pos2) {
    let button = |pos, pressed| egui::Event::PointerButton {
        pos,
        button: egui::PointerButton::Primary,
        pressed,
        modifiers: egui::Modifiers::NONE,
    };
    harness.event(egui::Event::PointerMoved(from));
    harness.step();
    harness.event(button(from, true));
    harness.step();
    for i in 1..=8 {
        harness.event(egui::Event::PointerMoved(from.lerp(to, i as f32 / 8.0)));
        harness.step();
    }
    harness.event(button(to, false));
    harness.step();
}

/// A drag across the middle of `rect`, left to right, leaving out `inset` of its width at
/// each end.
fn stroke(harness: &mut Harness<'_, App>, rect: egui::Rect, inset: f32) {
    drag(
        harness,
        rect.left_center() + egui::vec2(rect.width() * inset, 0.0),
        rect.right_center() - egui::vec2(rect.width() * inset, 0.0),
    );
}

fn provider_ready(harness: &mut Harness<'_, App>) {
    wait_until(harness, 120, "the OpenAI plugin to load", |app| {
        !app.busy() && app.messages().is_empty()
    });
    harness.get_by_label("Generate tab").click();
    harness.step();
}

/// An app in `tmp` with the test key, talking to `server`, ready on the Generate tab.
fn ready_with_key(tmp: &Path, server: &OpenAiServer) -> Harness<'static, App> {
    let app = open_app(tmp, Some(server), Some(TEST_KEY));
    let mut harness = harness(app);
    provider_ready(&mut harness);
    harness
}

#[test]
fn typing_a_prompt_and_generating_shows_the_image_in_results_and_history() {
    let tmp = tempfile::tempdir().unwrap();
    let server = OpenAiServer::start();
    let mut harness = ready_with_key(tmp.path(), &server);
    type_prompt(&mut harness, "a lighthouse at dusk");
    assert_eq!(
        harness.state().generate_tab().prompt,
        "a lighthouse at dusk"
    );
    harness.get_by_label("Generate").click();
    wait_until(&mut harness, 60, "the job to finish", |app| {
        !app.generate_tab().results.is_empty()
    });
    let result = harness.state().generate_tab().results[0].path.clone();
    assert!(result.is_file(), "{} was saved", result.display());
    assert_eq!(server.requests_to("/v1/images/generations").len(), 1);
    // History lists it with its metadata.
    wait_until(&mut harness, 30, "History to list the image", |app| {
        app.history_tab().entries.len() == 1 && !app.busy()
    });
    let entry = harness.state().history_tab().entries[0].clone();
    assert_eq!(entry.prompt(), Some("a lighthouse at dusk"));
    assert_eq!(entry.provider(), Some("openai"));
    assert!(entry.model().is_some_and(|m| !m.is_empty()));
    // The History tab shows it as a named thumbnail, and its details on click.
    harness.get_by_label("History tab").click();
    harness.step();
    let name = entry.name();
    wait_until(&mut harness, 30, "the thumbnail", |app| {
        app.thumbs().textures() > 0
    });
    harness.get_by_label(&name).click();
    harness.step();
    harness.step();
    harness.get_by_label("Details");
    harness.get_by_label("a lighthouse at dusk");
}

#[test]
fn a_running_job_can_be_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    let server = OpenAiServer::start();
    server.script([Scripted::Slow(Duration::from_secs(20))]);
    let mut harness = ready_with_key(tmp.path(), &server);
    prompt_and_generate(&mut harness, "slow painting");
    wait_until(&mut harness, 60, "the job to start", |app| {
        app.generate_tab()
            .jobs
            .iter()
            .any(|j| matches!(j.status, JobStatus::Running(_)))
    });
    let started = Instant::now();
    harness.get_by_label("Cancel job 1").click();
    wait_until(&mut harness, 15, "the job to stop", |app| {
        app.generate_tab().jobs[0].status == JobStatus::Cancelled
    });
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(harness.state().generate_tab().results.is_empty());
    assert_eq!(harness.state().active_jobs(), 0);
}

#[test]
fn a_key_is_saved_masked_and_tested() {
    let tmp = tempfile::tempdir().unwrap();
    let server = OpenAiServer::start();
    let app = open_app(tmp.path(), Some(&server), None);
    let mut harness = harness(app);
    harness.get_by_label("Settings tab").click();
    wait_until(&mut harness, 60, "the key status", |app| {
        app.key_status("openai") == Some("no key set")
    });
    type_into(
        &mut harness,
        Role::PasswordInput,
        "OpenAI API key",
        TEST_KEY,
    );
    // Masked: the key's text is nowhere in the UI tree.
    assert!(harness.query_by_label_contains(TEST_KEY).is_none());
    assert!(harness.query_by_value(TEST_KEY).is_none());
    harness.get_by_label("Save OpenAI key").click();
    wait_until(&mut harness, 30, "the key to be saved", |app| {
        app.key_status("openai")
            .is_some_and(|s| s.starts_with("key set"))
    });
    harness.get_by_label("Test OpenAI key").click();
    wait_until(&mut harness, 60, "the key test", |app| {
        app.key_test("openai").is_some()
    });
    assert_eq!(
        harness.state().key_test("openai"),
        Some(&Ok("The key works.".to_owned()))
    );
    // A wrong key typed in is what gets tested, and the failure says what to do.
    type_into(
        &mut harness,
        Role::PasswordInput,
        "OpenAI API key",
        "sk-wrong-key-000000000",
    );
    harness.get_by_label("Test OpenAI key").click();
    wait_until(&mut harness, 60, "the second key test", |app| {
        app.key_test("openai").is_some_and(Result::is_err)
    });
    let Some(Err(message)) = harness.state().key_test("openai") else {
        unreachable!()
    };
    assert!(message.contains("get a new one"), "{message}");
    assert!(!message.contains("sk-wrong-key"), "{message}");
}

#[test]
fn a_template_is_made_edited_and_used() {
    let tmp = tempfile::tempdir().unwrap();
    let server = OpenAiServer::start();
    let mut harness = ready_with_key(tmp.path(), &server);
    harness.get_by_label("Templates tab").click();
    harness.step();
    harness.get_by_label("New template").click();
    harness.step();
    type_into(&mut harness, Role::TextInput, "Name", "Castle");
    type_into(
        &mut harness,
        Role::MultilineTextInput,
        "Template text (use [placeholders])",
        "a [style] castle on a hill",
    );
    type_into(&mut harness, Role::TextInput, "Default for style", "gothic");
    harness.get_by_label("Save template").click();
    wait_until(&mut harness, 10, "the template to be saved", |app| {
        app.template_store().get("Castle").is_some()
    });
    let saved = harness
        .state()
        .template_store()
        .get("Castle")
        .unwrap()
        .template
        .clone();
    assert_eq!(saved.template, "a [style] castle on a hill");
    assert_eq!(
        saved.defaults.get("style").map(String::as_str),
        Some("gothic")
    );
    assert!(
        std::fs::read_to_string(tmp.path().join("config/templates.json"))
            .unwrap()
            .contains("Castle")
    );
    harness.get_by_label("Use in Generate").click();
    harness.step();
    harness.step();
    assert_eq!(harness.state().tab(), Tab::Generate);
    harness.get_by_label("Use template").click();
    harness.step();
    assert_eq!(
        harness.state().generate_tab().prompt,
        "a gothic castle on a hill"
    );
}

#[test]
fn history_delete_can_be_undone() {
    let tmp = tempfile::tempdir().unwrap();
    let output = Paths::at(tmp.path().join("config")).output_dir();
    let record = imageai_core::history::Record::new("openai", "dall-e-3", "a red fox".to_owned());
    let image = imageai_core::Image {
        mime: "image/png".into(),
        data: imageai_tests::openai_server::png(32, 32, 3),
    };
    let saved = imageai_core::history::save(&output, &record, &[image]).unwrap();
    let app = open_app(tmp.path(), None, None);
    let mut harness = harness(app);
    harness.get_by_label("History tab").click();
    wait_until(&mut harness, 30, "History to load", |app| {
        app.history_tab().entries.len() == 1 && !app.busy()
    });
    let name = harness.state().history_tab().entries[0].name();
    harness.get_by_label(&name).click();
    harness.step();
    harness.step();
    harness.get_by_label("Delete").click();
    wait_until(&mut harness, 30, "the delete", |app| {
        app.history_tab().entries.is_empty() && !app.busy()
    });
    assert!(!saved[0].image.exists() && !saved[0].sidecar.exists());
    harness.get_by_label("Undo delete").click();
    wait_until(&mut harness, 30, "the undo", |app| {
        app.history_tab().entries.len() == 1 && !app.busy()
    });
    assert!(saved[0].image.is_file() && saved[0].sidecar.is_file());
}

#[test]
fn every_tab_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let app = open_app(tmp.path(), None, None);
    let mut harness = harness(app);
    for tab in Tab::ALL {
        harness
            .get_by_label(&format!("{} tab", tab.title()))
            .click();
        harness.step();
        harness.step();
        assert_eq!(harness.state().tab(), tab);
    }
    // The last tab is remembered in config.json.
    wait_until(&mut harness, 10, "the config save", |app| !app.busy());
    let saved = std::fs::read_to_string(tmp.path().join("config/config.json")).unwrap();
    assert!(
        saved.contains("\"tab\": \"Help\"") || saved.contains("\"tab\":\"Help\""),
        "{saved}"
    );
}

#[test]
fn an_installed_model_is_deleted_after_confirming() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = Paths::at(tmp.path().join("config"));
    let cache = tmp.path().join("hub");
    Config::update(&paths, |c| {
        c.set_provider_setting("local-sd", "model_cache", &cache.display().to_string());
    })
    .unwrap();
    let model = paths.config_dir().join("models").join("my-sd15");
    std::fs::create_dir_all(model.join("unet")).unwrap();
    std::fs::write(model.join("model_index.json"), "{}").unwrap();
    std::fs::write(model.join("unet").join("weights.bin"), vec![0u8; 4096]).unwrap();
    let app = open_app(tmp.path(), None, None);
    let mut harness = harness(app);
    harness.get_by_label("Models tab").click();
    wait_until(&mut harness, 30, "the model list", |app| {
        app.installed_models()
            .is_some_and(|m| m.as_ref().is_ok_and(|m| m.len() == 1))
    });
    harness.get_by_label("Delete my-sd15").click();
    harness.step();
    harness.step();
    assert!(model.is_dir(), "nothing is deleted before confirming");
    harness.get_by_label("Really delete my-sd15").click();
    wait_until(&mut harness, 30, "the delete", |app| {
        app.installed_models()
            .is_some_and(|m| m.as_ref().is_ok_and(Vec::is_empty))
            && !app.busy()
    });
    assert!(!model.exists());
    assert_message(&harness, "Deleted my-sd15");
}

#[test]
fn a_dropped_image_becomes_a_reference_and_the_brush_paints_its_mask() {
    let tmp = tempfile::tempdir().unwrap();
    let app = open_app(tmp.path(), None, None);
    let mut harness = tall_harness(app, 1400.0);
    provider_ready(&mut harness);
    let photo = tmp.path().join("photo.png");
    std::fs::write(&photo, imageai_tests::openai_server::png(64, 48, 5)).unwrap();
    harness
        .input_mut()
        .dropped_files
        .push(Arc::new(Dropped(photo.clone())));
    harness.run_steps(2);
    assert_eq!(harness.state().generate_tab().references, [photo]);
    assert_eq!(
        harness.state().generate_tab().capability(),
        imageai_core::provider::Capability::Edit
    );
    harness.get_by_label("Paint mask on photo.png").click();
    wait_until(&mut harness, 30, "the mask brush", |app| {
        app.generate_tab().painter.is_some()
    });
    let canvas = harness.get_by_label("Mask canvas").rect();
    // A stroke across the middle, left to right.
    stroke(&mut harness, canvas, 0.2);
    let png = harness
        .state()
        .generate_tab()
        .painted_mask_png()
        .unwrap()
        .unwrap();
    let mask = image::load_from_memory(&png).unwrap().to_rgba8();
    assert_eq!(mask.dimensions(), (64, 48), "the mask has the image's size");
    let painted = mask.pixels().filter(|p| p[3] == 0).count();
    assert!(painted > 100, "{painted} pixels painted");
    assert!(
        mask.pixels().any(|p| p[3] == 255),
        "not everything is painted"
    );
    // Painted where the stroke went (the middle row), white once the alpha is dropped.
    assert_eq!(mask.get_pixel(32, 24).0, [255, 255, 255, 0]);
    assert_eq!(mask.get_pixel(32, 0).0, [0, 0, 0, 255]);
    assert_eq!(
        harness.state().generate_tab().capability(),
        imageai_core::provider::Capability::Inpaint
    );
    // Erasing the same stroke takes it away again; Clear empties the mask.
    harness.get_by_label("Erase").click();
    harness.step();
    stroke(&mut harness, canvas, 0.45);
    let after = harness
        .state()
        .generate_tab()
        .painter
        .as_ref()
        .unwrap()
        .painted();
    assert!(after < painted, "{after} < {painted}");
    harness.get_by_label("Clear mask").click();
    harness.step();
    assert_eq!(
        harness
            .state()
            .generate_tab()
            .painter
            .as_ref()
            .unwrap()
            .painted(),
        0
    );
}

#[test]
fn a_result_sent_to_edit_is_edited_by_the_next_generate() {
    let tmp = tempfile::tempdir().unwrap();
    let server = OpenAiServer::start();
    let mut harness = ready_with_key(tmp.path(), &server);
    prompt_and_generate(&mut harness, "a red bicycle");
    wait_until(&mut harness, 60, "the first image", |app| {
        app.generate_tab().results.len() == 1
    });
    let first = harness.state().generate_tab().results[0].path.clone();
    let name = first.file_name().unwrap().to_string_lossy().into_owned();
    // Copy puts the image on the clipboard (egui hands it to the platform).
    harness
        .get_by_label(&format!("Copy {name}"))
        .click_accesskit();
    let start = Instant::now();
    let copied = loop {
        harness.step();
        let image = harness
            .output()
            .platform_output
            .commands
            .iter()
            .find_map(|c| match c {
                egui::OutputCommand::CopyImage(image) => Some(image.size),
                _ => None,
            });
        if let Some(size) = image {
            break size;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing was copied"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let decoded = image::open(&first).unwrap();
    assert_eq!(
        copied,
        [decoded.width() as usize, decoded.height() as usize]
    );
    harness
        .get_by_label(&format!("Send {name} to edit"))
        .click_accesskit();
    harness.run_steps(2);
    assert_eq!(harness.state().generate_tab().references, [first]);
    prompt_and_generate(&mut harness, " in the snow");
    wait_until(&mut harness, 60, "the edit", |app| {
        app.generate_tab().results.len() == 2
    });
    assert_eq!(server.requests_to("/v1/images/edits").len(), 1);
    assert_eq!(server.requests_to("/v1/images/generations").len(), 1);
    let edited = harness.state().generate_tab().results[1].path.clone();
    let sidecar: serde_json::Value = serde_json::from_slice(
        &std::fs::read(imageai_core::history::sidecar_path(&edited)).unwrap(),
    )
    .unwrap();
    assert_eq!(sidecar["source_images"], serde_json::json!([name]));
    assert_eq!(sidecar["prompt"], "a red bicycle in the snow");
    // Re-run makes the same edit again.
    let edited_name = edited.file_name().unwrap().to_string_lossy().into_owned();
    harness
        .get_by_label(&format!("Re-run {edited_name}"))
        .click_accesskit();
    wait_until(&mut harness, 60, "the re-run", |app| {
        app.generate_tab().results.len() == 3
    });
    assert_eq!(server.requests_to("/v1/images/edits").len(), 2);
}

#[test]
fn a_python_output_folder_is_imported_into_history() {
    let tmp = tempfile::tempdir().unwrap();
    let python = tmp.path().join("python-generated");
    std::fs::create_dir_all(&python).unwrap();
    for (n, prompt) in [(1, "a cat on a wall"), (2, "a dog in the rain")] {
        let name = format!("{}_20250101_12000{n}_1.png", prompt.replace(' ', "_"));
        std::fs::write(
            python.join(&name),
            imageai_tests::openai_server::png(24, 24, n),
        )
        .unwrap();
        let sidecar = serde_json::json!({
            "prompt": prompt, "model": "gemini-2.5-flash-image", "provider": "google",
            "created_at": format!("2025-01-01T12:00:0{n}"), "app_version": "0.9.0",
            "output_text": null, "settings": {"aspect_ratio": "1:1"},
        });
        std::fs::write(
            python.join(format!("{name}.json")),
            serde_json::to_vec_pretty(&sidecar).unwrap(),
        )
        .unwrap();
    }
    // A sidecar whose image was deleted is left out.
    std::fs::write(python.join("gone_20250101_110000_1.png.json"), b"{}").unwrap();
    let app = open_app(tmp.path(), None, None);
    let mut harness = harness(app);
    harness.get_by_label("History tab").click();
    wait_until(&mut harness, 30, "History to load", |app| !app.busy());
    assert!(harness.state().history_tab().entries.is_empty());
    type_into(
        &mut harness,
        Role::TextInput,
        "Folder to import",
        &python.display().to_string(),
    );
    harness.get_by_label("Import folder").click();
    wait_until(&mut harness, 30, "the import", |app| {
        app.history_tab().entries.len() == 2 && !app.busy()
    });
    let mut prompts: Vec<String> = harness
        .state()
        .history_tab()
        .entries
        .iter()
        .map(|e| e.prompt().unwrap_or_default().to_owned())
        .collect();
    prompts.sort();
    assert_eq!(prompts, ["a cat on a wall", "a dog in the rain"]);
    let entry = &harness.state().history_tab().entries[0];
    assert_eq!(entry.provider(), Some("google"));
    let output = Paths::at(tmp.path().join("config")).output_dir();
    assert!(entry.image.as_ref().unwrap().starts_with(&output));
    assert!(
        harness
            .state()
            .messages()
            .iter()
            .any(|m| m.starts_with("Imported 2 image(s)")
                && m.contains("1 sidecar(s) without an image")),
        "{:?}",
        harness.state().messages()
    );
    // The originals stay where they were.
    assert_eq!(std::fs::read_dir(&python).unwrap().count(), 5);
}

#[test]
fn the_last_choices_come_back_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let app = open_app(tmp.path(), None, None);
    let mut harness = harness(app);
    provider_ready(&mut harness);
    pick(&mut harness, "Quality", "high");
    assert_eq!(
        harness.state().generate_tab().quality.as_deref(),
        Some("high")
    );
    wait_until(&mut harness, 10, "the config save", |app| !app.busy());
    drop(harness);
    // A new window over the same config folder.
    let mut again = tall_harness(open_app(tmp.path(), None, None), 860.0);
    provider_ready(&mut again);
    assert_eq!(
        again.state().generate_tab().quality.as_deref(),
        Some("high")
    );
    assert_eq!(again.state().tab(), Tab::Generate);
}
