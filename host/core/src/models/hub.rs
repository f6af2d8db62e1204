//! The Hugging Face Hub API under `HF_ENDPOINT`: model search (through `hf-hub`), model info
//! with file sizes and hashes (`?blobs=true`, which `hf-hub` does not ask for), and the
//! `resolve` endpoint's file metadata (etag, commit, size) read the way `huggingface_hub` does.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, LOCATION};

use super::ModelError;
use super::select::RepoFile;
use crate::secret::Secret;

/// How long to wait for a connection, and for the next bytes of an answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What `GET /api/models/{repo}/revision/{rev}?blobs=true` says.
#[derive(Debug, Clone)]
pub struct RepoInfo {
    pub id: String,
    /// The commit the revision points at.
    pub commit: String,
    pub files: Vec<RepoFile>,
    pub downloads: Option<u64>,
    pub likes: Option<u64>,
    pub tags: Vec<String>,
    /// `false`, `"auto"` or `"manual"` on the Hub: whether a license must be accepted.
    pub gated: bool,
}

/// What a `HEAD` of `/{repo}/resolve/{rev}/{path}` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// The blob name: `X-Linked-Etag` (LFS: the SHA-256) or `ETag`, unquoted.
    pub etag: String,
    /// `X-Repo-Commit`.
    pub commit: Option<String>,
    /// `X-Linked-Size` or `Content-Length`.
    pub size: Option<u64>,
}

/// A client for one Hub endpoint, with the user's token.
pub struct Hub {
    endpoint: String,
    token: Option<Secret>,
    api: hf_hub::HFClient,
    /// Follows redirects (file downloads go to a CDN); sends the token only to the same host.
    http: reqwest::Client,
    /// Follows none: a `HEAD` must see the Hub's own headers, not the CDN's.
    no_redirect: reqwest::Client,
}

impl Hub {
    pub fn new(
        endpoint: &str,
        token: Option<Secret>,
        cache_dir: &std::path::Path,
    ) -> Result<Self, ModelError> {
        let endpoint = endpoint.trim().trim_end_matches('/').to_owned();
        let bad = |reason: String| ModelError::BadEndpoint {
            endpoint: endpoint.clone(),
            reason,
        };
        let parsed = url::Url::parse(&endpoint).map_err(|e| bad(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("it must start with https:// or http://".into()));
        }
        let agent = concat!("imageai/", env!("CARGO_PKG_VERSION"), "; hf_hub-compatible");
        let build = |policy: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .user_agent(agent)
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .redirect(policy)
                .build()
                .map_err(|e| ModelError::Runtime(format!("could not set up the HTTP client: {e}")))
        };
        let http = build(reqwest::redirect::Policy::limited(10))?;
        let no_redirect = build(reqwest::redirect::Policy::none())?;
        let mut api = hf_hub::HFClient::builder()
            .endpoint(endpoint.clone())
            .cache_dir(cache_dir.to_path_buf())
            .client(http.clone())
            .retry_max_attempts(2);
        if let Some(token) = &token {
            api = api.token(token.expose().to_owned());
        }
        let api = api.build().map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            endpoint,
            token,
            api,
            http,
            no_redirect,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The cache as `hf-hub` scans it (repositories, snapshots, refs, blob sizes).
    pub async fn scan_cache(&self) -> Result<hf_hub::cache::HFCacheInfo, String> {
        self.api
            .scan_cache()
            .send()
            .await
            .map_err(|e| e.to_string())
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The model's page, where a gated model's license is accepted.
    pub fn page(&self, repo: &str) -> String {
        format!("{}/{repo}", self.endpoint)
    }

    /// `{endpoint}/{repo}/resolve/{revision}/{path}`, each part percent-encoded.
    pub fn resolve_url(&self, repo: &str, revision: &str, path: &str) -> String {
        let path: Vec<String> = path.split('/').map(|p| encode(p, false)).collect();
        format!(
            "{}/{repo}/resolve/{}/{}",
            self.endpoint,
            encode(revision, true),
            path.join("/")
        )
    }

    fn auth(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(token) = &self.token
            && let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        {
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        headers
    }

    /// A GET that follows redirects, with the token for the Hub (reqwest drops it when a
    /// redirect leaves the Hub's host).
    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.http.get(url).headers(self.auth())
    }

    /// Text-to-image diffusers models matching `query`, most downloaded first.
    pub async fn search(
        &self,
        query: Option<&str>,
        limit: usize,
    ) -> Result<Vec<hf_hub::repository::ModelInfo>, ModelError> {
        let url = format!("{}/api/models", self.endpoint);
        let stream = self
            .api
            .list_models()
            .maybe_search(query.map(str::to_owned).filter(|q| !q.trim().is_empty()))
            .filter("diffusers")
            .pipeline_tag("text-to-image")
            .sort("downloads")
            .limit(limit)
            .send()
            .map_err(|e| self.hf_error(e, "", &url))?;
        let mut stream = std::pin::pin!(stream);
        let mut found = Vec::new();
        while let Some(item) = stream.next().await {
            found.push(item.map_err(|e| self.hf_error(e, "", &url))?);
        }
        Ok(found)
    }

    /// The files (with sizes and LFS hashes) and commit of `repo` at `revision`.
    pub async fn info(&self, repo: &str, revision: &str) -> Result<RepoInfo, ModelError> {
        let url = format!(
            "{}/api/models/{repo}/revision/{}?blobs=true",
            self.endpoint,
            encode(revision, true)
        );
        let response = self
            .http
            .get(&url)
            .headers(self.auth())
            .send()
            .await
            .map_err(|e| network(&e, &url))?;
        if !response.status().is_success() {
            return Err(self
                .status_error(response, repo, Some(revision), None)
                .await);
        }
        let bytes = response.bytes().await.map_err(|e| network(&e, &url))?;
        let info: hf_hub::repository::ModelInfo =
            serde_json::from_slice(&bytes).map_err(|e| ModelError::BadResponse {
                reason: format!("model info: {e}"),
                url: url.clone(),
            })?;
        let commit = info
            .sha
            .clone()
            .filter(|s| super::cache::is_commit_hash(s))
            .ok_or_else(|| ModelError::BadResponse {
                reason: "model info has no commit `sha`".into(),
                url: url.clone(),
            })?
            .to_ascii_lowercase();
        let files = info
            .siblings
            .unwrap_or_default()
            .into_iter()
            .map(|s| RepoFile {
                size: s.lfs.as_ref().and_then(|l| l.size).or(s.size),
                sha256: s.lfs.and_then(|l| l.sha256).map(|h| h.to_ascii_lowercase()),
                path: s.rfilename,
            })
            .collect();
        let gated = info
            .gated
            .as_ref()
            .is_some_and(|g| g.as_bool() != Some(false) && !g.is_null());
        Ok(RepoInfo {
            id: info.id,
            commit,
            files,
            downloads: info.downloads,
            likes: info.likes,
            tags: info.tags.unwrap_or_default(),
            gated,
        })
    }

    /// `HEAD` the resolve URL without following the CDN redirect (relative redirects of a
    /// renamed repo are followed), as `huggingface_hub` does.
    pub async fn file_meta(
        &self,
        repo: &str,
        commit: &str,
        path: &str,
    ) -> Result<FileMeta, ModelError> {
        let mut url = self.resolve_url(repo, commit, path);
        for _ in 0..5 {
            let response = self
                .no_redirect
                .head(&url)
                .headers(self.auth())
                .send()
                .await
                .map_err(|e| network(&e, &url))?;
            let status = response.status();
            if status.is_redirection()
                && let Some(location) = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                && location.starts_with('/')
                && !location.starts_with("//")
                && header(response.headers(), "x-linked-etag").is_none()
            {
                url = format!("{}{location}", self.endpoint);
                continue;
            }
            if !(status.is_success() || status.is_redirection()) {
                return Err(self
                    .status_error(response, repo, Some(commit), Some(path))
                    .await);
            }
            let headers = response.headers();
            let etag = header(headers, "x-linked-etag")
                .or_else(|| header(headers, "etag"))
                .map(normalize_etag)
                .filter(|e| !e.is_empty() && !e.contains(['/', '\\']) && e != "." && e != "..")
                .ok_or_else(|| ModelError::BadResponse {
                    reason: format!("no ETag for {path}"),
                    url: url.clone(),
                })?;
            let size = header(headers, "x-linked-size")
                .or_else(|| {
                    if status.is_success() {
                        header(headers, "content-length")
                    } else {
                        None
                    }
                })
                .and_then(|s| s.trim().parse().ok());
            let commit = header(headers, "x-repo-commit").map(|c| c.trim().to_ascii_lowercase());
            return Ok(FileMeta { etag, commit, size });
        }
        Err(ModelError::BadResponse {
            reason: "too many redirects".into(),
            url,
        })
    }

    /// The error for a non-success answer about `repo`.
    pub async fn status_error(
        &self,
        response: reqwest::Response,
        repo: &str,
        revision: Option<&str>,
        file: Option<&str>,
    ) -> ModelError {
        let status = response.status();
        let url = response.url().to_string();
        let code = header(response.headers(), "x-error-code").unwrap_or_default();
        let header_message = header(response.headers(), "x-error-message");
        let body = response.text().await.unwrap_or_default();
        let message = header_message
            .or_else(|| {
                serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            })
            .unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("no reason given")
                    .to_owned()
            });
        self.classify(status, &code, message, url, repo, revision, file)
    }

    #[allow(clippy::too_many_arguments)] // one place that turns every Hub answer into an error
    fn classify(
        &self,
        status: StatusCode,
        code: &str,
        message: String,
        url: String,
        repo: &str,
        revision: Option<&str>,
        file: Option<&str>,
    ) -> ModelError {
        let not_found = || ModelError::RepoNotFound {
            repo: repo.to_owned(),
            hint: repo_hint(repo),
        };
        match status.as_u16() {
            401 | 403 if code == "RepoNotFound" => ModelError::RepoNotFound {
                repo: repo.to_owned(),
                hint: format!(
                    "{}; if it is private or gated, set a Hugging Face token with `imageai keys set huggingface`",
                    repo_hint(repo)
                ),
            },
            401 | 403 => ModelError::Access {
                repo: repo.to_owned(),
                status: status.as_u16(),
                page: self.page(repo),
                token_sent: self.has_token(),
            },
            404 if code == "RevisionNotFound" => ModelError::RevisionNotFound {
                repo: repo.to_owned(),
                revision: revision.unwrap_or("main").to_owned(),
            },
            404 if code == "EntryNotFound" || (file.is_some() && code != "RepoNotFound") => {
                ModelError::FileNotFound {
                    repo: repo.to_owned(),
                    file: file.unwrap_or("?").to_owned(),
                    revision: revision.unwrap_or("main").to_owned(),
                }
            }
            404 if repo.is_empty() => ModelError::Server {
                status: 404,
                message,
                url,
            },
            404 => not_found(),
            _ => ModelError::Server {
                status: status.as_u16(),
                message,
                url,
            },
        }
    }

    fn hf_error(&self, error: hf_hub::HFError, repo: &str, url: &str) -> ModelError {
        use hf_hub::HFError;
        match error {
            HFError::Request { source, .. } => network(&source, url),
            HFError::Http { context }
            | HFError::AuthRequired { context }
            | HFError::Forbidden { context }
            | HFError::RateLimited { context, .. } => {
                let code = context.error_code.clone().unwrap_or_default();
                let message = context
                    .server_message
                    .clone()
                    .unwrap_or_else(|| context.status.to_string());
                self.classify(
                    context.status,
                    &code,
                    message,
                    context.url.clone(),
                    repo,
                    None,
                    None,
                )
            }
            HFError::RepoNotFound { .. } => ModelError::RepoNotFound {
                repo: repo.to_owned(),
                hint: repo_hint(repo),
            },
            other => ModelError::BadResponse {
                reason: other.to_string(),
                url: url.to_owned(),
            },
        }
    }
}

/// A note for ids we know moved.
fn repo_hint(repo: &str) -> String {
    if repo.eq_ignore_ascii_case("runwayml/stable-diffusion-v1-5") {
        " (it was deleted from the Hub in 2024; its maintained copy is stable-diffusion-v1-5/stable-diffusion-v1-5)".into()
    } else if repo.eq_ignore_ascii_case("runwayml/stable-diffusion-inpainting") {
        " (it was deleted from the Hub in 2024; its maintained copy is stable-diffusion-v1-5/stable-diffusion-inpainting)"
            .into()
    } else {
        String::new()
    }
}

/// A transport failure, in words (with its causes), for `url`.
pub fn network(error: &reqwest::Error, url: &str) -> ModelError {
    let mut reason = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        "the connection failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !reason.contains(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = cause.source();
    }
    ModelError::Network {
        reason,
        url: strip_query(url),
    }
}

fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `W/"abc"` → `abc`.
pub fn normalize_etag(raw: String) -> String {
    let raw = raw.trim();
    raw.strip_prefix("W/")
        .unwrap_or(raw)
        .trim_matches('"')
        .to_owned()
}

/// Percent-encode a path segment; with `slash`, `/` too (a revision is one segment).
fn encode(text: &str, slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~')
            || (!slash && byte == b'/');
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_encoded_like_huggingface_hub() {
        let hub = Hub::new(
            "http://127.0.0.1:9/",
            None,
            std::path::Path::new("/tmp/none"),
        );
        let Ok(hub) = hub else {
            panic!("the client could not be built")
        };
        assert_eq!(
            hub.resolve_url("o/n", "refs/pr/1", "unet/diffusion pytorch.json"),
            "http://127.0.0.1:9/o/n/resolve/refs%2Fpr%2F1/unet/diffusion%20pytorch.json"
        );
        assert_eq!(hub.page("o/n"), "http://127.0.0.1:9/o/n");
        assert_eq!(normalize_etag("W/\"abc\"".into()), "abc");
        assert_eq!(normalize_etag("\"abc\"".into()), "abc");
        assert!(matches!(
            Hub::new("ftp://x", None, std::path::Path::new("/tmp")),
            Err(ModelError::BadEndpoint { .. })
        ));
    }
}
