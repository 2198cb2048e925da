//! GGUF language models through llama.cpp (`llama-cpp-2`, built from source).
//!
//! One decode thread per model owns the llama.cpp context and runs every active
//! sequence in one batch per step (continuous batching, `engine.rs`); requests
//! are tokenized and checked against the token budgets on the caller's thread,
//! then wait in a bounded queue for a sequence slot.

mod engine;

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use inferd_core::generate::{
    generate_rows, Event, GenerateRequest, Generator, GeneratorInfo, Probe, Prompt, Sampling,
    TokenSpan,
};
use inferd_core::{
    Backend, BackendError, CoreError, CoreResult, DataType, LoadSpec, LoadedModel, SpecType,
    Tensor, TensorSpec,
};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

/// llama.cpp's global state may be initialised once per process.
static LLAMA: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

fn llama() -> Result<&'static LlamaBackend, String> {
    LLAMA
        .get_or_init(|| {
            let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            // llama.cpp prints ~100 lines per load to stderr; our own log says
            // what loaded and every failure comes back as an error value.
            backend.void_logs();
            Ok(backend)
        })
        .as_ref()
        .map_err(Clone::clone)
}

#[derive(Debug, Default)]
pub struct LlamaCppBackend;

impl Backend for LlamaCppBackend {
    fn name(&self) -> &'static str {
        "llama.cpp"
    }

    fn load(&self, spec: &LoadSpec<'_>) -> Result<Box<dyn LoadedModel>, BackendError> {
        let settings = Settings::read(spec).map_err(BackendError::Load)?;
        LlmModel::load(spec.name, settings).map(|m| Box::new(m) as Box<dyn LoadedModel>)
    }
}

/// The `[parameters]` of a llama.cpp model.
#[derive(Debug, Clone)]
struct Settings {
    file: PathBuf,
    slots: usize,
    max_waiting: usize,
    max_input_tokens: u32,
    max_total_tokens: u32,
    timeout: Duration,
    threads: i32,
    /// Prompt tokens prefilled per step, shared by all prefilling sequences, so
    /// a long prompt never stalls the sequences already decoding.
    prefill_chunk: usize,
    chat_template: Option<String>,
    /// The name answers report (seed 002's `model`, TGI's `model_id`); the
    /// GGUF's `general.name` when not given.
    served_name: Option<String>,
    /// One KV buffer for all sequences instead of one per sequence. Off by
    /// default: with it on, a sequence's greedy text changes with the company
    /// it is batched with (attention runs over the shared cells), and the
    /// throughput gained was within noise here.
    kv_unified: bool,
    /// New tokens for the tensor path, which has no sampling parameters.
    default_max_new_tokens: u32,
}

impl Settings {
    fn read(spec: &LoadSpec<'_>) -> Result<Settings, String> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as i32;
        let s = Settings {
            file: find_gguf(spec)?,
            slots: spec.config.param("slots", 8)?,
            max_waiting: spec.config.param("max_waiting", 64)?,
            max_input_tokens: spec.config.param("max_input_tokens", 1536)?,
            max_total_tokens: spec.config.param("max_total_tokens", 2048)?,
            timeout: Duration::from_millis(spec.config.param("timeout_ms", 60_000)?),
            threads: spec.config.param("threads", cores)?,
            prefill_chunk: spec.config.param("prefill_chunk", 256)?,
            chat_template: spec.config.parameters.get("chat_template").cloned(),
            served_name: spec.config.parameters.get("served_name").cloned(),
            kv_unified: spec.config.param("kv_unified", false)?,
            default_max_new_tokens: spec.config.param("max_new_tokens", 128)?,
        };
        if !(1..=64).contains(&s.slots) {
            return Err("model.toml: parameters.slots must be between 1 and 64".into());
        }
        if s.max_waiting == 0 || s.threads < 1 || s.prefill_chunk < 16 {
            return Err(
                "model.toml: max_waiting and threads must be at least 1, prefill_chunk at least 16"
                    .into(),
            );
        }
        if s.max_input_tokens == 0 || s.max_input_tokens >= s.max_total_tokens {
            return Err(
                "model.toml: max_input_tokens must be above 0 and below max_total_tokens".into(),
            );
        }
        if s.timeout.is_zero() {
            return Err("model.toml: timeout_ms must be above 0".into());
        }
        Ok(s)
    }
}

/// `parameters.file` (relative to the version folder, or absolute), else the
/// one `*.gguf` in the version folder.
fn find_gguf(spec: &LoadSpec<'_>) -> Result<PathBuf, String> {
    let missing = |what: &Path| {
        format!(
            "{} is missing; run scripts/fetch-models to download the weights",
            what.display()
        )
    };
    if let Some(file) = spec.config.parameters.get("file") {
        let path = spec.version_dir.join(file);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(missing(&path))
        };
    }
    let ggufs: Vec<PathBuf> = std::fs::read_dir(spec.version_dir)
        .map_err(|_| missing(spec.version_dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    match ggufs.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(missing(&spec.version_dir.join("*.gguf"))),
        _ => Err(format!(
            "{} holds several .gguf files; name one with parameters.file",
            spec.version_dir.display()
        )),
    }
}

/// A request waiting for a sequence slot.
struct Pending {
    model: String,
    tokens: Vec<LlamaToken>,
    sampling: Sampling,
    deadline: Instant,
    tx: mpsc::Sender<Event>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Pending>,
    shutdown: bool,
}

/// What the requests' threads and the decode thread share.
struct Shared {
    model: LlamaModel,
    queue: Mutex<Queue>,
    wake: Condvar,
    settings: Settings,
}

pub struct LlmModel {
    name: String,
    shared: Arc<Shared>,
    template: Option<LlamaChatTemplate>,
    info: GeneratorInfo,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    memory: u64,
    thread: Option<JoinHandle<()>>,
}

impl LlmModel {
    fn load(name: &str, settings: Settings) -> Result<LlmModel, BackendError> {
        let backend = llama().map_err(BackendError::Load)?;
        let model =
            LlamaModel::load_from_file(backend, &settings.file, &LlamaModelParams::default())
                .map_err(|e| BackendError::Load(format!("{}: {e}", settings.file.display())))?;
        let template = match &settings.chat_template {
            Some(name) => Some(
                LlamaChatTemplate::new(name)
                    .map_err(|e| BackendError::Load(format!("chat_template: {e}")))?,
            ),
            None => model.chat_template(None).ok(),
        };
        let served_name = settings
            .served_name
            .clone()
            .or_else(|| model.meta_val_str("general.name").ok())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| {
                settings
                    .file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
        let train = model.n_ctx_train();
        if settings.max_total_tokens > train {
            return Err(BackendError::Load(format!(
                "max_total_tokens {} is more than the model's context of {train}",
                settings.max_total_tokens
            )));
        }
        let kv_per_token = u64::from(model.n_layer())
            * 2
            * u64::from(model.n_head_kv())
            * (model.n_embd() as u64 / u64::from(model.n_head().max(1)))
            * 2;
        let kv = kv_per_token * settings.slots as u64 * u64::from(settings.max_total_tokens);
        let memory = model.size() + kv;
        let info = GeneratorInfo {
            served_name,
            endpoint: None,
            max_input_tokens: settings.max_input_tokens,
            max_total_tokens: settings.max_total_tokens,
            slots: settings.slots,
            max_waiting: settings.max_waiting,
            timeout: settings.timeout,
        };
        let n_batch = (settings.prefill_chunk + settings.slots) as u32;
        let ctx_params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(
                settings.slots as u32 * settings.max_total_tokens,
            ))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_seq_max(settings.slots as u32)
            .with_kv_unified(settings.kv_unified)
            .with_n_threads(settings.threads)
            .with_n_threads_batch(settings.threads);
        let shared = Arc::new(Shared {
            model,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            settings,
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("llm-decode".into())
                .spawn(move || {
                    engine::run(&shared, backend, ctx_params, n_batch as usize, ready_tx)
                })
                .map_err(|e| BackendError::Load(format!("cannot start the decode thread: {e}")))?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(BackendError::Load(e)),
            Err(_) => return Err(BackendError::Load("the decode thread died".into())),
        }
        let bytes = |name: &str| TensorSpec {
            name: name.into(),
            datatype: SpecType::Is(DataType::Bytes),
            shape: Some(vec![-1]),
        };
        Ok(LlmModel {
            name: name.into(),
            shared,
            template,
            info,
            inputs: vec![bytes("text_input")],
            outputs: vec![bytes("text_output")],
            memory,
            thread: Some(thread),
        })
    }

    fn render(&self, model: &str, prompt: &Prompt) -> CoreResult<String> {
        let failed = |reason: String| CoreError::PromptFormat {
            model: model.into(),
            reason,
        };
        match prompt {
            Prompt::Text(text) => Ok(text.clone()),
            Prompt::Chat(messages) => {
                let template = self.template.as_ref().ok_or_else(|| {
                    failed("the model has no chat template; set parameters.chat_template".into())
                })?;
                let messages = messages
                    .iter()
                    .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| failed(format!("a message holds a NUL byte: {e}")))?;
                self.shared
                    .model
                    .apply_chat_template(template, &messages, true)
                    .map_err(|e| failed(format!("the chat template failed: {e}")))
            }
        }
    }

    fn tokens(&self, text: &str) -> Vec<LlamaToken> {
        // Special tokens in the text are parsed, as TGI and llama-server do, so
        // a raw prompt may carry its own chat markup.
        self.shared
            .model
            .vocab()
            .tokenize(text.as_bytes(), true, true)
    }
}

impl Drop for LlmModel {
    fn drop(&mut self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shutdown = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Generator for LlmModel {
    fn info(&self) -> &GeneratorInfo {
        &self.info
    }

    fn tokenize(&self, text: &str) -> CoreResult<Vec<TokenSpan>> {
        let vocab = self.shared.model.vocab();
        let mut at = 0;
        Ok(self
            .tokens(text)
            .into_iter()
            .map(|t| {
                let piece =
                    String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned();
                let start = at.min(text.len());
                at += piece.len();
                TokenSpan {
                    id: t.0 as u32,
                    text: piece,
                    start,
                    stop: at.min(text.len()),
                }
            })
            .collect())
    }

    fn start(
        &self,
        model: &str,
        req: GenerateRequest,
        deadline: Instant,
    ) -> CoreResult<mpsc::Receiver<Event>> {
        let text = self.render(model, &req.prompt)?;
        let tokens = self.tokens(&text);
        if tokens.is_empty() {
            return Err(CoreError::BadRequest("the prompt is empty".into()));
        }
        let s = &self.shared.settings;
        if tokens.len() > s.max_input_tokens as usize {
            return Err(CoreError::PromptTooLong {
                model: model.into(),
                tokens: tokens.len(),
                max: s.max_input_tokens,
            });
        }
        let total = tokens.len() as u64 + u64::from(req.sampling.max_new_tokens);
        if total > u64::from(s.max_total_tokens) {
            return Err(CoreError::BadRequest(format!(
                "model '{model}': the prompt's {} tokens plus max_new_tokens {} make {total}, more than max_total_tokens {}",
                tokens.len(),
                req.sampling.max_new_tokens,
                s.max_total_tokens
            )));
        }
        // Room for every token plus the end: sending never blocks the decode loop.
        let (tx, rx) = mpsc::channel(req.sampling.max_new_tokens as usize + 2);
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.shutdown {
            return Err(CoreError::ShuttingDown);
        }
        // Clients that gave up while waiting free their place at once.
        queue.waiting.retain(|p| !p.tx.is_closed());
        if queue.waiting.len() >= s.max_waiting {
            return Err(CoreError::QueueFull {
                model: model.into(),
                max: s.max_waiting,
            });
        }
        queue.waiting.push_back(Pending {
            model: model.into(),
            tokens,
            sampling: req.sampling,
            deadline,
            tx,
        });
        drop(queue);
        self.shared.wake.notify_one();
        Ok(rx)
    }

    fn probe(&self) -> Probe<'_> {
        let alive = !self
            .shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shutdown;
        Box::pin(async move {
            if alive {
                Ok(())
            } else {
                Err("the decode loop has stopped".into())
            }
        })
    }
}

impl LoadedModel for LlmModel {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }
    fn memory_bytes(&self) -> u64 {
        self.memory
    }

    /// Triton's text-model tensors (`generate_rows`); runs on a scheduler
    /// worker thread, so it may block.
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        generate_rows(
            self,
            &self.name,
            &inputs,
            self.shared.settings.default_max_new_tokens,
        )
    }

    fn generator(&self) -> Option<&dyn Generator> {
        Some(self)
    }
}
