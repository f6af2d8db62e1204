//! Replicate's HTTP API on the wire: the prediction object and what its fields mean (status,
//! output files, logs, errors), input values from `--set`, and the mapping of failures onto
//! ImageAI's error classes.

use imageai_sdk::ProviderError;
use imageai_sdk::errors::ErrorDetails;
use imageai_sdk::http::Response;
use serde::Deserialize;
use serde_json::Value;

use crate::models::{Resolved, Target};

/// `{id, model, version, input, output, logs, error, status, created_at, …, metrics, urls}`
#[derive(Debug, Clone, Deserialize)]
pub struct Prediction {
    pub id: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    pub status: String,
    #[serde(default)]
    pub output: Value,
    #[serde(default)]
    pub error: Value,
    #[serde(default)]
    pub logs: Option<String>,
    #[serde(default)]
    pub metrics: Option<Value>,
    #[serde(default)]
    pub urls: Option<Urls>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct Urls {
    #[serde(default)]
    pub web: Option<String>,
}

/// Where a prediction is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `starting` (booting a model) or `processing`; anything unknown is treated as running too.
    Running,
    Succeeded,
    Failed,
    /// Cancelled through the API or the website.
    Canceled,
    /// Stopped by Replicate before it ran (e.g. a deadline passed).
    Aborted,
}

impl Prediction {
    pub fn status(&self) -> Status {
        match self.status.as_str() {
            "succeeded" => Status::Succeeded,
            "failed" => Status::Failed,
            "canceled" | "cancelled" => Status::Canceled,
            "aborted" => Status::Aborted,
            _ => Status::Running,
        }
    }

    /// Every file the output names, in order: HTTPS links (or `data:` URIs, which Replicate
    /// sends for small files when asked to wait), wherever they sit in the output: a single
    /// string, a list, or an object.
    pub fn files(&self) -> Vec<String> {
        fn walk(value: &Value, files: &mut Vec<String>) {
            match value {
                Value::String(text) => {
                    let text = text.trim();
                    if text.starts_with("https://")
                        || text.starts_with("http://")
                        || text.starts_with("data:")
                    {
                        files.push(text.to_owned());
                    }
                }
                Value::Array(items) => items.iter().for_each(|item| walk(item, files)),
                Value::Object(fields) => fields.values().for_each(|item| walk(item, files)),
                _ => {}
            }
        }
        let mut files = Vec::new();
        walk(&self.output, &mut files);
        files
    }

    /// The model's error message, for a `failed` prediction.
    pub fn error_message(&self) -> Option<String> {
        match &self.error {
            Value::Null => None,
            Value::String(text) if text.trim().is_empty() => None,
            Value::String(text) => Some(text.trim().to_owned()),
            other => Some(other.to_string()),
        }
    }

    /// How far the model says it is, from the last progress bar in its logs (`45%|████▌ | 9/20`).
    pub fn progress(&self) -> Option<f32> {
        let logs = self.logs.as_deref()?;
        let end = logs.rfind("%|")?;
        let digits: String = logs[..end]
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect();
        let percent: u32 = digits.chars().rev().collect::<String>().parse().ok()?;
        (percent <= 100).then(|| percent as f32 / 100.0)
    }

    /// The seed, when the model logged it (`Using seed: 1234`, as most Cog image models do).
    pub fn logged_seed(&self) -> Option<u64> {
        let logs = self.logs.as_deref()?.to_ascii_lowercase();
        logs.rmatch_indices("seed").find_map(|(at, word)| {
            let rest = logs[at + word.len()..].trim_start();
            let rest = rest
                .strip_prefix(':')
                .or_else(|| rest.strip_prefix('='))?
                .trim_start();
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
    }

    /// Seconds the model ran, from `metrics.predict_time`.
    pub fn predict_time(&self) -> Option<f64> {
        self.metrics.as_ref()?.get("predict_time")?.as_f64()
    }

    pub fn web_url(&self) -> Option<&str> {
        self.urls.as_ref()?.web.as_deref()
    }
}

/// Whether a message is a safety refusal. Replicate and the models it runs report those as text
/// ("NSFW content detected", "flagged as sensitive (E005)"), not with a code.
pub fn is_content_policy(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "nsfw",
        "flagged as sensitive",
        "(e005)",
        "safety checker",
        "safety filter",
        "safety system",
        "content moderation",
        "content policy",
        "inappropriate content",
        "unsafe content",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// What the plugin was doing when a request failed, for the wording of the error.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    Create(&'a Resolved),
    Poll,
    Account,
}

/// Replicate's error responses (RFC 7807 `{"title", "detail", "status"}`), worded for ImageAI
/// users.
pub fn error(response: &Response, call: Call<'_>) -> ProviderError {
    map_error(response.error_details(), call)
}

fn map_error(details: ErrorDetails, call: Call<'_>) -> ProviderError {
    let status = details.status;
    let message = details
        .message
        .as_deref()
        .map(tidy)
        .unwrap_or_else(|| "no message".to_owned());
    if is_content_policy(&message) {
        return ProviderError::content_policy(message);
    }
    match (status, call) {
        (401, _) => ProviderError::auth(
            "Replicate rejected the token (401). Create one at https://replicate.com/account/api-tokens and set it with `imageai keys set replicate`.",
        ),
        (403, _) => ProviderError::auth(format!(
            "Replicate refused access (403): {message}. Check that the token's account may run this model, or set another token with `imageai keys set replicate`."
        )),
        (402, _) => ProviderError::quota(format!(
            "Replicate says the account is out of credit: {message}. Add credit at https://replicate.com/account/billing"
        )),
        (404, Call::Create(model)) => ProviderError::invalid_request(match &model.target {
            Target::Official { .. } => format!(
                "Replicate has no official model `{0}` (404). Community models need a version: use `{0}:<version>` with an id from https://replicate.com/{0}/versions",
                model.reference
            ),
            Target::Version { version } if model.reference.contains('/') => format!(
                "Replicate has no version `{version}` of `{0}` (404); copy a current one from https://replicate.com/{0}/versions",
                model.reference
            ),
            Target::Version { version } => {
                format!(
                    "Replicate has no model version `{version}` (404); check the id, or use `owner/name:version`"
                )
            }
        }),
        (422, Call::Create(model)) if message.to_ascii_lowercase().contains("version") => {
            ProviderError::invalid_request(match &model.target {
                Target::Version { version } if model.reference.contains('/') => format!(
                    "Replicate cannot run version `{version}` of `{0}` (422: {message}); copy a current version from https://replicate.com/{0}/versions",
                    model.reference
                ),
                _ => format!(
                    "Replicate cannot run `{0}` (422: {message}); give a version: `{0}:<version>`",
                    model.reference
                ),
            })
        }
        (422, Call::Create(model)) => ProviderError::invalid_request(format!(
            "Replicate rejected the input for {0} (422): {message}. The model's inputs are listed at https://replicate.com/{0}/api",
            model.reference
        )),
        (404, Call::Poll) => ProviderError::server(format!(
            "Replicate no longer knows the prediction (404): {message}. Try again."
        )),
        (429, _) => ProviderError::RateLimited {
            message: format!("Replicate is rate limiting requests: {message}"),
            retry_after_ms: details.retry_after_ms,
        },
        (408 | 504, _) => ProviderError::timeout(format!(
            "Replicate timed out ({status}): {message}. Try again."
        )),
        (400 | 404 | 409 | 413 | 415 | 422, _) => ProviderError::invalid_request(format!(
            "Replicate rejected the request ({status}): {message}"
        )),
        (500..=599, _) => ProviderError::server(format!(
            "Replicate failed ({status}): {message}. Try again in a moment; https://replicatestatus.com shows outages."
        )),
        _ => details.into_error(),
    }
}

/// The error for a prediction that ended without output: `failed` (HTTP 200, with the model's
/// message), `canceled` or `aborted`.
pub fn failure(prediction: &Prediction, model: &Resolved) -> ProviderError {
    let id = &prediction.id;
    let message = prediction
        .error_message()
        .unwrap_or_else(|| "no message".to_owned());
    let page = prediction
        .web_url()
        .map(|url| format!(" Logs: {url}"))
        .unwrap_or_default();
    match prediction.status() {
        Status::Failed if is_content_policy(&message) => ProviderError::content_policy(message),
        Status::Failed => ProviderError::server(format!(
            "{} failed on Replicate: {message} (prediction {id}).{page}",
            model.reference
        )),
        Status::Canceled => ProviderError::other(format!(
            "the prediction {id} was canceled on Replicate (from its website or another client) before it finished"
        )),
        Status::Aborted => ProviderError::server(format!(
            "Replicate aborted the prediction {id} before it ran: {message}. Try again."
        )),
        Status::Running | Status::Succeeded => ProviderError::server(format!(
            "the prediction {id} ended in state `{}` without any image",
            prediction.status
        )),
    }
}

/// Replicate's validation details are bullet lines (`- input.width: Must be …\n`): one line.
fn tidy(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(|l| l.trim().trim_start_matches("- ").trim())
        .filter(|l| !l.is_empty())
        .collect();
    lines.join("; ").trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::resolve;
    use serde_json::json;

    fn prediction(value: Value) -> Prediction {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn reads_output_files_in_any_shape() {
        let list = prediction(json!({"id": "p", "status": "succeeded",
            "output": ["https://replicate.delivery/pbxt/a/out-0.webp", "https://replicate.delivery/pbxt/a/out-1.webp"]}));
        assert_eq!(list.files().len(), 2);
        let single = prediction(
            json!({"id": "p", "status": "succeeded", "output": "https://replicate.delivery/xezq/b/out.jpg"}),
        );
        assert_eq!(
            single.files(),
            ["https://replicate.delivery/xezq/b/out.jpg"]
        );
        let object = prediction(json!({"id": "p", "status": "succeeded",
            "output": {"images": ["data:image/png;base64,iVBO"], "caption": "a fox", "nsfw": [false]}}));
        assert_eq!(object.files(), ["data:image/png;base64,iVBO"]);
        let none = prediction(json!({"id": "p", "status": "processing"}));
        assert!(none.files().is_empty());
        assert_eq!(none.status(), Status::Running);
    }

    #[test]
    fn reads_progress_and_seed_from_logs() {
        let p = prediction(json!({"id": "p", "status": "processing",
            "logs": "Using seed: 52311\nRunning prediction\n 10%|█         | 2/20 [00:00<00:04]\n 45%|████▌     | 9/20 [00:02<00:02]"}));
        assert_eq!(p.progress(), Some(0.45));
        assert_eq!(p.logged_seed(), Some(52311));
        let quiet = prediction(json!({"id": "p", "status": "starting", "logs": ""}));
        assert_eq!(quiet.progress(), None);
        assert_eq!(quiet.logged_seed(), None);
    }

    fn replicate_error(
        status: u16,
        body: Value,
        headers: Vec<(String, String)>,
        call: Call<'_>,
    ) -> ProviderError {
        error(
            &Response::new(status, headers, body.to_string().into_bytes()),
            call,
        )
    }

    #[test]
    fn maps_errors() -> Result<(), ProviderError> {
        let official = resolve("acme/not-official")?;
        let versioned = resolve("acme/thing:abc")?;
        let unauthenticated = json!({"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401});
        assert_eq!(
            replicate_error(401, unauthenticated, vec![], Call::Account).class(),
            "auth"
        );
        let credit = json!({"title": "Insufficient credit", "detail": "You have insufficient credit to run this model.", "status": 402});
        assert_eq!(
            replicate_error(402, credit, vec![], Call::Create(&official)).class(),
            "quota"
        );
        let not_found = json!({"detail": "Not found.", "status": 404});
        let message =
            replicate_error(404, not_found.clone(), vec![], Call::Create(&official)).to_string();
        assert!(message.contains("acme/not-official:<version>"), "{message}");
        let message = replicate_error(404, not_found, vec![], Call::Create(&versioned)).to_string();
        assert!(
            message.contains("no version `abc` of `acme/thing`"),
            "{message}"
        );
        let bad_version = json!({"title": "Invalid version or not permitted", "detail": "The specified version does not exist (or perhaps you don't have permission to use it?)", "status": 422});
        let message =
            replicate_error(422, bad_version, vec![], Call::Create(&versioned)).to_string();
        assert!(
            message.contains("cannot run version `abc` of `acme/thing`"),
            "{message}"
        );
        let invalid = json!({"title": "Input validation failed", "status": 422,
            "detail": "- input.width: Must be less than or equal to 1440\n- input.steps: Must be an integer\n"});
        let message = replicate_error(422, invalid, vec![], Call::Create(&versioned)).to_string();
        assert!(
            message.contains(
                "input.width: Must be less than or equal to 1440; input.steps: Must be an integer"
            ),
            "{message}"
        );
        match replicate_error(
            429,
            json!({"detail": "Request was throttled. Expected available in 3 seconds.", "status": 429}),
            vec![("retry-after".into(), "3".into())],
            Call::Poll,
        ) {
            ProviderError::RateLimited {
                retry_after_ms,
                message,
            } => {
                assert_eq!(retry_after_ms, Some(3000));
                assert!(message.contains("throttled"));
            }
            other => panic!("expected rate-limited, got {other:?}"),
        }
        assert_eq!(
            replicate_error(
                500,
                json!({"detail": "Internal server error", "status": 500}),
                vec![],
                Call::Poll
            )
            .class(),
            "server"
        );
        let nsfw = json!({"detail": "The input or output was flagged as sensitive. Please try again with different inputs. (E005)", "status": 400});
        assert_eq!(
            replicate_error(400, nsfw, vec![], Call::Create(&official)).class(),
            "content-policy"
        );
        Ok(())
    }

    #[test]
    fn failed_predictions_keep_replicate_s_message() -> Result<(), ProviderError> {
        let model = resolve("black-forest-labs/flux-dev")?;
        let failed = prediction(
            json!({"id": "abc", "status": "failed", "error": "CUDA out of memory",
            "urls": {"web": "https://replicate.com/p/abc"}}),
        );
        let message = failure(&failed, &model).to_string();
        assert!(
            message.starts_with(
                "server: black-forest-labs/flux-dev failed on Replicate: CUDA out of memory"
            ),
            "{message}"
        );
        assert!(message.contains("https://replicate.com/p/abc"), "{message}");
        let nsfw = prediction(
            json!({"id": "abc", "status": "failed", "error": "NSFW content detected. Try running it again, or try a different prompt."}),
        );
        assert_eq!(
            failure(&nsfw, &model),
            ProviderError::ContentPolicy(
                "NSFW content detected. Try running it again, or try a different prompt.".into()
            )
        );
        assert_eq!(
            failure(
                &prediction(json!({"id": "a", "status": "canceled"})),
                &model
            )
            .class(),
            "other"
        );
        assert_eq!(
            failure(&prediction(json!({"id": "a", "status": "aborted"})), &model).class(),
            "server"
        );
        Ok(())
    }
}
