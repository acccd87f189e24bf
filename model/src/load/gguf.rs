//! Reader for GGUF (v2/v3) model files: metadata, tensor directory, and
//! dequantised tensor data.
//!
//! The file is memory-mapped so that opening a multi-GB model costs nothing
//! until a tensor is actually read. Every size and offset read from the file is
//! checked before use, so malformed input yields a [`GgufError`], never a panic
//! or an allocation larger than the file.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::gguf_quants::dequantize;
pub use super::gguf_quants::GgmlType;

/// ggml's `GGML_MAX_DIMS`: no valid tensor has more dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal but never deep in practice; bounding the depth
/// keeps a hostile file from overflowing the stack.
pub(crate) const MAX_ARRAY_DEPTH: u32 = 8;
const DEFAULT_ALIGNMENT: u64 = 32;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{}: cannot read file: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a GGUF file: expected magic \"GGUF\", found {found:02x?}", .path.display())]
    BadMagic { path: PathBuf, found: Vec<u8> },
    #[error("{}: unsupported GGUF version {version} (expected 2 or 3)", .path.display())]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{}: truncated header: {what} needs {needed} bytes at offset {offset}, file has {file_len}", .path.display())]
    Truncated { path: PathBuf, what: &'static str, offset: usize, needed: u64, file_len: usize },
    #[error("{}: implausible {what} length {len} at offset {offset} (file is only {file_len} bytes)", .path.display())]
    ImplausibleLength {
        path: PathBuf,
        what: &'static str,
        len: u64,
        offset: usize,
        file_len: usize,
    },
    #[error("{}: malformed GGUF at offset {offset}: {msg}", .path.display())]
    Malformed { path: PathBuf, offset: usize, msg: String },
    #[error("{}: tensor '{tensor}' data needs bytes {}..{} but the file has {file_len}", .path.display(), .range.start, .range.end)]
    TensorPastEof { path: PathBuf, tensor: String, range: Range<u64>, file_len: usize },
    #[error("{}: tensor '{tensor}' has unsupported ggml type id {type_id}", .path.display())]
    UnsupportedType { path: PathBuf, tensor: String, type_id: u32 },
    #[error("{}: tensor '{tensor}' row length {row_len} is not a multiple of the {ggml_type:?} block size {block}", .path.display())]
    BadRowLength { path: PathBuf, tensor: String, ggml_type: GgmlType, row_len: u64, block: usize },
    #[error("{}: no tensor named '{name}'", .path.display())]
    MissingTensor { path: PathBuf, name: String },
    #[error("{}: metadata key '{key}' is missing", .path.display())]
    MissingKey { path: PathBuf, key: String },
    #[error("{}: metadata key '{key}' is {found}, expected {expected}", .path.display())]
    WrongType { path: PathBuf, key: String, expected: &'static str, found: String },
    #[error("{}: cannot build tokenizer: {msg}", .path.display())]
    Tokenizer { path: PathBuf, msg: String },
}

/// A metadata value; GGUF value type ids are given in the comments.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    U8(u8),                // 0
    I8(i8),                // 1
    U16(u16),              // 2
    I16(i16),              // 3
    U32(u32),              // 4
    I32(i32),              // 5
    F32(f32),              // 6
    Bool(bool),            // 7
    String(String),        // 8
    Array(Vec<GgufValue>), // 9
    U64(u64),              // 10
    I64(i64),              // 11
    F64(f64),              // 12
}

impl GgufValue {
    /// The value as an integer, if it is one (any width or signedness).
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Self::U8(v) => v.into(),
            Self::I8(v) => v.into(),
            Self::U16(v) => v.into(),
            Self::I16(v) => v.into(),
            Self::U32(v) => v.into(),
            Self::I32(v) => v.into(),
            Self::U64(v) => v.into(),
            Self::I64(v) => v.into(),
            _ => return None,
        })
    }
}

/// Short description for type-mismatch errors (arrays show their length, not
/// their contents, which can be 150k tokens).
impl fmt::Display for GgufValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(s) if s.len() > 40 => write!(f, "a string of {} bytes", s.len()),
            Self::String(s) => write!(f, "string {s:?}"),
            Self::Array(a) => write!(f, "an array of {} values", a.len()),
            Self::Bool(b) => write!(f, "bool {b}"),
            other => write!(f, "{other:?}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// As stored: `ne[0]` (the contiguous, innermost dimension) first.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Relative to the start of the aligned data section.
    pub offset: u64,
}

#[derive(Debug)]
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<GgufTensorInfo>,
    /// Absolute file offset of the tensor data section.
    data_offset: u64,
    map: Bytes,
}

/// The file's bytes: memory-mapped when opened from disk, owned when parsed from memory.
#[derive(Debug)]
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped(map) => map,
            Self::Owned(bytes) => bytes,
        }
    }
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let io = |source| GgufError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; like every mmap-based model loader we
        // accept that another process truncating the file underneath us is UB.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::parse(path, Bytes::Mapped(map))
    }

    /// Parses GGUF bytes already in memory; `path` only names them in errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, GgufError> {
        Self::parse(path, Bytes::Owned(bytes))
    }

    fn parse(path: &Path, map: Bytes) -> Result<Self, GgufError> {
        let mut r = Reader { buf: &map, pos: 0, path };
        let header = r.header()?;
        let data_offset = header.data_offset;
        let gguf = Self {
            path: path.to_path_buf(),
            version: header.version,
            metadata: header.metadata,
            tensors: header.tensors,
            data_offset,
            map,
        };
        // Validate every decodable tensor now so a bad file fails at open
        // rather than midway through loading weights.
        for t in &gguf.tensors {
            if t.ggml_type.block_layout().is_some() {
                gguf.data_range(t)?;
            }
        }
        Ok(gguf)
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&GgufValue, GgufError> {
        self.get(key)
            .ok_or_else(|| GgufError::MissingKey { path: self.path.clone(), key: key.into() })
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &GgufValue) -> GgufError {
        GgufError::WrongType {
            path: self.path.clone(),
            key: key.into(),
            expected,
            found: found.to_string(),
        }
    }

    /// Any non-negative integer value (writers disagree on u32 vs u64).
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.require(key)?;
        v.as_i128()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| self.wrong_type(key, "a non-negative integer", v))
    }

    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        match self.require(key)? {
            GgufValue::F32(x) => Ok(f64::from(*x)),
            GgufValue::F64(x) => Ok(*x),
            v => Err(self.wrong_type(key, "a float", v)),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.require(key)? {
            GgufValue::String(s) => Ok(s),
            v => Err(self.wrong_type(key, "a string", v)),
        }
    }

    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let v = self.require(key)?;
        let GgufValue::Array(items) = v else {
            return Err(self.wrong_type(key, "an array of strings", v));
        };
        items
            .iter()
            .map(|item| match item {
                GgufValue::String(s) => Ok(s.as_str()),
                _ => Err(self.wrong_type(key, "an array of strings", v)),
            })
            .collect()
    }

    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw (still quantised) bytes of a tensor.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], GgufError> {
        self.tensor(name).map(|(_, bytes)| bytes)
    }

    /// Dequantised to f32, shape in row-major (PyTorch) order = dims reversed.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), GgufError> {
        let (info, bytes) = self.tensor(name)?;
        // Lossless: usize is 64-bit on every target this crate supports.
        let shape = info.dims.iter().rev().map(|&d| d as usize).collect();
        let values = dequantize(info.ggml_type, bytes).ok_or_else(|| self.unsupported(info))?;
        Ok((shape, values))
    }

    fn tensor(&self, name: &str) -> Result<(&GgufTensorInfo, &[u8]), GgufError> {
        let info = self.tensor_info(name).ok_or_else(|| GgufError::MissingTensor {
            path: self.path.clone(),
            name: name.into(),
        })?;
        Ok((info, &self.map[self.data_range(info)?]))
    }

    fn unsupported(&self, t: &GgufTensorInfo) -> GgufError {
        GgufError::UnsupportedType {
            path: self.path.clone(),
            tensor: t.name.clone(),
            type_id: t.ggml_type.id(),
        }
    }

    /// Byte range of a tensor's data, after checking its type is decodable,
    /// its rows are whole blocks, and it lies inside the file.
    fn data_range(&self, t: &GgufTensorInfo) -> Result<Range<usize>, GgufError> {
        let path = || self.path.clone();
        let (block, block_bytes) = t.ggml_type.block_layout().ok_or_else(|| self.unsupported(t))?;
        let row_len = t.dims.first().copied().unwrap_or(1);
        if row_len % block as u64 != 0 {
            return Err(GgufError::BadRowLength {
                path: path(),
                tensor: t.name.clone(),
                ggml_type: t.ggml_type,
                row_len,
                block,
            });
        }
        let file_len = self.map.len();
        let past_eof = |range| GgufError::TensorPastEof {
            path: path(),
            tensor: t.name.clone(),
            range,
            file_len,
        };
        // Dims are arbitrary u64s from the file: do the size arithmetic in u128
        // with overflow checks, treating overflow as "past the end".
        let n = t.dims.iter().try_fold(1u128, |n, &d| n.checked_mul(d.into()));
        let start = u128::from(self.data_offset) + u128::from(t.offset);
        let end = n
            .and_then(|n| (n / block as u128).checked_mul(block_bytes as u128))
            .and_then(|s| s.checked_add(start));
        match end {
            Some(end) if end <= file_len as u128 => Ok(start as usize..end as usize),
            _ => {
                let clamp = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
                Err(past_eof(clamp(start)..end.map_or(u64::MAX, clamp)))
            }
        }
    }
}

struct Header {
    version: u32,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<GgufTensorInfo>,
    data_offset: u64,
}

/// Bounds-checked little-endian cursor over the mapped file.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn header(&mut self) -> Result<Header, GgufError> {
        let magic = self.buf.get(..4).unwrap_or(self.buf);
        if magic != b"GGUF" {
            return Err(GgufError::BadMagic { path: self.path.into(), found: magic.to_vec() });
        }
        self.pos = 4;
        let version = self.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion { path: self.path.into(), version });
        }
        let n_tensors = self.count("tensor count", 24)?;
        let n_kv = self.count("metadata count", 13)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let at = self.pos;
            let key = self.string("metadata key")?;
            let ty = self.u32("metadata value type")?;
            let value = self.value(ty, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(self.malformed(at, format!("duplicate metadata key '{key}'")));
            }
        }
        let mut tensors: Vec<GgufTensorInfo> = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let at = self.pos;
            let name = self.string("tensor name")?;
            let n_dims = self.u32("tensor n_dims")?;
            if n_dims > MAX_DIMS {
                return Err(self
                    .malformed(at, format!("tensor '{name}' has {n_dims} dims (max {MAX_DIMS})")));
            }
            let dims =
                (0..n_dims).map(|_| self.u64("tensor dim")).collect::<Result<Vec<_>, _>>()?;
            // Every product of dims (shape sizes, strides) must fit in an i64, whatever
            // their order, even when another dim is 0 and the tensor is empty.
            let sizes_fit = dims
                .iter()
                .filter(|&&d| d != 0)
                .try_fold(1u64, |n, &d| n.checked_mul(d))
                .is_some_and(|n| n <= i64::MAX as u64);
            if !sizes_fit {
                return Err(self.malformed(
                    at,
                    format!("tensor '{name}' dims {dims:?} overflow a 64-bit element count"),
                ));
            }
            let ggml_type = GgmlType::from_id(self.u32("tensor type")?);
            let offset = self.u64("tensor offset")?;
            if tensors.iter().any(|t| t.name == name) {
                return Err(self.malformed(at, format!("duplicate tensor name '{name}'")));
            }
            tensors.push(GgufTensorInfo { name, dims, ggml_type, offset });
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => v
                .as_i128()
                .and_then(|a| u64::try_from(a).ok())
                .filter(|a| a.is_power_of_two())
                .ok_or_else(|| {
                    self.malformed(
                        self.pos,
                        format!("general.alignment must be a power of two, got {v}"),
                    )
                })?,
        };
        let data_offset = (self.pos as u64).div_ceil(alignment) * alignment;
        Ok(Header { version, metadata, tensors, data_offset })
    }

    fn malformed(&self, offset: usize, msg: String) -> GgufError {
        GgufError::Malformed { path: self.path.into(), offset, msg }
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], GgufError> {
        let end = usize::try_from(n).ok().and_then(|n| self.pos.checked_add(n));
        match end {
            Some(end) if end <= self.buf.len() => {
                let bytes = &self.buf[self.pos..end];
                self.pos = end;
                Ok(bytes)
            }
            _ => Err(GgufError::Truncated {
                path: self.path.into(),
                what,
                offset: self.pos,
                needed: n,
                file_len: self.buf.len(),
            }),
        }
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        Ok(self.take(N as u64, what)?.try_into().expect("take returns N bytes"))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A u64 element count, rejected when `count * min_elem_bytes` exceeds the
    /// rest of the file: such a count is garbage, and rejecting it up front
    /// bounds every allocation by the file size.
    fn count(&mut self, what: &'static str, min_elem_bytes: u64) -> Result<usize, GgufError> {
        let offset = self.pos;
        let len = self.u64(what)?;
        let file_len = self.buf.len();
        let remaining = (file_len - self.pos) as u64;
        match len.checked_mul(min_elem_bytes) {
            Some(bytes) if bytes <= remaining => Ok(len as usize),
            _ => Err(GgufError::ImplausibleLength {
                path: self.path.into(),
                what,
                len,
                offset,
                file_len,
            }),
        }
    }

    fn string(&mut self, what: &'static str) -> Result<String, GgufError> {
        let len = self.count(what, 1)?;
        let at = self.pos;
        let bytes = self.take(len as u64, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| self.malformed(at, format!("{what} is not UTF-8: {e}")))
    }

    fn value(&mut self, ty: u32, depth: u32) -> Result<GgufValue, GgufError> {
        Ok(match ty {
            0 => GgufValue::U8(self.array::<1>("u8 value")?[0]),
            1 => GgufValue::I8(self.array::<1>("i8 value")?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.array("u16 value")?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array("i16 value")?)),
            4 => GgufValue::U32(self.u32("u32 value")?),
            5 => GgufValue::I32(i32::from_le_bytes(self.array("i32 value")?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array("f32 value")?)),
            7 => GgufValue::Bool(self.array::<1>("bool value")?[0] != 0),
            8 => GgufValue::String(self.string("string value")?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.malformed(
                        self.pos,
                        format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"),
                    ));
                }
                let elem_ty = self.u32("array element type")?;
                let n = self.count("array", min_value_bytes(elem_ty))?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem_ty, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64("u64 value")?),
            11 => GgufValue::I64(i64::from_le_bytes(self.array("i64 value")?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array("f64 value")?)),
            other => return Err(self.malformed(self.pos, format!("value of unknown type {other}"))),
        })
    }
}

/// Smallest encoding of a value of type `ty` (unknown types are rejected when
/// the first element is read, so 1 is a safe lower bound for them).
fn min_value_bytes(ty: u32) -> u64 {
    match ty {
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => 1,
    }
}
