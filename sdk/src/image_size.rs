//! Width and height of an encoded image, read from its header (PNG, JPEG, WebP) without
//! decoding it: to check a size a provider would refuse before the upload.

/// `(width, height)`, or `None` when the format is not one of these or the header is cut off.
pub fn dimensions(data: &[u8]) -> Option<(u32, u32)> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        png(data)
    } else if data.starts_with(&[0xFF, 0xD8]) {
        jpeg(data)
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        webp(data)
    } else {
        None
    }
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

fn be16(data: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 2] = data.get(at..at + 2)?.try_into().ok()?;
    Some(u32::from(u16::from_be_bytes(bytes)))
}

fn le16(data: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 2] = data.get(at..at + 2)?.try_into().ok()?;
    Some(u32::from(u16::from_le_bytes(bytes)))
}

fn le24(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at + 3)?;
    Some(u32::from(bytes[0]) | u32::from(bytes[1]) << 8 | u32::from(bytes[2]) << 16)
}

/// The IHDR chunk comes first: width and height at bytes 16..24.
fn png(data: &[u8]) -> Option<(u32, u32)> {
    if data.get(12..16)? != b"IHDR" {
        return None;
    }
    Some((be32(data, 16)?, be32(data, 20)?))
}

/// Walk the segments to the first start-of-frame marker (SOF0–SOF15 but DHT, JPG and DAC).
fn jpeg(data: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2;
    loop {
        while *data.get(at)? != 0xFF {
            at += 1;
        }
        while *data.get(at)? == 0xFF {
            at += 1;
        }
        let marker = *data.get(at)?;
        at += 1;
        if matches!(marker, 0xD8 | 0x01 | 0xD0..=0xD7) {
            continue;
        }
        let length = usize::try_from(be16(data, at)?).ok()?;
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            return Some((be16(data, at + 5)?, be16(data, at + 3)?));
        }
        if length < 2 {
            return None;
        }
        at += length;
    }
}

/// Lossy (`VP8 `), lossless (`VP8L`) or extended (`VP8X`) WebP.
fn webp(data: &[u8]) -> Option<(u32, u32)> {
    match data.get(12..16)? {
        b"VP8X" => Some((le24(data, 24)? + 1, le24(data, 27)? + 1)),
        b"VP8 " => Some((le16(data, 26)? & 0x3FFF, le16(data, 28)? & 0x3FFF)),
        b"VP8L" => {
            let bits = u32::from_le_bytes(data.get(21..25)?.try_into().ok()?);
            Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_header() {
        let mut data = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        data.extend_from_slice(&1216u32.to_be_bytes());
        data.extend_from_slice(&832u32.to_be_bytes());
        assert_eq!(dimensions(&data), Some((1216, 832)));
        assert_eq!(dimensions(&data[..20]), None);
    }

    #[test]
    fn jpeg_frame() {
        // SOI, an APP0 segment of 16 bytes, then SOF0 with height 480 and width 640.
        let mut data = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        data.extend_from_slice(&[0; 14]);
        data.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08, 0x01, 0xE0, 0x02, 0x80, 0x03]);
        assert_eq!(dimensions(&data), Some((640, 480)));
        assert_eq!(dimensions(&[0xFF, 0xD8, 0xFF]), None);
    }

    #[test]
    fn webp_variants() {
        let mut extended = b"RIFF\0\0\0\0WEBPVP8X".to_vec();
        extended.extend_from_slice(&[0; 8]);
        extended.extend_from_slice(&[0xFF, 0x03, 0x00, 0x7F, 0x02, 0x00]); // 1024 x 640
        assert_eq!(dimensions(&extended), Some((1024, 640)));
        assert_eq!(dimensions(b"GIF89a"), None);
    }
}
