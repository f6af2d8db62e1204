//! The models manager against a local Hub (`imageai_tests::hub_server`): search, install (only
//! the needed files, into Python's cache layout), resume after a broken connection, checksum
//! and gated/404 failures, a cache Python already filled, offline use, removal, checkpoint
//! import, a full disk, and the real `imageai models …` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on the first surprise

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use imageai_core::models::{
    DownloadEvent, HubCache, InstallRequest, ModelError, ModelManager, ModelSource, ModelsConfig,
    Precision, ProgressSink, RepoFile, safetensors, select,
};
use imageai_core::{CancelToken, Secret};
use imageai_tests::hub_server::{
    HubRepo, HubServer, commit_id, sd_repo, sha256_hex, tensors_file, tiny_checkpoint,
};
use imageai_tests::server::Recorded;

const SD15: &str = "stable-diffusion-v1-5/stable-diffusion-v1-5";
const WEIGHTS: usize = 400_000;

fn manager_for(
    server: &HubServer,
    dir: &Path,
    tweak: impl FnOnce(&mut ModelsConfig),
) -> ModelManager {
    let mut config = ModelsConfig::new(dir.join("hub"), dir.join("imports"));
    config.endpoint = server.url();
    tweak(&mut config);
    ModelManager::new(config).unwrap()
}

fn recorder() -> (ProgressSink, Arc<Mutex<Vec<DownloadEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink_events = events.clone();
    (
        ProgressSink::new(move |e| sink_events.lock().unwrap().push(e.clone())),
        events,
    )
}

fn install(
    manager: &ModelManager,
    repo: &str,
) -> Result<imageai_core::models::InstallReport, ModelError> {
    manager.install(
        &InstallRequest::new(repo),
        &ProgressSink::none(),
        &CancelToken::new(),
    )
}

/// The paths an fp16 install of `repo` must fetch, by the selection rules.
fn expected_fp16(repo: &HubRepo) -> Vec<String> {
    let files: Vec<RepoFile> = repo
        .files
        .iter()
        .map(|f| RepoFile {
            path: f.path.clone(),
            size: Some(f.content.len() as u64),
            sha256: None,
        })
        .collect();
    select(&files, Precision::Fp16)
        .files
        .into_iter()
        .map(|f| f.path)
        .collect()
}

/// The paths of every file download attempt (resolve `GET`s).
fn blob_gets(server: &HubServer) -> Vec<String> {
    server
        .file_gets("")
        .into_iter()
        .map(|r| r.path().to_owned())
        .collect()
}

#[test]
fn search_follows_link_pages_and_sizes_each_result() {
    let mut other = sd_repo("someone/anime-diffusion", WEIGHTS * 2);
    other.downloads = 50;
    let mut not_diffusers = sd_repo("someone/llm", WEIGHTS);
    not_diffusers.library = Some("transformers".into());
    not_diffusers.tags = vec!["transformers".into()];
    not_diffusers.pipeline_tag = Some("text-generation".into());
    let mut single_file = sd_repo("someone/single-file-only", WEIGHTS);
    single_file
        .files
        .retain(|f| !f.path.contains('/') && f.path != "model_index.json");
    single_file.downloads = 10;
    let server = HubServer::start(vec![
        sd_repo(SD15, WEIGHTS),
        other.clone(),
        not_diffusers,
        single_file,
    ]);
    server.set_page_size(1);
    let dir = tempfile::tempdir().unwrap();
    let manager = manager_for(&server, dir.path(), |_| {});

    let results = manager.search(None, 10, Precision::Fp16).unwrap();
    let ids: Vec<&str> = results.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [SD15, "someone/anime-diffusion", "someone/single-file-only"]
    );
    // One page per result: the Link header was followed.
    let pages: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.path() == "/api/models")
        .map(|r| r.uri.clone())
        .collect();
    assert!(pages.len() >= 3, "{pages:?}");
    assert!(
        pages[0].contains("filter=diffusers") && pages[0].contains("pipeline_tag=text-to-image"),
        "{}",
        pages[0]
    );
    assert!(pages[1].contains("cursor=1"), "{}", pages[1]);

    let sd = &results[0];
    assert!(sd.curated);
    assert_eq!(sd.downloads, Some(1000));
    assert!(sd.tags.contains(&"diffusers".to_owned()));
    let expected: u64 = expected_fp16(&sd_repo(SD15, WEIGHTS))
        .iter()
        .map(|p| sd_repo(SD15, WEIGHTS).file(p).unwrap().content.len() as u64)
        .sum();
    assert_eq!(sd.download_size, Some(expected));
    assert!(
        results[1].download_size.unwrap() > expected,
        "a bigger model is bigger"
    );
    assert_eq!(
        results[2].download_size, None,
        "no diffusers layout, no size"
    );

    let found = manager.search(Some("ANIME"), 10, Precision::Fp32).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].precision, Precision::Fp32);
}

#[test]
fn install_fetches_only_what_the_engine_needs_into_pythons_layout() {
    let repo = sd_repo(SD15, WEIGHTS);
    let server = HubServer::start(vec![repo.clone()]);
    let dir = tempfile::tempdir().unwrap();
    let manager = manager_for(&server, dir.path(), |_| {});
    let (sink, events) = recorder();

    let report = manager
        .install(&InstallRequest::new(SD15), &sink, &CancelToken::new())
        .unwrap();
    let expected = expected_fp16(&repo);
    let got: Vec<&str> = report.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(got, expected);
    assert!(
        report.inspection.loadable,
        "{:?}",
        report.inspection.problems
    );
    assert_eq!(report.inspection.precisions, ["fp16"]);
    assert_eq!(report.commit, repo.commit);
    assert_eq!(report.downloaded_bytes, report.total_bytes);

    // Nothing else was downloaded: no .bin, .ckpt, flax, ONNX, root checkpoint, safety checker.
    for path in blob_gets(&server) {
        for banned in [
            ".bin",
            ".ckpt",
            ".msgpack",
            ".onnx",
            "safety_checker",
            "feature_extractor",
            "pruned",
            "README",
        ] {
            assert!(!path.contains(banned), "{path} was fetched");
        }
        assert!(
            !path.ends_with("/diffusion_pytorch_model.safetensors"),
            "{path}: the fp32 copy was fetched"
        );
    }

    // Python's layout: refs/main, relative symlinks into blobs/<etag>, LFS blobs named by SHA-256.
    let cache = HubCache::new(dir.path().join("hub"));
    let repo_dir = dir
        .path()
        .join("hub/models--stable-diffusion-v1-5--stable-diffusion-v1-5");
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        repo.commit
    );
    let unet = repo
        .file("unet/diffusion_pytorch_model.fp16.safetensors")
        .unwrap();
    let pointer = cache.pointer_path(SD15, &repo.commit, &unet.path);
    #[cfg(unix)]
    assert_eq!(
        std::fs::read_link(&pointer).unwrap(),
        Path::new("../../../blobs").join(sha256_hex(&unet.content))
    );
    assert_eq!(std::fs::read(&pointer).unwrap(), *unet.content);
    let config = repo.file("unet/config.json").unwrap();
    assert!(
        repo_dir.join("blobs").join(config.etag()).is_file(),
        "regular files are named by their etag"
    );
    assert!(
        !std::fs::read_dir(repo_dir.join("blobs")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".incomplete"))
    );

    // Progress: the plan first, every file done, the totals complete at the end.
    let events = events.lock().unwrap();
    assert!(
        matches!(events.first(), Some(DownloadEvent::Planned { files, .. }) if files.len() == expected.len())
    );
    let done = events
        .iter()
        .filter(|e| matches!(e, DownloadEvent::FileDone { .. }))
        .count();
    assert_eq!(done, expected.len());
    match events.last() {
        Some(DownloadEvent::Finished { totals }) => assert_eq!(totals.done, totals.total),
        other => panic!("last event {other:?}"),
    }

    // Listed as installed.
    let listed = manager.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, SD15);
    assert_eq!(listed[0].refs, ["main"]);
    assert_eq!(listed[0].source, ModelSource::Hub);
    assert_eq!(listed[0].size_on_disk, report.total_bytes);
    assert!(listed[0].inspection.loadable);

    // A second install asks for nothing but the file list.
    let before = blob_gets(&server).len();
    let again = install(&manager, SD15).unwrap();
    assert_eq!(again.downloaded_bytes, 0);
    assert_eq!(blob_gets(&server).len(), before);
}

#[test]
fn fp32_takes_the_plain_weights() {
    let repo = sd_repo(SD15, WEIGHTS);
    let server = HubServer::start(vec![repo]);
    let dir = tempfile::tempdir().unwrap();
    let manager = manager_for(&server, dir.path(), |_| {});
    let request = InstallRequest {
        precision: Precision::Fp32,
        ..InstallRequest::new(SD15)
    };
    let report = manager
        .install(&request, &ProgressSink::none(), &CancelToken::new())
        .unwrap();
    assert!(
        report
            .files
            .iter()
            .any(|f| f.path == "unet/diffusion_pytorch_model.safetensors")
    );
    assert!(!report.files.iter().any(|f| f.path.contains(".fp16.")));
    assert_eq!(report.inspection.precisions, ["fp32"]);
}

/// Install with the UNet's first transfer cut after `cut` bytes, from a server with or without
/// ranges: the UNet's download requests, and the UNet as installed and as served.
fn install_after_a_cut(cut: usize, ranges: bool) -> (Vec<Recorded>, Vec<u8>, Vec<u8>) {
    let repo = sd_repo(SD15, WEIGHTS);
    let server = HubServer::start(vec![repo.clone()]);
    let unet = "unet/diffusion_pytorch_model.fp16.safetensors";
    server.truncate(unet, cut, 1);
    if !ranges {
        server.ignore_ranges();
    }
    let dir = tempfile::tempdir().unwrap();
    let manager = manager_for(&server, dir.path(), |_| {});

    let report = install(&manager, SD15).unwrap();
    assert!(report.inspection.loadable);
    let pointer = HubCache::new(dir.path().join("hub")).pointer_path(SD15, &repo.commit, unet);
    let installed = std::fs::read(pointer).unwrap();
    (
        server.file_gets(unet),
        installed,
        repo.file(unet).unwrap().content.to_vec(),
    )
}

#[test]
fn a_broken_connection_mid_file_resumes_with_a_range_request() {
    let cut = 70_000;
    let (gets, installed, served) = install_after_a_cut(cut, true);
    assert_eq!(gets.len(), 2, "one broken, one resumed");
    assert_eq!(gets[0].header("range"), None);
    assert_eq!(
        gets[1].header("range"),
        Some(format!("bytes={cut}-").as_str())
    );
    assert!(installed == served);
}

/// A server that answers the resume's range request with the whole file: the partial download
/// starts over, and neither the file nor its checksum keeps the bytes from the broken attempt.
#[test]
fn a_server_without_ranges_restarts_the_broken_file_from_the_start() {
    let cut = 70_000;
    let (gets, installed, served) = install_after_a_cut(cut, false);
    assert_eq!(gets.len(), 2, "one broken, one whole");
    assert_eq!(
        gets[1].header("range"),
        Some(format!("bytes={cut}-").as_str()),
        "the resume was asked for"
    );
    assert!(installed == served);
}

#[test]
fn an_interrupted_install_never_looks_installed_and_resumes_next_time() {
    let repo = sd_repo(SD15, WEIGHTS);
    let server = HubServer::start(vec![repo.clone()]);
    let unet = "unet/diffusion_pytorch_model.fp16.safetensors";
    let cut = 50_000;
    server.truncate(unet, cut, 1);
    let dir = tempfile::tempdir().unwrap();
    let manager = manager_for(&server, dir.path(), |c| c.retries = 0);

    let err = install(&manager, SD15).unwrap_err();
    assert!(matches!(err, ModelError::Interrupted { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("run the same install again to resume"),
        "{err}"
    );
    let cache = HubCache::new(dir.path().join("hub"));
    assert_eq!(
        cache.read_ref(SD15, "main"),
        None,
        "no ref for a partial install"
    );
    let sha = sha256_hex(&repo.file(unet).unwrap().content);
    assert_eq!(
        std::fs::metadata(cache.incomplete_path(SD15, &sha))
            .unwrap()
            .len(),
        cut as u64
    );
    let listed = manager.list().unwrap();
    assert!(listed.iter().all(|m| !m.inspection.loadable), "{listed:?}");
    assert!(
        listed.iter().any(|m| m.partial_bytes >= cut as u64),
        "the cut file (and any other in flight) is kept to resume"
    );

    let report = install(&manager, SD15).unwrap();
    assert!(report.inspection.loadable);
    let gets = server.file_gets(unet);
    assert_eq!(
        gets.last().unwrap().header("range"),
        Some(format!("bytes={cut}-").as_str())
    );
    assert!(!cache.incomplete_path(SD15, &sha).exists());
    assert!(manager.list().unwrap().iter().all(|m| m.partial_bytes == 0));
}

#[test]
fn a_checksum_mismatch_deletes_the_download_and_installs_nothing() {
    let repo = sd_repo(SD15, WEIGHTS);
    let server = HubServer::start(vec![repo.clone()]);
    let vae = "vae/diffusion_pytorch_model.fp16.safetensors";
    server.corrupt(vae);
    let dir = tempfile::tempdir().unwrap();
    let manager = manager_for(&server, dir.path(), |_| {});

    let err = install(&manager, SD15).unwrap_err();
    match &err {
        ModelError::ChecksumMismatch { file, expected, .. } => {
            assert_eq!(file, vae);
            assert_eq!(expected, &sha256_hex(&repo.file(vae).unwrap().content));
        }
        other => panic!("{other}"),
    }
    let cache = HubCache::new(dir.path().join("hub"));
    let sha = sha256_hex(&repo.file(vae).unwrap().content);
    assert!(!cache.blob_path(SD15, &sha).exists());
    assert!(!cache.incomplete_path(SD15, &sha).exists());
    assert_eq!(cache.read_ref(SD15, "main"), None);
    assert!(
        !cache
            .pointer_path(SD15, &repo.commit, "model_index.json")
            .exists(),
        "the snapshot is not marked complete"
    );
    assert!(
        manager
            .list()
            .unwrap()
            .iter()
            .all(|m| !m.inspection.loadable)
    );
}

#[test]
fn gated_models_say_what_to_do_and_work_with_the_token() {
    let mut repo = sd_repo("org/gated-model", WEIGHTS);
    repo.gated = true;
    let server = HubServer::start(vec![repo]);
    server.set_token("hf_right_token_123");
    let dir = tempfile::tempdir().unwrap();

    let anonymous = manager_for(&server, dir.path(), |_| {});
    let err = install(&anonymous, "org/gated-model").unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ModelError::Access { status: 401, .. }),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}/org/gated-model", server.url())),
        "{text}"
    );
    assert!(text.contains("imageai keys set huggingface"), "{text}");

    let wrong = manager_for(&server, dir.path(), |c| {
        c.token = Some(Secret::new("hf_wrong_token_456"))
    });
    let err = install(&wrong, "org/gated-model").unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            ModelError::Access {
                status: 403,
                token_sent: true,
                ..
            }
        ),
        "{text}"
    );
    assert!(
        !text.contains("hf_wrong_token_456"),
        "the token leaked: {text}"
    );

    let right = manager_for(&server, dir.path(), |c| {
        c.token = Some(Secret::new("hf_right_token_123"))
    });
    let report = install(&right, "org/gated-model").unwrap();
    assert!(report.inspection.loadable);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.header("authorization") == Some("Bearer hf_right_token_123"))
    );
}

#[test]
fn unknown_repos_and_revisions_are_clear_404s() {
    let server = HubServer::start(vec![sd_repo(SD15, WEIGHTS)]);
    let dir = tempfile::tempdir().unwrap();
    let manager = manager_for(&server, dir.path(), |_| {});

    let err = install(&manager, "nobody/nothing").unwrap_err();
    assert!(matches!(err, ModelError::RepoNotFound { .. }), "{err}");
    assert!(err.to_string().contains("imageai models search"), "{err}");
    let err = install(&manager, "runwayml/stable-diffusion-v1-5").unwrap_err();
    assert!(
        err.to_string()
            .contains("stable-diffusion-v1-5/stable-diffusion-v1-5"),
        "the moved repo is named: {err}"
    );
    let request = InstallRequest {
        revision: "v9".into(),
        ..InstallRequest::new(SD15)
    };
    let err = manager
        .install(&request, &ProgressSink::none(), &CancelToken::new())
        .unwrap_err();
    assert!(matches!(err, ModelError::RevisionNotFound { .. }), "{err}");
    let err = install(&manager, "../../etc").unwrap_err();
    assert!(matches!(err, ModelError::InvalidRepoId { .. }), "{err}");
    assert!(
        !dir.path()
            .join("hub")
            .join("models--nobody--nothing")
            .join("refs")
            .exists()
    );
}

/// Lay out `files` of `repo` the way Python's `huggingface_hub.snapshot_download` does.
fn python_cache(root: &Path, repo: &HubRepo, files: &[String]) {
    let repo_dir = root.join(HubCache::folder_name(&repo.id));
    std::fs::create_dir_all(repo_dir.join("blobs")).unwrap();
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs/main"), &repo.commit).unwrap();
    for path in files {
        let file = repo.file(path).unwrap();
        std::fs::write(repo_dir.join("blobs").join(file.etag()), &*file.content).unwrap();
        let pointer = repo_dir.join("snapshots").join(&repo.commit).join(path);
        std::fs::create_dir_all(pointer.parent().unwrap()).unwrap();
        let depth = path.matches('/').count();
        let target = PathBuf::from("../".repeat(depth + 2))
            .join("blobs")
            .join(file.etag());
        #[cfg(unix)]
        std::os::unix::fs::symlink(target, &pointer).unwrap();
        #[cfg(not(unix))]
        std::fs::copy(repo_dir.join("blobs").join(file.etag()), &pointer)
            .map(|_| ())
            .unwrap();
    }
}

#[test]
fn a_cache_python_already_filled_is_found_and_not_fetched_again() {
    let repo = sd_repo(SD15, WEIGHTS);
    let server = HubServer::start(vec![repo.clone()]);
    let dir = tempfile::tempdir().unwrap();
    // Python fetched everything of the fp16 set but the VAE weights, plus a .bin we never take.
    let mut files = expected_fp16(&repo);
    files.retain(|p| p != "vae/diffusion_pytorch_model.fp16.safetensors");
    files.push("unet/diffusion_pytorch_model.bin".into());
    python_cache(&dir.path().join("hub"), &repo, &files);
    let manager = manager_for(&server, dir.path(), |_| {});

    let listed = manager.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        !listed[0].inspection.loadable,
        "the VAE weights are missing"
    );

    let report = install(&manager, SD15).unwrap();
    assert!(report.inspection.loadable);
    let fetched = blob_gets(&server);
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert!(fetched[0].ends_with("vae/diffusion_pytorch_model.fp16.safetensors"));
    let heads = server
        .requests()
        .iter()
        .filter(|r| r.method == "HEAD")
        .count();
    assert_eq!(heads, 1, "files already in place are not even asked about");
    let vae = repo
        .file("vae/diffusion_pytorch_model.fp16.safetensors")
        .unwrap();
    assert_eq!(report.downloaded_bytes, vae.content.len() as u64);
}

#[test]
fn offline_lists_and_uses_the_cache_and_refuses_the_network() {
    let repo = sd_repo(SD15, WEIGHTS);
    let server = HubServer::start(vec![repo, sd_repo("org/other", WEIGHTS)]);
    let dir = tempfile::tempdir().unwrap();
    install(&manager_for(&server, dir.path(), |_| {}), SD15).unwrap();
    let requests_before = server.requests().len();

    let offline = manager_for(&server, dir.path(), |c| c.offline = true);
    assert_eq!(offline.list().unwrap().len(), 1);
    let report = install(&offline, SD15).unwrap();
    assert!(report.offline && report.inspection.loadable);
    let err = install(&offline, "org/other").unwrap_err();
    assert!(matches!(err, ModelError::Offline { .. }), "{err}");
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
    assert!(matches!(
        offline.search(None, 5, Precision::Fp16),
        Err(ModelError::Offline { .. })
    ));
    assert_eq!(
        server.requests().len(),
        requests_before,
        "offline asked the network"
    );

    // No network at all: a closed port.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let unreachable = manager_for(&server, dir.path(), |c| c.endpoint = closed.clone());
    let report = install(&unreachable, SD15).unwrap();
    assert!(report.offline, "the installed copy is used");
    let err = unreachable
        .search(Some("x"), 5, Precision::Fp16)
        .unwrap_err();
    assert!(matches!(err, ModelError::Network { .. }), "{err}");
    assert!(err.to_string().contains("HF_HUB_OFFLINE=1"), "{err}");
    let err = install(&unreachable, "org/other").unwrap_err();
    assert!(matches!(err, ModelError::Network { .. }), "{err}");
}

#[test]
fn removing_a_snapshot_frees_only_blobs_no_other_snapshot_uses() {
    let repo = sd_repo(SD15, WEIGHTS);
    let server = HubServer::start(vec![repo.clone()]);
    let dir = tempfile::tempdir().unwrap();
    let manager = manager_for(&server, dir.path(), |_| {});
    let first = install(&manager, SD15).unwrap();

    // A new commit on main changes the UNet only.
    let mut updated = repo.clone();
    updated.commit = commit_id("second");
    let unet = "unet/diffusion_pytorch_model.fp16.safetensors";
    let new_unet = imageai_tests::hub_server::fake_safetensors("F16", WEIGHTS / 2, 777);
    let new_len = new_unet.len() as u64;
    updated.files.retain(|f| f.path != unet);
    updated.files.push(imageai_tests::hub_server::HubFile::new(
        unet, new_unet, true,
    ));
    server.put_repo(updated.clone());
    let second = install(&manager, SD15).unwrap();
    assert_eq!(
        second.downloaded_bytes, new_len,
        "only the changed file is fetched"
    );
    let listed = manager.list().unwrap();
    assert_eq!(listed.len(), 2);

    let old_unet_len = repo.file(unet).unwrap().content.len() as u64;
    let report = manager.remove(SD15, Some(&first.commit)).unwrap();
    assert_eq!(report.freed_bytes, old_unet_len, "shared blobs stay");
    let listed = manager.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].commit.as_deref(), Some(updated.commit.as_str()));
    assert!(listed[0].inspection.loadable);

    let report = manager.remove(SD15, None).unwrap();
    assert_eq!(report.freed_bytes, second.total_bytes);
    assert!(manager.list().unwrap().is_empty());
    assert!(
        !dir.path()
            .join("hub/models--stable-diffusion-v1-5--stable-diffusion-v1-5")
            .exists()
    );
    assert!(matches!(
        manager.remove(SD15, None),
        Err(ModelError::NotInstalled { .. })
    ));
}

#[test]
fn cancelling_stops_the_install_and_a_rerun_finishes_it() {
    let server = HubServer::start(vec![sd_repo(SD15, WEIGHTS)]);
    let dir = tempfile::tempdir().unwrap();
    let manager = manager_for(&server, dir.path(), |_| {});
    let cancel = CancelToken::new();
    let flag = cancel.clone();
    let sink = ProgressSink::new(move |event| {
        if matches!(event, DownloadEvent::Planned { .. }) {
            flag.cancel();
        }
    });
    let err = manager
        .install(&InstallRequest::new(SD15), &sink, &cancel)
        .unwrap_err();
    assert!(matches!(err, ModelError::Cancelled), "{err}");
    assert_eq!(
        HubCache::new(dir.path().join("hub")).read_ref(SD15, "main"),
        None
    );
    assert!(install(&manager, SD15).unwrap().inspection.loadable);
}

#[test]
fn a_single_file_checkpoint_is_converted_to_a_diffusers_folder() {
    // The tokenizer comes from SD 1.5 on the Hub (no ref written: SD 1.5 does not look installed).
    let server = HubServer::start(vec![sd_repo(SD15, WEIGHTS)]);
    let dir = tempfile::tempdir().unwrap();
    let manager = manager_for(&server, dir.path(), |_| {});
    let source = dir.path().join("dreamy-v2.safetensors");
    let bytes = tiny_checkpoint(&[]);
    std::fs::write(&source, &bytes).unwrap();

    let mut seen = (0, 0);
    let report = manager
        .import_checkpoint(
            &source,
            None,
            &mut |d, t| seen = (d, t),
            &CancelToken::new(),
        )
        .unwrap();
    assert_eq!(report.name, "dreamy-v2");
    assert_eq!(report.task, "text-to-image");
    assert_eq!(report.dtype, "F16");
    assert_eq!(seen.0, seen.1);
    assert!(report.tokenizer_from.is_some());
    assert!(
        report.inspection.loadable,
        "{:?}",
        report.inspection.problems
    );
    assert_eq!(report.path, dir.path().join("imports/dreamy-v2"));
    assert_eq!(
        HubCache::new(dir.path().join("hub")).read_ref(SD15, "main"),
        None
    );

    let unet =
        safetensors::read_header(&report.path.join("unet/diffusion_pytorch_model.safetensors"))
            .unwrap();
    let names: Vec<&str> = unet.tensors.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "conv_in.weight",
            "conv_out.weight",
            "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
            "down_blocks.0.resnets.0.norm1.weight",
            "mid_block.attentions.0.proj_in.weight",
            "time_embedding.linear_1.weight",
            "up_blocks.0.upsamplers.0.conv.weight",
        ]
    );
    // Bytes are copied unchanged.
    let original = safetensors::read_header(&source).unwrap();
    let read = |path: &Path, header: &safetensors::Header, name: &str| {
        let info = &header.tensors[name];
        let data = std::fs::read(path).unwrap();
        data[(header.data_start + info.begin) as usize..(header.data_start + info.end) as usize]
            .to_vec()
    };
    assert_eq!(
        read(
            &report.path.join("unet/diffusion_pytorch_model.safetensors"),
            &unet,
            "conv_in.weight"
        ),
        read(
            &source,
            &original,
            "model.diffusion_model.input_blocks.0.0.weight"
        )
    );
    let vae =
        safetensors::read_header(&report.path.join("vae/diffusion_pytorch_model.safetensors"))
            .unwrap();
    assert_eq!(
        vae.tensors["encoder.mid_block.attentions.0.to_q.weight"].shape,
        [2, 2],
        "1x1 conv → linear"
    );
    assert!(
        vae.tensors
            .contains_key("decoder.up_blocks.0.upsamplers.0.conv.weight")
    );
    assert!(
        vae.tensors
            .contains_key("decoder.up_blocks.3.resnets.0.conv1.weight")
    );
    let clip =
        safetensors::read_header(&report.path.join("text_encoder/model.safetensors")).unwrap();
    assert_eq!(
        clip.tensors.keys().collect::<Vec<_>>(),
        ["text_model.final_layer_norm.weight"]
    );
    let unet_config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.path.join("unet/config.json")).unwrap())
            .unwrap();
    assert_eq!(unet_config["in_channels"], 4);
    assert_eq!(unet_config["cross_attention_dim"], 768);

    // Listed, and removable by name.
    let listed = manager.list().unwrap();
    let imported = listed.iter().find(|m| m.id == "dreamy-v2").unwrap();
    assert_eq!(imported.source, ModelSource::Imported);
    assert!(imported.inspection.loadable);
    assert!(matches!(
        manager.import_checkpoint(&source, None, &mut |_, _| {}, &CancelToken::new()),
        Err(ModelError::NameTaken { .. })
    ));
    assert!(manager.remove("dreamy-v2", None).unwrap().freed_bytes > 0);
    assert!(!dir.path().join("imports/dreamy-v2").exists());
}

#[test]
fn unsupported_checkpoints_are_refused_with_the_reason() {
    let server = HubServer::start(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let manager = manager_for(&server, dir.path(), |c| c.offline = true);
    let sdxl = dir.path().join("xl.safetensors");
    std::fs::write(
        &sdxl,
        tiny_checkpoint(&[(
            "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias",
            "F16",
            vec![2],
            vec![0; 4],
        )]),
    )
    .unwrap();
    let err = manager
        .import_checkpoint(&sdxl, None, &mut |_, _| {}, &CancelToken::new())
        .unwrap_err();
    assert!(err.to_string().contains("SDXL"), "{err}");
    let lora = dir.path().join("lora.safetensors");
    std::fs::write(
        &lora,
        tensors_file(&[("lora_unet_down.alpha", "F16", vec![1], vec![0; 2])]),
    )
    .unwrap();
    let err = manager
        .import_checkpoint(&lora, None, &mut |_, _| {}, &CancelToken::new())
        .unwrap_err();
    assert!(err.to_string().contains("LoRA"), "{err}");
    let ckpt = dir.path().join("old.ckpt");
    std::fs::write(&ckpt, b"pickle").unwrap();
    let err = manager
        .import_checkpoint(&ckpt, None, &mut |_, _| {}, &CancelToken::new())
        .unwrap_err();
    assert!(err.to_string().contains(".safetensors"), "{err}");
    assert!(
        std::fs::read_dir(dir.path().join("imports"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "nothing half-made is left"
    );
}

// ---- the real binary ----

/// `target/debug/imageai`, built once per test run (the tests crate does not depend on it).
fn imageai() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // <target>/debug/deps/models-… → <target>/debug
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
            let target = profile_dir.parent().unwrap();
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let output = Command::new(cargo)
                .args(["build", "-p", "imageai", "--bin", "imageai"])
                .current_dir(root)
                .env("CARGO_TARGET_DIR", target)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "building imageai failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            profile_dir.join(format!("imageai{}", std::env::consts::EXE_SUFFIX))
        })
        .clone()
}

fn cli(server: &HubServer, home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(imageai())
        .args(args)
        .env("HF_ENDPOINT", server.url())
        .env("HF_HOME", home.join("hf"))
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env("IMAGEAI_CONFIG_DIR", home.join("config"))
        .env("IMAGEAI_KEYRING", "off")
        .output()
        .unwrap()
}

fn json_of(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn cli_search_install_list_rm_round_trip() {
    let server = HubServer::start(vec![sd_repo(SD15, WEIGHTS)]);
    let home = tempfile::tempdir().unwrap();

    let found = cli(
        &server,
        home.path(),
        &["models", "search", "diffusion", "--json"],
    );
    assert!(
        found.status.success(),
        "{}",
        String::from_utf8_lossy(&found.stderr)
    );
    assert_eq!(json_of(&found)[0]["id"], SD15);

    let installed = cli(&server, home.path(), &["models", "install", SD15, "--json"]);
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let report = json_of(&installed);
    assert_eq!(report["inspection"]["loadable"], true);
    let path = PathBuf::from(report["path"].as_str().unwrap());
    assert!(
        path.starts_with(home.path().join("hf/hub")),
        "{}",
        path.display()
    );
    let stderr = String::from_utf8_lossy(&installed.stderr);
    assert!(
        stderr.contains("fetched  unet/diffusion_pytorch_model.fp16.safetensors"),
        "{stderr}"
    );

    let listed = cli(&server, home.path(), &["models", "list"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains(SD15) && text.contains("fp16") && text.contains("yes"),
        "{text}"
    );

    let refused = cli(&server, home.path(), &["models", "rm", SD15]);
    assert_eq!(refused.status.code(), Some(2), "no --yes off a terminal");
    let removed = cli(&server, home.path(), &["models", "rm", SD15, "--yes"]);
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    assert!(
        String::from_utf8_lossy(&removed.stdout).contains("freed"),
        "{}",
        String::from_utf8_lossy(&removed.stdout)
    );
    let listed = cli(&server, home.path(), &["models", "list", "--json"]);
    assert_eq!(json_of(&listed), serde_json::json!([]));
}

#[test]
fn cli_gated_model_exits_with_the_auth_code_and_uses_the_stored_token() {
    let mut repo = sd_repo("org/gated-model", WEIGHTS);
    repo.gated = true;
    let server = HubServer::start(vec![repo]);
    server.set_token("hf_cli_token_789");
    let home = tempfile::tempdir().unwrap();

    let denied = cli(
        &server,
        home.path(),
        &["models", "install", "org/gated-model"],
    );
    assert_eq!(denied.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        stderr.contains("accept its license") && stderr.contains("imageai keys set huggingface"),
        "{stderr}"
    );

    // The key store's `huggingface` entry (keys.json with the keyring off).
    std::fs::create_dir_all(home.path().join("config")).unwrap();
    std::fs::write(
        home.path().join("config/keys.json"),
        r#"{"huggingface": "hf_cli_token_789"}"#,
    )
    .unwrap();
    let allowed = cli(
        &server,
        home.path(),
        &["models", "install", "org/gated-model"],
    );
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    assert!(!String::from_utf8_lossy(&allowed.stderr).contains("hf_cli_token_789"));
}

/// A full disk, for real: the install runs in a private mount namespace on a 2 MB tmpfs.
/// Needs `unshare -rm` (unprivileged user namespaces); where the kernel forbids them the test
/// says so and checks nothing.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_reported_before_downloading() {
    let probe = Command::new("unshare").args(["-rm", "true"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: `unshare -rm` is not permitted here, so no small tmpfs can be mounted");
        return;
    }
    let server = HubServer::start(vec![sd_repo(SD15, 4_000_000)]);
    let home = tempfile::tempdir().unwrap();
    let quota = home.path().join("quota");
    std::fs::create_dir_all(&quota).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=2m tmpfs {q} && exec {exe} models install {SD15}",
        q = quota.display(),
        exe = imageai().display()
    );
    let output = Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .env("HF_ENDPOINT", server.url())
        .env("HF_HUB_CACHE", &quota)
        .env("IMAGEAI_CONFIG_DIR", home.path().join("config"))
        .env("IMAGEAI_KEYRING", "off")
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not enough free disk space"), "{stderr}");
    assert!(
        stderr.contains("free some space or choose another cache folder"),
        "{stderr}"
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.method != "GET" || !r.path().starts_with("/lfs/")),
        "nothing was downloaded"
    );
}
