//! The real `imageai` binary, as a user runs it: the real OpenAI plugin in the real runtime,
//! against a local server on 127.0.0.1 that speaks OpenAI's wire format.
#![allow(clippy::unwrap_used)] // test helpers: a failure is the test's failure

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use imageai_tests::openai_server::{OpenAiServer, Scripted, TEST_KEY};
use imageai_tests::plugins::plugin_dir;
use serde_json::Value;

mod common;
use common::{ids, imageai, ok, sidecar, text};

/// A folder of bundled plugins holding only the OpenAI plugin, built once per test run.
fn bundled_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let built = plugin_dir("imageai-plugin-openai");
        let dir = built.parent().unwrap().join("cli-bundled");
        let dest = dir.join("openai");
        std::fs::create_dir_all(&dest).unwrap();
        for file in ["plugin.toml", "plugin.wasm"] {
            std::fs::copy(built.join(file), dest.join(file)).unwrap();
        }
        dir
    })
}

/// One user's machine: a config dir of its own and an OpenAI-format server.
struct Setup {
    home: tempfile::TempDir,
    server: OpenAiServer,
}

impl Setup {
    fn new() -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            server: OpenAiServer::start(),
        }
    }

    fn config_dir(&self) -> PathBuf {
        self.home.path().join("config")
    }

    fn output_dir(&self) -> PathBuf {
        self.config_dir().join("generated")
    }

    /// `imageai ARGS` with this setup's folders and server, and no key from the environment.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = imageai(self.home.path(), &self.config_dir(), args);
        cmd.env("IMAGEAI_PLUGIN_DIRS", bundled_dir())
            .env("IMAGEAI_OPENAI_BASE_URL", self.server.base_url());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn run_with_key(&self, args: &[&str]) -> Output {
        self.cmd(args)
            .env("OPENAI_API_KEY", TEST_KEY)
            .output()
            .unwrap()
    }

    fn run_stdin(&self, args: &[&str], stdin: &str, key: bool) -> Output {
        let mut cmd = self.cmd(args);
        if key {
            cmd.env("OPENAI_API_KEY", TEST_KEY);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&output.stdout)))
}

/// The text chunks of a PNG file, by keyword.
fn png_texts(path: &Path) -> Vec<(String, String)> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    let mut texts: Vec<(String, String)> = info
        .uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .collect();
    texts.extend(
        info.utf8_text
            .iter()
            .map(|t| (t.keyword.clone(), t.get_text().unwrap())),
    );
    texts
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path)
            } else {
                files.push(path)
            }
        }
    }
    files
}

#[test]
fn generate_saves_the_image_with_sidecar_and_png_chunks() {
    let s = Setup::new();
    let out = s.home.path().join("fox.png");
    let output = ok(&s.run_with_key(&[
        "generate",
        "-p",
        "a red fox in snow",
        "-m",
        "dall-e-3",
        "--size",
        "1792x1024",
        "--quality",
        "hd",
        "--style",
        "natural",
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]))
    .clone();
    let result = json(&output);
    assert_eq!(result["provider"], "openai");
    assert_eq!(result["model"], "dall-e-3");
    let saved = PathBuf::from(result["images"][0]["path"].as_str().unwrap());
    assert!(
        saved.starts_with(s.output_dir()),
        "{saved:?} is not in the history folder"
    );
    assert!(
        saved
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("a_red_fox_in_snow_")
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&saved).unwrap(),
        "-o holds the same image"
    );

    // The request on the wire.
    let requests = s.server.requests_to("/v1/images/generations");
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
    let body = requests[0].json();
    assert_eq!(body["model"], "dall-e-3");
    assert_eq!(body["prompt"], "a red fox in snow");
    assert_eq!(body["size"], "1792x1024");
    assert_eq!(body["quality"], "hd");
    assert_eq!(body["style"], "natural");

    // The sidecar, as the Python ImageAI writes it, plus ours.
    let sidecar = sidecar(&saved);
    assert_eq!(sidecar["prompt"], "a red fox in snow");
    assert_eq!(sidecar["provider"], "openai");
    assert_eq!(sidecar["model"], "dall-e-3");
    assert!(sidecar["created_at"].as_str().is_some());
    assert!(sidecar["app_version"].as_str().is_some());
    assert_eq!(sidecar["settings"]["size"], "1792x1024");
    assert_eq!(sidecar["settings"]["quality"], "hd");
    assert!(
        std::path::Path::new(&format!("{}.json", out.display())).is_file(),
        "-o copy has its sidecar"
    );

    // PNG chunks other tools read.
    let texts = png_texts(&saved);
    let parameters = texts
        .iter()
        .find(|(k, _)| k == "parameters")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(parameters.starts_with("a red fox in snow"), "{parameters}");
    assert!(parameters.contains("Model: dall-e-3"), "{parameters}");
    let embedded = texts
        .iter()
        .find(|(k, _)| k == "imageai")
        .map(|(_, v)| v.clone())
        .unwrap();
    let embedded: Value = serde_json::from_str(&embedded).unwrap();
    assert_eq!(embedded["prompt"], "a red fox in snow");

    // History sees it.
    let listed = json(ok(&s.run(&["history", "list", "--json"])));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["metadata"]["prompt"], "a red fox in snow");
    let name = saved.file_name().unwrap().to_str().unwrap();
    let shown = json(ok(&s.run(&["history", "show", name, "--json"])));
    assert_eq!(shown["metadata"]["settings"]["style"], "natural");
}

#[test]
fn python_imageai_flags_and_stdin_prompt_work() {
    let s = Setup::new();
    // `-s -k KEY` stores the key; `-t` tests it; `-p -m -o` generates.
    ok(&s.run(&["-s", "-k", TEST_KEY, "--provider", "openai"]));
    let tested = ok(&s.run(&["-t", "--provider", "openai"])).clone();
    assert!(
        text(&tested.stdout).contains("works"),
        "{}",
        text(&tested.stdout)
    );
    assert_eq!(s.server.requests_to("/v1/models").len(), 1);
    let out = s.home.path().join("legacy.png");
    ok(&s.run(&[
        "-p",
        "a lighthouse",
        "-m",
        "dall-e-2",
        "--provider",
        "openai",
        "-o",
        out.to_str().unwrap(),
    ]));
    assert!(out.is_file());
    // -K reads the key from a file.
    let key_file = s.home.path().join("key.txt");
    std::fs::write(&key_file, format!("{TEST_KEY}\n")).unwrap();
    ok(&s.run(&["keys", "remove", "openai"]));
    ok(&s.run(&[
        "generate",
        "-p",
        "from -K",
        "-m",
        "dall-e-2",
        "--provider",
        "openai",
        "-K",
        key_file.to_str().unwrap(),
    ]));
    // The prompt from stdin.
    let piped = s.run_stdin(
        &[
            "generate",
            "-m",
            "gpt-image-1",
            "--provider",
            "openai",
            "--json",
        ],
        "a prompt on stdin\n",
        true,
    );
    let result = json(ok(&piped));
    assert_eq!(result["prompt"], "a prompt on stdin");
    let last = s
        .server
        .requests_to("/v1/images/generations")
        .pop()
        .unwrap();
    assert_eq!(last.json()["prompt"], "a prompt on stdin");
}

#[test]
fn keys_set_test_list_remove() {
    let s = Setup::new();
    let missing = s.run(&["generate", "-p", "x", "--provider", "openai"]);
    assert_eq!(missing.status.code(), Some(3), "{}", text(&missing.stderr));
    assert!(
        text(&missing.stderr).contains("imageai keys set openai"),
        "{}",
        text(&missing.stderr)
    );

    ok(&s.run_stdin(&["keys", "set", "openai"], &format!("{TEST_KEY}\n"), false));
    let listed = text(&ok(&s.run(&["keys", "list"])).stdout);
    assert!(listed.contains("openai:"), "{listed}");
    assert!(
        !listed.contains(TEST_KEY),
        "keys list must never print a key"
    );
    ok(&s.run(&["keys", "test", "openai"]));

    let wrong = s.run(&["keys", "test", "openai", "-k", "sk-wrong-key-000000"]);
    assert_eq!(wrong.status.code(), Some(3));
    let stderr = text(&wrong.stderr);
    assert!(stderr.contains("imageai keys set openai"), "{stderr}");
    assert!(
        !stderr.contains("sk-wrong-key-000000"),
        "the key must not be echoed: {stderr}"
    );

    ok(&s.run(&["keys", "remove", "openai"]));
    assert_eq!(s.run(&["keys", "test", "openai"]).status.code(), Some(3));
}

#[test]
fn error_classes_have_their_exit_codes_and_say_what_to_do() {
    let s = Setup::new();
    let cases: [(Scripted, i32, &str); 5] = [
        (Scripted::InvalidKey, 3, "imageai keys set openai"),
        (Scripted::ContentPolicy, 4, "content policy"),
        (Scripted::ModerationBlocked, 4, "content policy"),
        (Scripted::InsufficientQuota, 5, "credits"),
        (Scripted::MalformedJson, 7, "try again"),
    ];
    for (scripted, code, hint) in cases {
        // The host retries a 429 twice (as OpenAI's own client does), so a quota error comes three times.
        let times = if scripted == Scripted::InsufficientQuota {
            3
        } else {
            1
        };
        s.server
            .script(std::iter::repeat_n(scripted.clone(), times));
        let output = s.run_with_key(&[
            "generate",
            "-p",
            "x",
            "-m",
            "dall-e-2",
            "--provider",
            "openai",
            "--json",
        ]);
        assert_eq!(
            output.status.code(),
            Some(code),
            "{scripted:?}: {}",
            text(&output.stderr)
        );
        assert!(
            text(&output.stderr).to_lowercase().contains(hint),
            "{scripted:?}: {}",
            text(&output.stderr)
        );
        let error = json(&output);
        assert_eq!(error["error"]["exit_code"], code);
    }
    // Bad input is refused before anything is sent.
    let before = s.server.requests().len();
    let bad = s.run_with_key(&[
        "generate",
        "-p",
        "x",
        "-m",
        "dall-e-9",
        "--provider",
        "openai",
    ]);
    assert_eq!(bad.status.code(), Some(9), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("dall-e-3"),
        "names the models to choose from: {}",
        text(&bad.stderr)
    );
    let unknown = s.run_with_key(&["generate", "-p", "x", "--provider", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("openai"),
        "{}",
        text(&unknown.stderr)
    );
    assert_eq!(s.server.requests().len(), before);
}

#[test]
fn the_key_never_reaches_outputs_or_logs() {
    let s = Setup::new();
    let image = s.home.path().join("source.png");
    std::fs::write(&image, imageai_tests::openai_server::png(64, 64, 7)).unwrap();
    let outputs = [
        s.run_with_key(&[
            "-vv",
            "generate",
            "-p",
            "a cat",
            "-m",
            "dall-e-2",
            "--provider",
            "openai",
            "-n",
            "2",
        ]),
        s.run_with_key(&[
            "-vv",
            "generate",
            "-p",
            "a hat",
            "-m",
            "gpt-image-1",
            "--provider",
            "openai",
            "--image",
            image.to_str().unwrap(),
        ]),
        s.run_with_key(&["-vv", "keys", "test", "openai"]),
    ];
    s.server.script([Scripted::InvalidKey]);
    let failed = s.run_with_key(&[
        "-vv",
        "generate",
        "-p",
        "x",
        "-m",
        "dall-e-2",
        "--provider",
        "openai",
    ]);
    for output in outputs.iter() {
        ok(output);
    }
    for output in outputs.iter().chain([&failed]) {
        assert!(!text(&output.stdout).contains(TEST_KEY));
        assert!(
            !text(&output.stderr).contains(TEST_KEY),
            "key in the log: {}",
            text(&output.stderr)
        );
    }
    let files = files_under(&s.config_dir());
    assert!(
        files.len() >= 6,
        "images and sidecars were written: {files:?}"
    );
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes
                .windows(TEST_KEY.len())
                .any(|w| w == TEST_KEY.as_bytes()),
            "key found in {}",
            file.display()
        );
        assert!(!file.to_string_lossy().contains(TEST_KEY));
    }
}

#[test]
fn reads_python_imageai_config_and_keeps_unknown_fields() {
    let s = Setup::new();
    std::fs::create_dir_all(s.config_dir()).unwrap();
    let config = serde_json::json!({
        "keys": {"openai": TEST_KEY},
        "provider": "openai",
        "auth_mode": "api-key",
        "auto_copy_filename": true,
        "window_geometry": {"x": 10, "y": 20, "w": 800, "h": 600},
        "something_newer": {"kept": [1, 2, 3]}
    });
    std::fs::write(
        s.config_dir().join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    // No --provider, no key in the environment: both come from the Python config.
    ok(&s.run(&["generate", "-p", "from the old config", "-m", "dall-e-2"]));
    let sent = s.server.requests_to("/v1/images/generations");
    assert_eq!(
        sent[0].header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
    // A key command saves config.json: every field survives.
    ok(&s.run(&["keys", "remove", "openai"]));
    let after: Value =
        serde_json::from_slice(&std::fs::read(s.config_dir().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(after["something_newer"], config["something_newer"]);
    assert_eq!(after["window_geometry"], config["window_geometry"]);
    assert_eq!(after["provider"], "openai");
    assert!(
        after["keys"].get("openai").is_none(),
        "the removed key is gone: {after}"
    );
}

#[test]
fn a_corrupt_config_is_backed_up_and_reported() {
    let s = Setup::new();
    std::fs::create_dir_all(s.config_dir()).unwrap();
    std::fs::write(
        s.config_dir().join("config.json"),
        b"{\"keys\": {\"openai\": ",
    )
    .unwrap();
    let output = ok(&s.run_with_key(&[
        "generate",
        "-p",
        "still works",
        "-m",
        "dall-e-2",
        "--provider",
        "openai",
    ]))
    .clone();
    let stderr = text(&output.stderr);
    assert!(stderr.contains("corrupt"), "{stderr}");
    let backups: Vec<PathBuf> = files_under(&s.config_dir())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("config.json.corrupt")
        })
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(
        std::fs::read(&backups[0]).unwrap(),
        b"{\"keys\": {\"openai\": "
    );
}

#[test]
fn edits_send_multipart_with_images_and_mask() {
    let s = Setup::new();
    let a = s.home.path().join("a.png");
    let b = s.home.path().join("b.png");
    let mask = s.home.path().join("mask.png");
    for (path, seed) in [(&a, 1), (&b, 2), (&mask, 3)] {
        std::fs::write(path, imageai_tests::openai_server::png(64, 64, seed)).unwrap();
    }
    let result = json(ok(&s.run_with_key(&[
        "generate",
        "-p",
        "merge these",
        "-m",
        "gpt-image-1",
        "--provider",
        "openai",
        "--image",
        a.to_str().unwrap(),
        "--image",
        b.to_str().unwrap(),
        "--mask",
        mask.to_str().unwrap(),
        "--json",
    ])));
    assert_eq!(result["images"].as_array().unwrap().len(), 1);
    let edit = s.server.requests_to("/v1/images/edits").pop().unwrap();
    let parts = imageai_tests::openai_server::parse_multipart(
        edit.header("content-type").unwrap(),
        &edit.body,
    )
    .unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "image[]").count(),
        2,
        "{names:?}"
    );
    assert!(names.contains(&"mask"), "{names:?}");
    let saved = PathBuf::from(result["images"][0]["path"].as_str().unwrap());
    let sidecar = sidecar(&saved);
    assert_eq!(
        sidecar["source_images"],
        serde_json::json!(["a.png", "b.png"])
    );
    assert_eq!(sidecar["settings"]["mode"], "inpaint");
}

#[test]
fn templates_fill_the_prompt_and_are_recorded() {
    let s = Setup::new();
    let listed = json(ok(&s.run(&["templates", "list", "--json"])));
    let template = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| !t["placeholders"].as_array().unwrap().is_empty())
        .unwrap()
        .clone();
    let name = template["name"].as_str().unwrap();
    let slot = template["placeholders"][0].as_str().unwrap();
    let result = json(ok(&s.run_with_key(&[
        "generate",
        "--template",
        name,
        "--field",
        &format!("{slot}=a tiny robot"),
        "-m",
        "dall-e-2",
        "--provider",
        "openai",
        "--json",
    ])));
    assert!(
        result["prompt"].as_str().unwrap().contains("a tiny robot"),
        "{result}"
    );
    let saved = PathBuf::from(result["images"][0]["path"].as_str().unwrap());
    let sidecar = sidecar(&saved);
    assert_eq!(sidecar["template"]["name"], name);
    assert_eq!(sidecar["template"]["fields"][slot], "a tiny robot");
    assert!(s.config_dir().join("details.jsonl").is_file());
}

#[test]
fn plugins_install_list_remove_and_refuse_a_broken_one() {
    let s = Setup::new();
    let hostile = plugin_dir("imageai-plugin-hostile");
    ok(&s.run(&["plugin", "install", hostile.to_str().unwrap()]));
    let listed = json(ok(&s.run(&["plugin", "list", "--json"])));
    assert_eq!(ids(&listed), ["hostile", "openai"]);
    assert_eq!(listed[0]["source"], "user");
    ok(&s.run(&["plugin", "remove", "hostile"]));
    let listed = json(ok(&s.run(&["plugin", "list", "--json"])));
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // A folder whose component is not a valid component is refused, and nothing is copied.
    let broken = s.home.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(hostile.join("plugin.toml"), broken.join("plugin.toml")).unwrap();
    std::fs::write(broken.join("plugin.wasm"), b"\0asm not really").unwrap();
    let refused = s.run(&["plugin", "install", broken.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(8), "{}", text(&refused.stderr));
    assert!(!s.config_dir().join("plugins").join("hostile").exists());
}

#[cfg(unix)]
#[test]
fn ctrl_c_cancels_a_running_generation() {
    let s = Setup::new();
    s.server
        .script([Scripted::Slow(std::time::Duration::from_secs(20))]);
    let child = s
        .cmd(&[
            "generate",
            "-p",
            "slow",
            "-m",
            "dall-e-2",
            "--provider",
            "openai",
        ])
        .env("OPENAI_API_KEY", TEST_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the request is on the server, then interrupt.
    let started = std::time::Instant::now();
    while s.server.requests_to("/v1/images/generations").is_empty()
        && started.elapsed().as_secs() < 20
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", text(&output.stderr));
    assert!(started.elapsed().as_secs() < 15, "cancelled promptly");
    assert!(files_under(&s.output_dir()).is_empty());
}
