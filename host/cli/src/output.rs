//! What the CLI prints: results on stdout (text or `--json`), messages and progress on stderr.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::exit::Failure;

/// One line of results on stdout. A closed pipe (`imageai history list | head`) ends the
/// program quietly instead of panicking.
pub fn line(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(err) = writeln!(out, "{text}") {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("imageai: could not write to stdout: {err}");
    }
}

pub fn json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => line(&text),
        Err(err) => eprintln!("imageai: could not print JSON: {err}"),
    }
}

pub fn note(text: &str) {
    eprintln!("{text}");
}

pub fn warn(text: &str) {
    eprintln!("warning: {text}");
}

/// A failure: on stderr, and with `--json` also as `{"error": {…}}` on stdout.
pub fn error(failure: &Failure, json: bool) {
    eprintln!("error: {}", failure.message);
    if json {
        self::json(&serde_json::json!({
            "error": { "class": failure.class, "message": failure.message, "exit_code": failure.code }
        }));
    }
}

/// A spinner with a message and, once the provider reports one, a percentage. Hidden when
/// stderr is not a terminal or `quiet` is set.
pub fn progress(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(1000);
    let style = ProgressStyle::with_template("{spinner} {elapsed:>4} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
