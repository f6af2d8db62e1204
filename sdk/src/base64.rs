//! Standard base64 (RFC 4648, with padding), the alphabet image APIs use for `b64_json` fields.

use std::borrow::Cow;
use std::fmt;

use ::base64::Engine as _;
use ::base64::alphabet;
use ::base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::errors::ProviderError;

#[cfg(any(test, all(target_arch = "wasm32", target_feature = "simd128")))]
mod simd;

/// Encodes with padding; decodes with or without it.
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Encode bytes as standard base64 with padding.
pub fn encode(data: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(data)
}

/// Decode standard base64, ignoring whitespace and line breaks and a `data:…;base64,` prefix.
/// A failure is a [`ProviderError::Server`]: the text came from the provider and is not base64.
pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, ProviderError> {
    let text = text.as_ref().trim_ascii();
    let payload = text
        .strip_prefix(b"data:")
        .and_then(|rest| {
            let marker = b";base64,";
            let at = rest.windows(marker.len()).position(|w| w == marker)?;
            Some(&rest[at + marker.len()..])
        })
        .unwrap_or(text);
    // Providers send one unbroken, padded line: decode that with SIMD (in plugins, built with
    // WebAssembly `simd128`, this crate's own decoder; elsewhere `base64-simd`). Only when that
    // fails, look for line breaks or missing padding, and explain the error (scanning first would
    // read every byte of a large image twice).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let fast = simd::decode(payload);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let fast = if payload.len() % 4 == 0 {
        base64_simd::STANDARD.decode_to_vec(payload).ok()
    } else {
        base64_simd::STANDARD_NO_PAD.decode_to_vec(payload).ok()
    };
    if let Some(data) = fast {
        return Ok(data);
    }
    let result = ENGINE.decode(payload).or_else(|first| {
        if payload.iter().any(|b| b.is_ascii_whitespace()) {
            let compact: Vec<u8> = payload
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            ENGINE.decode(compact)
        } else {
            Err(first)
        }
    });
    result.map_err(|e| {
        ProviderError::server(format!(
            "the provider sent image data that is not valid base64 ({e})"
        ))
    })
}

/// A JSON string holding base64 (`b64_json`, `inlineData.data`, …), borrowed from the answer.
///
/// Deserializing a large image into a `String` copies it and checks every byte for UTF-8 before
/// [`decode`] reads it again. As a field of a struct deserialized from
/// [`Response::json`](crate::http::Response::json), `Encoded` points into the answer instead (add
/// `#[serde(borrow)]`); decoding checks every byte anyway. A string with JSON escapes (`\/`)
/// is unescaped into its own copy.
///
/// ```
/// use imageai_sdk::base64::Encoded;
///
/// #[derive(serde::Deserialize)]
/// struct Answer<'a> {
///     #[serde(borrow)]
///     b64_json: Encoded<'a>,
/// }
///
/// let answer: Answer<'_> = serde_json::from_str(r#"{"b64_json": "aGVsbG8="}"#).unwrap();
/// assert_eq!(answer.b64_json.decode().unwrap(), b"hello");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Encoded<'a>(Cow<'a, [u8]>);

impl Encoded<'_> {
    /// The decoded bytes (see [`decode`]).
    pub fn decode(&self) -> Result<Vec<u8>, ProviderError> {
        decode(&self.0)
    }
}

impl AsRef<[u8]> for Encoded<'_> {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Encoded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Encoded({} bytes of base64)", self.0.len())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Encoded<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;

        impl<'de> Visitor<'de> for Text {
            type Value = Cow<'de, [u8]>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string of base64")
            }

            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v.as_bytes()))
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_vec()))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.as_bytes().to_vec()))
            }

            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.into_bytes()))
            }
        }

        // serde_json hands a string's raw bytes to `deserialize_bytes` without checking UTF-8.
        deserializer.deserialize_bytes(Text).map(Encoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for data in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"\x00\xff\x10binary",
        ] {
            assert_eq!(decode(encode(data)), Ok(data.to_vec()));
        }
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode(b"fo"), "Zm8=");
    }

    #[test]
    fn lenient_decoding() {
        assert_eq!(decode("Zm8"), Ok(b"fo".to_vec()));
        assert_eq!(decode("Zm9v\nYmFy\r\n"), Ok(b"foobar".to_vec()));
        assert_eq!(
            decode("data:image/png;base64,Zm9vYmFy"),
            Ok(b"foobar".to_vec())
        );
    }

    #[test]
    fn invalid_input_is_a_server_error() {
        let err = decode("not base64!").err();
        assert!(matches!(err, Some(ProviderError::Server(_))), "{err:?}");
    }

    #[test]
    fn encoded_borrows_from_the_answer() {
        #[derive(serde::Deserialize)]
        struct Answer<'a> {
            #[serde(borrow)]
            data: Encoded<'a>,
            #[serde(borrow, default)]
            missing: Option<Encoded<'a>>,
        }
        let text = r#"{"data": "Zm9vYmFy"}"#;
        let answer: Answer<'_> = serde_json::from_str(text).unwrap();
        assert!(matches!(answer.data.0, Cow::Borrowed(_)));
        assert_eq!(answer.data.decode(), Ok(b"foobar".to_vec()));
        assert_eq!(answer.missing, None);
        assert_eq!(format!("{:?}", answer.data), "Encoded(8 bytes of base64)");

        // An escaped `/` (legal JSON) is unescaped into a copy.
        let escaped: Answer<'_> = serde_json::from_str(r#"{"data": "a\/8="}"#).unwrap();
        assert!(matches!(escaped.data.0, Cow::Owned(_)));
        assert_eq!(escaped.data.decode(), Ok(vec![0x6b, 0xff]));

        let not_text = serde_json::from_str::<Answer<'_>>(r#"{"data": 12}"#).err();
        assert!(
            not_text.is_some_and(|e| e.to_string().contains("a string of base64")),
            "a number is not base64"
        );
    }
}
