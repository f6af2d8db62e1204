//! `multipart/form-data` bodies (RFC 7578) for upload endpoints such as OpenAI's image edits.
//!
//! ```
//! use imageai_sdk::multipart::Form;
//!
//! let form = Form::new()
//!     .text("prompt", "a cat wearing a hat")
//!     .file("image[]", "cat.png", "image/png", vec![0x89, b'P', b'N', b'G']);
//! let (content_type, body) = form.finish();
//! assert!(content_type.starts_with("multipart/form-data; boundary="));
//! assert!(body.ends_with(b"--\r\n"));
//! ```

/// A form being built: text fields and file parts, in order.
#[derive(Debug, Clone, Default)]
pub struct Form {
    parts: Vec<Part>,
    boundary: Option<String>,
}

#[derive(Clone)]
struct Part {
    name: String,
    file: Option<(String, String)>,
    data: Vec<u8>,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("name", &self.name)
            .field("file", &self.file)
            .field("bytes", &self.data.len())
            .finish()
    }
}

impl Form {
    pub fn new() -> Self {
        Self::default()
    }

    /// Use this boundary instead of one derived from the content (tests, byte-exact fixtures).
    /// It must not occur in any part; [`Form::finish`] picks another when it does.
    pub fn with_boundary(mut self, boundary: impl Into<String>) -> Self {
        self.boundary = Some(boundary.into());
        self
    }

    /// A text field.
    pub fn text(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.parts.push(Part {
            name: name.into(),
            file: None,
            data: value.into().into_bytes(),
        });
        self
    }

    /// A file part with its file name and content type (`image/png`…).
    pub fn file(
        mut self,
        name: impl Into<String>,
        file_name: impl Into<String>,
        content_type: impl Into<String>,
        data: Vec<u8>,
    ) -> Self {
        self.parts.push(Part {
            name: name.into(),
            file: Some((file_name.into(), content_type.into())),
            data,
        });
        self
    }

    /// Whether the form has no parts yet.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The `Content-Type` header value and the encoded body.
    pub fn finish(self) -> (String, Vec<u8>) {
        let boundary = self.pick_boundary();
        let capacity = self
            .parts
            .iter()
            .map(|p| p.data.len() + p.name.len() + 160)
            .sum::<usize>()
            + boundary.len()
            + 8;
        let mut body = Vec::with_capacity(capacity);
        for part in &self.parts {
            body.extend_from_slice(b"--");
            body.extend_from_slice(boundary.as_bytes());
            body.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
            body.extend_from_slice(escape(&part.name).as_bytes());
            body.push(b'"');
            if let Some((file_name, content_type)) = &part.file {
                body.extend_from_slice(b"; filename=\"");
                body.extend_from_slice(escape(file_name).as_bytes());
                body.extend_from_slice(b"\"\r\nContent-Type: ");
                body.extend_from_slice(strip_line_breaks(content_type).as_bytes());
            }
            body.extend_from_slice(b"\r\n\r\n");
            body.extend_from_slice(&part.data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--");
        body.extend_from_slice(boundary.as_bytes());
        body.extend_from_slice(b"--\r\n");
        (format!("multipart/form-data; boundary={boundary}"), body)
    }

    /// The boundary: the one asked for, else one derived from a hash of the content (the plugin
    /// sandbox has no randomness to spare, and a content hash is reproducible in tests). Either
    /// way it is changed until no part contains it.
    fn pick_boundary(&self) -> String {
        let mut hash = Fnv::new();
        for part in &self.parts {
            hash.write(part.name.as_bytes());
            hash.write(&part.data);
        }
        let mut candidate = self
            .boundary
            .clone()
            .unwrap_or_else(|| format!("imageai-{:016x}", hash.finish()));
        let mut salt = 0u32;
        while self
            .parts
            .iter()
            .any(|p| contains(&p.data, candidate.as_bytes()) || p.name.contains(&candidate))
        {
            salt += 1;
            hash.write(&salt.to_le_bytes());
            candidate = format!("imageai-{:016x}", hash.finish());
        }
        candidate
    }
}

/// Field and file names go inside double quotes; browsers percent-encode the three characters
/// that would break the header, and servers decode them the same way.
fn escape(name: &str) -> String {
    name.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn strip_line_breaks(value: &str) -> String {
    value.chars().filter(|c| *c != '\r' && *c != '\n').collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// 64-bit FNV-1a: tiny and dependency-free; only used to pick a boundary.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_for_byte() {
        let (content_type, body) = Form::new()
            .with_boundary("XyZ")
            .text("prompt", "a cat")
            .text("n", "2")
            .file("image[]", "a.png", "image/png", b"\x89PNG\x00\x01".to_vec())
            .file("mask", "mask.png", "image/png", Vec::new())
            .finish();
        assert_eq!(content_type, "multipart/form-data; boundary=XyZ");
        let expected: &[u8] = b"--XyZ\r\n\
Content-Disposition: form-data; name=\"prompt\"\r\n\
\r\n\
a cat\r\n\
--XyZ\r\n\
Content-Disposition: form-data; name=\"n\"\r\n\
\r\n\
2\r\n\
--XyZ\r\n\
Content-Disposition: form-data; name=\"image[]\"; filename=\"a.png\"\r\n\
Content-Type: image/png\r\n\
\r\n\
\x89PNG\x00\x01\r\n\
--XyZ\r\n\
Content-Disposition: form-data; name=\"mask\"; filename=\"mask.png\"\r\n\
Content-Type: image/png\r\n\
\r\n\
\r\n\
--XyZ--\r\n";
        assert_eq!(body, expected, "\n{}\n", String::from_utf8_lossy(&body));
    }

    #[test]
    fn empty_form() {
        let (_, body) = Form::new().with_boundary("b").finish();
        assert_eq!(body, b"--b--\r\n");
    }

    #[test]
    fn names_are_escaped() {
        let (_, body) = Form::new()
            .with_boundary("b")
            .file(
                "f\"x",
                "evil\"\r\nX: y.png",
                "image/png\r\nX: y",
                Vec::new(),
            )
            .finish();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("name=\"f%22x\"; filename=\"evil%22%0D%0AX: y.png\"\r\nContent-Type: image/pngX: y\r\n"), "{text}");
    }

    #[test]
    fn boundary_never_occurs_in_content() {
        let (content_type, body) = Form::new()
            .with_boundary("abc")
            .text("t", "xxabcxx")
            .finish();
        let boundary = content_type
            .rsplit('=')
            .next()
            .unwrap_or_default()
            .to_owned();
        assert_ne!(boundary, "abc");
        assert!(!"xxabcxx".contains(&boundary));
        assert!(body.starts_with(format!("--{boundary}\r\n").as_bytes()));
    }

    #[test]
    fn derived_boundary_is_stable() {
        let make = || {
            Form::new()
                .text("a", "1")
                .file("f", "f.png", "image/png", vec![1, 2, 3])
                .finish()
        };
        assert_eq!(make(), make());
        let (content_type, _) = make();
        assert!(
            content_type.starts_with("multipart/form-data; boundary=imageai-"),
            "{content_type}"
        );
    }
}
