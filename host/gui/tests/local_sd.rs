//! Local Stable Diffusion in the GUI: the core's native `local-sd` provider spawning a worker
//! over stdio, driven through egui_kittest. A scripted worker that speaks the protocol lets the
//! test hold a job between steps and look at its previews; the real worker runs the tiny
//! random-weight fixture model on the CPU, as a user's machine would.
#![cfg(unix)]
#![allow(clippy::unwrap_used)] // test helpers fail loudly on the first surprise

use std::io::Cursor;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine;
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use imageai_core::app::Core;
use imageai_core::config::Config;
use imageai_core::keys::{KeyStore, KeyringMode};
use imageai_core::paths::Paths;
use imageai_gui::{App, JobStatus};
use imageai_tests::local_sd::{build_worker, copy_dir, fixture};

mod common;
use common::{
    harness, open_combo, pick, press, prompt_and_generate, type_into, type_prompt, wait_until,
};

/// A config folder in `tmp` whose only provider is local-sd running `worker` on the CPU, with
/// the tiny fixture model installed in its Hugging Face cache as `test/tiny-sd`.
fn open_app(tmp: &Path, worker: PathBuf) -> App {
    let cache = tmp.join("hub");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = cache.join("models--test--tiny-sd");
    copy_dir(&fixture("sd1"), &repo.join("snapshots").join(commit));
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let paths = Paths::at(tmp.join("config"));
    Config::update(&paths, |c| {
        c.set_provider_setting("local-sd", "device", "cpu");
        c.set_provider_setting("local-sd", "model_cache", &cache.display().to_string());
    })
    .unwrap();
    let mut core = Core::open_with(paths, &[], Some(worker.clone())).unwrap();
    core.keys = KeyStore::open_with(&core.paths, KeyringMode::Off);
    let mut app = App::new(core, Vec::new(), &egui::Context::default());
    app.set_sd_worker(Some(worker));
    app
}

/// The Generate tab with local-sd loaded and its installed model chosen.
fn provider_ready(harness: &mut Harness<'_, App>) {
    harness.get_by_label("Generate tab").click();
    wait_for_tiny_sd(harness, 60, "local-sd to list its models");
    assert!(
        harness.state().messages().is_empty(),
        "{:?}",
        harness.state().messages()
    );
}

/// Wait until local-sd is loaded, idle and has its installed model chosen.
fn wait_for_tiny_sd(harness: &mut Harness<'_, App>, secs: u64, what: &str) {
    wait_until(harness, secs, what, |app| {
        !app.busy() && app.generate_tab().model.as_deref() == Some("test/tiny-sd")
    });
}

/// The app in `tmp` with a scripted worker, on the Generate tab with the model chosen.
fn ready_with_scripted_worker(tmp: &Path) -> Harness<'static, App> {
    let app = open_app(tmp, scripted_worker(tmp));
    let mut harness = harness(app);
    provider_ready(&mut harness);
    harness
}

/// Let the scripted worker through both of its steps at once.
fn let_steps_run(dir: &Path) {
    std::fs::write(dir.join("go1"), "").unwrap();
    std::fs::write(dir.join("go2"), "").unwrap();
}

/// Click Generate and wait up to `secs` for the one image it makes.
fn generate_one(harness: &mut Harness<'_, App>, secs: u64, what: &str) {
    harness.get_by_label("Generate").click();
    wait_until(harness, secs, what, |app| {
        app.generate_tab().results.len() == 1
    });
}

/// A `w`×`h` PNG of one colour, as base64 (how the worker sends images).
fn png_base64(w: u32, h: u32, rgb: [u8; 3]) -> String {
    let image = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
    let mut png = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(png)
}

/// A stand-in worker speaking the protocol. It logs each request to `requests.log`; each
/// generation sends step 1 with an 8×8 preview, waits for the file `go1`, sends step 2 with a
/// 16×8 preview, waits for `go2`, then answers a 64×64 image.
fn scripted_worker(dir: &Path) -> PathBuf {
    let script = dir.join("fake-worker");
    let log = dir.join("requests.log");
    let wait = |name: &str| {
        let file = dir.join(name);
        format!(
            "while [ ! -e '{f}' ]; do sleep 0.05; done; rm '{f}'",
            f = file.display()
        )
    };
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
echo '{{"event":"ready","id":0,"version":"0"}}'
while read -r line; do
  echo "$line" >> '{log}'
  id=$(echo "$line" | sed -n 's/^[^}}]*"id":\([0-9]*\).*/\1/p')
  case "$line" in
    *'"op":"load"'*)
      echo '{{"event":"loaded","id":'$id',"family":"sd","device":"fake","default_scheduler":"pndm","default_size":64}}' ;;
    *'"op":"generate"'*)
      echo '{{"event":"progress","id":'$id',"step":1,"total":2,"preview_png":"{small}"}}'
      {wait1}
      echo '{{"event":"progress","id":'$id',"step":2,"total":2,"preview_png":"{wide}"}}'
      {wait2}
      echo '{{"event":"image","id":'$id',"index":0,"width":64,"height":64,"seed":7,"png":"{image}"}}'
      echo '{{"event":"done","id":'$id'}}' ;;
    *'"op":"shutdown"'*) exit 0 ;;
  esac
done
"#,
            log = log.display(),
            small = png_base64(8, 8, [200, 40, 40]),
            wide = png_base64(16, 8, [40, 40, 200]),
            image = png_base64(64, 64, [40, 160, 40]),
            wait1 = wait("go1"),
            wait2 = wait("go2"),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// The requests the scripted worker received, as JSON.
fn requests(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("requests.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .collect()
}

/// The generate requests the scripted worker received.
fn generate_requests(dir: &Path) -> Vec<serde_json::Value> {
    requests(dir)
        .into_iter()
        .filter(|r| r["op"] == "generate")
        .collect()
}

#[test]
fn a_local_sd_job_shows_its_latest_step_preview_while_it_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut harness = ready_with_scripted_worker(tmp.path());
    // Local SD's scheduler picker, with the engine's names.
    open_combo(&mut harness, "Scheduler");
    for name in imageai_gui::SD_SCHEDULERS {
        harness.get_by_label(name);
    }
    press(&mut harness, "euler-a");
    assert_eq!(harness.state().generate_tab().scheduler, "euler-a");
    // No reference image: no strength.
    assert!(harness.query_by_label("Strength").is_none());

    prompt_and_generate(&mut harness, "a lighthouse at dusk");
    wait_until(&mut harness, 30, "the first preview", |app| {
        app.generate_tab()
            .jobs
            .first()
            .is_some_and(|j| j.preview_size() == Some([8, 8]))
    });
    harness.get_by_label("Preview of job 1");
    let request = &generate_requests(tmp.path())[0];
    assert_eq!(request["preview"], true);
    assert_eq!(request["scheduler"], "euler-a");
    assert_eq!(request["prompt"], "a lighthouse at dusk");

    // The next step's preview replaces it.
    std::fs::write(tmp.path().join("go1"), "").unwrap();
    wait_until(&mut harness, 30, "the second preview", |app| {
        app.generate_tab().jobs[0].preview_size() == Some([16, 8])
    });
    assert_eq!(harness.state().generate_tab().jobs[0].previews, 2);
    harness.get_by_label("Preview of job 1");

    // Done: the image is a result, and the preview is gone.
    std::fs::write(tmp.path().join("go2"), "").unwrap();
    wait_until(&mut harness, 30, "the job to finish", |app| {
        app.generate_tab().results.len() == 1
    });
    let job = &harness.state().generate_tab().jobs[0];
    assert_eq!(job.status, JobStatus::Done(1));
    assert_eq!(job.preview_size(), None);
    assert!(harness.query_by_label("Preview of job 1").is_none());
    let sidecar: serde_json::Value = serde_json::from_slice(
        &std::fs::read(imageai_core::history::sidecar_path(
            &harness.state().generate_tab().results[0].path,
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(sidecar["provider"], "local-sd");
    assert_eq!(sidecar["settings"]["extra"]["scheduler"], "euler-a");
}

#[test]
fn a_local_sd_edit_sends_the_chosen_strength() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("photo.png");
    image::RgbImage::from_pixel(64, 64, image::Rgb([90, 90, 90]))
        .save(&source)
        .unwrap();
    let mut harness = ready_with_scripted_worker(tmp.path());
    type_into(
        &mut harness,
        Role::TextInput,
        "Reference image path",
        source.to_str().unwrap(),
    );
    press(&mut harness, "Add reference image");
    assert_eq!(harness.state().generate_tab().references, [source]);
    // The strength slider shows once there is an image to edit; the engine's default first.
    harness.get_by_role_and_label(Role::Slider, "Strength");
    assert!((harness.state().generate_tab().strength - 0.8).abs() < 1e-6);
    type_prompt(&mut harness, "in the snow");
    let_steps_run(tmp.path());
    generate_one(&mut harness, 30, "the edit to finish");
    let request = &generate_requests(tmp.path())[0];
    assert!((request["strength"].as_f64().unwrap() - 0.8).abs() < 1e-6);
    assert!(
        request["init_image_png"]
            .as_str()
            .is_some_and(|p| !p.is_empty())
    );
    assert!(request["mask_png"].is_null());
}

/// `imageai-sd-worker`, built (once) into the target folder these tests run from, where the
/// app finds it beside `imageai`.
fn real_worker() -> &'static Path {
    static WORKER: OnceLock<PathBuf> = OnceLock::new();
    WORKER.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test> → target/<profile>
        let bin_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        build_worker(&bin_dir)
    })
}

#[test]
fn the_real_engine_makes_an_image_with_step_previews_on_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let app = open_app(tmp.path(), real_worker().to_path_buf());
    let mut harness = harness(app);
    provider_ready(&mut harness);
    type_into(&mut harness, Role::TextInput, "Size (WxH)", "64x32");
    type_prompt(&mut harness, "a photo of an astronaut");
    generate_one(&mut harness, 120, "the image");
    let job = &harness.state().generate_tab().jobs[0];
    assert_eq!(job.status, JobStatus::Done(1));
    assert!(job.previews >= 1, "no step previews arrived");
    let image = image::open(&harness.state().generate_tab().results[0].path).unwrap();
    // The size typed on the Generate tab.
    assert_eq!((image.width(), image.height()), (64, 32));
}

#[test]
fn installing_a_plugin_keeps_local_sd() {
    let tmp = tempfile::tempdir().unwrap();
    let mut harness = ready_with_scripted_worker(tmp.path());
    let plugin = imageai_tests::plugins::plugin_dir("imageai-plugin-openai");
    press(&mut harness, "Plugins tab");
    type_into(
        &mut harness,
        Role::TextInput,
        "Plugin folder or plugin.toml",
        plugin.to_str().unwrap(),
    );
    harness.get_by_label("Install").click();
    // The core is opened again to find the new plugin; local-sd must still be there.
    wait_until(
        &mut harness,
        120,
        "the core to list the new plugin",
        |app| !app.busy() && app.core().entry("openai").is_ok(),
    );
    let ids: Vec<&str> = harness
        .state()
        .core()
        .providers()
        .iter()
        .map(|e| e.id())
        .collect();
    assert_eq!(ids, ["local-sd", "openai"]);
    assert!(
        harness
            .state()
            .core()
            .entry("local-sd")
            .unwrap()
            .is_native()
    );
    // And it still runs jobs.
    harness.get_by_label("Generate tab").click();
    wait_for_tiny_sd(&mut harness, 30, "local-sd to load again");
    type_prompt(&mut harness, "a red bicycle");
    let_steps_run(tmp.path());
    generate_one(&mut harness, 30, "the image");
}

#[test]
fn any_diffusers_folder_runs_when_its_path_is_typed() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("my-model");
    std::fs::create_dir_all(&folder).unwrap();
    let mut harness = ready_with_scripted_worker(tmp.path());
    pick(
        &mut harness,
        "Model",
        "any diffusers folder or cached repo id",
    );
    type_prompt(&mut harness, "a castle");
    // Nothing typed: nothing is sent, and the message says what to do.
    harness.get_by_label("Generate").click();
    harness.run_steps(2);
    let error = harness.state().generate_tab().inline_error.clone().unwrap();
    assert!(error.starts_with("Type the model to use"), "{error}");
    assert!(harness.state().generate_tab().jobs.is_empty());
    type_into(
        &mut harness,
        Role::TextInput,
        "Model id or folder",
        folder.to_str().unwrap(),
    );
    let_steps_run(tmp.path());
    generate_one(&mut harness, 30, "the image");
    let load = requests(tmp.path())
        .into_iter()
        .find(|r| r["op"] == "load")
        .unwrap();
    assert_eq!(load["model"], folder.display().to_string());
    assert_eq!(load["device"], "cpu");
}
