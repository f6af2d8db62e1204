#![allow(clippy::unwrap_used, clippy::print_stdout)]
// Temporary manual check against Python's huggingface_hub (not committed).
use imageai_core::CancelToken;
use imageai_core::models::{InstallRequest, ModelManager, ModelsConfig, ProgressSink};
use imageai_tests::hub_server::{HubServer, sd_repo};
use std::process::Command;

#[test]
fn python_interop() {
    let repo = sd_repo("stable-diffusion-v1-5/stable-diffusion-v1-5", 400_000);
    let server = HubServer::start(vec![repo]);
    let dir = tempfile::tempdir().unwrap();
    let mut config = ModelsConfig::new(dir.path().join("ours"), dir.path().join("imports"));
    config.endpoint = server.url();
    let manager = ModelManager::new(config).unwrap();
    manager.install(&InstallRequest::new("stable-diffusion-v1-5/stable-diffusion-v1-5"), &ProgressSink::none(), &CancelToken::new()).unwrap();
    let script = r#"
import os, sys
from huggingface_hub import scan_cache_dir, snapshot_download
info = scan_cache_dir(sys.argv[1])
for r in info.repos:
    for rev in r.revisions:
        print("PY-SCAN", r.repo_id, r.repo_type, sorted(rev.refs), len(rev.files), rev.size_on_disk)
print("PY-WARN", info.warnings)
p = snapshot_download("stable-diffusion-v1-5/stable-diffusion-v1-5", cache_dir=sys.argv[2],
    allow_patterns=["model_index.json", "unet/*.fp16.safetensors", "unet/config.json", "vae/*.fp16.safetensors", "vae/config.json",
    "text_encoder/*.fp16.safetensors", "text_encoder/config.json", "tokenizer/*", "scheduler/*"])
print("PY-DL", p)
"#;
    let out = Command::new("/tmp/hfvenv/bin/python")
        .args(["-c", script, dir.path().join("ours").to_str().unwrap(), dir.path().join("py").to_str().unwrap()])
        .env("HF_ENDPOINT", server.url())
        .env("HF_HUB_DISABLE_XET", "1")
        .output()
        .unwrap();
    println!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let before = server.file_gets("").len();
    let mut config = ModelsConfig::new(dir.path().join("py"), dir.path().join("imports"));
    config.endpoint = server.url();
    let manager = ModelManager::new(config).unwrap();
    for m in manager.list().unwrap() {
        println!("OURS-LIST {} {:?} loadable={} {:?}", m.id, m.refs, m.inspection.loadable, m.inspection.problems);
    }
    let report = manager.install(&InstallRequest::new("stable-diffusion-v1-5/stable-diffusion-v1-5"), &ProgressSink::none(), &CancelToken::new()).unwrap();
    println!("OURS-INSTALL downloaded={} gets={}", report.downloaded_bytes, server.file_gets("").len() - before);
}
