//! The embed backend over the real all-MiniLM-L6-v2 weights, with both engines
//! (ONNX Runtime on the exported graph, candle on the safetensors): vectors
//! against an independent numpy implementation
//! (scripts/make_embedding_reference.py), batch invariance, truncation, and the
//! errors a client or an operator sees. Tests that need the weights skip with a
//! printed reason when scripts/fetch-models has not run, and fail under CI
//! (which runs it first).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use inferd_backend_embed::{EmbedBackend, OnnxRuntimeBackend};
use inferd_core::{Backend, BackendError, LoadSpec, LoadedModel, ModelConfig, Tensor, TensorData};
use serde::Deserialize;

#[path = "../../../tests/prerequisite.rs"]
mod prerequisite;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_dir() -> PathBuf {
    workspace().join("models/minilm")
}

fn config() -> ModelConfig {
    let text = std::fs::read_to_string(model_dir().join("model.toml")).unwrap();
    ModelConfig::from_toml(&text).unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Engine {
    OnnxRuntime,
    Candle,
}

const ENGINES: [Engine; 2] = [Engine::OnnxRuntime, Engine::Candle];

fn load_from(
    engine: Engine,
    version_dir: &Path,
    config: &ModelConfig,
) -> Result<Box<dyn LoadedModel>, BackendError> {
    let spec = LoadSpec {
        name: "minilm",
        version: 1,
        model_dir: &model_dir(),
        version_dir,
        config,
    };
    match engine {
        Engine::Candle => EmbedBackend.load(&spec),
        Engine::OnnxRuntime => OnnxRuntimeBackend {
            library: workspace().join(inferd_backend_embed::DEFAULT_ONNXRUNTIME_LIB),
        }
        .load(&spec),
    }
}

/// Whether scripts/fetch-models has put what `engine` needs in place.
fn fetched(engine: Engine) -> bool {
    let needs = match engine {
        Engine::Candle => vec![model_dir().join("1/model.safetensors")],
        Engine::OnnxRuntime => vec![
            model_dir().join("1/model.onnx"),
            workspace().join(inferd_backend_embed::DEFAULT_ONNXRUNTIME_LIB),
        ],
    };
    let here = needs.iter().all(|p| p.is_file());
    if !here {
        prerequisite::missing(&format!(
            "{engine:?} needs {needs:?}, which are missing; run scripts/fetch-models"
        ));
    }
    here
}

/// The model as `models/minilm/model.toml` configures it, loaded once per engine.
fn model(engine: Engine) -> Option<&'static dyn LoadedModel> {
    static MODELS: [OnceLock<Box<dyn LoadedModel>>; 2] = [OnceLock::new(), OnceLock::new()];
    if !fetched(engine) {
        return None;
    }
    Some(
        MODELS[engine as usize]
            .get_or_init(|| load_from(engine, &model_dir().join("1"), &config()).unwrap())
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
    let r = reference();
    let sentences: Vec<&str> = r.sentences.iter().map(String::as_str).collect();
    for engine in ENGINES {
        let Some(m) = model(engine) else { continue };
        let (vectors, tokens) = embed(m, &sentences);
        assert_eq!(
            tokens, r.tokens,
            "{engine:?}: token counts after truncation to 256"
        );
        for (i, (got, want)) in vectors.iter().zip(&r.vectors).enumerate() {
            let c = cosine(got, want);
            assert!(
                c >= 0.9999,
                "{engine:?}, sentence {i} ({:?}): cosine {c}",
                r.sentences[i]
            );
            let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!(
                (norm - 1.0).abs() < 1e-5,
                "{engine:?}, sentence {i}: norm {norm}"
            );
        }
    }
}

#[test]
fn both_engines_give_the_same_vectors_for_a_batch() {
    let (Some(ort), Some(candle)) = (model(Engine::OnnxRuntime), model(Engine::Candle)) else {
        return;
    };
    let texts: Vec<String> = (0..40)
        .map(|i| format!("Sentence {i} says {} things.", "several ".repeat(i % 7)))
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (a, ta) = embed(ort, &texts);
    let (b, tb) = embed(candle, &texts);
    assert_eq!(ta, tb);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let c = cosine(x, y);
        assert!(c >= 0.99999, "text {i}: cosine {c} between the engines");
    }
}

#[test]
fn a_text_gets_the_same_vector_alone_and_in_a_batch_of_32() {
    for engine in ENGINES {
        if let Some(m) = model(engine) {
            same_alone_and_batched(engine, m);
        }
    }
}

fn same_alone_and_batched(engine: Engine, m: &dyn LoadedModel) {
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
            "{engine:?}, {s:?}: max abs diff {diff} alone vs at {at} in the batch"
        );
    }
}

#[test]
fn an_empty_batch_gives_empty_outputs() {
    let Some(m) = model(Engine::OnnxRuntime) else {
        return;
    };
    let out = m.run(vec![texts(&[])]).unwrap();
    assert_eq!(out[0].shape(), &[0, 384]);
    assert_eq!(out[1].shape(), &[0]);
}

#[test]
fn non_utf8_text_is_refused_by_index() {
    let Some(m) = model(Engine::OnnxRuntime) else {
        return;
    };
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
    for engine in ENGINES {
        if !fetched(engine) {
            continue;
        }
        let long = "word ".repeat(600);
        let with = |max: &str| {
            let mut c = config();
            c.parameters.insert("max_tokens".into(), max.into());
            load_from(engine, &model_dir().join("1"), &c)
        };
        assert_eq!(embed(with("8").unwrap().as_ref(), &[&long, "hi"]).1, [8, 3]);
        assert_eq!(embed(with("100000").unwrap().as_ref(), &[&long]).1, [512]);
        let Err(BackendError::Load(msg)) = with("1") else {
            panic!("{engine:?}: max_tokens = 1 must be refused")
        };
        assert!(msg.contains("max_tokens"), "{msg}");
    }
}

#[test]
fn a_bad_thread_count_is_refused() {
    if !fetched(Engine::OnnxRuntime) {
        return;
    }
    let mut c = config();
    c.parameters.insert("threads".into(), "0".into());
    let Err(BackendError::Load(msg)) = load_from(Engine::OnnxRuntime, &model_dir().join("1"), &c)
    else {
        panic!("threads = 0 must be refused")
    };
    assert!(msg.contains("threads must be"), "{msg}");
}

#[test]
fn a_missing_file_names_itself_and_the_fetch_script() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("embed-missing");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = config();
    let err = |engine, dir: &Path| match load_from(engine, dir, &config) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("loaded from {}", dir.display()),
    };
    let missing = |file: &str| {
        format!(
            "cannot load: {file} is missing in {}: run scripts/fetch-models",
            dir.display()
        )
    };
    assert_eq!(err(Engine::Candle, &dir), missing("model.safetensors"));
    assert_eq!(err(Engine::OnnxRuntime, &dir), missing("model.onnx"));
    for file in ["model.safetensors", "model.onnx", "config.json"] {
        std::fs::write(dir.join(file), b"{}").unwrap();
    }
    assert_eq!(err(Engine::Candle, &dir), missing("tokenizer.json"));
    assert_eq!(err(Engine::OnnxRuntime, &dir), missing("tokenizer.json"));
}

#[test]
fn a_missing_onnxruntime_library_is_named_with_the_fix() {
    if !fetched(Engine::Candle) {
        return;
    }
    // A copy of the version folder with a graph, so the library is the one thing missing.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("embed-no-lib");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["config.json", "tokenizer.json", "pooling.json"] {
        std::fs::copy(model_dir().join("1").join(file), dir.join(file)).unwrap();
    }
    std::fs::write(dir.join("model.onnx"), b"").unwrap();
    let library = dir.join("libonnxruntime.so");
    let err = OnnxRuntimeBackend {
        library: library.clone(),
    }
    .load(&LoadSpec {
        name: "minilm",
        version: 1,
        model_dir: &model_dir(),
        version_dir: &dir,
        config: &config(),
    })
    .err()
    .expect("loaded without a library")
    .to_string();
    // Once a library is loaded in this process (another test), that one is named instead.
    assert!(
        err.contains(&format!(
            "{} is missing: run scripts/fetch-models",
            library.display()
        )) || err.contains("ONNX Runtime is already loaded from"),
        "{err}"
    );
}
