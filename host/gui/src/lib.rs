//! ImageAI's desktop GUI. Every tab and flow lives in this library, so egui_kittest drives it in
//! tests; [`run`] is the thin eframe shell that `imageai` (no arguments) opens.

mod app;
mod background;
mod files;
mod generate;
mod help;
mod history;
mod mask;
mod models;
mod plugins;
mod settings;
mod templates;
mod thumbs;
mod widgets;

use std::path::PathBuf;

pub use app::{App, Tab};
pub use generate::{
    GenerateTab, Inputs, JobStatus, JobView, MaskInput, ResultImage, SD_SCHEDULERS, SeedMode,
    Submission,
};
pub use history::HistoryTab;
pub use mask::MaskPainter;
pub use models::{Download, ModelsTab};
pub use thumbs::Thumbs;

/// The environment variable that makes the window save a PNG screenshot of its first frames to
/// this path and exit (the smoke test under Xvfb uses it).
pub const SCREENSHOT_ENV: &str = "IMAGEAI_GUI_SCREENSHOT";

/// Why the GUI could not start. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum GuiError {
    #[error("{0}")]
    Core(#[from] imageai_core::app::CoreError),
    #[error(
        "the window could not be opened ({0}). The GUI needs a display with Vulkan, Metal or DirectX 12 (on Linux: install mesa-vulkan-drivers); the command line works without one: run `imageai --help`"
    )]
    Window(String),
}

/// Open the core at the standard paths and run the window until it is closed.
pub fn run() -> Result<(), GuiError> {
    let core = imageai_core::app::Core::open_default()?;
    let bundled = imageai_core::app::bundled_plugin_dirs();
    let screenshot = std::env::var_os(SCREENSHOT_ENV).map(PathBuf::from);
    let size = core
        .config
        .window_geometry()
        .filter(|g| g.w >= 400 && g.h >= 300)
        .map_or([1200.0, 800.0], |g| [g.w as f32, g.h as f32]);
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("ImageAI")
            .with_inner_size(size)
            .with_min_inner_size([640.0, 420.0]),
        ..eframe::NativeOptions::default()
    };
    eframe::run_native(
        "ImageAI",
        options,
        Box::new(move |cc| {
            let mut app = App::new(core, bundled, &cc.egui_ctx);
            // The worker `open_default` registered local-sd with.
            app.set_sd_worker(imageai_core::local_sd::find_worker());
            if let Some(path) = screenshot {
                app.screenshot_after_first_frames(path);
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| GuiError::Window(e.to_string()))
}
