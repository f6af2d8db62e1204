//! `plugin.toml`: who a plugin is, which contract it speaks, which hosts it may reach, its key
//! and its settings. Parsed with serde and validated before the component is touched.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

use super::bindings::SUPPORTED_CONTRACTS;
use super::error::PluginError;
use super::hosts::HostPattern;

/// The manifest's file name inside a plugin folder.
pub const MANIFEST_FILE: &str = "plugin.toml";
/// The component's file name inside a plugin folder.
pub const COMPONENT_FILE: &str = "plugin.wasm";

fn is_id(text: &str) -> bool {
    let mut chars = text.chars();
    text.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_setting_name(text: &str) -> bool {
    let mut chars = text.chars();
    text.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_env_name(text: &str) -> bool {
    let mut chars = text.chars();
    text.len() <= 128
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `MAJOR.MINOR.PATCH` with an optional `-pre` and `+build`, numbers without leading zeros.
fn is_semver(text: &str) -> bool {
    let (rest, build) = match text.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (text, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let ident = |part: &str| {
        !part.is_empty()
            && part
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    };
    let numbers: Vec<&str> = core.split('.').collect();
    numbers.len() == 3
        && numbers.iter().all(|n| {
            !n.is_empty()
                && n.chars().all(|c| c.is_ascii_digit())
                && (n.len() == 1 || !n.starts_with('0'))
        })
        && pre.is_none_or(ident)
        && build.is_none_or(ident)
}

/// A plugin's `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    /// `[a-z0-9][a-z0-9-]*`: the provider id users type.
    pub id: String,
    pub name: String,
    /// The plugin's own version (semver).
    pub version: String,
    /// The WIT contract version the plugin was built for.
    pub contract: String,
    #[serde(default)]
    pub description: String,
    /// Exact host names, or `*.suffix` for subdomains.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Absent when the provider needs no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeySpec>,
    #[serde(default)]
    pub settings: Vec<SettingSpec>,
}

/// How the plugin's API key is found and explained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KeySpec {
    /// Environment variable used as the last fallback, e.g. `OPENAI_API_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Where to get a key and how to set it.
    #[serde(default)]
    pub help: String,
    /// Whether calls fail without a key.
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// One setting the user can configure, e.g. `base_url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SettingSpec {
    pub name: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub kind: SettingKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SettingKind {
    /// An http(s) URL; its host becomes reachable by the plugin.
    Url,
    #[default]
    Text,
}

impl Manifest {
    /// Read and validate `<dir>/plugin.toml`.
    pub fn read(dir: &Path) -> Result<Self, PluginError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| PluginError::ManifestRead {
            path: path.clone(),
            source,
        })?;
        Self::parse(&text, &path)
    }

    /// Parse and validate manifest text; `path` only names the file in errors.
    ///
    /// The contract version is checked before the rest, so a manifest written for a newer
    /// contract (which may carry fields this version does not know) gets the
    /// "update ImageAI" message rather than a parse error.
    pub fn parse(text: &str, path: &Path) -> Result<Self, PluginError> {
        let invalid = |message: String| PluginError::ManifestInvalid {
            path: path.to_owned(),
            message,
        };
        let table: toml::Table = toml::from_str(text).map_err(|err| invalid(err.to_string()))?;
        if let (Some(toml::Value::String(id)), Some(toml::Value::String(contract))) =
            (table.get("id"), table.get("contract"))
        {
            check_contract(id, contract)?;
        }
        let manifest: Manifest = toml::from_str(text).map_err(|err| invalid(err.to_string()))?;
        manifest.validate().map_err(invalid)?;
        Ok(manifest)
    }

    /// The declared setting called `name`.
    pub fn setting(&self, name: &str) -> Option<&SettingSpec> {
        self.settings.iter().find(|spec| spec.name == name)
    }

    /// The environment variable that overrides a setting: `IMAGEAI_<ID>_<NAME>`, upper case,
    /// `-` as `_` (e.g. `IMAGEAI_OPENAI_BASE_URL`).
    pub fn setting_env_var(&self, name: &str) -> String {
        format!("IMAGEAI_{}_{}", self.id, name)
            .to_ascii_uppercase()
            .replace('-', "_")
    }

    fn validate(&self) -> Result<(), String> {
        if !is_id(&self.id) {
            return Err(format!(
                "id `{}` must be 1–64 characters of lower-case letters, digits and `-`, starting with a letter or digit",
                self.id
            ));
        }
        if self.name.trim().is_empty() {
            return Err("`name` must not be empty".into());
        }
        if !is_semver(&self.version) {
            return Err(format!(
                "version `{}` is not a semantic version like 1.2.3",
                self.version
            ));
        }
        if !is_semver(&self.contract) {
            return Err(format!(
                "contract `{}` is not a semantic version like 0.1.0",
                self.contract
            ));
        }
        for entry in &self.allowed_hosts {
            HostPattern::parse(entry).map_err(|err| format!("allowed-hosts: {err}"))?;
        }
        if let Some(env) = self.key.as_ref().and_then(|key| key.env.as_deref())
            && !is_env_name(env)
        {
            return Err(format!(
                "key.env `{env}` is not a valid environment variable name"
            ));
        }
        let mut seen = BTreeSet::new();
        for spec in &self.settings {
            if !is_setting_name(&spec.name) {
                return Err(format!(
                    "setting name `{}` must start with a lower-case letter and use only a-z, 0-9, `_` and `-`",
                    spec.name
                ));
            }
            if !seen.insert(spec.name.as_str()) {
                return Err(format!("setting `{}` is declared twice", spec.name));
            }
            if spec.kind == SettingKind::Url
                && let Some(default) = &spec.default
            {
                let url = url::Url::parse(default).map_err(|err| {
                    format!(
                        "setting `{}`: default `{default}` is not a URL ({err})",
                        spec.name
                    )
                })?;
                if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                    return Err(format!(
                        "setting `{}`: default `{default}` must be an http or https URL",
                        spec.name
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Refuse a contract version this build of ImageAI has no bindings for.
pub(crate) fn check_contract(id: &str, contract: &str) -> Result<(), PluginError> {
    if SUPPORTED_CONTRACTS.contains(&contract) {
        return Ok(());
    }
    Err(PluginError::UnsupportedContract {
        id: id.to_owned(),
        contract: contract.to_owned(),
        supported: SUPPORTED_CONTRACTS.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI: &str = r#"
id = "openai"
name = "OpenAI"
version = "0.1.0"
contract = "0.1.0"
description = "DALL·E 2, DALL·E 3 and gpt-image models"
allowed-hosts = ["api.openai.com", "*.blob.core.windows.net"]

[key]
env = "OPENAI_API_KEY"
help = "Create a key at https://platform.openai.com/api-keys, then run `imageai keys set openai`."
required = true

[[settings]]
name = "base_url"
label = "Base URL"
kind = "url"
default = "https://api.openai.com/v1"
"#;

    fn parse(text: &str) -> Result<Manifest, PluginError> {
        Manifest::parse(text, Path::new("/plugins/x/plugin.toml"))
    }

    #[test]
    fn parses_the_spec_example() {
        let manifest = parse(OPENAI).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(manifest.id, "openai");
        assert_eq!(manifest.allowed_hosts.len(), 2);
        assert_eq!(
            manifest.key.as_ref().and_then(|k| k.env.as_deref()),
            Some("OPENAI_API_KEY")
        );
        assert_eq!(
            manifest.setting("base_url").map(|s| s.kind),
            Some(SettingKind::Url)
        );
        assert_eq!(
            manifest.setting_env_var("base_url"),
            "IMAGEAI_OPENAI_BASE_URL"
        );
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let err = parse(&OPENAI.replace("id = \"openai\"", "id = \"Open AI\""))
            .err()
            .map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.contains("Open AI") && err.contains("/plugins/x/plugin.toml"),
            "{err}"
        );

        let err = parse(&OPENAI.replace("api.openai.com\",", "https://api.openai.com/\",")).err();
        assert!(
            err.map(|e| e.to_string())
                .unwrap_or_default()
                .contains("allowed-hosts")
        );

        let err = parse(&OPENAI.replace("allowed-hosts", "allowed_hosts")).err();
        assert!(
            err.map(|e| e.to_string())
                .unwrap_or_default()
                .contains("allowed_hosts")
        );

        let twice = format!("{OPENAI}\n[[settings]]\nname = \"base_url\"\n");
        assert!(
            parse(&twice)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
                .contains("declared twice")
        );
    }

    #[test]
    fn versions_are_semver() {
        for good in ["0.1.0", "1.22.333", "1.0.0-beta.1", "1.0.0+build.5"] {
            assert!(is_semver(good), "{good}");
        }
        for bad in ["1.0", "01.0.0", "1.0.0-", "v1.0.0", "1.0.0.0", ""] {
            assert!(!is_semver(bad), "{bad}");
        }
    }

    #[test]
    fn a_newer_contract_gets_the_update_message() {
        let text = OPENAI.replace(
            "contract = \"0.1.0\"",
            "contract = \"0.2.0\"\nnew-field = 1",
        );
        let err = parse(&text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("0.2.0") && err.contains("0.1.0") && err.contains("update ImageAI"),
            "{err}"
        );
    }
}
