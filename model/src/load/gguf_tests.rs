//! Tests for the GGUF reader (gguf.rs), kept apart so that file stays readable.
//! The GGUF-writing helpers are `pub(crate)` for the tokenizer tests.

use super::gguf::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Builds GGUF bytes: header, KVs, tensor infos, padding, data.
pub(crate) struct Writer {
    version: u32,
    alignment: usize,
    n_kv: u64,
    kvs: Vec<u8>,
    n_tensors: u64,
    infos: Vec<u8>,
    data: Vec<u8>,
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend((s.len() as u64).to_le_bytes());
    buf.extend(s.as_bytes());
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self {
            version: 3,
            alignment: 32,
            n_kv: 0,
            kvs: vec![],
            n_tensors: 0,
            infos: vec![],
            data: vec![],
        }
    }

    /// `value` is the already-encoded value of GGUF type `ty`.
    pub(crate) fn kv(mut self, key: &str, ty: u32, value: &[u8]) -> Self {
        put_str(&mut self.kvs, key);
        self.kvs.extend(ty.to_le_bytes());
        self.kvs.extend(value);
        self.n_kv += 1;
        self
    }

    fn tensor(mut self, name: &str, dims: &[u64], ty: u32, bytes: &[u8]) -> Self {
        self.data.resize(self.data.len().next_multiple_of(self.alignment), 0);
        put_str(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| self.infos.extend(d.to_le_bytes()));
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(bytes);
        self.n_tensors += 1;
        self
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(self.kvs);
        out.extend(self.infos);
        out.resize(out.len().next_multiple_of(self.alignment), 0);
        out.extend(self.data);
        out
    }
}

pub(crate) fn str_value(s: &str) -> Vec<u8> {
    let mut v = vec![];
    put_str(&mut v, s);
    v
}

pub(crate) fn array_value(elem_ty: u32, items: &[Vec<u8>]) -> Vec<u8> {
    let mut v = elem_ty.to_le_bytes().to_vec();
    v.extend((items.len() as u64).to_le_bytes());
    items.iter().for_each(|i| v.extend(i));
    v
}

/// A temp file deleted on drop, so tests can go through `GgufFile::open`.
struct TempFile(PathBuf);

impl TempFile {
    fn new(bytes: &[u8]) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("opdlm-gguf-test-{}-{n}.gguf", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(crate) fn open(bytes: &[u8]) -> Result<GgufFile, GgufError> {
    GgufFile::open(&TempFile::new(bytes).0)
}

fn f32_bytes(xs: &[f32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// One F32 tensor of dims [3, 2] (row-major shape [2, 3]) and one Q4_0 row.
fn sample() -> Writer {
    let mut q4 = half::f16::from_f32(2.0).to_le_bytes().to_vec();
    q4.extend([0x98; 16]); // low nibble 8 -> 0, high nibble 9 -> 1
    Writer::new()
        .kv("general.architecture", 8, &str_value("llama"))
        .kv("llama.block_count", 4, &30u32.to_le_bytes())
        .tensor("w", &[3, 2], 0, &f32_bytes(&[1., 2., 3., 4., 5., 6.]))
        .tensor("q", &[32], 2, &q4)
}

#[test]
fn metadata_roundtrip() {
    let nested = array_value(9, &[array_value(8, &[str_value("a")]), array_value(8, &[])]);
    let bytes = Writer::new()
        .kv("u8", 0, &[200])
        .kv("i8", 1, &[0xFF])
        .kv("u16", 2, &500u16.to_le_bytes())
        .kv("i16", 3, &(-500i16).to_le_bytes())
        .kv("u32", 4, &70_000u32.to_le_bytes())
        .kv("i32", 5, &(-7i32).to_le_bytes())
        .kv("f32", 6, &1.5f32.to_le_bytes())
        .kv("bool", 7, &[1])
        .kv("str", 8, &str_value("héllo"))
        .kv("strs", 9, &array_value(8, &[str_value("x"), str_value("yz")]))
        .kv("ints", 9, &array_value(4, &[1u32.to_le_bytes().to_vec(), 2u32.to_le_bytes().to_vec()]))
        .kv("nested", 9, &nested)
        .kv("u64", 10, &u64::MAX.to_le_bytes())
        .kv("i64", 11, &(-1i64).to_le_bytes())
        .kv("f64", 12, &0.25f64.to_le_bytes())
        .finish();
    let g = open(&bytes).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.metadata.len(), 15);
    assert_eq!(g.get("i8"), Some(&GgufValue::I8(-1)));
    assert_eq!(g.get("i16"), Some(&GgufValue::I16(-500)));
    assert_eq!(g.get("bool"), Some(&GgufValue::Bool(true)));
    assert_eq!(g.get("i64"), Some(&GgufValue::I64(-1)));
    assert_eq!(g.get_u64("u8").unwrap(), 200);
    assert_eq!(g.get_u64("u16").unwrap(), 500);
    assert_eq!(g.get_u64("u32").unwrap(), 70_000);
    assert_eq!(g.get_u64("u64").unwrap(), u64::MAX);
    assert_eq!(g.get_f64("f32").unwrap(), 1.5);
    assert_eq!(g.get_f64("f64").unwrap(), 0.25);
    assert_eq!(g.get_str("str").unwrap(), "héllo");
    assert_eq!(g.get_str_array("strs").unwrap(), ["x", "yz"]);
    let GgufValue::Array(outer) = g.get("nested").unwrap() else { panic!("not an array") };
    assert_eq!(outer[0], GgufValue::Array(vec![GgufValue::String("a".into())]));
    assert_eq!(outer[1], GgufValue::Array(vec![]));

    for (result, key) in [
        (g.get_u64("i32").map(drop), "i32"), // negative
        (g.get_u64("str").map(drop), "str"),
        (g.get_f64("u32").map(drop), "u32"),
        (g.get_str("strs").map(drop), "strs"),
        (g.get_str_array("ints").map(drop), "ints"),
    ] {
        let err = result.unwrap_err();
        assert!(matches!(&err, GgufError::WrongType { key: k, .. } if k == key), "{err}");
        assert!(err.to_string().contains(key));
    }
    let err = g.get_str("nope").unwrap_err();
    assert!(
        matches!(err, GgufError::MissingKey { .. }) && err.to_string().contains("'nope'"),
        "{err}"
    );
}

#[test]
fn tensors_roundtrip_v2_v3_and_alignment() {
    for (version, alignment) in [(2, 32), (3, 32), (3, 64)] {
        let mut w = sample();
        w.version = version;
        if alignment != 32 {
            w.alignment = alignment;
            w = w.kv("general.alignment", 4, &(alignment as u32).to_le_bytes());
        }
        let g = open(&w.finish()).unwrap();
        assert_eq!(g.version, version);
        assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
        assert_eq!(g.get_u64("llama.block_count").unwrap(), 30);
        let info = g.tensor_info("w").unwrap();
        assert_eq!((info.dims.as_slice(), info.ggml_type), (&[3, 2][..], GgmlType::F32));
        let (shape, values) = g.tensor_f32("w").unwrap();
        assert_eq!(shape, [2, 3]);
        assert_eq!(values, [1., 2., 3., 4., 5., 6.]);
        let (shape, values) = g.tensor_f32("q").unwrap();
        assert_eq!(shape, [32]);
        assert_eq!(values, [[0.0; 16], [2.0; 16]].concat());
        assert!(matches!(g.tensor_f32("missing"), Err(GgufError::MissingTensor { .. })));
    }
}

#[test]
fn bad_magic_and_version() {
    let err = open(b"GGML\x03\0\0\0").unwrap_err();
    assert!(matches!(&err, GgufError::BadMagic { found, .. } if found == b"GGML"), "{err}");
    assert!(err.to_string().contains("47, 47, 4d, 4c"), "{err}");
    let mut w = sample();
    w.version = 1;
    assert!(matches!(open(&w.finish()), Err(GgufError::UnsupportedVersion { version: 1, .. })));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = sample().finish();
    for len in 0..bytes.len() {
        let err = open(&bytes[..len]).unwrap_err();
        let ok = match err {
            GgufError::BadMagic { .. } => len < 4,
            GgufError::Truncated { .. } | GgufError::ImplausibleLength { .. } => true,
            GgufError::TensorPastEof { .. } => len > 100,
            _ => false,
        };
        assert!(ok, "cut at {len}: {err}");
    }
}

#[test]
fn implausible_lengths() {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.extend(u64::MAX.to_le_bytes()); // key length
    bytes.extend([0; 16]);
    let err = open(&bytes).unwrap_err();
    assert!(
        matches!(err, GgufError::ImplausibleLength { what: "metadata key", offset: 24, .. }),
        "{err}"
    );

    let huge = [&8u32.to_le_bytes()[..], &(1u64 << 40).to_le_bytes()].concat();
    let err = open(&Writer::new().kv("a", 9, &huge).finish()).unwrap_err();
    assert!(matches!(err, GgufError::ImplausibleLength { what: "array", .. }), "{err}");

    let mut deep = array_value(4, &[]);
    for _ in 0..MAX_ARRAY_DEPTH {
        deep = array_value(9, &[deep]);
    }
    let err = open(&Writer::new().kv("deep", 9, &deep).finish()).unwrap_err();
    assert!(matches!(err, GgufError::Malformed { .. }), "{err}");
}

#[test]
fn tensor_past_eof() {
    let bytes = Writer::new().tensor("big", &[1000], 0, &[0; 16]).finish();
    let err = open(&bytes).unwrap_err();
    assert!(matches!(&err, GgufError::TensorPastEof { tensor, .. } if tensor == "big"), "{err}");
    assert!(err.to_string().contains("'big'"), "{err}");
    // Dims whose product overflows must not wrap around to "fits": they are rejected
    // with the header, even next to a 0 dim (such an empty tensor's shape product
    // overflowed usize once dequantised).
    for dims in [[u64::MAX; 4], [0, 1 << 40, 1 << 40, 1]] {
        let bytes = Writer::new().tensor("huge", &dims, 0, &[]).finish();
        let err = open(&bytes).unwrap_err();
        assert!(
            matches!(&err, GgufError::Malformed { msg, .. } if msg.contains("overflow a 64-bit element count")),
            "{err}"
        );
    }
    // A product that fits is checked against the file size.
    let bytes = Writer::new().tensor("huge", &[1 << 31, 1 << 31], 0, &[]).finish();
    assert!(matches!(open(&bytes), Err(GgufError::TensorPastEof { .. })));
}

#[test]
fn unsupported_type_and_bad_row_length() {
    let g = open(&Writer::new().tensor("odd", &[4], 77, &[0; 4]).finish()).unwrap();
    let err = g.tensor_f32("odd").unwrap_err();
    assert!(matches!(err, GgufError::UnsupportedType { type_id: 77, .. }), "{err}");
    assert!(err.to_string().contains("'odd'") && err.to_string().contains("77"), "{err}");

    let err = open(&Writer::new().tensor("r", &[16, 2], 2, &[0; 36]).finish()).unwrap_err();
    assert!(matches!(err, GgufError::BadRowLength { row_len: 16, block: 32, .. }), "{err}");
}

/// Deterministic byte flips over a valid file: any outcome but a panic.
#[test]
fn corrupted_bytes_never_panic() {
    let bytes = sample().finish();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..500 {
        let mut b = bytes.clone();
        for _ in 0..3 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed % b.len() as u64) as usize;
            b[i] = (seed >> 32) as u8;
        }
        if let Ok(g) = open(&b) {
            for t in &g.tensors {
                let _ = g.tensor_f32(&t.name);
            }
        }
    }
}

/// Runs only with `OPDLM_SMOLLM2_GGUF=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf`.
#[test]
fn real_smollm2_file() {
    let Ok(path) = std::env::var("OPDLM_SMOLLM2_GGUF") else {
        eprintln!("skipping: OPDLM_SMOLLM2_GGUF not set");
        return;
    };
    let g = GgufFile::open(Path::new(&path)).unwrap();
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get_u64("llama.block_count").unwrap(), 30);
    assert_eq!(g.get_f64("llama.rope.freq_base").unwrap(), 1e5);
    let (shape, values) = g.tensor_f32("token_embd.weight").unwrap();
    assert_eq!(shape, [49152, 576]);
    assert!(values.iter().all(|x| x.is_finite()));
    let (shape, values) = g.tensor_f32("blk.0.attn_q.weight").unwrap();
    assert_eq!(
        (shape.as_slice(), g.tensor_info("blk.0.attn_q.weight").unwrap().ggml_type),
        (&[576, 576][..], GgmlType::Q4_1)
    );
    assert!(values.iter().all(|x| x.is_finite()) && values.iter().any(|&x| x != 0.0));
}
