//! A local Hugging Face Hub on 127.0.0.1 for the models manager's tests: search with `Link`
//! pagination, model info with `?blobs=true`, the file tree, and `resolve` with the Hub's headers (`etag`,
//! `x-repo-commit`, `x-linked-etag`/`x-linked-size` and a redirect to a CDN for LFS files),
//! byte ranges (206) — plus faults: a connection cut mid-file, corrupted bytes, gated repos.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::server::{Recorded, Reply, TestServer};

/// One file of a fake repository.
#[derive(Debug, Clone)]
pub struct HubFile {
    pub path: String,
    /// Shared, so answers slice it instead of copying.
    pub content: Bytes,
    /// Stored in LFS: served through the CDN redirect, listed with `lfs {sha256, size}`.
    pub lfs: bool,
    /// The SHA-256 of `content` (computed once: the server answers many requests).
    pub sha256: String,
}

impl HubFile {
    pub fn new(path: &str, content: Vec<u8>, lfs: bool) -> Self {
        let sha256 = sha256_hex(&content);
        Self {
            path: path.to_owned(),
            content: Bytes::from(content),
            lfs,
            sha256,
        }
    }

    /// The blob name the Hub gives it: the SHA-256 for LFS files, a git-style id otherwise.
    pub fn etag(&self) -> String {
        if self.lfs {
            self.sha256.clone()
        } else {
            self.sha256[..40].to_owned()
        }
    }
}

/// A fake model repository.
#[derive(Debug, Clone)]
pub struct HubRepo {
    pub id: String,
    pub commit: String,
    pub files: Vec<HubFile>,
    /// Files need `Authorization: Bearer <the server's token>`.
    pub gated: bool,
    pub downloads: u64,
    pub likes: u64,
    pub tags: Vec<String>,
    pub pipeline_tag: Option<String>,
    pub library: Option<String>,
}

impl HubRepo {
    pub fn file(&self, path: &str) -> Option<&HubFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// The SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A commit id (40 hex digits) derived from `seed`.
pub fn commit_id(seed: &str) -> String {
    sha256_hex(seed.as_bytes())[..40].to_owned()
}

/// Deterministic bytes (xorshift) for fake weights.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A valid safetensors file of about `bytes` bytes: one 1-D tensor `weight` of `dtype`.
pub fn fake_safetensors(dtype: &str, bytes: usize, seed: u64) -> Vec<u8> {
    let width = if dtype == "F32" { 4 } else { 2 };
    let count = (bytes / width).max(1);
    tensors_file(&[("weight", dtype, vec![count], noise(count * width, seed))])
}

/// A safetensors file with the given tensors (name, dtype, shape, data), in order.
pub fn tensors_file(tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, dtype, shape, data) in tensors {
        header.insert(
            (*name).to_owned(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + data.len()]}),
        );
        offset += data.len();
    }
    let mut header = serde_json::Value::Object(header).to_string().into_bytes();
    while !(header.len() + 8).is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    for (_, _, _, data) in tensors {
        out.extend_from_slice(data);
    }
    out
}

/// A fake `stable-diffusion-v1-5`-like diffusers repository: every kind of file the real one
/// has (fp16 and fp32 safetensors, `.bin`, flax, ONNX, a root single-file checkpoint, the
/// safety checker, tokenizer and configs), with weights of about `weight_bytes` bytes (fp32;
/// fp16 files are half).
pub fn sd_repo(id: &str, weight_bytes: usize) -> HubRepo {
    let json = |v: serde_json::Value| v.to_string().into_bytes();
    let mut files = vec![
        HubFile::new(
            ".gitattributes",
            b"*.safetensors filter=lfs\n".to_vec(),
            false,
        ),
        HubFile::new("README.md", b"# fake model\n".to_vec(), false),
        HubFile::new(
            "model_index.json",
            json(serde_json::json!({
                "_class_name": "StableDiffusionPipeline",
                "_diffusers_version": "0.6.0",
                "feature_extractor": ["transformers", "CLIPImageProcessor"],
                "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
                "scheduler": ["diffusers", "PNDMScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            })),
            false,
        ),
        HubFile::new(
            "v1-5-pruned-emaonly.safetensors",
            fake_safetensors("F32", weight_bytes, 1),
            true,
        ),
        HubFile::new("v1-5-pruned-emaonly.ckpt", noise(weight_bytes, 2), true),
        HubFile::new(
            "feature_extractor/preprocessor_config.json",
            json(serde_json::json!({"crop_size": 224})),
            false,
        ),
        HubFile::new(
            "scheduler/scheduler_config.json",
            json(serde_json::json!({"_class_name": "PNDMScheduler"})),
            false,
        ),
        HubFile::new(
            "tokenizer/merges.txt",
            b"#version: 0.2\ni n\n".to_vec(),
            false,
        ),
        HubFile::new(
            "tokenizer/vocab.json",
            json(serde_json::json!({"a": 0, "b": 1})),
            false,
        ),
        HubFile::new(
            "tokenizer/special_tokens_map.json",
            json(serde_json::json!({"pad_token": "<|endoftext|>"})),
            false,
        ),
        HubFile::new(
            "tokenizer/tokenizer_config.json",
            json(serde_json::json!({"model_max_length": 77})),
            false,
        ),
        HubFile::new("unet/model.onnx", noise(weight_bytes / 4, 3), true),
    ];
    let mut seed = 10;
    for (component, weights) in [
        ("unet", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
        ("text_encoder", "model"),
        ("safety_checker", "model"),
    ] {
        // The UNet is the big one, as in the real thing.
        let size = if component == "unet" {
            weight_bytes
        } else {
            weight_bytes / 4
        };
        files.push(HubFile::new(
            &format!("{component}/config.json"),
            json(serde_json::json!({"component": component})),
            false,
        ));
        files.push(HubFile::new(
            &format!("{component}/{weights}.safetensors"),
            fake_safetensors("F32", size, seed),
            true,
        ));
        files.push(HubFile::new(
            &format!("{component}/{weights}.fp16.safetensors"),
            fake_safetensors("F16", size / 2, seed + 1),
            true,
        ));
        let bin = if weights == "model" {
            "pytorch_model.bin".to_owned()
        } else {
            format!("{weights}.bin")
        };
        files.push(HubFile::new(
            &format!("{component}/{bin}"),
            noise(size / 8, seed + 2),
            true,
        ));
        seed += 3;
    }
    files.push(HubFile::new(
        "text_encoder/flax_model.msgpack",
        noise(weight_bytes / 8, 99),
        true,
    ));
    HubRepo {
        id: id.to_owned(),
        commit: commit_id(id),
        files,
        gated: false,
        downloads: 1000,
        likes: 10,
        tags: vec![
            "diffusers".into(),
            "safetensors".into(),
            "text-to-image".into(),
        ],
        pipeline_tag: Some("text-to-image".into()),
        library: Some("diffusers".into()),
    }
}

#[derive(Debug, Default)]
struct State {
    repos: Vec<HubRepo>,
    /// File path → (cut after this many bytes, for this many more requests).
    truncate: HashMap<String, (usize, usize)>,
    /// Paths whose bytes are served damaged (same length).
    corrupt: Vec<String>,
    /// The token gated repositories accept.
    token: Option<String>,
    /// Most search results per page.
    page_size: usize,
    /// File bodies are sent at this many bytes per second (`None`: as fast as possible).
    rate: Option<u64>,
    /// `Range` headers are ignored: every download is the whole file with 200, as from a
    /// mirror or proxy without range support.
    ignore_ranges: bool,
}

/// The running fake Hub. Stops when dropped.
pub struct HubServer {
    server: TestServer,
    state: Arc<Mutex<State>>,
}

impl HubServer {
    pub fn start(repos: Vec<HubRepo>) -> Self {
        let state = Arc::new(Mutex::new(State {
            repos,
            page_size: 100,
            ..State::default()
        }));
        let shared = state.clone();
        let server = TestServer::start(move |request| match shared.lock() {
            Ok(mut state) => handle(&mut state, request),
            Err(_) => Reply::new(500),
        });
        Self { server, state }
    }

    /// Send file bodies at `bytes_per_second`, as over a link of that speed (`None`: unpaced).
    pub fn set_rate(&self, bytes_per_second: Option<u64>) {
        if let Ok(mut state) = self.state.lock() {
            state.rate = bytes_per_second;
        }
    }

    /// The endpoint, for `HF_ENDPOINT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// The download attempts of files ending in `suffix`: `GET`s of their resolve URL (an LFS
    /// file's redirect to the CDN is followed by a second request, not counted here).
    pub fn file_gets(&self, suffix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r.method == "GET" && r.path().contains("/resolve/") && r.path().ends_with(suffix)
            })
            .collect()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut state)
    }

    /// Cut the connection after `at` bytes for the next `times` downloads of `path`.
    pub fn truncate(&self, path: &str, at: usize, times: usize) {
        self.with(|s| s.truncate.insert(path.to_owned(), (at, times)));
    }

    /// Ignore `Range` headers from now on: whole files with 200, as a server without ranges.
    pub fn ignore_ranges(&self) {
        self.with(|s| s.ignore_ranges = true);
    }

    /// Serve `path` with damaged bytes (its listed SHA-256 no longer matches).
    pub fn corrupt(&self, path: &str) {
        self.with(|s| s.corrupt.push(path.to_owned()));
    }

    /// The token gated repositories accept.
    pub fn set_token(&self, token: &str) {
        self.with(|s| s.token = Some(token.to_owned()));
    }

    /// Most search results per page (the rest follows through `Link`).
    pub fn set_page_size(&self, size: usize) {
        self.with(|s| s.page_size = size.max(1));
    }

    /// Add or replace a repository.
    pub fn put_repo(&self, repo: HubRepo) {
        self.with(|s| {
            s.repos.retain(|r| r.id != repo.id);
            s.repos.push(repo);
        });
    }
}

fn json_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, &serde_json::json!({"error": message}))
        .header("x-error-code", code)
        .header("x-error-message", message)
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(request: &Recorded) -> Vec<(String, String)> {
    request
        .uri
        .split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(p), String::new()),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn base(request: &Recorded) -> String {
    format!("http://{}", request.header("host").unwrap_or("127.0.0.1"))
}

fn handle(state: &mut State, request: &Recorded) -> Reply {
    let path = decode(request.path());
    if path == "/api/models" {
        return search(state, request);
    }
    if let Some(rest) = path.strip_prefix("/api/models/") {
        return info(state, rest, request);
    }
    if let Some(rest) = path.strip_prefix("/lfs/") {
        // /lfs/{org}/{name}/{commit}/{path}
        let parts: Vec<&str> = rest.splitn(4, '/').collect();
        if parts.len() == 4 {
            let id = format!("{}/{}", parts[0], parts[1]);
            return serve_bytes(state, request, &id, parts[3]);
        }
        return Reply::new(404);
    }
    // /{org}/{name}/resolve/{rev}/{path}
    let trimmed = request.path().trim_start_matches('/');
    let parts: Vec<&str> = trimmed.splitn(5, '/').collect();
    if parts.len() == 5 && parts[2] == "resolve" {
        let id = format!("{}/{}", parts[0], parts[1]);
        return resolve(state, request, &id, &decode(parts[3]), &decode(parts[4]));
    }
    json_error(404, "NotFound", "no such route")
}

fn search(state: &State, request: &Recorded) -> Reply {
    let params = query(request);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let needle = get("search").unwrap_or("").to_ascii_lowercase();
    let mut found: Vec<&HubRepo> = state
        .repos
        .iter()
        .filter(|r| r.id.to_ascii_lowercase().contains(&needle))
        .filter(|r| {
            get("filter")
                .is_none_or(|f| r.library.as_deref() == Some(f) || r.tags.iter().any(|t| t == f))
        })
        .filter(|r| get("pipeline_tag").is_none_or(|p| r.pipeline_tag.as_deref() == Some(p)))
        .collect();
    found.sort_by(|a, b| b.downloads.cmp(&a.downloads).then(a.id.cmp(&b.id)));
    let limit = get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(state.page_size)
        .min(state.page_size);
    let cursor: usize = get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let page: Vec<serde_json::Value> = found
        .iter()
        .skip(cursor)
        .take(limit)
        .map(|r| {
            serde_json::json!({
                "_id": format!("id-{}", r.id), "id": r.id, "modelId": r.id, "downloads": r.downloads, "likes": r.likes,
                "tags": r.tags, "pipeline_tag": r.pipeline_tag, "library_name": r.library, "private": false,
            })
        })
        .collect();
    let mut reply = Reply::json(200, &serde_json::Value::Array(page));
    if cursor + limit < found.len() {
        let mut next: Vec<String> = params
            .iter()
            .filter(|(k, _)| k != "cursor")
            .map(|(k, v)| format!("{k}={}", v.replace(' ', "%20")))
            .collect();
        next.push(format!("cursor={}", cursor + limit));
        reply = reply.header(
            "link",
            &format!(
                "<{}/api/models?{}>; rel=\"next\"",
                base(request),
                next.join("&")
            ),
        );
    }
    reply
}

fn info(state: &State, rest: &str, request: &Recorded) -> Reply {
    // {org}/{name} or {org}/{name}/revision/{rev}
    let parts: Vec<&str> = rest.splitn(4, '/').collect();
    if parts.len() < 2 {
        return json_error(404, "RepoNotFound", "Repository not found");
    }
    let id = format!("{}/{}", parts[0], parts[1]);
    let Some(repo) = state.repos.iter().find(|r| r.id == id) else {
        return json_error(404, "RepoNotFound", "Repository not found");
    };
    if parts.len() == 4
        && parts[2] == "revision"
        && !matches!(parts[3], "main")
        && parts[3] != repo.commit
    {
        return json_error(
            404,
            "RevisionNotFound",
            &format!("Invalid rev id: {}", parts[3]),
        );
    }
    if parts.len() == 4 && parts[2] == "tree" {
        return tree(repo, parts[3]);
    }
    let blobs = query(request)
        .iter()
        .any(|(k, v)| k == "blobs" && v == "true");
    let siblings: Vec<serde_json::Value> = repo
        .files
        .iter()
        .map(|f| {
            if !blobs {
                return serde_json::json!({"rfilename": f.path});
            }
            let mut entry = serde_json::json!({"rfilename": f.path, "blobId": f.etag(), "size": f.content.len()});
            if f.lfs {
                entry["lfs"] = serde_json::json!({"sha256": f.sha256, "size": f.content.len(), "pointerSize": 134});
            }
            entry
        })
        .collect();
    Reply::json(
        200,
        &serde_json::json!({
            "_id": format!("id-{}", repo.id), "id": repo.id, "modelId": repo.id, "sha": repo.commit,
            "downloads": repo.downloads, "likes": repo.likes, "tags": repo.tags, "pipeline_tag": repo.pipeline_tag,
            "library_name": repo.library, "private": false, "gated": if repo.gated { serde_json::json!("manual") } else { serde_json::json!(false) },
            "siblings": siblings,
        }),
    )
}

/// `GET /api/models/{repo}/tree/{rev}?recursive=true` (what Python's `snapshot_download` lists
/// files with): files with `oid`, `size` and `lfs {oid, size, pointerSize}`, and their folders.
fn tree(repo: &HubRepo, rest: &str) -> Reply {
    let revision = rest.split('/').next().unwrap_or("main");
    if revision != "main" && revision != repo.commit {
        return json_error(404, "RevisionNotFound", "Invalid rev id");
    }
    let mut folders = std::collections::BTreeSet::new();
    let mut entries = Vec::new();
    for file in &repo.files {
        let mut parent = std::path::Path::new(&file.path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            folders.insert(dir.to_string_lossy().into_owned());
            parent = dir.parent();
        }
        let mut entry = serde_json::json!({"type": "file", "oid": file.etag(), "size": file.content.len(), "path": file.path});
        if file.lfs {
            entry["lfs"] = serde_json::json!({"oid": file.sha256, "size": file.content.len(), "pointerSize": 134});
        }
        entries.push(entry);
    }
    for folder in folders {
        entries.push(serde_json::json!({"type": "directory", "oid": commit_id(&folder), "size": 0, "path": folder}));
    }
    Reply::json(200, &serde_json::Value::Array(entries))
}

/// The gate: `None` when the request may have the files of `repo`.
fn gate(state: &State, request: &Recorded, repo: &HubRepo) -> Option<Reply> {
    if !repo.gated {
        return None;
    }
    let sent = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    match (sent, &state.token) {
        (Some(sent), Some(token)) if &sent == token => None,
        (Some(_), _) => Some(json_error(
            403,
            "GatedRepo",
            "Access to this model is restricted; you have not accepted its conditions",
        )),
        (None, _) => Some(json_error(
            401,
            "GatedRepo",
            "Access to this model is restricted. You must be authenticated to access it.",
        )),
    }
}

fn resolve(state: &mut State, request: &Recorded, id: &str, revision: &str, path: &str) -> Reply {
    let Some(repo) = state.repos.iter().find(|r| r.id == id).cloned() else {
        return json_error(404, "RepoNotFound", "Repository not found");
    };
    if revision != "main" && revision != repo.commit {
        return json_error(404, "RevisionNotFound", "Invalid rev id");
    }
    if let Some(denied) = gate(state, request, &repo) {
        return denied;
    }
    let Some(file) = repo.file(path) else {
        return json_error(404, "EntryNotFound", "Entry not found")
            .header("x-repo-commit", &repo.commit);
    };
    if file.lfs {
        let sha = &file.sha256;
        return Reply::new(302)
            .header(
                "location",
                &format!(
                    "{}/lfs/{}/{}/{}",
                    base(request),
                    repo.id,
                    repo.commit,
                    file.path
                ),
            )
            .header("x-repo-commit", &repo.commit)
            .header("x-linked-etag", &format!("\"{sha}\""))
            .header("x-linked-size", &file.content.len().to_string())
            .header("etag", &format!("\"{}\"", &sha[..40]));
    }
    serve_bytes(state, request, id, path)
}

fn serve_bytes(state: &mut State, request: &Recorded, id: &str, path: &str) -> Reply {
    let Some(repo) = state.repos.iter().find(|r| r.id == id).cloned() else {
        return json_error(404, "RepoNotFound", "Repository not found");
    };
    if let Some(denied) = gate(state, request, &repo) {
        return denied;
    }
    let Some(file) = repo.file(path) else {
        return json_error(404, "EntryNotFound", "Entry not found");
    };
    let total = file.content.len();
    let range = request.header("range").filter(|_| !state.ignore_ranges);
    let (start, end) = match range.and_then(|r| r.strip_prefix("bytes=")) {
        Some(spec) => {
            let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
            let start: usize = a.trim().parse().unwrap_or(0);
            let end: usize = b
                .trim()
                .parse::<usize>()
                .map(|e| e + 1)
                .unwrap_or(total)
                .min(total);
            if start >= total {
                return Reply::new(416).header("content-range", &format!("bytes */{total}"));
            }
            (start, end)
        }
        None => (0, total),
    };
    let mut body = file.content.slice(start..end);
    if state.corrupt.iter().any(|c| c == path) {
        let mut damaged = body.to_vec();
        for byte in damaged.iter_mut().step_by(97) {
            *byte ^= 0xA5;
        }
        body = Bytes::from(damaged);
    }
    let status = if range.is_some() { 206 } else { 200 };
    let mut reply = Reply::new(status)
        .header("content-type", "application/octet-stream")
        .header("accept-ranges", "bytes")
        .header("x-repo-commit", &repo.commit)
        .header("etag", &format!("\"{}\"", file.etag()));
    if status == 206 {
        reply = reply.header(
            "content-range",
            &format!("bytes {start}-{}/{total}", end - 1),
        );
    }
    if request.method == "GET"
        && let Some((at, times)) = state.truncate.get_mut(path)
        && *times > 0
    {
        *times -= 1;
        // Send the first bytes and end the body there, as a proxy or CDN that drops a
        // transfer does. (`Reply::truncate_at` resets the connection before hyper has sent
        // any of the body, so it cannot cut a file in the middle.)
        let cut = at.saturating_sub(start).min(body.len());
        body.truncate(cut);
        return reply.header("transfer-encoding", "chunked").body(body);
    }
    match state.rate {
        Some(rate) if request.method == "GET" => reply.body(body).rate(rate),
        _ => reply.body(body),
    }
}

/// A small SD 1.x checkpoint in the original layout: a few tensors of each kind, real names.
pub fn tiny_checkpoint(extra: &[(&str, &str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let f16 = |n: usize, seed: u8| {
        (0..n * 2)
            .map(|i| (i as u8).wrapping_mul(seed))
            .collect::<Vec<u8>>()
    };
    let mut tensors: Vec<(&str, &str, Vec<usize>, Vec<u8>)> = vec![
        (
            "model.diffusion_model.input_blocks.0.0.weight",
            "F16",
            vec![320, 4, 3, 3],
            f16(320 * 4 * 9, 3),
        ),
        (
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
            "F16",
            vec![320, 768],
            f16(320 * 768, 5),
        ),
        (
            "model.diffusion_model.input_blocks.1.0.in_layers.0.weight",
            "F16",
            vec![4],
            f16(4, 7),
        ),
        (
            "model.diffusion_model.time_embed.0.weight",
            "F16",
            vec![2, 2],
            f16(4, 9),
        ),
        (
            "model.diffusion_model.output_blocks.2.1.conv.weight",
            "F16",
            vec![2],
            f16(2, 11),
        ),
        (
            "model.diffusion_model.middle_block.1.proj_in.weight",
            "F16",
            vec![2, 2, 1, 1],
            f16(4, 13),
        ),
        (
            "model.diffusion_model.out.2.weight",
            "F16",
            vec![2],
            f16(2, 15),
        ),
        (
            "first_stage_model.decoder.conv_out.weight",
            "F16",
            vec![2],
            f16(2, 17),
        ),
        (
            "first_stage_model.decoder.up.3.upsample.conv.weight",
            "F16",
            vec![2],
            f16(2, 19),
        ),
        (
            "first_stage_model.decoder.up.0.block.0.conv1.weight",
            "F16",
            vec![2],
            f16(2, 21),
        ),
        (
            "first_stage_model.encoder.mid.attn_1.q.weight",
            "F16",
            vec![2, 2, 1, 1],
            f16(4, 23),
        ),
        (
            "cond_stage_model.transformer.text_model.final_layer_norm.weight",
            "F16",
            vec![2],
            f16(2, 25),
        ),
        (
            "cond_stage_model.transformer.text_model.embeddings.position_ids",
            "I64",
            vec![1, 2],
            vec![0; 16],
        ),
        ("model_ema.decay", "F32", vec![], vec![0; 4]),
    ];
    tensors.extend(extra.iter().cloned());
    tensors_file(&tensors)
}
