//! Files the user hands the app: native open and save dialogs (the XDG desktop portal on Linux,
//! the system's own elsewhere) and files dropped on the window. Dialogs are made on the UI
//! thread, as macOS requires, and awaited on a background thread so the UI never waits.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::app::App;

/// Image files the dialogs offer and drops accept.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "webp", "gif"];

/// Whether `path` names an image by its extension.
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Files dropped on the window this frame.
pub fn dropped(ctx: &egui::Context) -> Vec<PathBuf> {
    ctx.input(|i| {
        i.raw
            .dropped_files
            .iter()
            .map(|f| f.path().to_path_buf())
            .filter(|p| !p.as_os_str().is_empty())
            .collect()
    })
}

/// Wakes the thread that waits on a future.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Run `future` to completion on this (background) thread.
pub(crate) fn block_on<T>(future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        std::thread::park();
    }
}

/// Await a dialog in the background and hand its answer to `then` on the UI thread (nothing
/// happens when the user cancels it).
fn await_dialog<T: Send + 'static>(
    app: &mut App,
    dialog: impl Future<Output = Option<T>> + Send + 'static,
    then: impl FnOnce(&mut App, T) + Send + 'static,
) {
    app.background.spawn("file-dialog", move || {
        let picked = block_on(dialog);
        Box::new(move |app: &mut App| {
            if let Some(picked) = picked {
                then(app, picked);
            }
        })
    });
}

/// Ask for a folder.
pub(crate) fn pick_folder(app: &mut App, then: impl FnOnce(&mut App, PathBuf) + Send + 'static) {
    let dialog = rfd::AsyncFileDialog::new().pick_folder();
    await_dialog(app, dialog, move |app, handle| {
        then(app, handle.path().to_path_buf());
    });
}

/// Ask for one or more images.
pub(crate) fn pick_images(
    app: &mut App,
    title: &str,
    then: impl FnOnce(&mut App, Vec<PathBuf>) + Send + 'static,
) {
    let dialog = rfd::AsyncFileDialog::new()
        .set_title(title)
        .add_filter("Images", &IMAGE_EXTENSIONS)
        .pick_files();
    await_dialog(app, dialog, move |app, handles| {
        then(
            app,
            handles.iter().map(|h| h.path().to_path_buf()).collect(),
        );
    });
}

/// Ask for a single-file checkpoint (`.safetensors`).
pub(crate) fn pick_checkpoint(
    app: &mut App,
    then: impl FnOnce(&mut App, PathBuf) + Send + 'static,
) {
    let dialog = rfd::AsyncFileDialog::new()
        .set_title("Import a checkpoint")
        .add_filter("Checkpoints", &["safetensors"])
        .pick_file();
    await_dialog(app, dialog, move |app, handle| {
        then(app, handle.path().to_path_buf());
    });
}

/// Ask where to save a file, suggesting `name`.
pub(crate) fn save_as(
    app: &mut App,
    name: &str,
    then: impl FnOnce(&mut App, PathBuf) + Send + 'static,
) {
    let dialog = rfd::AsyncFileDialog::new().set_file_name(name).save_file();
    await_dialog(app, dialog, move |app, handle| {
        then(app, handle.path().to_path_buf());
    });
}
