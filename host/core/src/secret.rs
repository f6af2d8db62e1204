//! A secret string (API key) that never prints itself, and redaction of secrets from text.

use std::fmt;

/// An API key or token. `Debug` and `Display` show `***`; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call only where it is sent to its own provider or stored.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replace every occurrence of this secret in `text` with `***`.
    pub fn redact(&self, text: &str) -> String {
        redact(text, std::slice::from_ref(self))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replace every occurrence of any of `secrets` in `text` with `***`. Empty and very short
/// secrets (under 4 characters) are ignored: they would mangle ordinary text and are no key.
pub fn redact(text: &str, secrets: &[Secret]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        if secret.0.len() >= 4 && out.contains(&secret.0) {
            out = out.replace(&secret.0, "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_itself() {
        let key = Secret::new("sk-test-1234567890");
        assert_eq!(format!("{key:?} {key}"), "Secret(***) ***");
        assert_eq!(
            key.redact("Bearer sk-test-1234567890 rejected"),
            "Bearer *** rejected"
        );
    }
}
