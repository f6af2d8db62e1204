//! `imageai keys set|test|remove|list`: API keys live in the OS keyring (or a 0600 file when
//! none is reachable) and are never printed.

use std::io::{IsTerminal, Read};

use imageai_core::Secret;
use imageai_core::app::KeyOverride;

use crate::args::{KeyArgs, KeysAction};
use crate::exit::Failure;
use crate::output;

pub fn run(action: KeysAction) -> Result<(), Failure> {
    match action {
        KeysAction::Set { provider, key } => set(&provider, &key),
        KeysAction::Test { provider, key } => test(&provider, &key),
        KeysAction::Remove { provider } => remove(&provider),
        KeysAction::List => list(),
    }
}

/// Store the key given by `--api-key`, `--api-key-file`, or read from stdin.
pub fn set(provider: &str, args: &KeyArgs) -> Result<(), Failure> {
    let mut core = super::open_core(false)?;
    let id = core.entry(provider)?.manifest.id.clone();
    let key = match (&args.api_key, &args.api_key_file) {
        (Some(key), _) => key.trim().to_owned(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map_err(|err| {
                Failure::usage(format!(
                    "could not read the key file ({err}): {}",
                    file.display()
                ))
            })?
            .trim()
            .to_owned(),
        (None, None) => read_key_from_stdin(&id)?,
    };
    if key.is_empty() {
        return Err(Failure::usage(
            "the key is empty: pass it with --api-key, --api-key-file, or on stdin",
        ));
    }
    core.set_key(&id, &Secret::new(key))?;
    output::note(&format!(
        "Stored the {id} key in the {}. Check it with `imageai keys test {id}`.",
        core.keys.backend()
    ));
    Ok(())
}

fn read_key_from_stdin(id: &str) -> Result<String, Failure> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        output::note(&format!(
            "Paste the {id} API key and press Enter (Ctrl+D when done):"
        ));
    }
    let mut text = String::new();
    stdin
        .read_to_string(&mut text)
        .map_err(|err| Failure::other(format!("could not read the key from stdin: {err}")))?;
    Ok(text.trim().to_owned())
}

/// Check the key (from the flags, or the stored one) with the provider's cheapest call.
pub fn test(provider: &str, args: &KeyArgs) -> Result<(), Failure> {
    let core = super::open_core(false)?;
    let id = core.entry(provider)?.manifest.id.clone();
    let over = KeyOverride {
        key: args.api_key.clone(),
        key_file: args.api_key_file.clone(),
    };
    let ctx = core.context(&id, &over)?;
    let plugin = core.provider(&id)?;
    plugin
        .check_key(&ctx)
        .map_err(|err| Failure::provider(&id, &err))?;
    output::line(&format!("The {id} key works."));
    Ok(())
}

fn remove(provider: &str) -> Result<(), Failure> {
    let mut core = super::open_core(false)?;
    if core.remove_key(provider)? {
        output::note(&format!("Removed the stored {provider} key."));
    } else {
        output::note(&format!("No stored key for {provider}; nothing removed."));
    }
    Ok(())
}

fn list() -> Result<(), Failure> {
    let core = super::open_core(false)?;
    for entry in core.providers() {
        let id = entry.id();
        let source = core.key_source(id)?;
        let text = match (source, &entry.manifest.key) {
            (Some(source), _) => format!("{id}: {source}"),
            (None, Some(_)) => format!("{id}: not set (`imageai keys set {id}`)"),
            (None, None) => format!("{id}: no key needed"),
        };
        output::line(&text);
    }
    Ok(())
}
