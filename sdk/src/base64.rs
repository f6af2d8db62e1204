//! Standard base64 (RFC 4648, with padding), the alphabet image APIs use for `b64_json` fields.

use ::base64::Engine as _;
use ::base64::alphabet;
use ::base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::errors::ProviderError;

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
pub fn decode(text: &str) -> Result<Vec<u8>, ProviderError> {
    let text = text.trim();
    let payload = match text
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
    {
        Some((_, payload)) => payload,
        None => text,
    };
    // Providers send one unbroken, padded line: decode that with SIMD (WebAssembly `simd128`,
    // which plugins are built with; a scalar loop otherwise). Only when that fails, look for line
    // breaks or missing padding, and explain the error (scanning first would read every byte of
    // a large image twice).
    let simd = if payload.len() % 4 == 0 {
        base64_simd::STANDARD
    } else {
        base64_simd::STANDARD_NO_PAD
    };
    if let Ok(data) = simd.decode_to_vec(payload) {
        return Ok(data);
    }
    let result = ENGINE.decode(payload).or_else(|first| {
        if payload.bytes().any(|b| b.is_ascii_whitespace()) {
            let compact: Vec<u8> = payload
                .bytes()
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
            assert_eq!(decode(&encode(data)), Ok(data.to_vec()));
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
}
