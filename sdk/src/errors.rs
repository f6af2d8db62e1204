//! Typed provider errors and the mapping from an HTTP failure (status, headers, JSON error body)
//! onto them, so the host can tell a bad key from a rate limit from a refused prompt.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a call failed, in classes the host can act on (ask for a new key, wait and retry, show the
/// refusal…). Messages say what happened and what to do next, and never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// The key is missing, wrong or revoked.
    Auth(String),
    /// Too many requests; `retry_after_ms` is the provider's hint, when it gave one.
    RateLimited {
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// The provider refused the prompt or image; the reason as given.
    ContentPolicy(String),
    /// The request cannot succeed as it is (bad size, unknown model, missing image…).
    InvalidRequest(String),
    /// Out of credits or over a quota.
    Quota(String),
    Timeout(String),
    Network(String),
    /// The provider failed or answered something unreadable.
    Server(String),
    /// The user cancelled the call.
    Cancelled,
    Other(String),
}

impl ProviderError {
    pub fn auth(message: impl Into<String>) -> Self {
        Self::Auth(message.into())
    }

    pub fn rate_limited(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self::RateLimited {
            message: message.into(),
            retry_after_ms: retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    pub fn content_policy(message: impl Into<String>) -> Self {
        Self::ContentPolicy(message.into())
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::InvalidRequest(message.into())
    }

    pub fn quota(message: impl Into<String>) -> Self {
        Self::Quota(message.into())
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::Timeout(message.into())
    }

    pub fn network(message: impl Into<String>) -> Self {
        Self::Network(message.into())
    }

    pub fn server(message: impl Into<String>) -> Self {
        Self::Server(message.into())
    }

    pub fn other(message: impl Into<String>) -> Self {
        Self::Other(message.into())
    }

    /// The error the default `generate`/`edit`/`upscale` return: `what` is not offered here.
    pub fn not_supported(what: &str) -> Self {
        Self::InvalidRequest(format!(
            "{what} is not supported by this provider; choose a provider whose models list that capability"
        ))
    }

    /// A short class name, the same as the contract's variant name (`auth`, `rate-limited`…).
    pub fn class(&self) -> &'static str {
        match self {
            Self::Auth(_) => "auth",
            Self::RateLimited { .. } => "rate-limited",
            Self::ContentPolicy(_) => "content-policy",
            Self::InvalidRequest(_) => "invalid-request",
            Self::Quota(_) => "quota",
            Self::Timeout(_) => "timeout",
            Self::Network(_) => "network",
            Self::Server(_) => "server",
            Self::Cancelled => "cancelled",
            Self::Other(_) => "other",
        }
    }

    /// The message without the class.
    pub fn message(&self) -> &str {
        match self {
            Self::Auth(m)
            | Self::ContentPolicy(m)
            | Self::InvalidRequest(m)
            | Self::Quota(m)
            | Self::Timeout(m)
            | Self::Network(m)
            | Self::Server(m)
            | Self::Other(m) => m,
            Self::RateLimited { message, .. } => message,
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cancelled => f.write_str("cancelled"),
            other => write!(f, "{}: {}", other.class(), other.message()),
        }
    }
}

impl std::error::Error for ProviderError {}

/// What an HTTP error response says, read from its status, headers and body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorDetails {
    pub status: u16,
    /// The human message from the body (`error.message`, `message`, `detail`…), secrets masked.
    pub message: Option<String>,
    /// A machine code from the body (`error.code`, `code`, `name`, `status`, `reason`…).
    pub code: Option<String>,
    /// The error type, where the API has one besides the code (`error.type`).
    pub kind: Option<String>,
    /// From `retry-after-ms`, `retry-after` (seconds or an HTTP date) or a `retryDelay` in the body.
    pub retry_after_ms: Option<u64>,
    /// The request id the provider assigned (`x-request-id`, `request-id`…), for support tickets.
    pub request_id: Option<String>,
}

impl ErrorDetails {
    /// Whether the code or type is one of `codes` (case-insensitive).
    pub fn is(&self, codes: &[&str]) -> bool {
        let matches = |value: &Option<String>| {
            value
                .as_deref()
                .is_some_and(|v| codes.iter().any(|c| v.eq_ignore_ascii_case(c)))
        };
        matches(&self.code) || matches(&self.kind)
    }

    /// `"<status>: <message>"`, or a generic line when the body had no message.
    pub fn summary(&self) -> String {
        let reason = status_reason(self.status);
        match &self.message {
            Some(message) => format!("{} {reason}: {message}", self.status),
            None => format!("{} {reason} with no error message", self.status),
        }
    }

    /// Classify: codes in the body first (they are more precise than the status), then the status.
    pub fn into_error(self) -> ProviderError {
        let summary = self.summary();
        if self.is(CONTENT_POLICY_CODES) {
            let message = self.message.unwrap_or_else(|| summary.clone());
            return ProviderError::ContentPolicy(message);
        }
        if self.is(QUOTA_CODES) {
            return ProviderError::Quota(format!(
                "{summary}. Add credits or raise the limit in the provider's console."
            ));
        }
        if self.is(AUTH_CODES) {
            return ProviderError::Auth(auth_message(&summary));
        }
        if self.is(RATE_LIMIT_CODES) {
            return ProviderError::RateLimited {
                message: summary,
                retry_after_ms: self.retry_after_ms,
            };
        }
        match self.status {
            401 | 403 => ProviderError::Auth(auth_message(&summary)),
            402 => {
                ProviderError::Quota(format!("{summary}. Add credits in the provider's console."))
            }
            429 => ProviderError::RateLimited {
                message: summary,
                retry_after_ms: self.retry_after_ms,
            },
            408 | 504 => ProviderError::Timeout(summary),
            400 | 404 | 405 | 409 | 413 | 415 | 422 => ProviderError::InvalidRequest(summary),
            500..=599 => ProviderError::Server(summary),
            _ => ProviderError::Other(summary),
        }
    }
}

fn auth_message(summary: &str) -> String {
    let id = crate::host::provider_id();
    format!("{summary}. Check the key, or set a new one with `imageai keys set {id}`.")
}

const CONTENT_POLICY_CODES: &[&str] = &[
    "content_policy_violation",
    "moderation_blocked",
    "content_moderation",
    "content_filter",
    "content_filtered",
    "safety",
    "image_safety",
    "prohibited_content",
];
const QUOTA_CODES: &[&str] = &[
    "insufficient_quota",
    "billing_hard_limit_reached",
    "billing_not_active",
    "payment_required",
    "insufficient_balance",
];
const AUTH_CODES: &[&str] = &[
    "invalid_api_key",
    "api_key_invalid",
    "unauthenticated",
    "unauthorized",
    "permission_denied",
    "invalid_authentication",
];
const RATE_LIMIT_CODES: &[&str] = &[
    "rate_limit_exceeded",
    "resource_exhausted",
    "too_many_requests",
];

/// Map a failed HTTP response onto a typed error: 401/403 → auth, 402 → quota, 429 →
/// rate-limited (with the retry hint), 408/504 → timeout, 400/404/413/422 → invalid request,
/// 5xx → server. Error codes in common JSON bodies (OpenAI, Gemini, Stability, Replicate, Hugging
/// Face) take precedence: OpenAI's 429 `insufficient_quota` is a quota error, Stability's 403
/// `content_moderation` is a content-policy refusal.
pub fn from_http(status: u16, headers: &[(String, String)], body: &[u8]) -> ProviderError {
    details(status, headers, body).into_error()
}

/// Read an error response without classifying it, for plugins that word some errors themselves.
pub fn details(status: u16, headers: &[(String, String)], body: &[u8]) -> ErrorDetails {
    let mut details = ErrorDetails {
        status,
        ..ErrorDetails::default()
    };
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => read_json_error(&json, &mut details),
        Err(_) => details.message = plain_text_message(body),
    }
    details.message = details.message.map(|m| redact(&clip(&m, 600)));
    if details.retry_after_ms.is_none() {
        details.retry_after_ms = retry_after_ms(headers);
    }
    details.request_id = ["x-request-id", "request-id", "x-amzn-requestid", "cf-ray"]
        .iter()
        .find_map(|name| header(headers, name))
        .map(str::to_owned);
    details
}

fn read_json_error(json: &serde_json::Value, details: &mut ErrorDetails) {
    let text = |v: Option<&serde_json::Value>| -> Option<String> {
        match v? {
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    // `{"error": {...}}` (OpenAI, Gemini) or the object itself (Stability, Replicate, HF).
    let error = match json.get("error") {
        Some(inner @ serde_json::Value::Object(_)) => inner,
        Some(serde_json::Value::String(message)) => {
            details.message = Some(message.clone());
            json
        }
        _ => json,
    };
    if details.message.is_none() {
        details.message = text(error.get("message"))
            .or_else(|| text(error.get("detail")))
            .or_else(|| text(error.get("title")))
            .or_else(|| match error.get("errors") {
                Some(serde_json::Value::Array(items)) => {
                    let all: Vec<String> = items
                        .iter()
                        .filter_map(|i| text(Some(i)).or_else(|| text(i.get("message"))))
                        .collect();
                    (!all.is_empty()).then(|| all.join("; "))
                }
                _ => None,
            });
    }
    details.kind = text(error.get("type"));
    // Gemini puts the precise reason in `details[].reason` (`API_KEY_INVALID`) and the broad one in
    // `status`; prefer the precise one.
    let mut reason = None;
    if let Some(serde_json::Value::Array(items)) = error.get("details") {
        for item in items {
            if reason.is_none() {
                reason = text(item.get("reason"));
            }
            if let Some(delay) = item.get("retryDelay").and_then(|d| d.as_str()) {
                details.retry_after_ms = parse_duration_text(delay);
            }
        }
    }
    details.code = reason
        .or_else(|| text(error.get("code")).filter(|c| c.parse::<u16>().is_err()))
        .or_else(|| text(error.get("status")).filter(|c| c.parse::<u16>().is_err()))
        .or_else(|| text(error.get("name")));
}

/// A short excerpt of a non-JSON body (an HTML error page, a proxy's text), or nothing when it
/// does not look like text.
fn plain_text_message(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?.trim();
    if text.is_empty() || text.starts_with('<') {
        return None;
    }
    let first_line = text.lines().next()?.trim();
    Some(clip(first_line, 200))
}

fn clip(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Mask anything in a provider's message that looks like a credential: providers echo part of a
/// rejected key ("Incorrect API key provided: sk-abc***xyz"), and messages end up in logs.
pub fn redact(message: &str) -> String {
    const PREFIXES: &[&str] = &["sk-", "sk_", "pk-", "hf_", "r8_", "aiza", "key-"];
    let mut out = String::with_capacity(message.len());
    for (i, word) in message.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let core = word
            .trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '*' && c != '-' && c != '_');
        let lower = core.to_ascii_lowercase();
        let keyish = PREFIXES
            .iter()
            .any(|p| lower.starts_with(p) && core.len() > p.len() + 3)
            || (core.len() >= 24
                && core
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*'))
                && core.chars().any(|c| c.is_ascii_digit())
                && core.chars().any(|c| c.is_ascii_alphabetic()));
        if keyish {
            out.push_str(&word.replace(core, "[redacted]"));
        } else {
            out.push_str(word);
        }
    }
    out
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// The retry hint of a response: `retry-after-ms` (milliseconds), else `retry-after` in seconds
/// or as an HTTP date (measured from the response's `date` header when it has one).
pub fn retry_after_ms(headers: &[(String, String)]) -> Option<u64> {
    if let Some(ms) = header(headers, "retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return finite_ms(ms);
    }
    let value = header(headers, "retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return finite_ms(seconds * 1000.0);
    }
    let at = parse_http_date(value)?;
    let now = header(headers, "date")
        .and_then(parse_http_date)
        .or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs())
        })?;
    Some(at.saturating_sub(now).saturating_mul(1000))
}

fn finite_ms(ms: f64) -> Option<u64> {
    // `as` saturates for floats; negative and NaN values become 0 and are dropped below.
    (ms.is_finite() && ms >= 0.0).then_some(ms.ceil() as u64)
}

/// `"47s"`, `"1.5s"`, `"250ms"` (Gemini's `retryDelay`).
fn parse_duration_text(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.trim().parse::<f64>().ok().and_then(finite_ms);
    }
    let seconds = text.strip_suffix('s').unwrap_or(text);
    seconds
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| finite_ms(s * 1000.0))
}

/// Seconds since the Unix epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only
/// HTTP date form servers may send today.
fn parse_http_date(text: &str) -> Option<u64> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_weekday, day, month, year, time, zone] = parts.as_slice() else {
        return None;
    };
    if !zone.eq_ignore_ascii_case("GMT") {
        return None;
    }
    let day: u64 = day.parse().ok()?;
    let month = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|m| m.eq_ignore_ascii_case(month))? as u64
        + 1;
    let year: u64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if year < 1970 || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The reason phrase of common statuses, for messages.
fn status_reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn openai_body(message: &str, kind: &str, code: &str) -> Vec<u8> {
        serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn status_classes() {
        let cases: &[(u16, &str)] = &[
            (401, "auth"),
            (403, "auth"),
            (402, "quota"),
            (429, "rate-limited"),
            (408, "timeout"),
            (504, "timeout"),
            (400, "invalid-request"),
            (404, "invalid-request"),
            (413, "invalid-request"),
            (422, "invalid-request"),
            (500, "server"),
            (502, "server"),
            (503, "server"),
            (418, "other"),
        ];
        for (status, class) in cases {
            assert_eq!(
                from_http(*status, &[], b"").class(),
                *class,
                "status {status}"
            );
        }
    }

    #[test]
    fn openai_error_body() {
        let body = openai_body(
            "Your request was rejected by our safety system.",
            "invalid_request_error",
            "content_policy_violation",
        );
        assert_eq!(
            from_http(400, &[], &body),
            ProviderError::ContentPolicy("Your request was rejected by our safety system.".into())
        );
        let quota = openai_body(
            "You exceeded your current quota.",
            "insufficient_quota",
            "insufficient_quota",
        );
        assert_eq!(from_http(429, &[], &quota).class(), "quota");
        let moderation = openai_body(
            "blocked",
            "image_generation_user_error",
            "moderation_blocked",
        );
        assert_eq!(from_http(400, &[], &moderation).class(), "content-policy");
    }

    #[test]
    fn rate_limit_hints() {
        let err = from_http(429, &h(&[("retry-after-ms", "1500")]), b"{}");
        assert_eq!(
            err,
            ProviderError::RateLimited {
                message: "429 Too Many Requests with no error message".into(),
                retry_after_ms: Some(1500)
            }
        );
        assert_eq!(retry_after_ms(&h(&[("Retry-After", "3")])), Some(3000));
        assert_eq!(retry_after_ms(&h(&[("retry-after", "0.5")])), Some(500));
        assert_eq!(
            retry_after_ms(&h(&[
                ("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT"),
                ("date", "Wed, 21 Oct 2015 07:28:00 GMT")
            ])),
            Some(30_000)
        );
        assert_eq!(retry_after_ms(&h(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after_ms(&h(&[("retry-after", "-3")])), None);
        // retry-after-ms wins over retry-after.
        assert_eq!(
            retry_after_ms(&h(&[("retry-after", "9"), ("retry-after-ms", "20")])),
            Some(20)
        );
    }

    #[test]
    fn http_dates() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(1_835_438_400)
        );
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
        assert_eq!(parse_http_date("06 Nov 1994"), None);
    }

    #[test]
    fn gemini_bodies() {
        let invalid_key = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#;
        assert_eq!(from_http(400, &[], invalid_key).class(), "auth");
        let exhausted = br#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"47s"}]}}"#;
        match from_http(429, &[], exhausted) {
            ProviderError::RateLimited { retry_after_ms, .. } => {
                assert_eq!(retry_after_ms, Some(47_000))
            }
            other => panic!("expected rate-limited, got {other:?}"),
        }
    }

    #[test]
    fn other_providers_bodies() {
        let stability =
            br#"{"id":"abc","name":"content_moderation","errors":["Your request was flagged"]}"#;
        assert_eq!(
            from_http(403, &[], stability),
            ProviderError::ContentPolicy("Your request was flagged".into())
        );
        let replicate = br#"{"title":"Unauthenticated","detail":"You did not pass a valid authentication token","status":401}"#;
        let err = from_http(401, &[], replicate);
        assert_eq!(err.class(), "auth");
        assert!(
            err.message()
                .contains("You did not pass a valid authentication token"),
            "{err}"
        );
        let hf = br#"{"error":"Model is loading","estimated_time":20.0}"#;
        assert_eq!(
            from_http(503, &[], hf),
            ProviderError::Server("503 Service Unavailable: Model is loading".into())
        );
    }

    #[test]
    fn non_json_bodies() {
        assert_eq!(
            from_http(502, &[], b"<html><body>Bad gateway</body></html>").message(),
            "502 Bad Gateway with no error message"
        );
        assert_eq!(
            from_http(500, &[], b"upstream connect error\nmore").message(),
            "500 Internal Server Error: upstream connect error"
        );
        assert_eq!(from_http(500, &[], &[0xff, 0xfe, 0x00]).class(), "server");
    }

    #[test]
    fn request_id_is_kept() {
        let d = details(500, &h(&[("x-request-id", "req_42")]), b"{}");
        assert_eq!(d.request_id.as_deref(), Some("req_42"));
    }

    #[test]
    fn secrets_are_masked() {
        let body = openai_body(
            "Incorrect API key provided: sk-proj-abc123***********************xyz9. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        );
        let err = from_http(401, &[], &body);
        assert_eq!(err.class(), "auth");
        assert!(!err.message().contains("sk-proj"), "{err}");
        assert!(err.message().contains("[redacted]"), "{err}");
        assert_eq!(redact("use Bearer tokens"), "use Bearer tokens");
        assert_eq!(redact("hf_abcdefghijklmnop."), "[redacted].");
        assert_eq!(redact("plain words stay"), "plain words stay");
    }

    #[test]
    fn long_messages_are_clipped() {
        let long = "x ".repeat(1000);
        let body = serde_json::json!({"error": {"message": long}}).to_string();
        assert!(
            from_http(400, &[], body.as_bytes())
                .message()
                .chars()
                .count()
                < 700
        );
    }
}
