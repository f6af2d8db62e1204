//! Work off the UI thread: each task runs on its own thread and hands back a closure that the
//! UI applies to the [`App`](crate::App) at the start of a frame.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use crate::app::App;

/// What a finished task does to the app, on the UI thread.
pub type Apply = Box<dyn FnOnce(&mut App) + Send>;

/// Background tasks and their results.
pub struct Background {
    sender: Sender<Apply>,
    receiver: Receiver<Apply>,
    running: Arc<AtomicUsize>,
    repaint: Arc<Mutex<Option<egui::Context>>>,
}

impl Default for Background {
    fn default() -> Self {
        let (sender, receiver) = mpsc::channel();
        Self {
            sender,
            receiver,
            running: Arc::new(AtomicUsize::new(0)),
            repaint: Arc::new(Mutex::new(None)),
        }
    }
}

impl Background {
    /// Wake the UI with this context when a task finishes.
    pub fn set_context(&self, ctx: &egui::Context) {
        if let Ok(mut slot) = self.repaint.lock() {
            *slot = Some(ctx.clone());
        }
    }

    /// Run `work` on a new thread; its result is applied on the UI thread.
    pub fn spawn(&self, name: &str, work: impl FnOnce() -> Apply + Send + 'static) {
        let sender = self.sender.clone();
        let running = self.running.clone();
        let repaint = self.repaint.clone();
        running.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name(format!("imageai-gui-{name}"))
            .spawn(move || {
                let apply = work();
                let _ = sender.send(apply);
                running.fetch_sub(1, Ordering::SeqCst);
                if let Ok(slot) = repaint.lock()
                    && let Some(ctx) = slot.as_ref()
                {
                    ctx.request_repaint();
                }
            });
        if let Err(err) = spawned {
            self.running.fetch_sub(1, Ordering::SeqCst);
            let message = format!(
                "could not start a background task ({err}); close other programs and try again"
            );
            let _ = self
                .sender
                .send(Box::new(move |app: &mut App| app.error(message)));
        }
    }

    /// A sender for threads this module did not start (a job's preview callback): what it
    /// sends is applied at the next frame, which it wakes.
    pub fn notifier(&self) -> Notifier {
        Notifier {
            sender: self.sender.clone(),
            repaint: self.repaint.clone(),
        }
    }

    /// Results ready now.
    pub fn ready(&self) -> Vec<Apply> {
        self.receiver.try_iter().collect()
    }

    /// Tasks still running.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

/// Sends changes to the app from any thread; see [`Background::notifier`].
#[derive(Clone)]
pub struct Notifier {
    sender: Sender<Apply>,
    repaint: Arc<Mutex<Option<egui::Context>>>,
}

impl Notifier {
    /// Apply `apply` on the UI thread at the next frame (dropped once the app is gone).
    pub fn send(&self, apply: Apply) {
        if self.sender.send(apply).is_ok()
            && let Ok(slot) = self.repaint.lock()
            && let Some(ctx) = slot.as_ref()
        {
            ctx.request_repaint();
        }
    }
}
