//! Snapshot tests: tabs rendered with wgpu (lavapipe, Mesa's software Vulkan, on CI) and
//! compared with the committed PNGs in tests/snapshots. Refresh them with
//! `UPDATE_SNAPSHOTS=1 cargo test -p imageai-gui --test snapshots`.
#![allow(clippy::unwrap_used)] // test helpers fail loudly on the first surprise

use std::path::Path;
use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotOptions};
use imageai_core::paths::Paths;
use imageai_gui::App;

mod common;
use common::{bundle_openai, open_with_plugins};

/// A software rasterizer's anti-aliasing differs a little between Mesa versions: allow a
/// slightly larger per-pixel colour distance than the default (0.6) and a handful of pixels
/// over it, as rerun does for its lavapipe snapshots.
fn options() -> SnapshotOptions {
    SnapshotOptions::new().threshold(1.0).max_failed_pixels(10)
}

fn open_app(tmp: &Path, with_openai: bool) -> App {
    let bundled = tmp.join("bundled");
    std::fs::create_dir_all(&bundled).unwrap();
    if with_openai {
        bundle_openai(&bundled);
    }
    open_with_plugins(Paths::at(tmp.join("config")), bundled)
}

fn harness(app: App) -> Harness<'static, App> {
    Harness::builder()
        .with_size(egui::vec2(1100.0, 720.0))
        .with_options(options())
        .wgpu()
        .build_ui_state(|ui, app: &mut App| app.ui(ui), app)
}

/// Step until nothing is loading and `ready` holds, then a few frames more.
fn settle(harness: &mut Harness<'_, App>, ready: impl Fn(&App) -> bool) {
    let start = Instant::now();
    loop {
        harness.step();
        if !harness.state().busy() && ready(harness.state()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the app did not settle; messages: {:?}",
            harness.state().messages()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    harness.run_steps(4);
}

fn open_tab(harness: &mut Harness<'_, App>, title: &str) {
    harness.get_by_label(&format!("{title} tab")).click();
    harness.run_steps(3);
}

#[test]
fn help_tab() {
    let tmp = tempfile::tempdir().unwrap();
    let mut harness = harness(open_app(tmp.path(), false));
    settle(&mut harness, |_| true);
    open_tab(&mut harness, "Help");
    harness.snapshot("help_tab");
}

#[test]
fn generate_tab_with_the_openai_plugin() {
    let tmp = tempfile::tempdir().unwrap();
    let mut harness = harness(open_app(tmp.path(), true));
    open_tab(&mut harness, "Generate");
    settle(&mut harness, |app| app.generate_tab().model.is_some());
    harness.snapshot("generate_tab");
}

#[test]
fn history_tab_with_images() {
    let tmp = tempfile::tempdir().unwrap();
    let output = Paths::at(tmp.path().join("config")).output_dir();
    for n in 0..12u32 {
        let mut record =
            imageai_core::history::Record::new("openai", "dall-e-3", format!("test image {n}"));
        // Fixed times, so the order is the same on every run.
        record.created_at =
            chrono::DateTime::parse_from_rfc3339(&format!("2026-01-01T00:00:{n:02}+00:00"))
                .unwrap();
        let image = imageai_core::Image {
            mime: "image/png".into(),
            data: imageai_tests::openai_server::png(96, 64, n + 1),
        };
        imageai_core::history::save(&output, &record, &[image]).unwrap();
    }
    let mut harness = harness(open_app(tmp.path(), false));
    open_tab(&mut harness, "History");
    settle(&mut harness, |app| {
        app.history_tab().entries.len() == 12 && app.thumbs().textures() == 12
    });
    harness.snapshot("history_tab");
}

#[test]
fn templates_tab() {
    let tmp = tempfile::tempdir().unwrap();
    let mut harness = harness(open_app(tmp.path(), false));
    settle(&mut harness, |_| true);
    open_tab(&mut harness, "Templates");
    harness.snapshot("templates_tab");
}

#[test]
fn models_tab() {
    let tmp = tempfile::tempdir().unwrap();
    // A fixed cache path, so the text on screen is the same on every run.
    let paths = Paths::at(tmp.path().join("config"));
    imageai_core::config::Config::update(&paths, |c| {
        c.set_provider_setting("local-sd", "model_cache", "/nonexistent/imageai-models");
    })
    .unwrap();
    let mut harness = harness(open_app(tmp.path(), false));
    open_tab(&mut harness, "Models");
    settle(&mut harness, |app| {
        app.installed_models().is_some() && app.models_tab().adapters.is_some()
    });
    harness.snapshot("models_tab");
}
