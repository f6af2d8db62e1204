//! HF Inference's text-to-image task on the wire: the JSON body, the raw image answer, the
//! "model is loading" 503, the whoami answer of the key check, and the mapping of failures onto
//! ImageAI's error classes.

use std::time::Duration;

use imageai_sdk::http::Response;
use imageai_sdk::json::{short_float, value_from_text};
use imageai_sdk::{Image, ProviderError};
use serde_json::{Map, Value, json};

use crate::models::Checked;

/// The body of `POST {base}/models/{model}`: `{"inputs": prompt, "parameters": {…}}` with unset
/// parameters left out, the `index`-th image's seed (`seed + index`, so `n` images differ but
/// stay reproducible), then the `--set` extras (which win).
pub fn body(prompt: &str, checked: &Checked, index: u32, extra: &[(String, String)]) -> Value {
    let mut parameters = Map::new();
    if let Some(negative) = &checked.negative_prompt {
        parameters.insert("negative_prompt".into(), json!(negative));
    }
    if let Some((width, height)) = checked.size {
        parameters.insert("width".into(), json!(width));
        parameters.insert("height".into(), json!(height));
    }
    if let Some(steps) = checked.steps {
        parameters.insert("num_inference_steps".into(), json!(steps));
    }
    if let Some(guidance) = checked.guidance {
        parameters.insert("guidance_scale".into(), short_float(guidance));
    }
    if let Some(seed) = checked.seed {
        parameters.insert("seed".into(), json!(seed.wrapping_add(u64::from(index))));
    }
    for (name, value) in extra {
        parameters.insert(name.trim().to_owned(), value_from_text(value));
    }
    let mut body = Map::new();
    body.insert("inputs".into(), json!(prompt));
    if !parameters.is_empty() {
        body.insert("parameters".into(), Value::Object(parameters));
    }
    Value::Object(body)
}

/// The image of a successful answer: raw PNG or JPEG bytes (diffusers pipelines make nothing
/// else). A JSON answer, or bytes that are no image whatever the content type says, is a server
/// error.
pub fn image(response: &Response, model: &str) -> Result<Image, ProviderError> {
    if let Some(mime) = imageai_sdk::sniff_mime(&response.bytes) {
        return Ok(Image::new(mime, response.bytes.clone()));
    }
    let declared = response
        .header("content-type")
        .map(|t| t.split(';').next().unwrap_or(t).trim().to_ascii_lowercase())
        .unwrap_or_default();
    let said = if declared.starts_with("image/") {
        String::new()
    } else {
        response
            .error_details()
            .message
            .map(|m| format!(": {m}"))
            .unwrap_or_default()
    };
    Err(ProviderError::server(format!(
        "{model} answered {} bytes of `{declared}` instead of an image{said}. Is it a text-to-image model? If it is, try again.",
        response.bytes.len()
    )))
}

/// How long HF says a model that is being loaded needs (the 503 answer
/// `{"error": "Model … is currently loading", "estimated_time": 20.0}`), or `None` when the
/// response is not that.
pub fn loading(response: &Response) -> Option<Duration> {
    const UNKNOWN: Duration = Duration::from_secs(10);
    if response.status != 503 {
        return None;
    }
    let body: Value = serde_json::from_slice(&response.bytes).ok()?;
    let estimate = body.get("estimated_time").and_then(Value::as_f64);
    let says_loading = body
        .get("error")
        .and_then(Value::as_str)
        .is_some_and(|e| e.to_ascii_lowercase().contains("loading"));
    match estimate {
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            Some(Duration::from_secs_f64(seconds.min(3600.0)))
        }
        _ if says_loading => Some(UNKNOWN),
        _ => None,
    }
}

/// Whether a message is a safety refusal; HF reports those as text ("NSFW content detected").
pub fn is_content_policy(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "nsfw",
        "safety checker",
        "safety filter",
        "unsafe content",
        "content policy",
        "inappropriate content",
        "content moderation",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// HF's error responses (`{"error": "..."}` and the `x-error-message` / `x-error-code` headers),
/// worded for ImageAI users. `gated`: the model is known to be gated, so a refused token most
/// likely has not accepted its terms.
pub fn error(response: &Response, model: &str, gated: bool) -> ProviderError {
    let details = response.error_details();
    let status = details.status;
    let message = details
        .message
        .clone()
        .or_else(|| {
            response
                .header("x-error-message")
                .map(imageai_sdk::errors::redact)
        })
        .unwrap_or_else(|| "no message".to_owned());
    let message = message.trim_end_matches('.').to_owned();
    let lower = message.to_ascii_lowercase();
    if is_content_policy(&message) {
        return ProviderError::content_policy(message);
    }
    let gated = (gated && status == 403)
        || lower.contains("gated")
        || lower.contains("restricted")
        || lower.contains("authorized list");
    match status {
        401 | 403 if gated => ProviderError::auth(format!(
            "{model} is gated: accept its terms at https://huggingface.co/{model} with the account that owns the token, and let the token read gated repositories. Hugging Face said: {message}"
        )),
        401 => ProviderError::auth(
            "Hugging Face rejected the token (401). Create one with the \"Make calls to Inference Providers\" permission at https://huggingface.co/settings/tokens and set it with `imageai keys set huggingface`.",
        ),
        403 => ProviderError::auth(format!(
            "Hugging Face refused the token (403): {message}. Give it the \"Make calls to Inference Providers\" permission at https://huggingface.co/settings/tokens, or set another with `imageai keys set huggingface`."
        )),
        402 => ProviderError::quota(format!(
            "Hugging Face says the account is out of Inference credits: {message}. Add credits or subscribe to PRO at https://huggingface.co/settings/billing"
        )),
        404 => ProviderError::invalid_request(format!(
            "HF Inference does not serve `{model}` (404: {message}). Check the id at https://huggingface.co/{model}; text-to-image models it serves are listed at https://huggingface.co/models?inference_provider=hf-inference&pipeline_tag=text-to-image"
        )),
        429 => ProviderError::RateLimited {
            message: format!("Hugging Face is rate limiting requests: {message}"),
            retry_after_ms: details.retry_after_ms,
        },
        408 | 504 => ProviderError::timeout(format!(
            "HF Inference timed out on {model} ({status}): {message}. Try again."
        )),
        400 | 409 | 413 | 415 | 422 => ProviderError::invalid_request(format!(
            "HF Inference rejected the request for {model} ({status}): {message}"
        )),
        500..=599 => ProviderError::server(format!(
            "HF Inference failed on {model} ({status}): {message}. Try again in a moment; https://status.huggingface.co shows outages."
        )),
        _ => details.into_error(),
    }
}

/// The permission a fine-grained token needs to call Inference Providers.
pub const INFERENCE_PERMISSION: &str = "inference.serverless.write";

/// From `GET /api/whoami-v2`: whether the token may call Inference Providers. Classic `read` and
/// `write` tokens may; fine-grained ones need [`INFERENCE_PERMISSION`], globally or scoped.
pub fn token_can_infer(whoami: &Value) -> bool {
    let token = &whoami["auth"]["accessToken"];
    if token["role"].as_str() != Some("fineGrained") {
        return true;
    }
    let fine = &token["fineGrained"];
    let listed = |permissions: &Value| {
        permissions.as_array().is_some_and(|list| {
            list.iter()
                .any(|p| p.as_str() == Some(INFERENCE_PERMISSION))
        })
    };
    listed(&fine["global"])
        || fine["scoped"]
            .as_array()
            .is_some_and(|scopes| scopes.iter().any(|s| listed(&s["permissions"])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> Response {
        Response::new(
            status,
            vec![("content-type".into(), "application/json".into())],
            body.as_bytes().to_vec(),
        )
    }

    #[test]
    fn builds_the_documented_body() {
        let checked = Checked {
            negative_prompt: Some("blur".into()),
            size: Some((768, 512)),
            steps: Some(20),
            guidance: Some(7.1),
            seed: Some(41),
            n: 2,
        };
        let extra = vec![
            (
                "scheduler".to_owned(),
                "EulerAncestralDiscreteScheduler".to_owned(),
            ),
            ("clip_skip".to_owned(), "2".to_owned()),
        ];
        assert_eq!(
            body("a fox", &checked, 1, &extra),
            json!({"inputs": "a fox", "parameters": {"negative_prompt": "blur", "width": 768, "height": 512,
                   "num_inference_steps": 20, "guidance_scale": 7.1, "seed": 42,
                   "scheduler": "EulerAncestralDiscreteScheduler", "clip_skip": 2}})
        );
        let bare = Checked {
            negative_prompt: None,
            size: None,
            steps: None,
            guidance: None,
            seed: None,
            n: 1,
        };
        assert_eq!(body("a fox", &bare, 0, &[]), json!({"inputs": "a fox"}));
    }

    #[test]
    fn reads_images_and_refuses_other_answers() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        let ok = Response::new(
            200,
            vec![("content-type".into(), "image/jpeg".into())],
            png.clone(),
        );
        assert_eq!(image(&ok, "m"), Ok(Image::png(png)));
        let garbage = Response::new(
            200,
            vec![("content-type".into(), "image/png".into())],
            b"\0\x01 nope".to_vec(),
        );
        assert!(
            matches!(image(&garbage, "m"), Err(ProviderError::Server(m)) if m.contains("of `image/png` instead of an image"))
        );
        let json = response(200, r#"{"error": "oops"}"#);
        assert!(
            matches!(image(&json, "m"), Err(ProviderError::Server(m)) if m.contains("instead of an image") && m.contains("oops"))
        );
    }

    #[test]
    fn recognises_a_loading_model() {
        assert_eq!(
            loading(&response(
                503,
                r#"{"error": "Model x is currently loading", "estimated_time": 20.5}"#
            )),
            Some(Duration::from_millis(20_500))
        );
        assert_eq!(
            loading(&response(
                503,
                r#"{"error": "Model x is currently loading"}"#
            )),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            loading(&response(503, r#"{"error": "Service Unavailable"}"#)),
            None
        );
        assert_eq!(loading(&response(500, r#"{"estimated_time": 3}"#)), None);
    }

    #[test]
    fn maps_errors() {
        let model = "black-forest-labs/FLUX.1-dev";
        assert_eq!(
            error(
                &response(
                    401,
                    r#"{"error": "Invalid credentials in Authorization header"}"#
                ),
                model,
                true
            )
            .class(),
            "auth"
        );
        let gated = error(
            &response(
                403,
                r#"{"error": "Access to model black-forest-labs/FLUX.1-dev is restricted and you are not in the authorized list. Visit https://huggingface.co/black-forest-labs/FLUX.1-dev to ask for access."}"#,
            ),
            model,
            false,
        );
        assert!(
            matches!(&gated, ProviderError::Auth(m) if m.starts_with("black-forest-labs/FLUX.1-dev is gated: accept its terms")),
            "{gated:?}"
        );
        let permission = error(
            &response(
                403,
                r#"{"error": "This authentication method does not have sufficient permissions to call Inference Providers on behalf of user x"}"#,
            ),
            model,
            false,
        );
        assert!(
            matches!(&permission, ProviderError::Auth(m) if m.contains("Make calls to Inference Providers")),
            "{permission:?}"
        );
        let known_gated = error(&response(403, r#"{"error": "Forbidden"}"#), model, true);
        assert!(
            matches!(&known_gated, ProviderError::Auth(m) if m.contains("is gated")),
            "{known_gated:?}"
        );
        let missing = error(
            &response(404, r#"{"error": "Model acme/nope does not exist"}"#),
            "acme/nope",
            false,
        );
        assert!(
            matches!(&missing, ProviderError::InvalidRequest(m) if m.contains("does not serve `acme/nope`") && m.contains("does not exist")),
            "{missing:?}"
        );
        assert_eq!(error(&response(402, r#"{"error": "You have exceeded your monthly included credits for Inference Providers."}"#), model, false).class(), "quota");
        let nsfw = error(
            &response(
                400,
                r#"{"error": "Potential NSFW content was detected in one or more images."}"#,
            ),
            model,
            false,
        );
        assert_eq!(nsfw.class(), "content-policy");
        let limited = Response::new(
            429,
            vec![("retry-after".into(), "2".into())],
            br#"{"error": "Rate limit reached"}"#.to_vec(),
        );
        assert!(matches!(
            error(&limited, model, false),
            ProviderError::RateLimited {
                retry_after_ms: Some(2000),
                ..
            }
        ));
        let header_only = Response::new(
            500,
            vec![("x-error-message".into(), "CUDA out of memory".into())],
            b"".to_vec(),
        );
        assert!(
            matches!(error(&header_only, model, false), ProviderError::Server(m) if m.contains("CUDA out of memory"))
        );
    }

    #[test]
    fn reads_token_permissions() {
        assert!(token_can_infer(
            &json!({"auth": {"accessToken": {"role": "read"}}})
        ));
        assert!(token_can_infer(
            &json!({"auth": {"accessToken": {"role": "fineGrained", "fineGrained": {"global": [INFERENCE_PERMISSION]}}}})
        ));
        assert!(token_can_infer(
            &json!({"auth": {"accessToken": {"role": "fineGrained", "fineGrained": {"global": [], "scoped": [{"permissions": ["repo.content.read", INFERENCE_PERMISSION]}]}}}})
        ));
        assert!(!token_can_infer(
            &json!({"auth": {"accessToken": {"role": "fineGrained", "fineGrained": {"global": ["discussion.write"], "scoped": []}}}})
        ));
    }
}
