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

/// Why a GGUF file could not be read or used. Every variant carries the file's `path`;
/// offsets and lengths let a corrupt file be inspected with a hex dump.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("{}: cannot read file: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file does not start with `GGUF`.
    #[error("{}: not a GGUF file: expected magic \"GGUF\", found {found:02x?}", .path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// Its first (up to four) bytes.
        found: Vec<u8>,
    },
    /// A GGUF version other than 2 or 3.
    #[error("{}: unsupported GGUF version {version} (expected 2 or 3)", .path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version it declares.
        version: u32,
    },
    /// The header ends in the middle of a field.
    #[error("{}: truncated header: {what} needs {needed} bytes at offset {offset}, file has {file_len}", .path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The field being read.
        what: &'static str,
        /// Where the field starts.
        offset: usize,
        /// Bytes the field needs.
        needed: u64,
        /// Size of the file.
        file_len: usize,
    },
    /// A count or length that cannot fit in the rest of the file (garbage, rejected
    /// before anything that large is allocated).
    #[error("{}: implausible {what} length {len} at offset {offset} (file is only {file_len} bytes)", .path.display())]
    ImplausibleLength {
        /// The file.
        path: PathBuf,
        /// What the count counts.
        what: &'static str,
        /// The count as read.
        len: u64,
        /// Where it was read.
        offset: usize,
        /// Size of the file.
        file_len: usize,
    },
    /// A structurally invalid header (duplicate keys, too many dims, bad alignment...).
    #[error("{}: malformed GGUF at offset {offset}: {msg}", .path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where the offending entry starts.
        offset: usize,
        /// What is wrong.
        msg: String,
    },
    /// A tensor's data would extend past the end of the file.
    #[error("{}: tensor '{tensor}' data needs bytes {}..{} but the file has {file_len}", .path.display(), .range.start, .range.end)]
    TensorPastEof {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The byte range its data needs (saturated at `u64::MAX`).
        range: Range<u64>,
        /// Size of the file.
        file_len: usize,
    },
    /// A tensor type this reader cannot dequantise.
    #[error("{}: tensor '{tensor}' has unsupported ggml type id {type_id}", .path.display())]
    UnsupportedType {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// ggml's id of its type.
        type_id: u32,
    },
    /// A quantised tensor whose rows are not made of whole blocks.
    #[error("{}: tensor '{tensor}' row length {row_len} is not a multiple of the {ggml_type:?} block size {block}", .path.display())]
    BadRowLength {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// Its type.
        ggml_type: GgmlType,
        /// Elements per row (`ne[0]`).
        row_len: u64,
        /// Elements per block of its type.
        block: usize,
    },
    /// A tensor was asked for by a name the file does not hold.
    #[error("{}: no tensor named '{name}'", .path.display())]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
    },
    /// A required metadata key is absent.
    #[error("{}: metadata key '{key}' is missing", .path.display())]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A metadata value has the wrong type.
    #[error("{}: metadata key '{key}' is {found}, expected {expected}", .path.display())]
    WrongType {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The type expected, in words.
        expected: &'static str,
        /// The value found, in words (see [`GgufValue`]'s `Display`).
        found: String,
    },
    /// The `tokenizer.ggml.*` metadata does not describe a tokenizer we can build.
    #[error("{}: cannot build tokenizer: {msg}", .path.display())]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What is unsupported or inconsistent.
        msg: String,
    },
}

/// A metadata value, one variant per GGUF value type (its on-disk id in brackets).
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    /// [0] unsigned 8-bit integer.
    U8(u8),
    /// [1] signed 8-bit integer.
    I8(i8),
    /// [2] unsigned 16-bit integer.
    U16(u16),
    /// [3] signed 16-bit integer.
    I16(i16),
    /// [4] unsigned 32-bit integer.
    U32(u32),
    /// [5] signed 32-bit integer.
    I32(i32),
    /// [6] 32-bit float.
    F32(f32),
    /// [7] boolean (one byte, non-zero = true).
    Bool(bool),
    /// [8] UTF-8 string.
    String(String),
    /// [9] array of values of one type (possibly arrays themselves).
    Array(Vec<GgufValue>),
    /// [10] unsigned 64-bit integer.
    U64(u64),
    /// [11] signed 64-bit integer.
    I64(i64),
    /// [12] 64-bit float.
    F64(f64),
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

/// One entry of the tensor directory: where a tensor's data lies and how to decode it.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensorInfo {
    /// llama.cpp's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// As stored: `ne[0]` (the contiguous, innermost dimension) first.
    pub dims: Vec<u64>,
    /// Element type (possibly quantised).
    pub ggml_type: GgmlType,
    /// Relative to the start of the aligned data section.
    pub offset: u64,
}

/// A parsed GGUF file: its metadata and tensor directory, with the data left in place
/// (mapped) until a tensor is read.
#[derive(Debug)]
pub struct GgufFile {
    /// Where the file came from; names it in errors.
    pub path: PathBuf,
    /// GGUF format version (2 or 3).
    pub version: u32,
    /// Every metadata key and value (hyper-parameters, tokenizer, chat template).
    pub metadata: BTreeMap<String, GgufValue>,
    /// The tensor directory, in file order.
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
    /// Memory-maps and parses the file at `path`, validating every tensor's extent.
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

    /// A metadata value, if the key is present.
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

    /// A float value (f32 or f64 on disk); errors name a missing or non-float key.
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        match self.require(key)? {
            GgufValue::F32(x) => Ok(f64::from(*x)),
            GgufValue::F64(x) => Ok(*x),
            v => Err(self.wrong_type(key, "a float", v)),
        }
    }

    /// A string value; errors name a missing or non-string key.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.require(key)? {
            GgufValue::String(s) => Ok(s),
            v => Err(self.wrong_type(key, "a string", v)),
        }
    }

    /// An array of strings (e.g. the vocabulary), borrowed from the parsed metadata.
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

    /// The directory entry of a tensor, if the file holds one of that name.
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
    /// Parses everything before the tensor data: magic, version, metadata and the tensor
    /// directory, and where the (aligned) data section starts.
    fn header(&mut self) -> Result<Header, GgufError> {
        let version = self.magic_and_version()?;
        let n_tensors = self.count("tensor count", 24)?;
        let n_kv = self.count("metadata count", 13)?;
        let metadata = self.metadata(n_kv)?;
        let tensors = self.tensor_directory(n_tensors)?;
        let alignment = self.alignment(&metadata)?;
        let data_offset = (self.pos as u64).div_ceil(alignment) * alignment;
        Ok(Header { version, metadata, tensors, data_offset })
    }

    /// Checks the `GGUF` magic and returns the format version, which must be 2 or 3.
    fn magic_and_version(&mut self) -> Result<u32, GgufError> {
        let magic = self.buf.get(..4).unwrap_or(self.buf);
        if magic != b"GGUF" {
            return Err(GgufError::BadMagic { path: self.path.into(), found: magic.to_vec() });
        }
        self.pos = 4;
        let version = self.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion { path: self.path.into(), version });
        }
        Ok(version)
    }

    /// `n_kv` metadata key/value pairs; a key given twice is an error (which value
    /// would win is not specified).
    fn metadata(&mut self, n_kv: usize) -> Result<BTreeMap<String, GgufValue>, GgufError> {
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
        Ok(metadata)
    }

    /// `n_tensors` tensor directory entries; a name given twice is an error.
    fn tensor_directory(&mut self, n_tensors: usize) -> Result<Vec<GgufTensorInfo>, GgufError> {
        let mut tensors: Vec<GgufTensorInfo> = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let at = self.pos;
            let info = self.tensor_entry()?;
            if tensors.iter().any(|t| t.name == info.name) {
                return Err(self.malformed(at, format!("duplicate tensor name '{}'", info.name)));
            }
            tensors.push(info);
        }
        Ok(tensors)
    }

    /// One tensor directory entry: name, dims, type and data offset. At most
    /// [`MAX_DIMS`] dims, whose element counts must fit in an `i64`.
    fn tensor_entry(&mut self) -> Result<GgufTensorInfo, GgufError> {
        let at = self.pos;
        let name = self.string("tensor name")?;
        let n_dims = self.u32("tensor n_dims")?;
        if n_dims > MAX_DIMS {
            return Err(
                self.malformed(at, format!("tensor '{name}' has {n_dims} dims (max {MAX_DIMS})"))
            );
        }
        let dims = (0..n_dims).map(|_| self.u64("tensor dim")).collect::<Result<Vec<_>, _>>()?;
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
        Ok(GgufTensorInfo { name, dims, ggml_type, offset })
    }

    /// The data section's alignment: `general.alignment` (a power of two) or the default.
    fn alignment(&self, metadata: &BTreeMap<String, GgufValue>) -> Result<u64, GgufError> {
        match metadata.get("general.alignment") {
            None => Ok(DEFAULT_ALIGNMENT),
            Some(v) => v
                .as_i128()
                .and_then(|a| u64::try_from(a).ok())
                .filter(|a| a.is_power_of_two())
                .ok_or_else(|| {
                    self.malformed(
                        self.pos,
                        format!("general.alignment must be a power of two, got {v}"),
                    )
                }),
        }
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
