//! Sentence embeddings (the `feature-extraction` task) on the CPU: BERT-family
//! models in the sentence-transformers layout, such as all-MiniLM-L6-v2, served
//! as `text` BYTES [-1] → `embedding` FP32 [-1, hidden] and `tokens` INT64 [-1].
//!
//! Two engines run the same encoder: ONNX Runtime (`backend = "onnxruntime"`,
//! on `model.onnx`; the faster, and the default for MiniLM) and candle
//! (`backend = "candle"`, on `model.safetensors`; pure Rust, no library to
//! fetch). Tokenization, batching and pooling are shared.
//!
//! A batch is tokenized, truncated to `max_tokens`, and sorted by length into
//! groups of similar lengths; each group is padded to its longest text and run
//! with an attention mask. Grouping spends less work on padding than padding
//! the whole batch to its longest text. The token states are mean-pooled under
//! the mask and L2-normalised, exactly as sentence-transformers' Transformer →
//! Pooling(mean) → Normalize pipeline does. Because padding is masked out of
//! both attention and pooling, a text's vector does not depend on the texts it
//! was batched with.
//!
//! The weights are too big to commit: `scripts/fetch-models` puts them in the
//! version folder, and a missing file makes the model unavailable with a reason
//! that says so, while the server goes on serving the others.

mod onnxruntime;
mod pooling;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor as CandleTensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use inferd_core::{
    Backend, BackendError, DataType, LoadSpec, LoadedModel, SpecType, Tensor, TensorData,
    TensorSpec,
};
use tokenizers::{Encoding, Tokenizer, TruncationParams};

use onnxruntime::OrtEncoder;

use pooling::mean_pool_normalize;

/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2; tokenizer.json
/// itself says 128, which sentence-transformers overrides.
pub const DEFAULT_MAX_TOKENS: usize = 256;

/// Where scripts/fetch-models puts ONNX Runtime's library, relative to the
/// server's working folder.
pub const DEFAULT_ONNXRUNTIME_LIB: &str = "lib/onnxruntime/libonnxruntime.so";

/// The model's files, in the order they are checked; the first one missing is
/// named in the error. `pooling.json` is optional (mean pooling without it).
const WEIGHTS: &str = "model.safetensors";
const GRAPH: &str = "model.onnx";
const CONFIG: &str = "config.json";
const TOKENIZER: &str = "tokenizer.json";
const POOLING: &str = "pooling.json";

/// Loads sentence-embedding models for `backend = "candle"`.
#[derive(Debug, Default)]
pub struct EmbedBackend;

impl Backend for EmbedBackend {
    fn name(&self) -> &'static str {
        "candle"
    }

    fn load(&self, spec: &LoadSpec<'_>) -> Result<Box<dyn LoadedModel>, BackendError> {
        Ok(Box::new(EmbedModel::load(spec, Engine::Candle)?))
    }
}

/// Loads sentence-embedding models for `backend = "onnxruntime"`, with ONNX
/// Runtime loaded from `library`.
#[derive(Debug)]
pub struct OnnxRuntimeBackend {
    pub library: PathBuf,
}

impl Backend for OnnxRuntimeBackend {
    fn name(&self) -> &'static str {
        "onnxruntime"
    }

    fn load(&self, spec: &LoadSpec<'_>) -> Result<Box<dyn LoadedModel>, BackendError> {
        Ok(Box::new(EmbedModel::load(
            spec,
            Engine::OnnxRuntime(&self.library),
        )?))
    }
}

enum Engine<'a> {
    Candle,
    OnnxRuntime(&'a Path),
}

enum Encoder {
    Candle(Box<BertModel>),
    OnnxRuntime(OrtEncoder),
}

/// A BERT encoder, its tokenizer, and the specs it serves.
struct EmbedModel {
    encoder: Encoder,
    tokenizer: Tokenizer,
    hidden: usize,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    memory: u64,
}

fn load_err(msg: impl Into<String>) -> BackendError {
    BackendError::Load(msg.into())
}

fn run_err(e: impl std::fmt::Display) -> BackendError {
    BackendError::Run(e.to_string())
}

impl EmbedModel {
    fn load(spec: &LoadSpec<'_>, engine: Engine<'_>) -> Result<EmbedModel, BackendError> {
        let dir = spec.version_dir;
        let weights = match engine {
            Engine::Candle => WEIGHTS,
            Engine::OnnxRuntime(_) => GRAPH,
        };
        for file in [weights, CONFIG, TOKENIZER] {
            if !dir.join(file).is_file() {
                return Err(load_err(format!(
                    "{file} is missing in {}: run scripts/fetch-models",
                    dir.display()
                )));
            }
        }
        let config: BertConfig = read_json(dir, CONFIG)?;
        if dir.join(POOLING).is_file() {
            pooling::check(&read_json(dir, POOLING)?, config.hidden_size).map_err(load_err)?;
        }
        let max_tokens = max_tokens(spec, config.max_position_embeddings)?;
        let tokenizer = tokenizer(dir, max_tokens)?;
        let memory = std::fs::metadata(dir.join(weights))
            .map_err(|e| load_err(format!("{weights}: {e}")))?
            .len();
        let encoder = match engine {
            Engine::Candle => Encoder::Candle(Box::new(candle_bert(dir, &config)?)),
            Engine::OnnxRuntime(library) => Encoder::OnnxRuntime(
                OrtEncoder::load(library, &dir.join(GRAPH), threads(spec)?).map_err(load_err)?,
            ),
        };

        let hidden = config.hidden_size;
        let model = EmbedModel {
            encoder,
            tokenizer,
            hidden,
            inputs: vec![spec_of("text", DataType::Bytes, vec![-1])],
            outputs: vec![
                spec_of("embedding", DataType::F32, vec![-1, hidden as i64]),
                spec_of("tokens", DataType::I64, vec![-1]),
            ],
            memory,
        };
        model.check_declared(spec)?;
        Ok(model)
    }

    /// A model.toml that declares tensors must declare the ones this model
    /// has: a wrong hidden size there would otherwise only show up as
    /// misshapen answers.
    fn check_declared(&self, spec: &LoadSpec<'_>) -> Result<(), BackendError> {
        let declared = [
            ("input", &spec.config.inputs, &self.inputs),
            ("output", &spec.config.outputs, &self.outputs),
        ];
        for (kind, declared, actual) in declared {
            for d in declared {
                if !actual.contains(d) {
                    let has: Vec<String> = actual.iter().map(describe).collect();
                    return Err(load_err(format!(
                        "model.toml declares {kind} {}, but this model has {}",
                        describe(d),
                        has.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    /// Embeds a batch of texts: `[n, hidden]` unit vectors and the number of
    /// tokens each text became (special tokens included, after truncation).
    fn embed(&self, texts: Vec<&str>) -> Result<(Vec<f32>, Vec<i64>), BackendError> {
        let encodings = self.tokenizer.encode_batch(texts, true).map_err(run_err)?;
        let tokens: Vec<i64> = encodings.iter().map(|e| e.len() as i64).collect();
        let mut vectors = vec![0.0f32; encodings.len() * self.hidden];
        for group in length_groups(&encodings) {
            let len = group.iter().map(|&i| encodings[i].len()).max().unwrap_or(0);
            let (ids, mask) = padded(&encodings, &group, len);
            let mut pool = |states: &[f32]| {
                let rows = states
                    .chunks_exact(len * self.hidden)
                    .zip(mask.chunks_exact(len));
                for (&i, (states, mask)) in group.iter().zip(rows) {
                    let out = &mut vectors[i * self.hidden..(i + 1) * self.hidden];
                    mean_pool_normalize(states, mask, out);
                }
            };
            self.forward(&ids, &mask, group.len(), len, &mut pool)?;
        }
        Ok((vectors, tokens))
    }

    /// Runs `ids` and `mask` [n, len] and hands the token states [n, len,
    /// hidden], flat, to `pool`, where the engine keeps them: no copy.
    fn forward(
        &self,
        ids: &[i64],
        mask: &[i64],
        n: usize,
        len: usize,
        pool: &mut dyn FnMut(&[f32]),
    ) -> Result<(), BackendError> {
        match &self.encoder {
            Encoder::OnnxRuntime(ort) => ort
                .forward(ids, mask, n, len, pool)
                .map_err(BackendError::Run),
            Encoder::Candle(bert) => {
                let forward = || -> candle_core::Result<Vec<f32>> {
                    let ids = CandleTensor::from_slice(ids, (n, len), &Device::Cpu)?;
                    let mask = CandleTensor::from_slice(mask, (n, len), &Device::Cpu)?;
                    // One segment: every token has type 0, as sentence-transformers sends.
                    let types = ids.zeros_like()?;
                    bert.forward(&ids, &types, Some(&mask))?
                        .flatten_all()?
                        .to_vec1()
                };
                pool(&forward().map_err(run_err)?);
                Ok(())
            }
        }
    }
}

/// The batch's indices sorted by token count and cut into groups whose
/// lengths differ by at most an eighth (and at least 2 tokens), so that
/// padding each group to its longest text wastes little. Per-run overhead is
/// tens of microseconds, far below what padding a 32-text batch of 10–30
/// tokens to its longest would cost.
fn length_groups(encodings: &[Encoding]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..encodings.len()).collect();
    order.sort_by_key(|&i| encodings[i].len());
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in order {
        let len = encodings[i].len();
        match groups.last_mut() {
            Some(group) if len <= slack(encodings[group[0]].len()) => group.push(i),
            _ => groups.push(vec![i]),
        }
    }
    groups
}

/// The longest text a group whose shortest has `first` tokens takes in.
fn slack(first: usize) -> usize {
    first + (first / 8).max(2)
}

/// The ids and attention mask of `group`, each padded with zeros to `len`.
fn padded(encodings: &[Encoding], group: &[usize], len: usize) -> (Vec<i64>, Vec<i64>) {
    let mut ids = vec![0i64; group.len() * len];
    let mut mask = vec![0i64; group.len() * len];
    for (row, &i) in group.iter().enumerate() {
        let e = &encodings[i];
        let at = row * len;
        for (to, &id) in ids[at..].iter_mut().zip(e.get_ids()) {
            *to = i64::from(id);
        }
        mask[at..at + e.len()].fill(1);
    }
    (ids, mask)
}

impl LoadedModel for EmbedModel {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }
    fn memory_bytes(&self) -> u64 {
        self.memory
    }
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let Some(TensorData::Bytes(texts)) = inputs.first().map(Tensor::data) else {
            return Err(BackendError::Run("input 'text' must be BYTES".into()));
        };
        let texts = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                std::str::from_utf8(t)
                    .map_err(|e| BackendError::Run(format!("text {i} is not valid UTF-8: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let n = texts.len();
        let (vectors, tokens) = if n == 0 {
            (Vec::new(), Vec::new())
        } else {
            self.embed(texts)?
        };
        let out = |i: usize, shape, data| {
            Tensor::new(self.outputs[i].name.clone(), shape, data).map_err(run_err)
        };
        Ok(vec![
            out(0, vec![n, self.hidden], TensorData::F32(vectors))?,
            out(1, vec![n], TensorData::I64(tokens))?,
        ])
    }
}

fn spec_of(name: &str, datatype: DataType, shape: Vec<i64>) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype: SpecType::Is(datatype),
        shape: Some(shape),
    }
}

fn describe(s: &TensorSpec) -> String {
    format!(
        "'{}' {} {:?}",
        s.name,
        s.datatype.as_str(),
        s.shape_or_any()
    )
}

fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, file: &str) -> Result<T, BackendError> {
    let text =
        std::fs::read_to_string(dir.join(file)).map_err(|e| load_err(format!("{file}: {e}")))?;
    serde_json::from_str(&text).map_err(|e| load_err(format!("{file}: {e}")))
}

/// `[parameters] max_tokens` (default 256), capped at what the position
/// embeddings cover: longer inputs would index past them.
fn max_tokens(spec: &LoadSpec<'_>, positions: usize) -> Result<usize, BackendError> {
    // Below 2 there is no room for [CLS] and [SEP], and tokenizers would
    // underflow computing the room left for text.
    let wanted = whole_parameter(
        spec,
        "max_tokens",
        DEFAULT_MAX_TOKENS,
        2..=usize::MAX,
        "of at least 2",
    )?;
    Ok(wanted.min(positions))
}

/// `[parameters] key` as a whole number in `range` (`bounds` says the range in
/// the error), or `default` when absent.
fn whole_parameter(
    spec: &LoadSpec<'_>,
    key: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
    bounds: &str,
) -> Result<usize, BackendError> {
    match spec.config.parameters.get(key) {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(load_err(format!(
                "{key} must be a whole number {bounds}, got '{text}'"
            ))),
        },
    }
}

/// The tokenizer from tokenizer.json, re-set for serving: tokenizer.json pads
/// every text to a fixed 128 and truncates at 128; we pad ourselves, each
/// length group to its longest text (less work, same vectors under the mask),
/// and truncate at `max_tokens`.
fn tokenizer(dir: &Path, max_tokens: usize) -> Result<Tokenizer, BackendError> {
    let mut tokenizer = Tokenizer::from_file(dir.join(TOKENIZER))
        .map_err(|e| load_err(format!("{TOKENIZER}: {e}")))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_tokens,
            ..TruncationParams::default()
        }))
        .map_err(|e| load_err(format!("{TOKENIZER}: {e}")))?;
    Ok(tokenizer)
}

/// candle's BERT from the safetensors.
fn candle_bert(dir: &Path, config: &BertConfig) -> Result<BertModel, BackendError> {
    let weights =
        std::fs::read(dir.join(WEIGHTS)).map_err(|e| load_err(format!("{WEIGHTS}: {e}")))?;
    // Buffered rather than memory-mapped: mmap is `unsafe`, which the
    // workspace forbids. The buffer is dropped once the tensors are built.
    let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
        .map_err(|e| load_err(format!("{WEIGHTS}: {e}")))?;
    BertModel::load(vb, config).map_err(|e| load_err(format!("{WEIGHTS} is not a BERT model: {e}")))
}

/// `[parameters] threads`: ONNX Runtime's pool for this model (default: the
/// CPUs this process may run on).
fn threads(spec: &LoadSpec<'_>) -> Result<usize, BackendError> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    whole_parameter(spec, "threads", cpus, 1..=256, "from 1 to 256")
}
