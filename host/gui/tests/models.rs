#![allow(clippy::unwrap_used)] // test helpers fail loudly on the first surprise

//! The Models tab driven through egui_kittest against a local server that speaks the Hugging
//! Face Hub's API: search with sizes, install with progress, cancel, delete, and the local
//! engine's settings saved to config.json.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use imageai_core::config::Config;
use imageai_core::paths::Paths;
use imageai_gui::App;
use imageai_tests::hub_server::{HubServer, sd_repo, tiny_checkpoint};

mod common;
use common::{assert_message, harness, open_with_plugins, pick, press, wait_until};

const REPO: &str = "test-org/tiny-sd";
/// The UNet's fp16 weights: the biggest file of the install.
const UNET: &str = "unet/diffusion_pytorch_model.fp16.safetensors";

/// An app with no plugins whose model cache is `<tmp>/hub` and whose Hub is `server`.
fn open_app(tmp: &Path, server: &HubServer) -> (App, PathBuf) {
    let bundled = tmp.join("bundled");
    std::fs::create_dir_all(&bundled).unwrap();
    let paths = Paths::at(tmp.join("config"));
    let cache = tmp.join("hub");
    Config::update(&paths, |c| {
        c.set_provider_setting("local-sd", "model_cache", &cache.display().to_string());
    })
    .unwrap();
    let mut app = open_with_plugins(paths, bundled);
    app.set_hub_endpoint(server.url());
    (app, cache)
}

fn open_models(harness: &mut Harness<'_, App>) {
    harness.get_by_label("Models tab").click();
    wait_until(harness, 30, "the model list", |app| {
        app.installed_models().is_some() && !app.busy()
    });
}

fn type_into(harness: &mut Harness<'_, App>, label: &str, text: &str) {
    common::type_into(harness, Role::TextInput, label, text);
}

/// A Hub serving REPO (400 kB) whose UNet download breaks `breaks` times after `at` bytes,
/// and the Models tab of an app using it, open in a window; the server must live as long as
/// the app, and the app's model cache is the path returned.
fn models_tab_with_repo(
    tmp: &Path,
    at: usize,
    breaks: usize,
) -> (HubServer, Harness<'static, App>, PathBuf) {
    let server = HubServer::start(vec![sd_repo(REPO, 400_000)]);
    server.truncate(UNET, at, breaks);
    let (app, cache) = open_app(tmp, &server);
    let mut harness = harness(app);
    open_models(&mut harness);
    (server, harness, cache)
}

/// Type REPO as the model id and click Install.
fn start_install(harness: &mut Harness<'_, App>) {
    type_into(harness, "Model id", REPO);
    harness.get_by_label("Install model").click();
}

fn installed(app: &App) -> Vec<String> {
    match app.installed_models() {
        Some(Ok(models)) => models
            .iter()
            // A finished install has its ref (`main`); a cancelled one has none.
            .filter(|m| !m.refs.is_empty())
            .map(|m| m.id.clone())
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn a_search_shows_the_hubs_models_with_their_download_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = HubServer::start(vec![
        sd_repo(REPO, 40_000),
        sd_repo("other-org/bigger-sd", 80_000),
    ]);
    let (app, _) = open_app(tmp.path(), &server);
    let mut harness = harness(app);
    open_models(&mut harness);
    type_into(&mut harness, "Search models", "tiny");
    harness.get_by_label("Search").click();
    wait_until(&mut harness, 60, "the search", |app| {
        app.models_tab().results.is_some() && !app.busy()
    });
    let results = match &harness.state().models_tab().results {
        Some(Ok(results)) => results.clone(),
        other => panic!("the search failed: {:?}", other.as_ref().map(|r| r.is_ok())),
    };
    assert_eq!(
        results.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [REPO]
    );
    let size = results[0]
        .download_size
        .expect("a size for a diffusers repo");
    assert!(size > 0);
    // The size is on screen, as the Hub would show it.
    let shown = format!("{} (fp16)", imageai_core::models::human_bytes(size));
    harness.get_by_label(&shown);
    harness.get_by_label(&format!("Install {REPO}"));
}

#[test]
fn installing_shows_progress_then_the_model_and_delete_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    // One broken connection: the download pauses half a second and resumes, so its progress
    // is on screen for a few frames.
    let (_server, mut harness, cache) = models_tab_with_repo(tmp.path(), 50_000, 1);
    assert!(installed(harness.state()).is_empty());
    start_install(&mut harness);
    wait_until(&mut harness, 60, "download progress", |app| {
        app.models_tab()
            .download
            .as_ref()
            .is_some_and(|d| d.total > 0 && d.done > 0)
    });
    let download = harness.state().models_tab().download.as_ref().unwrap();
    assert_eq!(download.repo, REPO);
    assert!(download.fraction() > 0.0 && download.fraction() <= 1.0);
    harness.get_by_label("Cancel download");
    wait_until(&mut harness, 120, "the install", |app| {
        app.models_tab().download.is_none() && !app.busy()
    });
    assert_eq!(
        installed(harness.state()),
        [REPO],
        "{:?}",
        harness.state().messages()
    );
    assert_message(&harness, &format!("Installed {REPO}"));
    assert!(cache.join("models--test-org--tiny-sd").is_dir());
    // Delete asks first, then removes it from the disk and the list.
    press(&mut harness, &format!("Delete {REPO}"));
    harness
        .get_by_label(&format!("Really delete {REPO}"))
        .click();
    wait_until(&mut harness, 30, "the delete", |app| {
        installed(app).is_empty() && !app.busy()
    });
    assert!(!cache.join("models--test-org--tiny-sd").exists());
}

#[test]
fn cancel_stops_a_download() {
    let tmp = tempfile::tempdir().unwrap();
    // The UNet's connection breaks three times: the download waits 0.5 + 1 + 2 s to resume.
    let (_server, mut harness, _) = models_tab_with_repo(tmp.path(), 10_000, 3);
    start_install(&mut harness);
    wait_until(&mut harness, 60, "the download to start", |app| {
        app.models_tab()
            .download
            .as_ref()
            .is_some_and(|d| d.total > 0)
    });
    let started = Instant::now();
    harness.get_by_label("Cancel download").click();
    wait_until(&mut harness, 30, "the download to stop", |app| {
        app.models_tab().download.is_none() && !app.busy()
    });
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_message(&harness, &format!("Cancelled the download of {REPO}"));
    assert!(installed(harness.state()).is_empty());
}

/// A setting changed again before its last save finished: the file ends with the last choice.
#[test]
fn quick_changes_are_saved_in_the_order_made() {
    let tmp = tempfile::tempdir().unwrap();
    let server = HubServer::start(Vec::new());
    let (app, _) = open_app(tmp.path(), &server);
    let mut harness = harness(app);
    open_models(&mut harness);
    for _ in 0..8 {
        pick(&mut harness, "Precision", "fp32");
        pick(&mut harness, "Precision", "fp16 (half the download)");
    }
    pick(&mut harness, "Precision", "fp32");
    wait_until(&mut harness, 30, "the settings to be saved", |app| {
        !app.busy()
    });
    let saved = Config::load(&Paths::at(tmp.path().join("config")))
        .unwrap()
        .config;
    assert_eq!(
        saved.provider_setting("local-sd", "precision").as_deref(),
        Some("fp32")
    );
}

#[test]
fn engine_settings_are_saved_in_config_json() {
    let tmp = tempfile::tempdir().unwrap();
    let server = HubServer::start(Vec::new());
    let (app, _) = open_app(tmp.path(), &server);
    let mut harness = harness(app);
    open_models(&mut harness);
    pick(&mut harness, "Precision", "fp32");
    type_into(&mut harness, "Memory limit (GB)", "6");
    harness.key_press(egui::Key::Enter);
    harness.step();
    type_into(
        &mut harness,
        "Other device (adapter name or index)",
        "RTX 4090",
    );
    harness.key_press(egui::Key::Enter);
    harness.step();
    let cache = tmp.path().join("other-cache");
    let field = harness.get_by_role_and_label(Role::TextInput, "Model cache folder");
    field.focus();
    harness.step();
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    harness
        .get_by_role_and_label(Role::TextInput, "Model cache folder")
        .type_text(&cache.display().to_string());
    harness.key_press(egui::Key::Enter);
    wait_until(&mut harness, 30, "the settings to be saved", |app| {
        !app.busy()
    });
    let paths = Paths::at(tmp.path().join("config"));
    let saved = Config::load(&paths).unwrap().config;
    let get = |key: &str| saved.provider_setting("local-sd", key);
    assert_eq!(get("precision").as_deref(), Some("fp32"));
    assert_eq!(get("memory_limit").as_deref(), Some("6"));
    assert_eq!(get("device").as_deref(), Some("RTX 4090"));
    assert_eq!(
        get("model_cache").as_deref(),
        Some(cache.display().to_string().as_str())
    );
    // The device typed in is now the choice, and the list reads the new cache.
    assert_eq!(harness.state().models_tab().settings.device, "RTX 4090");
    assert!(
        harness
            .state()
            .models_tab()
            .cache_dir
            .as_deref()
            .is_some_and(|d| d.contains("other-cache"))
    );
}

#[test]
fn closing_the_window_during_a_download_asks_first() {
    let tmp = tempfile::tempdir().unwrap();
    let (_server, mut harness, _) = models_tab_with_repo(tmp.path(), 10_000, 3);
    start_install(&mut harness);
    wait_until(&mut harness, 60, "the download to start", |app| {
        app.models_tab().download.is_some()
    });
    let close = |harness: &mut Harness<'_, App>| {
        harness
            .input_mut()
            .viewports
            .entry(egui::ViewportId::ROOT)
            .or_default()
            .events
            .push(egui::ViewportEvent::Close);
        harness.run_steps(2);
    };
    close(&mut harness);
    harness.get_by_label("Quit ImageAI?");
    harness.get_by_label_contains("is still downloading");
    press(&mut harness, "Keep running");
    assert!(harness.query_by_label("Quit ImageAI?").is_none());
    assert!(harness.state().models_tab().download.is_some());
    close(&mut harness);
    harness.get_by_label("Quit and cancel jobs").click();
    wait_until(&mut harness, 30, "the download to stop", |app| {
        app.models_tab().download.is_none()
    });
    assert!(installed(harness.state()).is_empty());
}

/// A single-file checkpoint imported from the Models tab: its progress, then the imported
/// folder in the list (the tokenizer from SD 1.5 on the local Hub), and a `.ckpt` refused
/// with the reason.
#[test]
fn a_checkpoint_is_imported_into_the_list_and_a_pickled_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let server = HubServer::start(vec![sd_repo(
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        400_000,
    )]);
    let (app, _cache) = open_app(tmp.path(), &server);
    let mut harness = harness(app);
    open_models(&mut harness);
    let source = tmp.path().join("dreamy-v2.safetensors");
    std::fs::write(&source, tiny_checkpoint(&[])).unwrap();

    type_into(
        &mut harness,
        "Checkpoint file",
        &source.display().to_string(),
    );
    type_into(&mut harness, "Import as", "dreamy");
    harness.get_by_label("Import checkpoint").click();
    // The frame that takes the click starts the import; its result comes in a later frame.
    harness.run_steps(1);
    assert!(harness.state().models_tab().importing());
    wait_until(&mut harness, 60, "the import", |app| {
        !app.models_tab().importing() && !app.busy()
    });
    assert_message(&harness, "Imported dreamy (text-to-image, F16");
    let listed = match harness.state().installed_models() {
        Some(Ok(models)) => models.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert!(listed.iter().any(|id| id == "dreamy"), "{listed:?}");
    assert!(
        harness.state().models_tab().import_file.is_empty(),
        "the form is cleared after an import"
    );
    harness.get_by_label("Delete dreamy");

    let pickled = tmp.path().join("old.ckpt");
    std::fs::write(&pickled, b"not a safetensors file").unwrap();
    type_into(
        &mut harness,
        "Checkpoint file",
        &pickled.display().to_string(),
    );
    harness.get_by_label("Import checkpoint").click();
    wait_until(&mut harness, 30, "the refusal", |app| {
        !app.models_tab().importing() && !app.busy()
    });
    let messages = harness.state().messages();
    assert!(
        messages.iter().any(|m| m.contains("was not imported")
            && m.contains("get the .safetensors version of this model")),
        "{messages:?}"
    );
}
