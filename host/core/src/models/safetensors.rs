//! Just enough of the safetensors format to read a file's table of tensors and to write a new
//! file whose tensors are byte ranges of another one — without loading gigabytes into memory.
//! Format: an 8-byte little-endian header length, a JSON header
//! `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then the data.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde_json::{Map, Value};

/// Headers larger than this are refused (real ones are well under a few MB).
const MAX_HEADER: u64 = 100 * 1024 * 1024;

/// One tensor's entry in a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// `F16`, `F32`, `BF16`, `I64`…
    pub dtype: String,
    pub shape: Vec<u64>,
    /// Offsets of the data, relative to the end of the header.
    pub begin: u64,
    pub end: u64,
}

/// A parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub tensors: BTreeMap<String, TensorInfo>,
    pub metadata: BTreeMap<String, String>,
    /// Where the data starts in the file (8 + header length).
    pub data_start: u64,
}

impl Header {
    /// The dtype most of the floating-point data is in (by bytes), e.g. `F16`.
    pub fn main_float_dtype(&self) -> Option<&str> {
        let mut bytes: BTreeMap<&str, u64> = BTreeMap::new();
        for info in self.tensors.values() {
            if matches!(
                info.dtype.as_str(),
                "F16" | "F32" | "BF16" | "F64" | "F8_E4M3" | "F8_E5M2"
            ) {
                *bytes.entry(info.dtype.as_str()).or_default() += info.end - info.begin;
            }
        }
        bytes
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(dtype, _)| dtype)
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Read the header of the safetensors file at `path`, checking that every tensor's bytes lie
/// inside the file and match its dtype and shape.
pub fn read_header(path: &Path) -> io::Result<Header> {
    let mut file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| invalid("the file is too short to be safetensors"))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER || header_len + 8 > file_len {
        return Err(invalid(
            "the safetensors header length is impossible; the file is damaged or not safetensors",
        ));
    }
    let mut raw = vec![0u8; usize::try_from(header_len).map_err(|_| invalid("header too large"))?];
    file.read_exact(&mut raw)?;
    let data_start = 8 + header_len;
    let data_len = file_len - data_start;
    parse_header(&raw, data_start, data_len)
}

fn parse_header(raw: &[u8], data_start: u64, data_len: u64) -> io::Result<Header> {
    let doc: Map<String, Value> = match serde_json::from_slice(raw) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(invalid("the safetensors header is not a JSON object")),
        Err(e) => {
            return Err(invalid(format!(
                "the safetensors header is not valid JSON ({e})"
            )));
        }
    };
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, entry) in doc {
        if name == "__metadata__" {
            if let Value::Object(meta) = entry {
                for (k, v) in meta {
                    if let Value::String(s) = v {
                        metadata.insert(k, s);
                    }
                }
            }
            continue;
        }
        let dtype = entry
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("tensor {name} has no dtype")))?
            .to_owned();
        let shape: Vec<u64> = entry
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(format!("tensor {name} has no shape")))?
            .iter()
            .map(|d| {
                d.as_u64()
                    .ok_or_else(|| invalid(format!("tensor {name} has a bad shape")))
            })
            .collect::<io::Result<_>>()?;
        let offsets = entry
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|o| o.len() == 2)
            .ok_or_else(|| invalid(format!("tensor {name} has no data_offsets")))?;
        let (Some(begin), Some(end)) = (offsets[0].as_u64(), offsets[1].as_u64()) else {
            return Err(invalid(format!("tensor {name} has bad data_offsets")));
        };
        if begin > end || end > data_len {
            return Err(invalid(format!(
                "tensor {name} points outside the file; the file is truncated or damaged"
            )));
        }
        if let Some(width) = dtype_width(&dtype) {
            let count = shape.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d));
            if count.and_then(|c| c.checked_mul(width)) != Some(end - begin) {
                return Err(invalid(format!(
                    "tensor {name}'s size does not match its shape"
                )));
            }
        }
        tensors.insert(
            name,
            TensorInfo {
                dtype,
                shape,
                begin,
                end,
            },
        );
    }
    Ok(Header {
        tensors,
        metadata,
        data_start,
    })
}

/// Bytes per element, for the dtypes whose size we know.
pub fn dtype_width(dtype: &str) -> Option<u64> {
    match dtype {
        "F64" | "I64" | "U64" => Some(8),
        "F32" | "I32" | "U32" => Some(4),
        "F16" | "BF16" | "I16" | "U16" => Some(2),
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => Some(1),
        _ => None,
    }
}

/// A tensor of the output file: its new name and shape, and where its bytes are in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    /// Absolute offsets in the source file.
    pub source_begin: u64,
    pub source_end: u64,
}

/// Write a safetensors file at `out` holding `tensors` (sorted by name), their bytes copied from
/// `source`. `progress` gets the number of data bytes written so far. The caller writes to a
/// temporary path and renames it into place.
pub fn write_from(
    out: &Path,
    tensors: &[CopyTensor],
    metadata: &BTreeMap<String, String>,
    source: &mut File,
    progress: &mut dyn FnMut(u64),
) -> io::Result<()> {
    let mut sorted: Vec<&CopyTensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut header = Map::new();
    if !metadata.is_empty() {
        let meta: Map<String, Value> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        header.insert("__metadata__".to_owned(), Value::Object(meta));
    }
    let mut offset = 0u64;
    for tensor in &sorted {
        let len = tensor.source_end - tensor.source_begin;
        header.insert(
            tensor.name.clone(),
            serde_json::json!({
                "dtype": tensor.dtype,
                "shape": tensor.shape,
                "data_offsets": [offset, offset + len],
            }),
        );
        offset += len;
    }
    let mut header_bytes = serde_json::to_vec(&Value::Object(header)).map_err(io::Error::other)?;
    // The data must start 8-byte aligned: pad the header with spaces, as the reference does.
    while !(header_bytes.len() + 8).is_multiple_of(8) {
        header_bytes.push(b' ');
    }
    let mut writer = BufWriter::with_capacity(1 << 20, File::create(out)?);
    writer.write_all(&(header_bytes.len() as u64).to_le_bytes())?;
    writer.write_all(&header_bytes)?;
    let mut written = 0u64;
    for tensor in sorted {
        source.seek(SeekFrom::Start(tensor.source_begin))?;
        let len = tensor.source_end - tensor.source_begin;
        let copied = io::copy(&mut (&mut *source).take(len), &mut writer)?;
        if copied != len {
            return Err(invalid(format!(
                "the source ended inside tensor {}",
                tensor.name
            )));
        }
        written += len;
        progress(written);
    }
    let file = writer.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on the first surprise
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_renamed_and_reshaped_tensors() {
        let dir = tempfile::tempdir().unwrap();
        // A source file: two F16 tensors, 4 and 2 elements.
        let src_path = dir.path().join("src.safetensors");
        let mut tensors = Vec::new();
        let header = br#"{"b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},"a":{"dtype":"F16","shape":[2,2,1,1],"data_offsets":[0,8]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        std::fs::write(&src_path, &bytes).unwrap();

        let parsed = read_header(&src_path).unwrap();
        assert_eq!(parsed.tensors["a"].shape, [2, 2, 1, 1]);
        assert_eq!(parsed.main_float_dtype(), Some("F16"));
        for (name, new_name, shape) in [("a", "z.weight", vec![2, 2]), ("b", "y.bias", vec![2])] {
            let info = &parsed.tensors[name];
            tensors.push(CopyTensor {
                name: new_name.into(),
                dtype: info.dtype.clone(),
                shape,
                source_begin: parsed.data_start + info.begin,
                source_end: parsed.data_start + info.end,
            });
        }
        let out = dir.path().join("out.safetensors");
        let mut source = File::open(&src_path).unwrap();
        let mut seen = 0;
        write_from(
            &out,
            &tensors,
            &BTreeMap::from([("format".into(), "pt".into())]),
            &mut source,
            &mut |n| seen = n,
        )
        .unwrap();
        assert_eq!(seen, 12);

        let written = read_header(&out).unwrap();
        assert_eq!(written.data_start % 8, 0);
        assert_eq!(written.metadata["format"], "pt");
        assert_eq!(written.tensors["z.weight"].shape, [2, 2]);
        let data = std::fs::read(&out).unwrap();
        let start = usize::try_from(written.data_start).unwrap();
        // y.bias sorts first.
        assert_eq!(&data[start..], &[9, 10, 11, 12, 1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn damaged_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        std::fs::write(&path, b"short").unwrap();
        assert!(read_header(&path).is_err());
        let header = br#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 8]); // 8 of the 16 bytes: truncated
        std::fs::write(&path, &bytes).unwrap();
        let err = read_header(&path).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
