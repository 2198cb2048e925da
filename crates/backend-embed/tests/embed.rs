//! The embed backend over the real all-MiniLM-L6-v2 weights: vectors against an
//! independent numpy implementation (scripts/make_embedding_reference.py), batch
//! invariance, truncation, and the errors a client or an operator sees. Tests that
//! need the weights skip with a printed reason when scripts/fetch-models has not
//! run, and fail under CI (which runs it first).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use inferd_backend_embed::EmbedBackend;
use inferd_core::{Backend, BackendError, LoadSpec, LoadedModel, ModelConfig, Tensor, TensorData};
use serde::Deserialize;

#[path = "../../../tests/prerequisite.rs"]
mod prerequisite;

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/minilm")
}

fn config() -> ModelConfig {
    let text = std::fs::read_to_string(model_dir().join("model.toml")).unwrap();
    ModelConfig::from_toml(&text).unwrap()
}

fn load_from(
    version_dir: &Path,
    config: &ModelConfig,
) -> Result<Box<dyn LoadedModel>, BackendError> {
    EmbedBackend.load(&LoadSpec {
        name: "minilm",
        version: 1,
        model_dir: &model_dir(),
        version_dir,
        config,
    })
}

fn fetched() -> bool {
    let here = model_dir().join("1/model.safetensors").is_file();
    if !here {
        prerequisite::missing("the MiniLM weights are missing; run scripts/fetch-models");
    }
    here
}

/// The model as `models/minilm/model.toml` configures it, loaded once.
fn model() -> Option<&'static dyn LoadedModel> {
    static MODEL: OnceLock<Box<dyn LoadedModel>> = OnceLock::new();
    if !fetched() {
        return None;
    }
    Some(
        MODEL
            .get_or_init(|| load_from(&model_dir().join("1"), &config()).unwrap())
            .as_ref(),
    )
}

fn texts(items: &[&str]) -> Tensor {
    let bytes = items.iter().map(|s| s.as_bytes().to_vec()).collect();
    Tensor::new("text", vec![items.len()], TensorData::Bytes(bytes)).unwrap()
}

/// Runs texts through a model: one vector per text, and token counts.
fn embed(m: &dyn LoadedModel, items: &[&str]) -> (Vec<Vec<f32>>, Vec<i64>) {
    let out = m.run(vec![texts(items)]).unwrap();
    assert_eq!(out[0].name, "embedding");
    assert_eq!(out[0].shape(), &[items.len(), 384]);
    assert_eq!(out[1].shape(), &[items.len()]);
    let (TensorData::F32(v), TensorData::I64(tokens)) = (out[0].data(), out[1].data()) else {
        panic!("wrong output types: {out:?}");
    };
    (v.chunks(384).map(<[f32]>::to_vec).collect(), tokens.clone())
}

#[derive(Deserialize)]
struct Reference {
    sentences: Vec<String>,
    tokens: Vec<i64>,
    vectors: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/minilm_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(p, q)| f64::from(*p) * f64::from(*q))
            .sum::<f64>()
    };
    dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
}

#[test]
fn vectors_match_the_numpy_reference() {
    let Some(m) = model() else { return };
    let r = reference();
    let sentences: Vec<&str> = r.sentences.iter().map(String::as_str).collect();
    let (vectors, tokens) = embed(m, &sentences);
    assert_eq!(tokens, r.tokens, "token counts after truncation to 256");
    for (i, (got, want)) in vectors.iter().zip(&r.vectors).enumerate() {
        let c = cosine(got, want);
        assert!(
            c >= 0.9999,
            "sentence {i} ({:?}): cosine {c}",
            r.sentences[i]
        );
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "sentence {i}: norm {norm}");
    }
}

#[test]
fn a_text_gets_the_same_vector_alone_and_in_a_batch_of_32() {
    let Some(m) = model() else { return };
    let r = reference();
    // 26 batch-mates of varied lengths, from one word to past the 256-token cut.
    let fillers: Vec<String> = (0..26)
        .map(|i| match i % 4 {
            0 => format!("word{i}"),
            1 => format!("A short filler sentence number {i}."),
            2 => "Padding must not leak into other rows. ".repeat(i),
            _ => "many tokens ".repeat(40 * i),
        })
        .collect();
    let mut batch: Vec<&str> = fillers.iter().map(String::as_str).collect();
    let positions = [0, 5, 11, 17, 24, 31];
    for (s, &at) in r.sentences.iter().zip(&positions) {
        batch.insert(at, s);
    }
    assert_eq!(batch.len(), 32);
    let (together, _) = embed(m, &batch);
    for (s, &at) in r.sentences.iter().zip(&positions) {
        let (alone, _) = embed(m, &[s]);
        let diff = alone[0]
            .iter()
            .zip(&together[at])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff < 1e-5,
            "{s:?}: max abs diff {diff} alone vs at {at} in the batch"
        );
    }
}

#[test]
fn an_empty_batch_gives_empty_outputs() {
    let Some(m) = model() else { return };
    let out = m.run(vec![texts(&[])]).unwrap();
    assert_eq!(out[0].shape(), &[0, 384]);
    assert_eq!(out[1].shape(), &[0]);
}

#[test]
fn non_utf8_text_is_refused_by_index() {
    let Some(m) = model() else { return };
    let bad = Tensor::new(
        "text",
        vec![2],
        TensorData::Bytes(vec![b"fine".to_vec(), vec![0x66, 0xff, 0xfe]]),
    )
    .unwrap();
    match m.run(vec![bad]) {
        Err(BackendError::Run(msg)) => {
            assert!(msg.starts_with("text 1 is not valid UTF-8"), "{msg}")
        }
        other => panic!("expected a run error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn max_tokens_truncates_and_is_capped_at_the_positions() {
    if !fetched() {
        return;
    }
    let long = "word ".repeat(600);
    let with = |max: &str| {
        let mut c = config();
        c.parameters.insert("max_tokens".into(), max.into());
        load_from(&model_dir().join("1"), &c)
    };
    assert_eq!(embed(with("8").unwrap().as_ref(), &[&long, "hi"]).1, [8, 3]);
    assert_eq!(embed(with("100000").unwrap().as_ref(), &[&long]).1, [512]);
    let Err(BackendError::Load(msg)) = with("1") else {
        panic!("max_tokens = 1 must be refused")
    };
    assert!(msg.contains("max_tokens"), "{msg}");
}

#[test]
fn a_missing_file_names_itself_and_the_fetch_script() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("embed-missing");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = config();
    let err = |dir: &Path| match load_from(dir, &config) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("loaded from {}", dir.display()),
    };
    assert_eq!(
        err(&dir),
        format!(
            "cannot load: model.safetensors is missing in {}: run scripts/fetch-models",
            dir.display()
        )
    );
    std::fs::write(dir.join("model.safetensors"), b"").unwrap();
    std::fs::write(dir.join("config.json"), b"{}").unwrap();
    assert_eq!(
        err(&dir),
        format!(
            "cannot load: tokenizer.json is missing in {}: run scripts/fetch-models",
            dir.display()
        )
    );
}
