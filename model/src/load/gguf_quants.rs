//! ggml tensor types and their dequantisation to f32.
//!
//! Block layouts and arithmetic follow ggml's `dequantize_row_*` reference
//! code (ggml-quants.c) so that results match llama.cpp bit for bit: scales are
//! widened from f16 to f32 first and every product is computed in f32.

use half::{bf16, f16};

/// A ggml tensor element type, by its on-disk id.
#[allow(non_camel_case_types)] // names match ggml's so they can be grepped for
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// Plain f32.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// 4-bit, blocks of 32 with an f16 scale.
    Q4_0,
    /// 4-bit, blocks of 32 with an f16 scale and minimum.
    Q4_1,
    /// 5-bit, blocks of 32 with an f16 scale.
    Q5_0,
    /// 5-bit, blocks of 32 with an f16 scale and minimum.
    Q5_1,
    /// 8-bit, blocks of 32 with an f16 scale.
    Q8_0,
    /// 2-bit K-quant (256-element super-blocks).
    Q2_K,
    /// 3-bit K-quant.
    Q3_K,
    /// 4-bit K-quant.
    Q4_K,
    /// 5-bit K-quant.
    Q5_K,
    /// 6-bit K-quant.
    Q6_K,
    /// 8-bit K-quant (llama.cpp's intermediate format for dot products).
    Q8_K,
    /// A type id this reader cannot decode (kept so the error can name it).
    Other(u32),
}

/// Elements per K-quant super-block.
const QK_K: usize = 256;

impl GgmlType {
    /// The type stored under ggml's numeric id (unknown ids become [`Self::Other`]).
    pub fn from_id(id: u32) -> Self {
        match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            10 => Self::Q2_K,
            11 => Self::Q3_K,
            12 => Self::Q4_K,
            13 => Self::Q5_K,
            14 => Self::Q6_K,
            15 => Self::Q8_K,
            30 => Self::BF16,
            other => Self::Other(other),
        }
    }

    /// ggml's numeric id of this type, as written in a GGUF tensor directory.
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q2_K => 10,
            Self::Q3_K => 11,
            Self::Q4_K => 12,
            Self::Q5_K => 13,
            Self::Q6_K => 14,
            Self::Q8_K => 15,
            Self::BF16 => 30,
            Self::Other(id) => id,
        }
    }

    /// `(elements per block, bytes per block)`, or `None` for undecodable types.
    pub fn block_layout(self) -> Option<(usize, usize)> {
        Some(match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 2 + 16),
            Self::Q4_1 => (32, 2 + 2 + 16),
            Self::Q5_0 => (32, 2 + 4 + 16),
            Self::Q5_1 => (32, 2 + 2 + 4 + 16),
            Self::Q8_0 => (32, 2 + 32),
            Self::Q2_K => (QK_K, 16 + 64 + 2 + 2),
            Self::Q3_K => (QK_K, 32 + 64 + 12 + 2),
            Self::Q4_K => (QK_K, 2 + 2 + 12 + 128),
            Self::Q5_K => (QK_K, 2 + 2 + 12 + 32 + 128),
            Self::Q6_K => (QK_K, 128 + 64 + 16 + 2),
            Self::Q8_K => (QK_K, 4 + QK_K + 2 * (QK_K / 16)),
            Self::Other(_) => return None,
        })
    }
}

/// Decodes whole blocks of `ty` to f32. Returns `None` when the type cannot be
/// decoded; a trailing partial block is ignored (callers size `data` exactly).
pub fn dequantize(ty: GgmlType, data: &[u8]) -> Option<Vec<f32>> {
    let (qk, bytes) = ty.block_layout()?;
    let decode: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::F32 => |b, y| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => |b, y| y[0] = f16_at(b, 0),
        GgmlType::BF16 => |b, y| y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q5_1 => q5_1,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q2_K => q2_k,
        GgmlType::Q3_K => q3_k,
        GgmlType::Q4_K => q4_k,
        GgmlType::Q5_K => q5_k,
        GgmlType::Q6_K => q6_k,
        GgmlType::Q8_K => q8_k,
        GgmlType::Other(_) => return None,
    };
    let n_blocks = data.len() / bytes;
    let mut out = vec![0f32; n_blocks * qk];
    for (block, y) in data.chunks_exact(bytes).zip(out.chunks_exact_mut(qk)) {
        decode(block, y);
    }
    Some(out)
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Low nibbles are elements 0..16, high nibbles 16..32, centred at 8.
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (j, &q) in b[2..18].iter().enumerate() {
        y[j] = ((q & 0xF) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for (j, &q) in b[4..20].iter().enumerate() {
        y[j] = (q & 0xF) as f32 * d + m;
        y[j + 16] = (q >> 4) as f32 * d + m;
    }
}

/// Bit j of the 32-bit `qh` is the fifth bit of element j.
fn q5_values<'a>(qh: &[u8], qs: &'a [u8]) -> impl Iterator<Item = (usize, u8, u8)> + 'a {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    qs.iter().enumerate().map(move |(j, &q)| {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        (j, (q & 0xF) | h0, (q >> 4) | h1)
    })
}

fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (j, x0, x1) in q5_values(&b[2..6], &b[6..22]) {
        y[j] = (x0 as i32 - 16) as f32 * d;
        y[j + 16] = (x1 as i32 - 16) as f32 * d;
    }
}

fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for (j, x0, x1) in q5_values(&b[4..8], &b[8..24]) {
        y[j] = x0 as f32 * d + m;
        y[j + 16] = x1 as f32 * d + m;
    }
}

fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (yj, &q) in y.iter_mut().zip(&b[2..34]) {
        *yj = q as i8 as f32 * d;
    }
}

/// Layout: scales[16] (low nibble scale, high nibble min), qs[64], d, dmin.
fn q2_k(b: &[u8], y: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    let mut is = 0;
    for (half, q) in qs.chunks_exact(32).enumerate() {
        for j in 0..4 {
            let shift = 2 * j;
            for sub in 0..2 {
                let sc = scales[is];
                is += 1;
                let (dl, ml) = (d * (sc & 0xF) as f32, dmin * (sc >> 4) as f32);
                let base = half * 128 + j * 32 + sub * 16;
                for l in 0..16 {
                    let v = (q[sub * 16 + l] >> shift) & 3;
                    y[base + l] = dl * v as f32 - ml;
                }
            }
        }
    }
}

/// Layout: hmask[32], qs[64], scales[12] (sixteen 6-bit values), d.
fn q3_k(b: &[u8], y: &mut [f32]) {
    let (hmask, qs, packed) = (&b[0..32], &b[32..96], &b[96..108]);
    let d_all = f16_at(b, 108);
    // Unpack: low 4 bits come from bytes 0..8 (nibbles), high 2 bits from 8..12.
    let mut scales = [0i8; 16];
    for (i, s) in scales.iter_mut().enumerate() {
        let low = if i < 8 { packed[i] & 0xF } else { packed[i - 8] >> 4 };
        let high = (packed[8 + i % 4] >> (2 * (i / 4))) & 3;
        *s = ((low | (high << 4)) as i32 - 32) as i8;
    }
    let mut is = 0;
    let mut m = 1u8;
    for (half, q) in qs.chunks_exact(32).enumerate() {
        for j in 0..4 {
            let shift = 2 * j;
            for sub in 0..2 {
                let dl = d_all * scales[is] as f32;
                is += 1;
                let base = half * 128 + j * 32 + sub * 16;
                for l in 0..16 {
                    let k = sub * 16 + l;
                    let lo = ((q[k] >> shift) & 3) as i32;
                    let v = lo - if hmask[k] & m != 0 { 0 } else { 4 };
                    y[base + l] = dl * v as f32;
                }
            }
            m <<= 1;
        }
    }
}

/// ggml's `get_scale_min_k4`: eight (scale, min) pairs packed as 6 bits each.
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    };
    (sc as f32, m as f32)
}

/// Layout: d, dmin, scales[12], qs[128]; each 64 elements share one qs chunk.
fn q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qs) = (&b[4..16], &b[16..144]);
    for (j, q) in qs.chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * j, scales);
        let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let y = &mut y[j * 64..];
        for (l, &v) in q.iter().enumerate() {
            y[l] = d1 * (v & 0xF) as f32 - m1;
            y[l + 32] = d2 * (v >> 4) as f32 - m2;
        }
    }
}

/// Layout: d, dmin, scales[12], qh[32], qs[128]; qh holds the fifth bits.
fn q5_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
    for (j, q) in qs.chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * j, scales);
        let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
        let y = &mut y[j * 64..];
        for (l, &v) in q.iter().enumerate() {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * ((v & 0xF) + h1) as f32 - m1;
            y[l + 32] = d2 * ((v >> 4) + h2) as f32 - m2;
        }
    }
}

/// Layout: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] i8, d.
fn q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    for n in 0..2 {
        let ql = &b[n * 64..n * 64 + 64];
        let qh = &b[128 + n * 32..128 + n * 32 + 32];
        let sc = &b[192 + n * 8..192 + n * 8 + 8];
        let y = &mut y[n * 128..];
        for l in 0..32 {
            let is = l / 16;
            let h = qh[l];
            let q1 = ((ql[l] & 0xF) | ((h & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((h >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((h >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) as i32 - 32;
            let s = |k: usize| d * sc[is + k] as i8 as f32;
            y[l] = s(0) * q1 as f32;
            y[l + 32] = s(2) * q2 as f32;
            y[l + 64] = s(4) * q3 as f32;
            y[l + 96] = s(6) * q4 as f32;
        }
    }
}

/// Layout: d as f32, qs[256] i8, bsums[16] i16 (only used for dot products).
fn q8_k(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (yj, &q) in y.iter_mut().zip(&b[4..4 + QK_K]) {
        *yj = q as i8 as f32 * d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16b(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    fn decode(ty: GgmlType, block: &[u8]) -> Vec<f32> {
        assert_eq!(block.len(), ty.block_layout().unwrap().1, "test block size");
        dequantize(ty, block).unwrap()
    }

    #[test]
    fn type_ids_roundtrip() {
        for id in 0..40 {
            assert_eq!(GgmlType::from_id(id).id(), id);
        }
        assert_eq!(GgmlType::from_id(99), GgmlType::Other(99));
        assert_eq!(dequantize(GgmlType::Other(99), &[0; 8]), None);
    }

    #[test]
    fn plain_floats() {
        let f32s: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(dequantize(GgmlType::F32, &f32s).unwrap(), [1.5, -2.0]);
        let f16s = [f16b(0.25), f16b(-3.0)].concat();
        assert_eq!(dequantize(GgmlType::F16, &f16s).unwrap(), [0.25, -3.0]);
        let bf16s =
            [bf16::from_f32(0.5).to_le_bytes(), bf16::from_f32(-8.0).to_le_bytes()].concat();
        assert_eq!(dequantize(GgmlType::BF16, &bf16s).unwrap(), [0.5, -8.0]);
    }

    #[test]
    fn q4_0_block() {
        // qs[j]: low nibble j (element j), high nibble 15-j (element j+16).
        let qs: Vec<u8> = (0..16u8).map(|j| j | ((15 - j) << 4)).collect();
        let y = decode(GgmlType::Q4_0, &[&f16b(0.5)[..], &qs].concat());
        for j in 0..16 {
            assert_eq!(y[j], (j as f32 - 8.0) * 0.5);
            assert_eq!(y[j + 16], (7.0 - j as f32) * 0.5);
        }
    }

    #[test]
    fn q4_1_block() {
        let qs: Vec<u8> = (0..16u8).map(|j| j | ((15 - j) << 4)).collect();
        let y = decode(GgmlType::Q4_1, &[&f16b(0.25)[..], &f16b(-1.0), &qs].concat());
        for j in 0..16 {
            assert_eq!(y[j], j as f32 * 0.25 - 1.0);
            assert_eq!(y[j + 16], (15 - j) as f32 * 0.25 - 1.0);
        }
    }

    /// qh bit 0 is element 0's fifth bit, bit 16 is element 16's; every nibble
    /// pair is (low 1, high 2).
    fn q5_payload() -> Vec<u8> {
        [&0x0001_0001u32.to_le_bytes()[..], &[0x21; 16]].concat()
    }

    #[test]
    fn q5_0_block() {
        let y = decode(GgmlType::Q5_0, &[&f16b(1.0)[..], &q5_payload()].concat());
        let mut want = [vec![-15.0; 16], vec![-14.0; 16]].concat();
        want[0] = 1.0; // 1 + 16 - 16
        want[16] = 2.0; // 2 + 16 - 16
        assert_eq!(y, want);
    }

    #[test]
    fn q5_1_block() {
        let y = decode(GgmlType::Q5_1, &[&f16b(0.5)[..], &f16b(1.0), &q5_payload()].concat());
        let mut want = [vec![1.5; 16], vec![2.0; 16]].concat();
        want[0] = 17.0 * 0.5 + 1.0;
        want[16] = 18.0 * 0.5 + 1.0;
        assert_eq!(y, want);
    }

    #[test]
    fn q8_0_block() {
        let qs: Vec<u8> = (0..32).map(|j| (j as i8 - 16) as u8).collect();
        let y = decode(GgmlType::Q8_0, &[&f16b(0.5)[..], &qs].concat());
        assert_eq!(y, (0..32).map(|j| (j as f32 - 16.0) * 0.5).collect::<Vec<_>>());
    }

    /// Element e of a 256-block as (half, j, sub): 128-element half, 32-element
    /// group j (the 2-bit shift index), 16-element sub-block within the group.
    fn k_pos(e: usize) -> (usize, usize, usize) {
        (e / 128, (e % 128) / 32, (e % 32) / 16)
    }

    #[test]
    fn q2_k_block() {
        // scale byte i: scale i (low nibble), min 1 (high nibble);
        // qs byte 0b11_10_01_00 makes the 2-bit value equal the group index j.
        let scales: Vec<u8> = (0..16u8).map(|i| i | 0x10).collect();
        let block = [&scales[..], &[0xE4; 64], &f16b(0.5), &f16b(2.0)].concat();
        let y = decode(GgmlType::Q2_K, &block);
        for (e, &v) in y.iter().enumerate() {
            let (half, j, sub) = k_pos(e);
            let sc = (half * 8 + j * 2 + sub) as f32;
            assert_eq!(v, 0.5 * sc * j as f32 - 2.0, "element {e}");
        }
    }

    #[test]
    fn q3_k_block() {
        // All 6-bit scales are 33 (low nibble 1, high bits 2), except scale 13
        // = 40 (low nibble 8, from packed[5]'s high nibble). hmask bits 0..4 set
        // means the first half is not offset by -4, the second half is.
        let mut packed = [0x11u8; 12];
        packed[5] = 0x81;
        packed[8..].fill(0xAA);
        let block = [&[0x0Fu8; 32][..], &[0xE4; 64], &packed, &f16b(0.5)].concat();
        let y = decode(GgmlType::Q3_K, &block);
        for (e, &v) in y.iter().enumerate() {
            let (half, j, sub) = k_pos(e);
            let scale = if half * 8 + j * 2 + sub == 13 { 8.0 } else { 1.0 };
            let q = j as f32 - if half == 0 { 0.0 } else { 4.0 };
            assert_eq!(v, 0.5 * scale * q, "element {e}");
        }
    }

    /// Packed scales/mins for Q4_K/Q5_K: scales [1,2,3,4,21,5,5,5], mins
    /// [1,1,1,1,2,2,2,2]; scale 4 takes its top bits from byte 0's top bits.
    const K4_SCALES: [u8; 12] = [0x41, 2, 3, 4, 1, 1, 1, 1, 0x25, 0x25, 0x25, 0x25];
    const K4_SC: [f32; 8] = [1.0, 2.0, 3.0, 4.0, 21.0, 5.0, 5.0, 5.0];
    const K4_MIN: [f32; 8] = [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0];

    #[test]
    fn q4_k_block() {
        // qs 0x31: sub-blocks using low nibbles (even) see 1, high (odd) see 3.
        let block = [&f16b(1.0)[..], &f16b(0.5), &K4_SCALES, &[0x31; 128]].concat();
        let y = decode(GgmlType::Q4_K, &block);
        for (e, &v) in y.iter().enumerate() {
            let s = e / 32;
            let q = if s % 2 == 0 { 1.0 } else { 3.0 };
            assert_eq!(v, K4_SC[s] * q - 0.5 * K4_MIN[s], "element {e}");
        }
    }

    #[test]
    fn q5_k_block() {
        // qh bit s is sub-block s's fifth bit: set it for sub-block 7 everywhere
        // and for sub-block 0 at element 0 only.
        let mut qh = [0x80u8; 32];
        qh[0] |= 1;
        let block = [&f16b(1.0)[..], &f16b(0.5), &K4_SCALES, &qh, &[0x31; 128]].concat();
        let y = decode(GgmlType::Q5_K, &block);
        for (e, &v) in y.iter().enumerate() {
            let s = e / 32;
            let mut q = if s % 2 == 0 { 1.0 } else { 3.0 };
            if s == 7 || e == 0 {
                q += 16.0;
            }
            assert_eq!(v, K4_SC[s] * q - 0.5 * K4_MIN[s], "element {e}");
        }
    }

    #[test]
    fn q6_k_block() {
        // ql 0x21 (low 1, high 2); qh 0b11_10_01_00 gives the four 32-element
        // groups of each half high bits 0,1,2,3: q = 1-32, 17-32, 34-32, 50-32.
        let scales: Vec<u8> = (0..16).map(|i| (i as i8 - 8) as u8).collect();
        let block = [&[0x21u8; 128][..], &[0xE4; 64], &scales, &f16b(0.5)].concat();
        let y = decode(GgmlType::Q6_K, &block);
        for (e, &v) in y.iter().enumerate() {
            let (half, g, is) = k_pos(e);
            let sc = (half * 8 + is + 2 * g) as f32 - 8.0;
            let q = [-31.0, -15.0, 2.0, 18.0][g];
            assert_eq!(v, 0.5 * sc * q, "element {e}");
        }
    }

    #[test]
    fn q8_k_block() {
        let qs: Vec<u8> = (0..=255u8).collect();
        let block = [&0.25f32.to_le_bytes()[..], &qs, &[0; 32]].concat();
        let y = decode(GgmlType::Q8_K, &block);
        assert_eq!(y, (0..=255u8).map(|q| q as i8 as f32 * 0.25).collect::<Vec<_>>());
    }
}
