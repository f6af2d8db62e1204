//! The mask brush: paint over a reference image where it should change, at the image's own
//! resolution, and export the mask as a PNG both conventions read: transparent where painted
//! (OpenAI's), white where painted once the alpha is dropped (Stable Diffusion's).

use std::path::{Path, PathBuf};

/// The overlay colour of painted pixels.
const PAINT: egui::Color32 = egui::Color32::from_rgba_premultiplied(140, 0, 0, 140);
/// The longest side of the canvas on screen, in points.
const CANVAS: f32 = 420.0;

/// A mask being painted over one image.
pub struct MaskPainter {
    /// The image painted over.
    pub source: PathBuf,
    /// The image's size in pixels, `[width, height]`: the mask's size too.
    pub size: [usize; 2],
    /// One byte per pixel, row by row: 255 painted, 0 not.
    pub mask: Vec<u8>,
    /// The brush radius in image pixels.
    pub brush: f32,
    pub erase: bool,
    /// Pixels painted now (kept up to date by every stamp: the UI asks each frame).
    painted: usize,
    image: egui::TextureHandle,
    overlay: Option<egui::TextureHandle>,
    dirty: bool,
    /// Where the stroke was last frame (image pixels), to join its stamps into a line.
    last: Option<egui::Pos2>,
}

impl MaskPainter {
    /// A blank mask over `image` (decoded), uploaded with `ctx`.
    pub fn new(ctx: &egui::Context, source: PathBuf, image: egui::ColorImage) -> Self {
        let size = image.size;
        let texture = ctx.load_texture(
            format!("mask-source-{}", source.display()),
            image,
            egui::TextureOptions::LINEAR,
        );
        let brush = (size[0].max(size[1]) as f32 / 20.0)
            .clamp(2.0, 200.0)
            .round();
        Self {
            source,
            size,
            mask: vec![0; size[0] * size[1]],
            brush,
            erase: false,
            painted: 0,
            image: texture,
            overlay: None,
            dirty: true,
            last: None,
        }
    }

    /// Pixels painted.
    pub fn painted(&self) -> usize {
        self.painted
    }

    pub fn clear(&mut self) {
        self.mask.fill(0);
        self.painted = 0;
        self.dirty = true;
    }

    /// Paint (or erase) a disc of the brush's radius at `at`, in image pixels.
    pub fn stamp(&mut self, at: egui::Pos2) {
        let [w, h] = self.size;
        let r = self.brush.max(0.5);
        let value = if self.erase { 0 } else { 255 };
        let x0 = (at.x - r).floor().max(0.0) as usize;
        let y0 = (at.y - r).floor().max(0.0) as usize;
        let x1 = ((at.x + r).ceil().max(0.0) as usize).min(w);
        let y1 = ((at.y + r).ceil().max(0.0) as usize).min(h);
        for y in y0..y1 {
            for x in x0..x1 {
                let dx = x as f32 + 0.5 - at.x;
                let dy = y as f32 + 0.5 - at.y;
                let pixel = &mut self.mask[y * w + x];
                if dx * dx + dy * dy <= r * r && *pixel != value {
                    *pixel = value;
                    if value > 0 {
                        self.painted += 1;
                    } else {
                        self.painted -= 1;
                    }
                }
            }
        }
        self.dirty = true;
    }

    /// Stamps along the line from `from` to `to`, close enough to make one stroke.
    pub fn line(&mut self, from: egui::Pos2, to: egui::Pos2) {
        let step = (self.brush / 2.0).max(0.5);
        let steps = ((to - from).length() / step).ceil().max(1.0) as usize;
        for i in 0..=steps {
            self.stamp(from.lerp(to, i as f32 / steps as f32));
        }
    }

    /// The mask as a PNG of the image's size (see [`encode_png`]).
    pub fn to_png(&self) -> Result<Vec<u8>, String> {
        encode_png(self.size, &self.mask)
    }

    fn overlay(&mut self, ctx: &egui::Context) -> egui::TextureId {
        if self.dirty || self.overlay.is_none() {
            let pixels = self
                .mask
                .iter()
                .map(|&m| {
                    if m > 0 {
                        PAINT
                    } else {
                        egui::Color32::TRANSPARENT
                    }
                })
                .collect();
            let image = egui::ColorImage::new(self.size, pixels);
            match &mut self.overlay {
                Some(texture) => texture.set(image, egui::TextureOptions::NEAREST),
                None => {
                    self.overlay = Some(ctx.load_texture(
                        "mask-overlay",
                        image,
                        egui::TextureOptions::NEAREST,
                    ));
                }
            }
            self.dirty = false;
        }
        self.overlay
            .as_ref()
            .map_or(egui::TextureId::default(), egui::TextureHandle::id)
    }
}

/// What the user did in the editor.
pub enum Action {
    None,
    Close,
}

/// The canvas and its tools.
pub fn ui(painter: &mut MaskPainter, ui: &mut egui::Ui) -> Action {
    let mut action = Action::None;
    ui.horizontal_wrapped(|ui| {
        ui.radio_value(&mut painter.erase, false, "Paint");
        ui.radio_value(&mut painter.erase, true, "Erase");
        let label = ui.label("Brush size");
        ui.add(egui::DragValue::new(&mut painter.brush).range(1.0..=500.0))
            .labelled_by(label.id);
        if ui.button("Clear mask").clicked() {
            painter.clear();
        }
        if ui.button("Close mask editor").clicked() {
            action = Action::Close;
        }
    });
    let [w, h] = painter.size;
    let scale = (CANVAS / w.max(1) as f32).min(CANVAS / h.max(1) as f32);
    let shown = egui::vec2(w as f32 * scale, h as f32 * scale);
    let (response, canvas) = ui.allocate_painter(shown, egui::Sense::click_and_drag());
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Canvas, true, "Mask canvas"));
    let rect = response.rect;
    let to_image = |pos: egui::Pos2| ((pos - rect.min) / scale).to_pos2();
    if let Some(pos) = response.interact_pointer_pos()
        && (response.dragged() || response.clicked() || response.drag_started())
    {
        let at = to_image(pos);
        match painter.last {
            Some(last) => painter.line(last, at),
            None => painter.stamp(at),
        }
        painter.last = Some(at);
    }
    if !response.dragged() {
        painter.last = None;
    }
    let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
    canvas.image(painter.image.id(), rect, uv, egui::Color32::WHITE);
    let overlay = painter.overlay(ui.ctx());
    canvas.image(overlay, rect, uv, egui::Color32::WHITE);
    // The brush outline under the pointer.
    if let Some(pos) = response.hover_pos() {
        canvas.circle_stroke(
            pos,
            painter.brush * scale,
            egui::Stroke::new(1.0, ui.visuals().strong_text_color()),
        );
    }
    ui.weak(format!(
        "{w}×{h} pixels, {} painted. Painted areas are what the model may change.",
        painter.painted()
    ));
    action
}

/// A mask (one byte per pixel, non-zero where painted) as a PNG: painted pixels white and
/// transparent, the rest black and opaque.
pub fn encode_png(size: [usize; 2], mask: &[u8]) -> Result<Vec<u8>, String> {
    let [w, h] = size;
    let mut rgba = Vec::with_capacity(w * h * 4);
    for &m in mask {
        rgba.extend_from_slice(&if m > 0 {
            [255, 255, 255, 0]
        } else {
            [0, 0, 0, 255]
        });
    }
    let image = image::RgbaImage::from_raw(w as u32, h as u32, rgba)
        .ok_or_else(|| "the mask has the wrong size".to_owned())?;
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| format!("the mask could not be encoded as PNG: {e}"))?;
    Ok(bytes)
}

/// Decode an image file for the canvas (on a background thread).
pub fn decode(path: &Path) -> Result<egui::ColorImage, String> {
    let image = image::open(path)
        .map_err(|e| format!("could not read the image ({e}): {}", path.display()))?
        .to_rgba8();
    let size = [image.width() as usize, image.height() as usize];
    Ok(egui::ColorImage::from_rgba_unmultiplied(
        size,
        image.as_flat_samples().as_slice(),
    ))
}
