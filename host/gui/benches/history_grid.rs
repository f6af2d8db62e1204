//! Frame time of the History tab with 10,000 entries, and memory while scrolling the whole grid.
//!
//! `cargo bench -p imageai-gui --bench history_grid --profile dev` (add `--profile release`
//! for optimised numbers). Frames are built by egui_kittest without a GPU: the time is the
//! app's UI code plus egui's layout and tessellation, which is what a slow frame is made of
//! here. Memory is the process's resident set (Linux `/proc/self/statm`).
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark: fail loudly, print results

use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use imageai_core::app::Core;
use imageai_core::history::{Entry, Sidecar};
use imageai_core::keys::{KeyStore, KeyringMode};
use imageai_core::paths::Paths;
use imageai_gui::App;

const ENTRIES: usize = 10_000;

fn resident_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn png(seed: u32) -> Vec<u8> {
    let mut img = image::RgbImage::new(256, 256);
    for (x, y, p) in img.enumerate_pixels_mut() {
        *p = image::Rgb([(x + seed) as u8, (y * 3 + seed) as u8, (seed * 7) as u8]);
    }
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    bytes
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let variants: Vec<Vec<u8>> = (0..16).map(png).collect();
    let entries: Vec<Entry> = (0..ENTRIES)
        .map(|n| {
            let path = images.join(format!("image_{n:05}.png"));
            std::fs::write(&path, &variants[n % variants.len()]).unwrap();
            let mut meta = serde_json::Map::new();
            meta.insert(
                "prompt".into(),
                format!("synthetic image number {n}").into(),
            );
            meta.insert("provider".into(), "openai".into());
            meta.insert("model".into(), "dall-e-3".into());
            Entry {
                image: Some(path),
                sidecar: None,
                metadata: Some(Sidecar(meta)),
                problem: None,
                created_at: None,
                modified: None,
            }
        })
        .collect();
    let paths = Paths::at(tmp.path().join("config"));
    let mut core = Core::open(paths, &[]).unwrap();
    core.keys = KeyStore::open_with(&core.paths, KeyringMode::Off);
    let app = App::new(core, Vec::new(), &egui::Context::default());
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1280.0, 860.0))
        .build_ui_state(|ui, app: &mut App| app.ui(ui), app);
    while harness.state().busy() {
        harness.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    harness.state_mut().set_history_entries(entries);
    harness.get_by_label("History tab").click();
    harness.run_steps(3);
    // A click can miss (a toast over the tab bar): measure nothing rather than the wrong tab.
    assert_eq!(
        harness.state().tab(),
        imageai_gui::Tab::History,
        "the History tab did not open; messages: {:?}",
        harness.state().messages()
    );
    let rss_start = resident_mib();
    let grid = egui::pos2(500.0, 500.0);
    harness.hover_at(grid);
    let mut frames = Vec::new();
    let mut textures_max = 0;
    let mut rss_max = rss_start;
    // Scroll the whole grid (about 1,400 rows) in steps of two rows, then hold still at the end.
    let mut still = 0;
    for frame in 0..5_000 {
        harness.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, -336.0),
            phase: egui::TouchPhase::Move,
            modifiers: egui::Modifiers::NONE,
            source: egui::MouseWheelSource::Wheel,
        });
        let start = Instant::now();
        harness.step();
        let output = harness.output().shapes.clone();
        let _mesh = harness.ctx.tessellate(output, 1.0);
        frames.push(start.elapsed());
        textures_max = textures_max.max(harness.state().thumbs().textures());
        if frame % 100 == 0 {
            rss_max = rss_max.max(resident_mib());
        }
        // Done once the last image has been on screen for a while.
        if harness.query_by_label("image_09999.png").is_some() {
            still += 1;
        }
        if still > 30 {
            break;
        }
    }
    assert!(
        still > 0,
        "the grid never showed its last image in {} frames: the benchmark measured nothing useful",
        frames.len()
    );
    let rss_end = resident_mib();
    let mut sorted = frames.clone();
    sorted.sort();
    let mean = frames.iter().sum::<Duration>() / frames.len() as u32;
    println!(
        "history grid, {ENTRIES} entries, {} frames while scrolling:",
        frames.len()
    );
    println!(
        "  frame time: mean {:.2} ms, median {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        mean.as_secs_f64() * 1e3,
        percentile(&sorted, 0.5).as_secs_f64() * 1e3,
        percentile(&sorted, 0.95).as_secs_f64() * 1e3,
        sorted[sorted.len() - 1].as_secs_f64() * 1e3
    );
    println!(
        "  textures held: at most {textures_max} (budget {}), now {}",
        imageai_gui::Thumbs::TEXTURE_BUDGET,
        harness.state().thumbs().textures()
    );
    println!(
        "  resident memory: {rss_start:.0} MiB before scrolling, {rss_max:.0} MiB at most, {rss_end:.0} MiB after"
    );
}
