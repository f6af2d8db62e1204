//! One module per subcommand; each opens the core, does one thing and prints the result.

pub mod generate;
pub mod history;
pub mod keys;
pub mod models;
pub mod plugin;
pub mod providers;
pub mod templates;

use std::io::IsTerminal;

use imageai_core::app::Core;

use crate::args::Legacy;
use crate::exit::Failure;
use crate::output;

/// Open the core and show its one-time warnings (a corrupt config that was backed up…) on
/// stderr, where they never mix with `--json` output.
pub fn open_core(_json: bool) -> Result<Core, Failure> {
    let core = Core::open_default()?;
    for warning in &core.warnings {
        output::warn(warning);
    }
    Ok(core)
}

/// No subcommand: the Python ImageAI's flags (`-s`, `-t`, `-H`, `-p …`).
pub fn legacy(legacy: Legacy) -> Result<(), Failure> {
    let args = legacy.generate;
    if legacy.help_api_key || legacy.set_key || legacy.test {
        let core = open_core(false)?;
        let id = core
            .choose_provider(args.provider.as_deref())?
            .manifest
            .id
            .clone();
        drop(core);
        if legacy.help_api_key {
            return help_api_key(&id);
        }
        if legacy.set_key {
            keys::set(&id, &args.key)?;
        }
        if legacy.test {
            keys::test(&id, &args.key)?;
        }
        return Ok(());
    }
    if args.prompt.is_some() || args.template.is_some() || !std::io::stdin().is_terminal() {
        return generate::run(args);
    }
    // Nothing asked for: open the desktop GUI (`imageai --help` shows the command line).
    imageai_gui::run().map_err(|err| Failure::other(err.to_string()))
}

fn help_api_key(id: &str) -> Result<(), Failure> {
    let core = open_core(false)?;
    let entry = core.entry(id)?;
    let text = match &entry.manifest.key {
        Some(spec) if !spec.help.is_empty() => spec.help.clone(),
        Some(_) => format!(
            "Get a key from {}'s website, then run `imageai keys set {id}`.",
            entry.manifest.name
        ),
        None => format!("{} needs no API key.", entry.manifest.name),
    };
    output::line(&text);
    if let Some(env) = entry.manifest.key.as_ref().and_then(|k| k.env.as_deref()) {
        output::line(&format!("You can also set the environment variable {env}."));
    }
    Ok(())
}

/// Split `NAME=VALUE`.
pub fn name_value(text: &str, flag: &str) -> Result<(String, String), Failure> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(Failure::usage(format!(
            "{flag} takes NAME=VALUE, got `{text}`"
        ))),
    }
}
