//! Which hosts a plugin may reach: the manifest's `allowed-hosts` plus the host of every `url`
//! setting, and the URL checks every request (and every redirect hop) goes through.

use std::collections::BTreeMap;
use std::fmt;

use url::{Host, Url};

use super::manifest::{Manifest, SettingKind};

/// One entry of `allowed-hosts`: an exact host, or `*.suffix` for every subdomain of `suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    Exact(Host<String>),
    /// `*.example.com`: matches `a.example.com` and `a.b.example.com`, not `example.com` itself.
    Subdomains(String),
}

impl HostPattern {
    /// Parse a manifest entry. Host names are normalised as browsers do (IDNA, lower case),
    /// IP addresses to their canonical form, so `0x7f.1` and `127.0.0.1` are the same host.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an empty host name".into());
        }
        if let Some(suffix) = text.strip_prefix("*.") {
            return match parse_host(suffix)? {
                Host::Domain(domain) if domain.contains('.') => Ok(Self::Subdomains(domain)),
                Host::Domain(_) => Err(format!(
                    "`{text}` is too broad: a wildcard needs a suffix with at least two labels, e.g. `*.example.com`"
                )),
                _ => Err(format!("`{text}`: a wildcard cannot cover an IP address")),
            };
        }
        if text.contains('*') {
            return Err(format!(
                "`{text}`: `*` is only allowed as a leading `*.`, e.g. `*.example.com`"
            ));
        }
        parse_host(text).map(Self::Exact)
    }

    fn matches(&self, host: &Host<String>) -> bool {
        match (self, host) {
            (Self::Exact(Host::Domain(allowed)), Host::Domain(domain)) => allowed == domain,
            (Self::Exact(allowed), host) => allowed == host,
            (Self::Subdomains(suffix), Host::Domain(domain)) => domain
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            (Self::Subdomains(_), _) => false,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(host) => write!(f, "{host}"),
            Self::Subdomains(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// Parse a bare host (no scheme, port, path or user info) the way a URL parser would.
fn parse_host(text: &str) -> Result<Host<String>, String> {
    if text.contains(['/', '@', '?', '#', '\\']) || text.contains("://") {
        return Err(format!(
            "`{text}` is not a bare host name: leave out the scheme, path and user"
        ));
    }
    let host =
        Host::parse(text).map_err(|err| format!("`{text}` is not a valid host name ({err})"))?;
    Ok(normalise(host))
}

/// A trailing dot names the same host (`example.com.`); drop it so comparisons see one spelling.
fn normalise(host: Host<String>) -> Host<String> {
    match host {
        Host::Domain(domain) => Host::Domain(domain.trim_end_matches('.').to_owned()),
        other => other,
    }
}

/// The hosts one call may reach.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowedHosts {
    patterns: Vec<HostPattern>,
}

impl AllowedHosts {
    /// The manifest's hosts plus the host of each `url` setting as configured for this call
    /// (or its default when the call does not set it).
    pub(crate) fn for_call(manifest: &Manifest, settings: &BTreeMap<String, String>) -> Self {
        let mut patterns: Vec<HostPattern> = manifest
            .allowed_hosts
            .iter()
            .filter_map(|entry| HostPattern::parse(entry).ok())
            .collect();
        for spec in manifest
            .settings
            .iter()
            .filter(|spec| spec.kind == SettingKind::Url)
        {
            let Some(value) = settings.get(&spec.name).or(spec.default.as_ref()) else {
                continue;
            };
            match Url::parse(value.trim()) {
                Ok(url) => {
                    if let Some(host) = url.host() {
                        patterns.push(HostPattern::Exact(normalise(host.to_owned())));
                    }
                }
                Err(err) => tracing::warn!(
                    plugin = %manifest.id,
                    setting = %spec.name,
                    "the setting is not a valid URL ({err}); its host is not reachable"
                ),
            }
        }
        Self { patterns }
    }

    /// Parse and check one request URL: http or https, no user info, a host this call may reach.
    /// Returns the normalised URL to send, or a reason to refuse it.
    pub(crate) fn check(&self, raw: &str) -> Result<Url, String> {
        let mut url =
            Url::parse(raw.trim()).map_err(|err| format!("`{raw}` is not a valid URL ({err})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "only http and https URLs are allowed, not `{}:`",
                url.scheme()
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "URLs with a user name or password are not allowed; send credentials in a header"
                    .into(),
            );
        }
        let host = match url.host() {
            Some(host) => normalise(host.to_owned()),
            None => return Err(format!("`{raw}` has no host")),
        };
        if !self.patterns.iter().any(|pattern| pattern.matches(&host)) {
            return Err(format!(
                "host `{host}` is not declared in the plugin's allowed-hosts (allowed: {})",
                self.describe()
            ));
        }
        url.set_fragment(None);
        Ok(url)
    }

    fn describe(&self) -> String {
        if self.patterns.is_empty() {
            return "none".into();
        }
        let mut names: Vec<String> = self.patterns.iter().map(ToString::to_string).collect();
        names.sort();
        names.dedup();
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> AllowedHosts {
        AllowedHosts {
            patterns: entries
                .iter()
                .map(|e| HostPattern::parse(e).unwrap_or_else(|err| panic!("{err}")))
                .collect(),
        }
    }

    #[test]
    fn exact_hosts_are_normalised() {
        let hosts = allowed(&["API.OpenAI.com", "127.0.0.1", "bücher.example"]);
        assert!(hosts.check("https://api.openai.com/v1/images").is_ok());
        assert!(hosts.check("https://api.openai.com./v1").is_ok());
        assert!(hosts.check("http://127.0.0.1:8080/x").is_ok());
        // Other spellings of the same IPv4 address are the same host.
        assert!(hosts.check("http://2130706433/").is_ok());
        assert!(hosts.check("http://0x7f.0.0.1/").is_ok());
        assert!(hosts.check("https://xn--bcher-kva.example/").is_ok());
        assert!(hosts.check("https://BÜCHER.example/").is_ok());
    }

    #[test]
    fn tricks_are_refused() {
        let hosts = allowed(&["api.openai.com", "127.0.0.1"]);
        for url in [
            "http://127.0.0.2/",
            "http://0x7f.0.0.2/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://api.openai.com%2eevil.example/",
            "http://localhost/",
            "http://api.openai.com.evil.example/",
            "http://evil.example/api.openai.com",
            "http://api.openai.com@evil.example/",
            "http://user:pw@api.openai.com/",
            "ftp://api.openai.com/",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(hosts.check(url).is_err(), "{url} should be refused");
        }
    }

    #[test]
    fn wildcards_cover_subdomains_only() {
        let hosts = allowed(&["*.blob.core.windows.net"]);
        assert!(hosts.check("https://acct.blob.core.windows.net/x").is_ok());
        assert!(hosts.check("https://a.b.blob.core.windows.net/x").is_ok());
        assert!(hosts.check("https://blob.core.windows.net/x").is_err());
        assert!(hosts.check("https://evilblob.core.windows.net/x").is_err());
        assert!(HostPattern::parse("*.com").is_err());
        assert!(HostPattern::parse("*.127.0.0.1").is_err());
        assert!(HostPattern::parse("a.*.com").is_err());
        assert!(HostPattern::parse("https://api.openai.com").is_err());
        assert!(HostPattern::parse("api.openai.com:443").is_err());
    }
}
