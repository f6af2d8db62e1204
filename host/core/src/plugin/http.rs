//! The only way out of the sandbox: HTTP requests a plugin asks the host to send. Every URL and
//! every redirect hop is checked against the plugin's allowed hosts; headers the transport owns
//! are refused; responses are capped; transient failures are retried; cancellation is honoured.

use std::fmt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode};
use url::Url;

use super::error::PluginError;
use super::hosts::AllowedHosts;
use crate::cancel::CancelToken;

/// Headers the host sets itself (or that only make sense hop by hop): a plugin may not.
const FORBIDDEN_HEADERS: [&str; 12] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
    "expect",
];
/// Credentials dropped when a redirect leaves the origin they were meant for.
const CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "x-api-key", "x-goog-api-key", "cookie"];
/// How often an in-flight request looks at the cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(20);
/// A request header that is an instruction to the host, never sent: statuses (comma-separated)
/// the host must hand to the plugin at once instead of retrying, for answers the plugin handles
/// itself (Hugging Face's 503 "model is loading" comes with its own wait estimate).
pub const NO_RETRY_HEADER: &str = "x-imageai-no-retry";

/// Timeouts, retries and redirects of the host's HTTP client.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOptions {
    /// Time to establish a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Longest wait for the response headers or for the next chunk of the body. A plugin can
    /// override it per request (`timeout-ms`), e.g. for slow image generations.
    pub read_timeout: Duration,
    /// Retries after the first attempt on 408/409/429/5xx and connection failures.
    pub max_retries: u32,
    /// `retry-after` values above this are ignored (exponential backoff is used instead).
    pub retry_after_cap: Duration,
    /// First backoff delay; doubles each retry up to `max_backoff`, with jitter.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Redirect hops followed per request (each one checked against the allowed hosts).
    pub max_redirects: u32,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(300),
            max_retries: 2,
            retry_after_cap: Duration::from_secs(120),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_redirects: 10,
        }
    }
}

/// A request as the plugin asked for it.
#[derive(Debug, Clone)]
pub(crate) struct HttpRequest {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) timeout: Option<Duration>,
}

/// The final response (after redirects and retries); header names in lower case. The body is
/// kept as received (one chunk when the answer arrived in one read, as a whole image usually
/// does) and copied only once, into the plugin's memory.
#[derive(Debug, Clone)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

/// Why no response came back; maps onto the contract's `http-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HttpFailure {
    Denied(String),
    Timeout(String),
    Network(String),
    TooLarge(String),
    Cancelled,
}

impl HttpFailure {
    pub(crate) fn map_message(self, f: impl Fn(String) -> String) -> Self {
        match self {
            Self::Denied(m) => Self::Denied(f(m)),
            Self::Timeout(m) => Self::Timeout(f(m)),
            Self::Network(m) => Self::Network(f(m)),
            Self::TooLarge(m) => Self::TooLarge(f(m)),
            Self::Cancelled => Self::Cancelled,
        }
    }
}

impl fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied(m) => write!(f, "denied: {m}"),
            Self::Timeout(m) => write!(f, "timeout: {m}"),
            Self::Network(m) => write!(f, "network: {m}"),
            Self::TooLarge(m) => write!(f, "too large: {m}"),
            Self::Cancelled => f.write_str("cancelled"),
        }
    }
}

/// One attempt's failure: connection failures may be retried, the rest are final.
enum AttemptError {
    Connect(String),
    Final(HttpFailure),
}

/// The host's HTTP client: reqwest on tokio runtimes the plugin runtime owns.
///
/// A request normally runs on the plugin's own thread, which drives a shared current-thread
/// runtime while it waits (`Runtime::block_on` lets several threads take turns driving it), so
/// no thread is woken to send it and none to hand the answer back. A caller that is already
/// inside a tokio runtime cannot block on another one; its requests run on a small
/// multi-threaded runtime instead and the answer comes back over a channel.
pub(crate) struct HttpClient {
    /// Driven by the calling thread.
    local: Runtime,
    /// For callers inside some other tokio runtime.
    pooled: Runtime,
    options: HttpOptions,
    max_response_bytes: usize,
}

/// A tokio runtime and the reqwest client whose connections live on it (a connection only makes
/// progress while its own runtime is driven, so each runtime needs its own pool).
struct Runtime {
    client: reqwest::Client,
    /// `Option` only so that `Drop` can shut it down without blocking (see there).
    tokio: Option<tokio::runtime::Runtime>,
}

impl Runtime {
    fn new(
        mut builder: tokio::runtime::Builder,
        options: &HttpOptions,
    ) -> Result<Self, PluginError> {
        let tokio = builder
            .thread_name("imageai-plugin-http")
            .enable_all()
            .build()
            .map_err(|err| {
                PluginError::Runtime(format!("could not start the HTTP runtime: {err}"))
            })?;
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            // Redirects are followed by hand so each hop is checked against the allowed hosts.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ImageAI/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| {
                PluginError::Runtime(format!("could not set up the HTTP client: {err}"))
            })?;
        Ok(Self {
            client,
            tokio: Some(tokio),
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks end, and panics inside async code; the
        // last `Runtime` handle may well be dropped there (a GUI task), so let it wind down in
        // the background instead.
        if let Some(tokio) = self.tokio.take() {
            tokio.shutdown_background();
        }
    }
}

impl HttpClient {
    pub(crate) fn new(
        options: HttpOptions,
        max_response_bytes: usize,
    ) -> Result<Self, PluginError> {
        let local = Runtime::new(tokio::runtime::Builder::new_current_thread(), &options)?;
        let mut pooled = tokio::runtime::Builder::new_multi_thread();
        pooled.worker_threads(2);
        let pooled = Runtime::new(pooled, &options)?;
        Ok(Self {
            local,
            pooled,
            options,
            max_response_bytes,
        })
    }

    /// Send one request for a plugin, blocking the calling (plugin) thread until the answer,
    /// a final failure, or cancellation.
    pub(crate) fn send(
        &self,
        request: HttpRequest,
        allowed: &AllowedHosts,
        cancel: &CancelToken,
        deadline: Option<Instant>,
        plugin: &str,
    ) -> Result<HttpResponse, HttpFailure> {
        let inside_tokio = tokio::runtime::Handle::try_current().is_ok();
        let runtime = if inside_tokio {
            &self.pooled
        } else {
            &self.local
        };
        let Some(tokio) = &runtime.tokio else {
            return Err(HttpFailure::Network(
                "the HTTP client is shutting down".into(),
            ));
        };
        // Refuse what can be refused before touching the network.
        let url = allowed.check(&request.url).map_err(HttpFailure::Denied)?;
        let method = parse_method(&request.method)?;
        let (headers, no_retry) = build_headers(&request.headers)?;
        let job = Job {
            client: runtime.client.clone(),
            options: self.options.clone(),
            cap: self.max_response_bytes,
            allowed: allowed.clone(),
            cancel: cancel.clone(),
            plugin: plugin.to_owned(),
            method,
            url,
            headers,
            body: Bytes::from(request.body),
            read_timeout: request.timeout.unwrap_or(self.options.read_timeout),
            no_retry,
        };
        let run = async move {
            match deadline {
                None => job.run().await,
                Some(deadline) => tokio::time::timeout_at(deadline.into(), job.run())
                    .await
                    .unwrap_or(Err(HttpFailure::Cancelled)),
            }
        };
        if !inside_tokio {
            return tokio.block_on(run);
        }
        let (tx, rx) = mpsc::sync_channel(1);
        tokio.spawn(async move {
            let _ = tx.send(run.await);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(HttpFailure::Network(
                "the HTTP client stopped during the request".into(),
            ))
        })
    }
}

fn parse_method(method: &str) -> Result<Method, HttpFailure> {
    let upper = method.trim().to_ascii_uppercase();
    match upper.as_str() {
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => {
            Method::from_bytes(upper.as_bytes())
                .map_err(|_| HttpFailure::Denied(format!("invalid method `{method}`")))
        }
        _ => Err(HttpFailure::Denied(format!(
            "method `{method}` is not allowed (use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS)"
        ))),
    }
}

/// The headers to send, and the statuses the plugin asked not to retry ([`NO_RETRY_HEADER`]).
fn build_headers(headers: &[(String, String)]) -> Result<(HeaderMap, Vec<u16>), HttpFailure> {
    let mut map = HeaderMap::new();
    let mut no_retry = Vec::new();
    for (name, value) in headers {
        let lower = name.trim().to_ascii_lowercase();
        if lower == NO_RETRY_HEADER {
            for status in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                no_retry.push(status.parse::<u16>().map_err(|_| {
                    HttpFailure::Denied(format!(
                        "`{NO_RETRY_HEADER}: {value}` is not a list of HTTP statuses (e.g. `503` or `502, 503`)"
                    ))
                })?);
            }
            continue;
        }
        if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
            return Err(HttpFailure::Denied(format!(
                "the `{name}` header is set by the host; leave it out"
            )));
        }
        let header = HeaderName::from_bytes(lower.as_bytes())
            .map_err(|_| HttpFailure::Denied(format!("`{name}` is not a valid header name")))?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            HttpFailure::Denied(format!(
                "the value of header `{name}` is not valid (control characters?)"
            ))
        })?;
        map.append(header, value);
    }
    Ok((map, no_retry))
}

/// Everything one request needs, owned, so it can run on the runtime's workers.
struct Job {
    client: reqwest::Client,
    options: HttpOptions,
    cap: usize,
    allowed: AllowedHosts,
    cancel: CancelToken,
    plugin: String,
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Bytes,
    read_timeout: Duration,
    /// Statuses handed to the plugin without a retry.
    no_retry: Vec<u16>,
}

impl Job {
    async fn run(self) -> Result<HttpResponse, HttpFailure> {
        let mut retry = 0;
        loop {
            let attempt = tokio::select! {
                () = cancelled(&self.cancel) => return Err(HttpFailure::Cancelled),
                attempt = self.attempt() => attempt,
            };
            let delay = match attempt {
                Ok(response)
                    if retryable(response.status)
                        && !self.no_retry.contains(&response.status)
                        && retry < self.options.max_retries =>
                {
                    let delay = self.retry_delay(&response.headers, retry);
                    tracing::info!(
                        plugin = %self.plugin, status = response.status, retry = retry + 1,
                        delay_ms = delay.as_millis() as u64, "transient HTTP status; retrying"
                    );
                    delay
                }
                Ok(response) => return Ok(response),
                Err(AttemptError::Connect(message)) if retry < self.options.max_retries => {
                    let delay = self.backoff(retry);
                    tracing::info!(
                        plugin = %self.plugin, retry = retry + 1, delay_ms = delay.as_millis() as u64,
                        "connection failed ({message}); retrying"
                    );
                    delay
                }
                Err(AttemptError::Connect(message)) => return Err(HttpFailure::Network(message)),
                Err(AttemptError::Final(failure)) => return Err(failure),
            };
            retry += 1;
            tokio::select! {
                () = cancelled(&self.cancel) => return Err(HttpFailure::Cancelled),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One attempt: the request plus any redirects, each hop checked, then the capped body.
    async fn attempt(&self) -> Result<HttpResponse, AttemptError> {
        let mut method = self.method.clone();
        let mut url = self.url.clone();
        let mut headers = self.headers.clone();
        let mut body = Some(self.body.clone());
        let mut hops = 0;
        loop {
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(body) = &body
                && (!body.is_empty() || method != Method::GET)
            {
                request = request.body(body.clone());
            }
            let response = match tokio::time::timeout(self.read_timeout, request.send()).await {
                Err(_) => return Err(final_timeout(self.read_timeout, "the response headers")),
                Ok(Err(err)) => return Err(classify(&err)),
                Ok(Ok(response)) => response,
            };
            let status = response.status();
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let next = match (is_followed_redirect(status), location) {
                (true, Some(location)) => location,
                _ => return self.read(response).await,
            };
            hops += 1;
            if hops > self.options.max_redirects {
                return Err(AttemptError::Final(HttpFailure::Network(format!(
                    "more than {} redirects; the server is redirecting in a loop",
                    self.options.max_redirects
                ))));
            }
            let target = url.join(&next).map_err(|err| {
                AttemptError::Final(HttpFailure::Network(format!(
                    "the server sent an invalid redirect `{next}` ({err})"
                )))
            })?;
            let target = self.allowed.check(target.as_str()).map_err(|reason| {
                AttemptError::Final(HttpFailure::Denied(format!(
                    "redirect from {} refused: {reason}",
                    url.host_str().unwrap_or("?")
                )))
            })?;
            if target.origin() != url.origin() {
                for name in CREDENTIAL_HEADERS {
                    headers.remove(name);
                }
            }
            // 303, and 301/302 after a POST, turn into a GET without a body (as browsers do);
            // 307 and 308 repeat the request as it was.
            if status == StatusCode::SEE_OTHER
                || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                    && method == Method::POST)
            {
                if method != Method::HEAD {
                    method = Method::GET;
                }
                body = None;
                headers.remove(reqwest::header::CONTENT_TYPE);
            }
            tracing::debug!(plugin = %self.plugin, status = status.as_u16(), to = %target.host_str().unwrap_or("?"), "following redirect");
            url = target;
        }
    }

    /// Read the body, refusing more than the cap (announced or streamed).
    async fn read(&self, mut response: reqwest::Response) -> Result<HttpResponse, AttemptError> {
        let too_large = || {
            AttemptError::Final(HttpFailure::TooLarge(format!(
                "the response is larger than the {} the host accepts",
                human_bytes(self.cap)
            )))
        };
        if response
            .content_length()
            .is_some_and(|len| len > self.cap as u64)
        {
            return Err(too_large());
        }
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        // One chunk (an answer that arrived in one read, as a whole image usually does) is kept
        // as is; several are joined.
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut received = 0;
        loop {
            match tokio::time::timeout(self.read_timeout, response.chunk()).await {
                Err(_) => return Err(final_timeout(self.read_timeout, "the response body")),
                Ok(Err(err)) => {
                    return Err(AttemptError::Final(HttpFailure::Network(format!(
                        "the connection broke while reading the response: {}",
                        error_chain(&err)
                    ))));
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => {
                    received += chunk.len();
                    if received > self.cap {
                        return Err(too_large());
                    }
                    chunks.push(chunk);
                }
            }
        }
        let body = match chunks.len() {
            1 => chunks.swap_remove(0),
            _ => Bytes::from(chunks.concat()),
        };
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// The server's `retry-after-ms` / `retry-after` when it is sane, else exponential backoff.
    fn retry_delay(&self, headers: &[(String, String)], retry: u32) -> Duration {
        match retry_after(headers) {
            Some(delay) if delay <= self.options.retry_after_cap => delay,
            _ => self.backoff(retry),
        }
    }

    /// `initial · 2^retry`, at most `max_backoff`, minus up to 25 % jitter.
    fn backoff(&self, retry: u32) -> Duration {
        let base = self
            .options
            .initial_backoff
            .saturating_mul(1 << retry.min(16))
            .min(self.options.max_backoff);
        let jitter = 1.0 - 0.25 * rand::random::<f64>();
        base.mul_f64(jitter)
    }
}

/// Parse `retry-after-ms` (milliseconds) or `retry-after` (seconds or an HTTP date).
pub(crate) fn retry_after(headers: &[(String, String)]) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = header("retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(1e9)));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

fn retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || (500..600).contains(&status)
}

fn is_followed_redirect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    )
}

fn final_timeout(after: Duration, waiting_for: &str) -> AttemptError {
    AttemptError::Final(HttpFailure::Timeout(format!(
        "no answer for {waiting_for} within {:.0} s",
        after.as_secs_f64()
    )))
}

fn classify(err: &reqwest::Error) -> AttemptError {
    let message = error_chain(err);
    if err.is_timeout() {
        AttemptError::Final(HttpFailure::Timeout(message))
    } else if err.is_connect() {
        AttemptError::Connect(format!("could not connect: {message}"))
    } else {
        AttemptError::Final(HttpFailure::Network(message))
    }
}

/// An error and its causes on one line (reqwest's `Display` leaves the cause out).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

async fn cancelled(token: &CancelToken) {
    while !token.is_cancelled() {
        tokio::time::sleep(CANCEL_POLL).await;
    }
}

pub(crate) fn human_bytes(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&headers(&[("Retry-After", "2")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "0.5")])),
            Some(Duration::from_millis(500))
        );
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let wait = retry_after(&headers(&[("retry-after", &soon)])).unwrap_or_default();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(
            retry_after(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:28:00 GMT"
            )])),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&headers(&[])), None);
    }

    #[test]
    fn transport_headers_are_refused() {
        for name in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "connection",
            "Upgrade",
        ] {
            assert!(
                matches!(
                    build_headers(&headers(&[(name, "x")])),
                    Err(HttpFailure::Denied(_))
                ),
                "{name}"
            );
        }
        assert!(matches!(
            build_headers(&headers(&[("x-bad", "a\r\nhost: b")])),
            Err(HttpFailure::Denied(_))
        ));
        assert!(matches!(
            build_headers(&headers(&[("bad name", "a")])),
            Err(HttpFailure::Denied(_))
        ));
        assert!(
            build_headers(&headers(&[
                ("Authorization", "Bearer k"),
                ("content-type", "application/json")
            ]))
            .is_ok()
        );
    }

    #[test]
    fn the_no_retry_header_is_read_not_sent() {
        let (map, no_retry) = build_headers(&headers(&[
            ("X-ImageAI-No-Retry", "503, 502"),
            ("accept", "image/png"),
        ]))
        .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(no_retry, [503, 502]);
        assert!(map.get(NO_RETRY_HEADER).is_none());
        assert_eq!(map.len(), 1);
        assert_eq!(build_headers(&headers(&[])).map(|h| h.1), Ok(Vec::new()));
        match build_headers(&headers(&[(NO_RETRY_HEADER, "loading")])) {
            Err(HttpFailure::Denied(message)) => assert!(message.contains("e.g. `503`")),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn methods() {
        assert_eq!(parse_method("post").ok(), Some(Method::POST));
        assert!(parse_method("CONNECT").is_err());
        assert!(parse_method("TRACE").is_err());
    }
}
