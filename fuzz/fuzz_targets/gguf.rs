//! GGUF reader: header/metadata/tensor directory parsing, every tensor's bytes and
//! dequantisation, the tokenizer rebuilt from `tokenizer.ggml.*`, and building the model
//! (config from `<arch>.*` metadata, weights applied). Any panic is a bug: bad input must
//! come back as a `GgufError` / `LoadError`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use opdlm_model::load::gguf::GgufFile;
use opdlm_model::load::gguf_model;

type B = burn::backend::NdArray<f32>;

fuzz_target!(|data: &[u8]| {
    let Ok(gguf) = GgufFile::from_bytes(Path::new("fuzz.gguf"), data.to_vec()) else {
        return;
    };
    for t in &gguf.tensors {
        let _ = gguf.tensor_bytes(&t.name);
        if let Ok((shape, values)) = gguf.tensor_f32(&t.name) {
            assert_eq!(shape.iter().product::<usize>(), values.len(), "tensor {}", t.name);
        }
    }
    let _ = gguf.get_str("general.architecture");
    let _ = gguf.get_str_array("tokenizer.ggml.tokens");
    if let Ok(tok) = gguf_model::tokenizer(&gguf) {
        for text in ["ab ab12 <|im_start|>!", "", "\u{0}\u{ffff}é 123456"] {
            if let Ok(ids) = tok.encode(text) {
                let _ = tok.decode(&ids);
            }
        }
        let _ = tok.decode(&[0, 1, 2, u32::MAX]);
    }
    let _ = gguf_model::model_from_gguf::<B>(&gguf, &Default::default());
});
