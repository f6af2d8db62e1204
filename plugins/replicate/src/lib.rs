//! ImageAI provider plugin for Replicate: any image model by `owner/name` or
//! `owner/name:version`, with a curated list of popular text-to-image models.
//!
//! A prediction is created with `Prefer: wait` (Replicate holds the request up to a minute), then
//! polled with backoff until it ends; its output files are downloaded from replicate.delivery.
//! When the plugin gives up waiting (the `max_wait_secs` setting), it cancels the prediction so
//! the account is not billed for a result nobody collects.

mod models;
mod wire;

use std::time::{Duration, Instant};

use imageai_sdk::http::{self, Response};
use imageai_sdk::{
    GenerateRequest, Generation, Image, Provider, ProviderError, ProviderInfo, api_key, log,
    progress, setting, setting_or, sleep,
};
use serde_json::{Value, json};

use crate::models::{MODELS, Model, Resolved, Target};
use crate::wire::{Call, Prediction, Status};

/// Where requests go unless the `base_url` setting says otherwise (a proxy, a test server).
pub const DEFAULT_BASE_URL: &str = "https://api.replicate.com/v1";
/// How long one prediction may take, queueing and cold boots included, unless `max_wait_secs` says otherwise.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(1800);
/// The first pause between polls; each next one is 1.5 times longer, up to `POLL_MAX`.
const POLL_START: Duration = Duration::from_millis(500);
const POLL_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Replicate;

impl Provider for Replicate {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("replicate", "Replicate", env!("CARGO_PKG_VERSION"))
            .models(MODELS.iter().map(Model::info))
            .model(models::any_model_info())
    }

    fn generate(&self, request: GenerateRequest) -> Result<Generation, ProviderError> {
        let model = models::resolve(&request.model)?;
        let input = models::input(&model, &request)?;
        let max_wait = max_wait()?;
        let key = api_key()?;

        let (url, body) = match &model.target {
            Target::Official { owner, name } => (
                endpoint(&format!("/models/{owner}/{name}/predictions")),
                json!({"input": input}),
            ),
            Target::Version { version } => (
                endpoint("/predictions"),
                json!({"version": version, "input": input}),
            ),
        };
        progress(0.02, &format!("starting {} on Replicate", model.reference));
        let started = Instant::now();
        // `Prefer: wait` holds the request until the prediction ends or for up to 60 s, so fast
        // models answer in one round trip; the host's read timeout (minutes) covers the wait.
        let response = send(
            http::post(url)
                .bearer(&key)
                .header("prefer", "wait")
                .json(&body),
            Call::Create(&model),
        )?;
        let prediction: Prediction = response.json()?;
        let prediction = wait(prediction, &key, started, max_wait)?;
        if prediction.status() != Status::Succeeded {
            return Err(wire::failure(&prediction, &model));
        }
        finish(&model, &request, &prediction, &key)
    }

    fn check_key(&self) -> Result<(), ProviderError> {
        send(
            http::get(endpoint("/account")).bearer(&api_key()?),
            Call::Account,
        )
        .map(|_| ())
    }
}

imageai_sdk::register_provider!(Replicate);

/// `{base_url}{path}`, with the configured base URL's trailing slash ignored.
fn endpoint(path: &str) -> String {
    format!("{}{path}", base_url().trim_end_matches('/'))
}

fn base_url() -> String {
    setting_or("base_url", DEFAULT_BASE_URL)
}

/// The `max_wait_secs` setting.
fn max_wait() -> Result<Duration, ProviderError> {
    match setting("max_wait_secs") {
        None => Ok(DEFAULT_MAX_WAIT),
        Some(text) => match text.trim().parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
            _ => Err(ProviderError::invalid_request(format!(
                "the Replicate setting max_wait_secs must be a whole number of seconds above 0, not `{text}`; fix it in the settings or IMAGEAI_REPLICATE_MAX_WAIT_SECS"
            ))),
        },
    }
}

/// Send, and turn a failed status into Replicate's error.
fn send(request: http::Request, call: Call<'_>) -> Result<Response, ProviderError> {
    let response = request.send()?;
    if response.is_success() {
        Ok(response)
    } else {
        Err(wire::error(&response, call))
    }
}

/// Poll until the prediction ends, reporting progress from its status and logs. Gives up (and
/// cancels the prediction) after `max_wait`; stops at once when the user cancels.
fn wait(
    mut prediction: Prediction,
    key: &str,
    started: Instant,
    max_wait: Duration,
) -> Result<Prediction, ProviderError> {
    let poll_url = endpoint(&format!("/predictions/{}", path_segment(&prediction.id)?));
    let mut pause = POLL_START;
    loop {
        report(&prediction);
        if prediction.status() != Status::Running {
            return Ok(prediction);
        }
        let waited = started.elapsed();
        if waited >= max_wait {
            cancel(&prediction.id, key);
            return Err(ProviderError::timeout(format!(
                "the prediction {} was still `{}` after {} s, so ImageAI cancelled it. Try again later, or raise the max_wait_secs setting.",
                prediction.id,
                prediction.status,
                max_wait.as_secs()
            )));
        }
        let result = sleep(pause.min(max_wait - waited))
            .and_then(|()| send(http::get(&poll_url).bearer(key), Call::Poll))
            .and_then(|response| response.json::<Prediction>());
        prediction = match result {
            Ok(next) => next,
            Err(ProviderError::Cancelled) => {
                cancel(&prediction.id, key);
                return Err(ProviderError::Cancelled);
            }
            Err(error) => return Err(error),
        };
        pause = (pause * 3 / 2).min(POLL_MAX);
    }
}

/// Progress for a running prediction: 5 % once started, then the model's own progress bar
/// (from its logs) up to 90 %; downloads take the rest.
fn report(prediction: &Prediction) {
    match (prediction.status.as_str(), prediction.progress()) {
        ("starting", _) => progress(0.05, "starting (Replicate may be booting the model)"),
        ("processing", Some(fraction)) => progress(
            0.05 + 0.85 * fraction,
            &format!("generating ({:.0} %)", fraction * 100.0),
        ),
        ("processing", None) => progress(0.1, "generating"),
        _ => {}
    }
}

/// Ask Replicate to stop a prediction (best effort: the answer changes nothing for the user).
fn cancel(id: &str, key: &str) {
    let Ok(segment) = path_segment(id) else {
        return;
    };
    match http::post(endpoint(&format!("/predictions/{segment}/cancel")))
        .bearer(key)
        .send()
    {
        Ok(response) if response.is_success() => log::info(&format!("cancelled prediction {id}")),
        Ok(response) => log::warn(&format!(
            "cancelling prediction {id} failed with HTTP {}",
            response.status
        )),
        Err(error) => log::warn(&format!("could not cancel prediction {id}: {error}")),
    }
}

/// A prediction id as a URL path segment; anything but letters, digits, `-` and `_` is refused
/// rather than sent into a path.
fn path_segment(id: &str) -> Result<&str, ProviderError> {
    if !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(id)
    } else {
        Err(ProviderError::server(format!(
            "Replicate answered with an odd prediction id `{id}`"
        )))
    }
}

/// Download the output files and keep what Replicate said about the run.
fn finish(
    model: &Resolved,
    request: &GenerateRequest,
    prediction: &Prediction,
    key: &str,
) -> Result<Generation, ProviderError> {
    let files = prediction.files();
    if files.is_empty() {
        let output = match &prediction.output {
            Value::Null => "nothing".to_owned(),
            other => clip(&other.to_string(), 200),
        };
        return Err(ProviderError::server(format!(
            "{} finished without any output file (it returned {output}); is it an image model?",
            model.reference
        )));
    }
    let total = files.len();
    let mut images = Vec::with_capacity(total);
    for (i, file) in files.iter().enumerate() {
        progress(
            0.9 + 0.1 * i as f32 / total as f32,
            &format!("downloading image {} of {total}", i + 1),
        );
        images.push(download(file, key)?);
    }
    let mut generation = Generation::new(images)
        .request_id(prediction.id.clone())
        .seed(request.seed.or_else(|| prediction.logged_seed()))
        .metadata(
            "model",
            prediction
                .model
                .clone()
                .unwrap_or_else(|| model.reference.clone()),
        );
    if let Some(version) = prediction.version.as_deref().filter(|v| !v.is_empty()) {
        generation = generation.metadata("version", version);
    }
    if let Some(seconds) = prediction.predict_time() {
        generation = generation.metadata("predict_time", format!("{seconds:.3}"));
    }
    if let Some(url) = prediction.web_url() {
        generation = generation.metadata("url", url);
    }
    let asked = request.count() as usize;
    if total < asked {
        generation = generation.warning(format!(
            "asked for {asked} images; {} returned {total}",
            model.reference
        ));
    }
    progress(1.0, "done");
    Ok(generation)
}

/// One output file: a `data:` URI, or a link fetched with the token (Replicate's file API needs
/// it) when it is on Replicate's own hosts, without it anywhere else.
fn download(file: &str, key: &str) -> Result<Image, ProviderError> {
    if file.starts_with("data:") {
        let mime = file
            .strip_prefix("data:")
            .and_then(|rest| rest.split([';', ',']).next())
            .unwrap_or("image/png");
        let image = Image::from_base64(file, mime)?;
        return checked_image(image.data, Some(image.mime), "an inline file");
    }
    let mut request = http::get(file);
    if is_replicate_host(file) {
        request = request.bearer(key);
    }
    let response = request.send()?;
    if !response.is_success() {
        let hint = if matches!(response.status, 404 | 410 | 403) {
            " Replicate keeps output files for an hour; generate again."
        } else {
            ""
        };
        return Err(ProviderError::server(format!(
            "downloading an image Replicate made failed with HTTP {}.{hint}",
            response.status
        )));
    }
    let declared = response
        .header("content-type")
        .map(|t| t.split(';').next().unwrap_or(t).trim().to_ascii_lowercase());
    checked_image(response.bytes, declared, "the output link")
}

fn checked_image(
    data: Vec<u8>,
    declared: Option<String>,
    what: &str,
) -> Result<Image, ProviderError> {
    let declared = declared.unwrap_or_default();
    match imageai_sdk::sniff_mime(&data) {
        Some(mime) => Ok(Image::new(mime, data)),
        None if declared.starts_with("image/") => Ok(Image::new(declared, data)),
        None => Err(ProviderError::server(format!(
            "{what} did not hold an image ({} bytes of `{declared}`); the model may output something else",
            data.len()
        ))),
    }
}

/// Whether a URL is on replicate.delivery (or a subdomain) or on the configured API host.
fn is_replicate_host(url: &str) -> bool {
    let Some(host) = host_of(url) else {
        return false;
    };
    host == "replicate.delivery"
        || host.ends_with(".replicate.delivery")
        || host_of(&base_url()).is_some_and(|api| api == host)
}

/// The host (with its port) of an http(s) URL, lower case.
fn host_of(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn clip(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lists_the_curated_models_then_any_model() {
        let info = Replicate.info();
        assert_eq!(info.id, "replicate");
        let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "black-forest-labs/flux-schnell",
                "black-forest-labs/flux-dev",
                "black-forest-labs/flux-1.1-pro",
                "black-forest-labs/flux-1.1-pro-ultra",
                "stability-ai/stable-diffusion-3.5-large",
                "google/imagen-4",
                "stability-ai/sdxl",
                "*",
            ]
        );
    }

    #[test]
    fn manifest_agrees_with_the_code() {
        let manifest = include_str!("../plugin.toml");
        assert!(manifest.contains("id = \"replicate\""));
        assert!(manifest.contains(&format!("contract = \"{}\"", imageai_sdk::CONTRACT_VERSION)));
        assert!(manifest.contains(&format!("default = \"{DEFAULT_BASE_URL}\"")));
        assert!(manifest.contains(&format!("default = \"{}\"", DEFAULT_MAX_WAIT.as_secs())));
        assert!(manifest.contains(&format!("version = \"{}\"", env!("CARGO_PKG_VERSION"))));
        assert!(manifest.contains(
            r#"allowed-hosts = ["api.replicate.com", "replicate.delivery", "*.replicate.delivery"]"#
        ));
        assert!(manifest.contains("env = \"REPLICATE_API_TOKEN\""));
    }

    #[test]
    fn hosts_are_read_from_urls() {
        assert_eq!(
            host_of("https://pbxt.replicate.delivery/a/out.png").as_deref(),
            Some("pbxt.replicate.delivery")
        );
        assert_eq!(
            host_of("http://127.0.0.1:8080/v1").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(
            host_of("https://user@Example.com?x").as_deref(),
            Some("example.com")
        );
        assert_eq!(host_of("ftp://x"), None);
    }

    #[test]
    fn odd_prediction_ids_never_reach_a_path() {
        assert_eq!(
            path_segment("rrr4z55ocneqzikepnug6xezpe"),
            Ok("rrr4z55ocneqzikepnug6xezpe")
        );
        assert!(path_segment("../account").is_err());
        assert!(path_segment("").is_err());
    }

    #[test]
    fn invalid_requests_fail_before_any_host_call() {
        // Off wasm, any host call would panic: these must be refused by validation alone.
        let bad = GenerateRequest {
            steps: Some(9),
            ..GenerateRequest::new("black-forest-labs/flux-schnell", "x")
        };
        assert_eq!(
            Replicate.generate(bad).err().map(|e| e.class()),
            Some("invalid-request")
        );
        assert_eq!(
            Replicate
                .generate(GenerateRequest::new("*", "x"))
                .err()
                .map(|e| e.class()),
            Some("invalid-request")
        );
        assert_eq!(
            Replicate
                .generate(GenerateRequest::new("not a model", "x"))
                .err()
                .map(|e| e.class()),
            Some("invalid-request")
        );
    }
}
