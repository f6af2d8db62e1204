//! Thumbnails: decoded on worker threads, cached on disk as small PNGs keyed by the image's path,
//! size and modification time, and uploaded as textures only while on screen (textures not drawn
//! for a frame are freed once more than [`Thumbs::TEXTURE_BUDGET`] are held).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};

use sha2::{Digest, Sha256};

/// The longest side of a cached thumbnail, in pixels.
pub const THUMB_SIZE: u32 = 192;

enum Slot {
    Pending,
    Ready {
        texture: egui::TextureHandle,
        last_used: u64,
    },
    Failed,
}

struct Requests {
    queue: Mutex<VecDeque<PathBuf>>,
    wake: Condvar,
}

/// The thumbnail cache.
pub struct Thumbs {
    dir: PathBuf,
    slots: HashMap<PathBuf, Slot>,
    requests: Arc<Requests>,
    decoded: Receiver<(PathBuf, Option<egui::ColorImage>)>,
    frame: u64,
    repaint: Arc<Mutex<Option<egui::Context>>>,
}

impl Thumbs {
    /// Textures kept for images that went off screen, before the oldest are freed.
    pub const TEXTURE_BUDGET: usize = 300;
    /// Requests kept waiting; older ones (scrolled past) are dropped.
    const QUEUE_LIMIT: usize = 256;

    pub fn new(dir: PathBuf) -> Self {
        let requests = Arc::new(Requests {
            queue: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
        });
        let (sender, decoded) = mpsc::channel();
        let repaint: Arc<Mutex<Option<egui::Context>>> = Arc::new(Mutex::new(None));
        for n in 0..2 {
            let requests = requests.clone();
            let sender = sender.clone();
            let dir = dir.clone();
            let repaint = repaint.clone();
            let _ = std::thread::Builder::new()
                .name(format!("imageai-thumbs-{n}"))
                .spawn(move || worker(&requests, &sender, &dir, &repaint));
        }
        Self {
            dir,
            slots: HashMap::new(),
            requests,
            decoded,
            frame: 0,
            repaint,
        }
    }

    pub fn set_context(&self, ctx: &egui::Context) {
        if let Ok(mut slot) = self.repaint.lock() {
            *slot = Some(ctx.clone());
        }
    }

    /// The folder holding the cached thumbnails.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Textures held now (for the memory benchmark).
    pub fn textures(&self) -> usize {
        self.slots
            .values()
            .filter(|s| matches!(s, Slot::Ready { .. }))
            .count()
    }

    /// Thumbnails asked for and not decoded yet.
    pub fn pending(&self) -> usize {
        self.slots
            .values()
            .filter(|s| matches!(s, Slot::Pending))
            .count()
    }

    /// Upload what the workers decoded.
    pub fn receive(&mut self, ctx: &egui::Context) {
        for (path, image) in self.decoded.try_iter() {
            let slot = match image {
                Some(image) => Slot::Ready {
                    texture: ctx.load_texture(
                        format!("thumb:{}", path.display()),
                        image,
                        egui::TextureOptions::LINEAR,
                    ),
                    last_used: self.frame,
                },
                None => Slot::Failed,
            };
            // A request dropped while waiting has no slot any more: keep it anyway, it is done.
            self.slots.insert(path, slot);
        }
    }

    /// The texture for `path` if ready; otherwise ask a worker for it.
    pub fn get(&mut self, path: &Path) -> Option<&egui::TextureHandle> {
        let frame = self.frame;
        if !self.slots.contains_key(path) {
            self.slots.insert(path.to_owned(), Slot::Pending);
            if let Ok(mut queue) = self.requests.queue.lock() {
                queue.push_back(path.to_owned());
                while queue.len() > Self::QUEUE_LIMIT {
                    if let Some(old) = queue.pop_front() {
                        self.slots.remove(&old);
                    }
                }
            }
            self.requests.wake.notify_one();
        }
        match self.slots.get_mut(path) {
            Some(Slot::Ready { texture, last_used }) => {
                *last_used = frame;
                Some(texture)
            }
            _ => None,
        }
    }

    /// Whether the thumbnail could not be made (not an image, unreadable).
    pub fn failed(&self, path: &Path) -> bool {
        matches!(self.slots.get(path), Some(Slot::Failed))
    }

    /// Forget a path (after its file was deleted).
    pub fn forget(&mut self, path: &Path) {
        self.slots.remove(path);
    }

    /// Free textures not drawn this frame, oldest first, beyond the budget.
    pub fn end_frame(&mut self) {
        let held = self.textures();
        if held > Self::TEXTURE_BUDGET {
            let mut unused: Vec<(u64, PathBuf)> = self
                .slots
                .iter()
                .filter_map(|(p, s)| match s {
                    Slot::Ready { last_used, .. } if *last_used < self.frame => {
                        Some((*last_used, p.clone()))
                    }
                    _ => None,
                })
                .collect();
            unused.sort();
            for (_, path) in unused.into_iter().take(held - Self::TEXTURE_BUDGET) {
                self.slots.remove(&path);
            }
        }
        self.frame += 1;
    }
}

fn worker(
    requests: &Requests,
    sender: &Sender<(PathBuf, Option<egui::ColorImage>)>,
    dir: &Path,
    repaint: &Mutex<Option<egui::Context>>,
) {
    loop {
        let path = {
            let Ok(mut queue) = requests.queue.lock() else {
                return;
            };
            loop {
                // Newest first: what is on screen now matters more than what scrolled past.
                if let Some(path) = queue.pop_back() {
                    break path;
                }
                queue = match requests.wake.wait(queue) {
                    Ok(queue) => queue,
                    Err(_) => return,
                };
            }
        };
        let image = load(dir, &path);
        if sender.send((path, image)).is_err() {
            return;
        }
        if let Ok(slot) = repaint.lock()
            && let Some(ctx) = slot.as_ref()
        {
            ctx.request_repaint();
        }
    }
}

/// The cache file for `path` as it is now (its size and modification time are in the key, so
/// a changed image gets a new thumbnail).
pub fn cache_path(dir: &Path, path: &Path) -> Option<PathBuf> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let mut hasher = Sha256::new();
    hasher.update(path.to_string_lossy().as_bytes());
    hasher.update(meta.len().to_le_bytes());
    hasher.update(modified.to_le_bytes());
    let digest = hex::encode(hasher.finalize());
    Some(dir.join(format!("{}.png", &digest[..32])))
}

fn load(dir: &Path, path: &Path) -> Option<egui::ColorImage> {
    let cached = cache_path(dir, path)?;
    let thumb = match image::open(&cached) {
        Ok(img) => img.to_rgba8(),
        Err(_) => {
            let img = image::open(path).ok()?;
            let thumb = img.thumbnail(THUMB_SIZE, THUMB_SIZE).to_rgba8();
            if std::fs::create_dir_all(dir).is_ok() {
                // Written aside and renamed, so a reader never sees half a file.
                let partial = cached.with_extension("png.partial");
                if thumb
                    .save_with_format(&partial, image::ImageFormat::Png)
                    .is_ok()
                {
                    let _ = std::fs::rename(&partial, &cached);
                }
            }
            thumb
        }
    };
    let size = [thumb.width() as usize, thumb.height() as usize];
    Some(egui::ColorImage::from_rgba_unmultiplied(
        size,
        thumb.as_raw(),
    ))
}

/// Draw the thumbnail of `path` in a `size` box (a placeholder until it is ready), clickable and
/// named `name` for screen readers and tests.
pub fn thumbnail(
    ui: &mut egui::Ui,
    thumbs: &mut Thumbs,
    path: &Path,
    size: egui::Vec2,
    name: &str,
) -> egui::Response {
    let (rect, response) = ui.allocate_exact_size(size, egui::Sense::click());
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, ui.is_enabled(), name));
    if !ui.is_rect_visible(rect) {
        return response;
    }
    let visuals = ui.visuals();
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 4.0, visuals.extreme_bg_color);
    let failed = thumbs.failed(path);
    if let Some(texture) = thumbs.get(path) {
        let [w, h] = texture.size();
        let scale = (size.x / w as f32).min(size.y / h as f32);
        let shown = egui::vec2(w as f32 * scale, h as f32 * scale);
        let image_rect = egui::Rect::from_center_size(rect.center(), shown);
        painter.image(
            texture.id(),
            image_rect,
            egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
            egui::Color32::WHITE,
        );
    } else {
        let text = if failed { "no preview" } else { "…" };
        painter.text(
            rect.center(),
            egui::Align2::CENTER_CENTER,
            text,
            egui::FontId::proportional(12.0),
            ui.visuals().weak_text_color(),
        );
    }
    if response.hovered() {
        painter.rect_stroke(
            rect,
            4.0,
            ui.visuals().selection.stroke,
            egui::StrokeKind::Inside,
        );
    }
    response
}
