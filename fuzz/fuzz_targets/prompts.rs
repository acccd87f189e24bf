//! JSONL prompt reader: every line parsed and validated, errors name the line. Input
//! that is not UTF-8 goes through `read_prompt_file`, which must reject it cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opdlm_inference::prompts::{parse_prompts, read_prompt_file};

fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        Ok(text) => {
            if let Ok(records) = parse_prompts(text, "fuzz.jsonl") {
                for r in &records {
                    assert!(!r.messages().is_empty(), "accepted a record with no turns: {r:?}");
                }
            }
        }
        Err(_) => {
            let path = std::env::temp_dir().join(format!("opdlm-fuzz-prompts-{}.jsonl", std::process::id()));
            std::fs::write(&path, data).unwrap();
            assert!(read_prompt_file(&path).is_err(), "accepted a file that is not UTF-8");
        }
    }
});
