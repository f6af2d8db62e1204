//! Stability AI on the wire: the multipart forms of the v2beta services, the JSON and multipart
//! bodies of v1 generation, their answers (raw image bytes with `finish-reason`/`seed` headers,
//! or JSON), and error mapping.

use imageai_sdk::base64::Encoded;
use imageai_sdk::errors::ErrorDetails;
use imageai_sdk::http::Response;
use imageai_sdk::multipart::Form;
use imageai_sdk::{EditMode, EditRequest, GenerateRequest, Image, ProviderError, UpscaleRequest};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::models::{MAX_SEED, Model, Upscaler, style_preset};

/// What an image the user gave is called in a multipart form.
fn file(form: Form, field: &str, stem: &str, image: &Image) -> Form {
    form.file(
        field,
        image.file_name(stem),
        image.mime.clone(),
        image.data.clone(),
    )
}

fn text_if(form: Form, name: &str, value: Option<impl Into<String>>) -> Form {
    match value {
        Some(value) => form.text(name, value),
        None => form,
    }
}

/// A float as a short decimal (`0.35`, not `0.3499999940395355`).
pub fn decimal(value: f64) -> String {
    let rounded = (value * 10_000.0).round() / 10_000.0;
    format!("{rounded}")
}

/// The seed of the `index`-th of several one-image calls: the same seed would give the same
/// image each time, so later calls count up from it. 0 (random) stays random.
pub fn nth_seed(seed: Option<u64>, index: u32) -> Option<u64> {
    seed.map(|s| {
        if s == 0 {
            0
        } else {
            (s + u64::from(index) - 1) % MAX_SEED + 1
        }
    })
}

/// The multipart form of `POST /v2beta/stable-image/generate/{ultra,core,sd3}`; with `source`
/// (image, strength) it is image-to-image.
pub fn generate_form(
    model: &Model,
    request: &GenerateRequest,
    seed: Option<u64>,
    source: Option<(&Image, f32)>,
) -> Result<Form, ProviderError> {
    let mut form = Form::new().text("prompt", request.prompt.clone());
    if model.is_sd3() {
        form = form.text("model", model.id).text(
            "mode",
            if source.is_some() {
                "image-to-image"
            } else {
                "text-to-image"
            },
        );
    }
    form = text_if(form, "negative_prompt", request.negative_prompt.clone());
    form = text_if(form, "aspect_ratio", request.aspect_ratio.clone());
    form = text_if(form, "seed", seed.map(|s| s.to_string()));
    form = text_if(form, "output_format", request.output_format.clone());
    form = text_if(form, "style_preset", style_preset(request)?);
    if model.is_sd3() {
        form = text_if(
            form,
            "cfg_scale",
            request.guidance.map(|g| decimal(f64::from(g))),
        );
    }
    if let Some((image, strength)) = source {
        form = file(form, "image", "image", image).text("strength", decimal(f64::from(strength)));
    }
    Ok(form)
}

/// The path and multipart form of a v2beta edit service.
pub fn edit_form(request: &EditRequest) -> Result<(&'static str, Form), ProviderError> {
    let base = &request.base;
    let mut form = Form::new();
    let image = request
        .images
        .first()
        .ok_or_else(|| ProviderError::invalid_request("give the image to edit with --image"))?;
    form = file(form, "image", "image", image);
    let path = match request.mode {
        EditMode::Inpaint => "/v2beta/stable-image/edit/inpaint",
        EditMode::Erase => "/v2beta/stable-image/edit/erase",
        EditMode::Outpaint => "/v2beta/stable-image/edit/outpaint",
        EditMode::SearchReplace => "/v2beta/stable-image/edit/search-and-replace",
        EditMode::Edit | EditMode::Variations => {
            return Err(ProviderError::invalid_request(
                "stable-image-edit inpaints, erases, outpaints or searches and replaces",
            ));
        }
    };
    if let Some(mask) = &request.mask {
        form = file(form, "mask", "mask", mask);
    }
    if request.mode != EditMode::Erase {
        if !base.prompt.trim().is_empty() {
            form = form.text("prompt", base.prompt.clone());
        }
        form = text_if(form, "negative_prompt", base.negative_prompt.clone());
    }
    for name in [
        "search_prompt",
        "left",
        "right",
        "up",
        "down",
        "creativity",
        "grow_mask",
    ] {
        form = text_if(form, name, base.extra(name).map(str::trim));
    }
    form = text_if(form, "seed", base.seed.map(|s| s.to_string()));
    form = text_if(form, "output_format", base.output_format.clone());
    form = text_if(form, "style_preset", style_preset(base)?);
    Ok((path, form))
}

/// The path and multipart form of a v2beta upscale.
pub fn upscale_form(upscaler: Upscaler, request: &UpscaleRequest) -> (String, Form) {
    let mut form = file(Form::new(), "image", "image", &request.image);
    if upscaler != Upscaler::Fast {
        form = text_if(form, "prompt", request.prompt.clone());
        form = text_if(form, "negative_prompt", request.negative_prompt.clone());
        form = text_if(form, "seed", request.seed.map(|s| s.to_string()));
        for name in ["creativity", "style_preset"] {
            form = text_if(
                form,
                name,
                request.extra.get(name).map(|v| v.trim().to_owned()),
            );
        }
    }
    form = text_if(form, "output_format", request.output_format.clone());
    (
        format!("/v2beta/stable-image/upscale/{}", upscaler.endpoint()),
        form,
    )
}

/// `[{text, weight: 1}]`, plus the negative prompt with weight -1 (v1's form of it).
fn text_prompts(request: &GenerateRequest) -> Vec<(String, f64)> {
    let mut prompts = vec![(request.prompt.clone(), 1.0)];
    if let Some(negative) = request
        .negative_prompt
        .as_ref()
        .filter(|n| !n.trim().is_empty())
    {
        prompts.push((negative.clone(), -1.0));
    }
    prompts
}

/// The parameters every v1 generation takes, as (name, JSON value).
fn v1_options(request: &GenerateRequest) -> Result<Vec<(&'static str, Value)>, ProviderError> {
    let mut options = vec![("samples", json!(request.count()))];
    if let Some(cfg) = request.guidance {
        options.push((
            "cfg_scale",
            json!(
                decimal(f64::from(cfg))
                    .parse::<f64>()
                    .unwrap_or(f64::from(cfg))
            ),
        ));
    }
    if let Some(sampler) = request.extra("sampler") {
        options.push(("sampler", json!(sampler.trim())));
    }
    if let Some(seed) = request.seed {
        options.push(("seed", json!(seed)));
    }
    if let Some(steps) = request.steps {
        options.push(("steps", json!(steps)));
    }
    if let Some(style) = style_preset(request)? {
        options.push(("style_preset", json!(style)));
    }
    Ok(options)
}

/// The JSON body of `POST /v1/generation/{engine}/text-to-image`. SDXL refuses v1's default
/// 512×512, so the size is always sent (1024×1024 unless asked otherwise).
pub fn v1_text_to_image(request: &GenerateRequest) -> Result<Value, ProviderError> {
    let size = request.size.as_deref().unwrap_or("1024x1024");
    let (width, height) = size
        .split_once('x')
        .and_then(|(w, h)| Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)))
        .ok_or_else(|| {
            ProviderError::invalid_request(format!("the size must be WIDTHxHEIGHT, not `{size}`"))
        })?;
    let prompts: Vec<Value> = text_prompts(request)
        .into_iter()
        .map(|(text, weight)| json!({"text": text, "weight": weight}))
        .collect();
    let mut body = Map::new();
    body.insert("text_prompts".into(), Value::Array(prompts));
    body.insert("width".into(), json!(width));
    body.insert("height".into(), json!(height));
    for (name, value) in v1_options(request)? {
        body.insert(name.into(), value);
    }
    Ok(Value::Object(body))
}

/// v1 multipart bodies spell the prompts `text_prompts[i][text]` / `[weight]`.
fn v1_form(request: &GenerateRequest) -> Result<Form, ProviderError> {
    let mut form = Form::new();
    for (i, (text, weight)) in text_prompts(request).into_iter().enumerate() {
        form = form
            .text(format!("text_prompts[{i}][text]"), text)
            .text(format!("text_prompts[{i}][weight]"), decimal(weight));
    }
    for (name, value) in v1_options(request)? {
        let text = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        form = form.text(name, text);
    }
    Ok(form)
}

/// `POST /v1/generation/{engine}/image-to-image`. v1's `image_strength` is how much of the source
/// to keep, the opposite of ImageAI's strength.
pub fn v1_image_to_image(request: &EditRequest) -> Result<Form, ProviderError> {
    let image = request.images.first().ok_or_else(|| {
        ProviderError::invalid_request("give the image to start from with --image")
    })?;
    let mut form = file(v1_form(&request.base)?, "init_image", "init", image)
        .text("init_image_mode", "IMAGE_STRENGTH");
    if let Some(strength) = request.strength {
        form = form.text("image_strength", decimal(1.0 - f64::from(strength)));
    }
    Ok(form)
}

/// `POST /v1/generation/{engine}/image-to-image/masking`: with a mask, white marks the area to
/// change unless `mask_source` says black; without one, the image's transparency does.
pub fn v1_masking(request: &EditRequest) -> Result<Form, ProviderError> {
    let image = request
        .images
        .first()
        .ok_or_else(|| ProviderError::invalid_request("give the image to inpaint with --image"))?;
    let source = match (
        request.base.extra("mask_source").map(str::trim),
        &request.mask,
    ) {
        (Some(source), _) => source.to_owned(),
        (None, Some(_)) => "MASK_IMAGE_WHITE".to_owned(),
        (None, None) => "INIT_IMAGE_ALPHA".to_owned(),
    };
    let mut form =
        file(v1_form(&request.base)?, "init_image", "init", image).text("mask_source", source);
    if let Some(mask) = &request.mask {
        form = file(form, "mask_image", "mask", mask);
    }
    Ok(form)
}

/// One image a v2beta service made.
#[derive(Debug, PartialEq)]
pub struct Made {
    pub image: Image,
    pub seed: Option<u64>,
    pub finish_reason: Option<String>,
}

/// `{"image": "<base64>", "finish_reason", "seed"}` (answers with `accept: application/json`).
#[derive(Deserialize)]
struct JsonImage<'a> {
    /// Borrowed from the answer: a large image is neither copied nor checked for UTF-8 twice.
    #[serde(borrow)]
    image: Encoded<'a>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    seed: Option<Value>,
}

fn seed_of(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Read a v2beta answer: the image bytes with `finish-reason` and `seed` headers (we ask with
/// `accept: image/*`), or the JSON form of the same when a proxy answers that way.
pub fn read_image(response: &Response, fallback_mime: &str) -> Result<Made, ProviderError> {
    let content_type = response
        .header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        let answer: JsonImage<'_> = response.json()?;
        let image = Image::from_base64(&answer.image, fallback_mime)?;
        return Ok(Made {
            image,
            seed: seed_of(answer.seed.as_ref()),
            finish_reason: answer.finish_reason,
        });
    }
    let Some(mime) = imageai_sdk::sniff_mime(&response.bytes) else {
        return Err(ProviderError::server(format!(
            "Stability's answer is not an image ({} bytes of `{content_type}`). Try again; if it persists, the API may have changed.",
            response.bytes.len()
        )));
    };
    Ok(Made {
        image: Image::new(mime, response.bytes.clone()),
        seed: response.header("seed").and_then(|s| s.trim().parse().ok()),
        finish_reason: response
            .header("finish-reason")
            .map(|r| r.trim().to_owned()),
    })
}

/// `{"id": "<hex>"}`: the answer of an asynchronous service (creative upscale).
#[derive(Debug, Deserialize)]
pub struct Started {
    pub id: String,
}

/// `{"artifacts": [{"base64", "seed", "finishReason"}]}` (v1; older answers are the bare list).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum V1Answer<'a> {
    Wrapped {
        #[serde(borrow)]
        artifacts: Vec<Artifact<'a>>,
    },
    Bare(#[serde(borrow)] Vec<Artifact<'a>>),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact<'a> {
    /// Borrowed from the answer, as in [`read_image`].
    #[serde(default, borrow)]
    pub base64: Option<Encoded<'a>>,
    #[serde(default)]
    pub seed: Option<Value>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

impl V1Answer<'_> {
    /// The images, in order; an `ERROR` artifact without image fails the call.
    pub fn made(self) -> Result<Vec<Made>, ProviderError> {
        let artifacts = match self {
            Self::Wrapped { artifacts } | Self::Bare(artifacts) => artifacts,
        };
        if artifacts.is_empty() {
            return Err(ProviderError::server(
                "Stability answered without any image. Try again.",
            ));
        }
        artifacts
            .into_iter()
            .enumerate()
            .map(|(i, artifact)| match artifact.base64 {
                Some(data) if artifact.finish_reason.as_deref() != Some("ERROR") => Ok(Made {
                    image: Image::from_base64(&data, "image/png")?,
                    seed: seed_of(artifact.seed.as_ref()),
                    finish_reason: artifact.finish_reason,
                }),
                _ => Err(ProviderError::server(format!(
                    "Stability could not make image {} (finish reason {}). Try again.",
                    i + 1,
                    artifact.finish_reason.as_deref().unwrap_or("missing")
                ))),
            })
            .collect()
    }
}

/// `[{"id", "name", "description", "type"}]` from `GET /v1/engines/list`.
#[derive(Debug, Deserialize)]
pub struct Engine {
    pub id: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// Stability's errors, worded for ImageAI users.
pub fn error(response: &Response) -> ProviderError {
    let occurrence = serde_json::from_slice::<Value>(&response.bytes)
        .ok()
        .and_then(|body| body.get("id").and_then(Value::as_str).map(str::to_owned));
    map_error(response.error_details(), occurrence)
}

fn map_error(details: ErrorDetails, occurrence: Option<String>) -> ProviderError {
    let status = details.status;
    let message = details
        .message
        .clone()
        .unwrap_or_else(|| "no message".to_owned());
    let message = message.trim_end_matches('.');
    let reference = occurrence
        .or(details.request_id.clone())
        .map(|id| format!(" (error id {id})"))
        .unwrap_or_default();
    let moderation = details.is(&["content_moderation", "public_figure"])
        || message.to_ascii_lowercase().contains("moderation");
    match status {
        401 => ProviderError::auth(
            "Stability rejected the key (401). Create one at https://platform.stability.ai/account/keys and set it with `imageai keys set stability`.",
        ),
        402 => ProviderError::quota(format!(
            "Stability says the account is out of credits ({message}). Buy credits at https://platform.stability.ai/account/credits."
        )),
        403 | 422 if moderation => ProviderError::content_policy(format!(
            "Stability's content moderation refused the request: {message}. Rephrase the prompt or use another image."
        )),
        403 => ProviderError::auth(format!(
            "Stability refused access (403): {message}. Check the key's organization and permissions, or set another key with `imageai keys set stability`."
        )),
        413 => ProviderError::invalid_request(format!(
            "the upload was too large for Stability (413: {message}). Requests must stay under 10 MiB: use a smaller or JPEG/WebP image."
        )),
        422 => ProviderError::invalid_request(format!(
            "Stability refused the request (422): {message}{reference}"
        )),
        400 | 404 => ProviderError::invalid_request(format!(
            "Stability rejected the request ({status}): {message}{reference}"
        )),
        // Stability allows 150 requests per 10 seconds and blocks a client for 60 s after that;
        // without a `retry-after` header that minute is the hint.
        429 => ProviderError::RateLimited {
            message: format!("Stability is rate limiting requests (150 per 10 s): {message}"),
            retry_after_ms: details.retry_after_ms.or(Some(60_000)),
        },
        408 | 504 => ProviderError::timeout(format!(
            "Stability timed out ({status}): {message}. Try again."
        )),
        500..=599 => ProviderError::server(format!(
            "Stability failed ({status}): {message}{reference}. Try again in a moment."
        )),
        _ => details.into_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::find;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn text(form: Form) -> String {
        String::from_utf8_lossy(&form.with_boundary("B").finish().1).into_owned()
    }

    fn field(name: &str, value: &str) -> String {
        format!("name=\"{name}\"\r\n\r\n{value}\r\n")
    }

    #[test]
    fn generate_forms() -> Result<(), ProviderError> {
        let mut request = GenerateRequest {
            negative_prompt: Some("blur".into()),
            aspect_ratio: Some("16:9".into()),
            output_format: Some("jpeg".into()),
            guidance: Some(4.5),
            ..GenerateRequest::new("sd3.5-large", "a fox")
        };
        request.extra.insert("style_preset".into(), "anime".into());
        let form = text(generate_form(
            find("sd3.5-large", "x")?,
            &request,
            Some(42),
            None,
        )?);
        for expected in [
            field("prompt", "a fox"),
            field("model", "sd3.5-large"),
            field("mode", "text-to-image"),
            field("negative_prompt", "blur"),
            field("aspect_ratio", "16:9"),
            field("seed", "42"),
            field("output_format", "jpeg"),
            field("style_preset", "anime"),
            field("cfg_scale", "4.5"),
        ] {
            assert!(form.contains(&expected), "missing {expected:?} in\n{form}");
        }
        let ultra = text(generate_form(
            find("stable-image-ultra", "x")?,
            &GenerateRequest::new("u", "a fox"),
            None,
            Some((&Image::png(PNG.to_vec()), 0.35)),
        )?);
        assert!(
            ultra.contains(&field("strength", "0.35"))
                && ultra.contains("name=\"image\"; filename=\"image.png\""),
            "{ultra}"
        );
        assert!(
            !ultra.contains("name=\"model\"") && !ultra.contains("name=\"seed\""),
            "{ultra}"
        );
        Ok(())
    }

    #[test]
    fn seeds_count_up() {
        assert_eq!(nth_seed(Some(7), 0), Some(7));
        assert_eq!(nth_seed(Some(7), 2), Some(9));
        assert_eq!(nth_seed(Some(0), 3), Some(0));
        assert_eq!(nth_seed(Some(MAX_SEED), 1), Some(1));
        assert_eq!(nth_seed(None, 1), None);
    }

    #[test]
    fn edit_and_upscale_forms() -> Result<(), ProviderError> {
        let mut base = GenerateRequest::new("stable-image-edit", "");
        base.extra.insert("left".into(), "200".into());
        base.extra.insert("creativity".into(), "0.6".into());
        let request = EditRequest::new(EditMode::Outpaint, base, vec![Image::png(PNG.to_vec())]);
        let (path, form) = edit_form(&request)?;
        assert_eq!(path, "/v2beta/stable-image/edit/outpaint");
        let form = text(form);
        assert!(
            form.contains(&field("left", "200"))
                && form.contains(&field("creativity", "0.6"))
                && !form.contains("name=\"prompt\""),
            "{form}"
        );
        let mut upscale = UpscaleRequest {
            prompt: Some("a fox".into()),
            seed: Some(3),
            ..UpscaleRequest::new("upscale-creative", Image::png(PNG.to_vec()))
        };
        upscale.extra.insert("creativity".into(), "0.3".into());
        let (path, form) = upscale_form(Upscaler::Creative, &upscale);
        assert_eq!(path, "/v2beta/stable-image/upscale/creative");
        let form = text(form);
        assert!(
            form.contains(&field("prompt", "a fox"))
                && form.contains(&field("seed", "3"))
                && form.contains(&field("creativity", "0.3")),
            "{form}"
        );
        let (_, fast) = upscale_form(
            Upscaler::Fast,
            &UpscaleRequest::new("upscale-fast", Image::png(PNG.to_vec())),
        );
        assert!(!text(fast).contains("name=\"prompt\""));
        Ok(())
    }

    #[test]
    fn v1_bodies() -> Result<(), ProviderError> {
        let mut request = GenerateRequest {
            negative_prompt: Some("blur".into()),
            n: 3,
            size: Some("1216x832".into()),
            seed: Some(5),
            steps: Some(40),
            guidance: Some(7.1),
            ..GenerateRequest::new("stable-diffusion-xl-1024-v1-0", "a fox")
        };
        request.extra.insert("sampler".into(), "K_EULER".into());
        assert_eq!(
            v1_text_to_image(&request)?,
            json!({"text_prompts": [{"text": "a fox", "weight": 1.0}, {"text": "blur", "weight": -1.0}],
                   "width": 1216, "height": 832, "samples": 3, "cfg_scale": 7.1, "sampler": "K_EULER", "seed": 5, "steps": 40})
        );
        assert_eq!(
            v1_text_to_image(&GenerateRequest::new("x", "a fox"))?["width"],
            1024
        );
        let edit = EditRequest {
            strength: Some(0.35),
            ..EditRequest::new(
                EditMode::Edit,
                request.clone(),
                vec![Image::png(PNG.to_vec())],
            )
        };
        let form = text(v1_image_to_image(&edit)?);
        for expected in [
            field("text_prompts[0][text]", "a fox"),
            field("text_prompts[1][weight]", "-1"),
            field("image_strength", "0.65"),
            field("init_image_mode", "IMAGE_STRENGTH"),
            field("samples", "3"),
        ] {
            assert!(form.contains(&expected), "missing {expected:?} in\n{form}");
        }
        let masked = text(v1_masking(
            &EditRequest::new(
                EditMode::Inpaint,
                request.clone(),
                vec![Image::png(PNG.to_vec())],
            )
            .mask(Image::png(PNG.to_vec())),
        )?);
        assert!(
            masked.contains(&field("mask_source", "MASK_IMAGE_WHITE"))
                && masked.contains("name=\"mask_image\""),
            "{masked}"
        );
        let alpha = text(v1_masking(&EditRequest::new(
            EditMode::Inpaint,
            request,
            vec![Image::png(PNG.to_vec())],
        ))?);
        assert!(
            alpha.contains(&field("mask_source", "INIT_IMAGE_ALPHA"))
                && !alpha.contains("mask_image"),
            "{alpha}"
        );
        Ok(())
    }

    #[test]
    fn answers() -> Result<(), ProviderError> {
        let raw = Response::new(
            200,
            vec![
                ("content-type".into(), "image/png".into()),
                ("finish-reason".into(), "CONTENT_FILTERED".into()),
                ("seed".into(), "123".into()),
            ],
            PNG.to_vec(),
        );
        assert_eq!(
            read_image(&raw, "image/png")?,
            Made {
                image: Image::png(PNG.to_vec()),
                seed: Some(123),
                finish_reason: Some("CONTENT_FILTERED".into())
            }
        );
        let json_answer = Response::new(200, vec![("content-type".into(), "application/json".into())], json!({"image": imageai_sdk::base64::encode(PNG), "finish_reason": "SUCCESS", "seed": 9}).to_string().into_bytes());
        assert_eq!(read_image(&json_answer, "image/png")?.seed, Some(9));
        let html = Response::new(
            200,
            vec![("content-type".into(), "image/png".into())],
            b"<html>oops</html>".to_vec(),
        );
        assert!(
            matches!(read_image(&html, "image/png"), Err(ProviderError::Server(m)) if m.contains("not an image"))
        );
        let v1 = Response::new(200, vec![], json!({"artifacts": [{"base64": imageai_sdk::base64::encode(PNG), "seed": 1, "finishReason": "SUCCESS"}]}).to_string().into_bytes());
        let v1: V1Answer<'_> = v1.json()?;
        assert_eq!(v1.made()?.len(), 1);
        let failed = Response::new(
            200,
            vec![],
            json!([{"finishReason": "ERROR"}]).to_string().into_bytes(),
        );
        let failed: V1Answer<'_> = failed.json()?;
        assert_eq!(failed.made().err().map(|e| e.class()), Some("server"));
        Ok(())
    }

    fn stability_error(status: u16, name: &str, errors: &[&str]) -> ProviderError {
        error(&Response::new(
            status,
            vec![],
            json!({"id": "e1", "name": name, "errors": errors})
                .to_string()
                .into_bytes(),
        ))
    }

    #[test]
    fn maps_errors() {
        assert_eq!(
            stability_error(401, "unauthorized", &["invalid key"]).class(),
            "auth"
        );
        assert!(
            matches!(stability_error(402, "payment_required", &["You lack sufficient credits"]), ProviderError::Quota(m) if m.contains("sufficient credits") && m.contains("account/credits"))
        );
        assert!(
            matches!(stability_error(403, "content_moderation", &["Your request was flagged by our content moderation system"]), ProviderError::ContentPolicy(m) if m.contains("flagged"))
        );
        assert_eq!(
            stability_error(403, "permission_denied", &["no access"]).class(),
            "auth"
        );
        assert!(
            matches!(stability_error(413, "payload_too_large", &["body too large"]), ProviderError::InvalidRequest(m) if m.contains("10 MiB"))
        );
        assert!(
            matches!(stability_error(422, "invalid_language", &["English is the only supported language"]), ProviderError::InvalidRequest(m) if m.contains("(422)") && m.contains("e1"))
        );
        assert!(matches!(
            stability_error(429, "rate_limit_exceeded", &["slow down"]),
            ProviderError::RateLimited {
                retry_after_ms: Some(60_000),
                ..
            }
        ));
        assert!(
            matches!(stability_error(500, "server_error", &["oops"]), ProviderError::Server(m) if m.contains("error id e1"))
        );
    }
}
