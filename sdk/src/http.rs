//! HTTP through the host: the only network a plugin has. The host enforces the manifest's
//! allowed hosts, timeouts, size limits and retries of transient failures (408/409/429/5xx).
//!
//! ```no_run
//! use imageai_sdk::{http, ProviderError};
//!
//! # fn run(key: &str) -> Result<(), ProviderError> {
//! let response = http::post("https://api.example.com/v1/images")
//!     .bearer(key)
//!     .json(&serde_json::json!({"prompt": "a lighthouse at dusk"}))
//!     .send()?
//!     .error_for_status()?;
//! let answer: serde_json::Value = response.json()?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bindings::imageai::provider::host;
use crate::errors::{self, ProviderError};
use crate::multipart::Form;

/// A `GET` request.
pub fn get(url: impl Into<String>) -> Request {
    Request::new("GET", url)
}

/// A `POST` request.
pub fn post(url: impl Into<String>) -> Request {
    Request::new("POST", url)
}

/// A `PUT` request.
pub fn put(url: impl Into<String>) -> Request {
    Request::new("PUT", url)
}

/// A `DELETE` request.
pub fn delete(url: impl Into<String>) -> Request {
    Request::new("DELETE", url)
}

/// A request being built; nothing is sent until [`Request::send`].
#[derive(Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
    /// A body that could not be built (serialisation failure), reported by `send`.
    error: Option<ProviderError>,
}

impl std::fmt::Debug for Request {
    // Headers are left out: they carry the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &strip_query(&self.url))
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// The header that carries [`Request::no_retry_on`] to the host (which reads it, never sends it).
const NO_RETRY_HEADER: &str = "x-imageai-no-retry";

impl Request {
    /// A request with any method (`PATCH`, `HEAD`…).
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            error: None,
        }
    }

    /// Add a header. `Host`, `Content-Length` and hop-by-hop headers are the host's to set.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// A JSON body (`content-type: application/json`).
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => self.body(body, "application/json"),
            Err(e) => {
                self.error = Some(ProviderError::other(format!(
                    "could not encode the request as JSON: {e}"
                )));
                self
            }
        }
    }

    /// A `multipart/form-data` body.
    pub fn multipart(self, form: Form) -> Self {
        let (content_type, body) = form.finish();
        self.body(body, &content_type)
    }

    /// A raw body with its content type.
    pub fn body(mut self, body: Vec<u8>, content_type: &str) -> Self {
        self.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
        self.headers
            .push(("content-type".to_owned(), content_type.to_owned()));
        self.body = body;
        self
    }

    /// Wait at most this long for the response (instead of the host's read timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Have the host hand these statuses to the plugin at once instead of retrying them (it
    /// still retries other transient failures). For answers the plugin handles itself, such as
    /// a 503 "model is loading" that says how long to wait.
    pub fn no_retry_on(mut self, statuses: &[u16]) -> Self {
        self.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case(NO_RETRY_HEADER));
        let list: Vec<String> = statuses.iter().map(u16::to_string).collect();
        self.headers
            .push((NO_RETRY_HEADER.to_owned(), list.join(",")));
        self
    }

    /// Send it through the host. Any HTTP status is `Ok`; use [`Response::error_for_status`] to
    /// turn failures into typed errors. Refusals, timeouts, network failures, oversized bodies and
    /// cancellation are errors.
    pub fn send(self) -> Result<Response, ProviderError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let shown_url = strip_query(&self.url).to_owned();
        let request = host::HttpRequest {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
            timeout_ms: self
                .timeout
                .map(|t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX)),
        };
        // No log line here: the host logs every plugin request (redacted) itself.
        match host::send(&request) {
            Ok(response) => Ok(Response {
                status: response.status,
                headers: response.headers,
                bytes: response.body,
            }),
            Err(error) => Err(match error {
                host::HttpError::Denied(why) => ProviderError::other(format!(
                    "ImageAI refused the request ({why}). If the provider moved, add its host to `allowed-hosts` in plugin.toml or fix the base_url setting: {shown_url}"
                )),
                host::HttpError::Timeout(why) => {
                    ProviderError::timeout(format!("{why}: {shown_url}"))
                }
                host::HttpError::Network(why) => ProviderError::network(format!(
                    "{why}. Check the connection and the base_url setting: {shown_url}"
                )),
                host::HttpError::TooLarge(why) => ProviderError::server(format!(
                    "the response was too large ({why}): {shown_url}"
                )),
                host::HttpError::Cancelled => ProviderError::Cancelled,
            }),
        }
    }
}

/// The URL without its query string, which may carry a key (`?key=`); used in messages and logs.
fn strip_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// What came back.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names are lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Response {
    /// A response made in code, for unit tests of parsing functions.
    pub fn new(status: u16, headers: Vec<(String, String)>, bytes: Vec<u8>) -> Self {
        Self {
            status,
            headers,
            bytes,
        }
    }

    /// The first value of a header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body parsed as JSON into `T`. A body that is not the JSON expected (truncated, an HTML
    /// error page, another shape) is a [`ProviderError::Server`]. `T` may borrow from the body
    /// (`&str` fields, [`Encoded`](crate::base64::Encoded) base64).
    pub fn json<'a, T: Deserialize<'a>>(&'a self) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.bytes).map_err(|e| {
            let what = if e.is_eof() { "was cut off" } else { "is not the JSON expected" };
            ProviderError::server(format!(
                "the provider's answer (HTTP {}, {} bytes) {what}: {e}. Try again; if it persists, the provider's API may have changed.",
                self.status,
                self.bytes.len()
            ))
        })
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// `Ok(self)` for 2xx, else the typed error [`errors::from_http`] makes of it.
    pub fn error_for_status(self) -> Result<Self, ProviderError> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(self.error())
        }
    }

    /// The typed error for this (failed) response.
    pub fn error(&self) -> ProviderError {
        errors::from_http(self.status, &self.headers, &self.bytes)
    }

    /// The parsed error details of this (failed) response, to word some errors yourself.
    pub fn error_details(&self) -> errors::ErrorDetails {
        errors::details(self.status, &self.headers, &self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_headers_and_body() {
        let request = post("https://example.com/x?key=secret")
            .bearer("k")
            .json(&serde_json::json!({"a": 1}))
            .timeout(Duration::from_secs(2));
        assert_eq!(
            request.headers,
            vec![
                ("authorization".to_owned(), "Bearer k".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned())
            ]
        );
        assert_eq!(request.body, br#"{"a":1}"#);
        assert_eq!(request.timeout, Some(Duration::from_secs(2)));
        let shown = format!("{request:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("Bearer"),
            "{shown}"
        );
    }

    #[test]
    fn multipart_replaces_content_type() {
        let request = post("u")
            .json(&1)
            .multipart(Form::new().with_boundary("b").text("x", "y"));
        let types: Vec<_> = request
            .headers
            .iter()
            .filter(|(k, _)| k == "content-type")
            .collect();
        assert_eq!(types.len(), 1);
        assert_eq!(types[0].1, "multipart/form-data; boundary=b");
    }

    #[test]
    fn json_errors_are_server_errors() {
        let truncated = Response::new(200, vec![], br#"{"data": [{"b64_json": "abc"#.to_vec());
        let err = truncated.json::<serde_json::Value>().err();
        assert!(
            matches!(&err, Some(ProviderError::Server(m)) if m.contains("cut off")),
            "{err:?}"
        );
        let html = Response::new(200, vec![], b"<html>".to_vec());
        assert!(matches!(
            html.json::<serde_json::Value>(),
            Err(ProviderError::Server(_))
        ));
    }

    #[test]
    fn error_for_status() {
        let ok = Response::new(204, vec![("x-a".into(), "1".into())], vec![]);
        assert_eq!(ok.header("X-A"), Some("1"));
        assert!(ok.error_for_status().is_ok());
        let denied = Response::new(401, vec![], b"{}".to_vec());
        assert_eq!(
            denied.error_for_status().err().map(|e| e.class()),
            Some("auth")
        );
    }

    #[test]
    fn query_is_hidden() {
        assert_eq!(strip_query("https://h/p?key=x#f"), "https://h/p");
    }
}
