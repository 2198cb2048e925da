//! Text models that live on another server: TGI, any OpenAI-compatible server
//! (vLLM, TGI, llama-server, inferd itself) or Ollama, behind the same
//! [`Generator`] as a local model, so faces never learn where text is written.
//!
//! One implementation serves the three kinds; they differ only in the request
//! they send (`request.rs`) and the stream they read back (`parse.rs`). Each
//! generation is one tokio task (`forward.rs`) that holds a permit of the
//! model's semaphore: past `max_concurrent` in flight, new requests are refused
//! at once rather than queued, since the remote has its own queue. Loading
//! contacts nothing, so a remote that is down fails requests, not the load.

mod forward;
mod parse;
mod request;
mod settings;

use std::sync::Arc;
use std::time::{Duration, Instant};

use inferd_core::generate::{
    generate_rows, Event, GenerateRequest, Generator, GeneratorInfo, Probe, Prompt, TokenSpan,
};
use inferd_core::{
    Backend, BackendError, CoreError, CoreResult, DataType, LoadSpec, LoadedModel, SpecType,
    Tensor, TensorSpec,
};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, Semaphore};

use crate::forward::{error_chain, forward_task, Assembler, Job};
use crate::settings::Settings;

/// What a remote model is charged in the manager's memory budget: its weights
/// live elsewhere, so only our bookkeeping counts.
const MEMORY_BYTES: u64 = 1 << 20;
/// New tokens for the tensor path, which has no sampling parameters.
const TENSOR_MAX_NEW_TOKENS: u32 = 128;
/// Added to the connect timeout for a probe, so a reachable but slow server
/// still has time to answer its health route.
const PROBE_ANSWER_TIME: Duration = Duration::from_secs(3);

/// Which kind of server a model forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tgi,
    OpenAi,
    Ollama,
}

impl Kind {
    /// The name `model.toml` uses in `backend = "..."`.
    fn name(self) -> &'static str {
        match self {
            Kind::Tgi => "tgi",
            Kind::OpenAi => "openai",
            Kind::Ollama => "ollama",
        }
    }

    fn example_endpoint(self) -> &'static str {
        match self {
            Kind::Tgi => "http://localhost:3000",
            Kind::OpenAi => "http://localhost:8000/v1",
            Kind::Ollama => "http://localhost:11434",
        }
    }

    /// A cheap route that answers 2xx when the server is up.
    fn probe_path(self) -> &'static str {
        match self {
            Kind::Tgi => "/health",
            Kind::OpenAi => "/models",
            Kind::Ollama => "/api/version",
        }
    }
}

/// A backend that forwards generations to a remote server; register one per
/// kind: [`RemoteBackend::tgi`], [`RemoteBackend::openai`],
/// [`RemoteBackend::ollama`].
#[derive(Debug, Clone, Copy)]
pub struct RemoteBackend {
    kind: Kind,
}

impl RemoteBackend {
    /// `backend = "tgi"`: Hugging Face text-generation-inference.
    pub const fn tgi() -> RemoteBackend {
        RemoteBackend { kind: Kind::Tgi }
    }

    /// `backend = "openai"`: any server with OpenAI's completions routes.
    pub const fn openai() -> RemoteBackend {
        RemoteBackend { kind: Kind::OpenAi }
    }

    /// `backend = "ollama"`: Ollama's native API.
    pub const fn ollama() -> RemoteBackend {
        RemoteBackend { kind: Kind::Ollama }
    }
}

impl Backend for RemoteBackend {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// Fails on bad parameters, a named API key variable that is unset, or
    /// when called outside a tokio runtime (the manager loads on tokio's
    /// blocking threads, which have one).
    fn load(&self, spec: &LoadSpec<'_>) -> Result<Box<dyn LoadedModel>, BackendError> {
        let settings = Settings::read(self.kind, spec, |var| std::env::var(var).ok())
            .map_err(BackendError::Load)?;
        let model = RemoteModel::new(self.kind, spec.name, settings)?;
        Ok(Box::new(model))
    }
}

/// A model served by a remote server.
pub struct RemoteModel {
    name: String,
    kind: Kind,
    settings: Settings,
    client: reqwest::Client,
    permits: Arc<Semaphore>,
    /// The runtime generations run on, for starts from the tensor path's
    /// plain worker threads.
    handle: Handle,
    info: GeneratorInfo,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl RemoteModel {
    fn new(kind: Kind, name: &str, settings: Settings) -> Result<RemoteModel, BackendError> {
        let handle = Handle::try_current().map_err(|_| {
            BackendError::Load("remote models must be loaded from within the tokio runtime".into())
        })?;
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .build()
            .map_err(|e| {
                BackendError::Load(format!("cannot build the HTTP client: {}", error_chain(&e)))
            })?;
        let info = GeneratorInfo {
            served_name: settings.served_name.clone(),
            endpoint: Some(settings.endpoint.clone()),
            max_input_tokens: settings.max_input_tokens,
            max_total_tokens: settings.max_total_tokens,
            slots: settings.max_concurrent,
            max_waiting: 0,
            timeout: settings.timeout,
        };
        let bytes = |name: &str| TensorSpec {
            name: name.into(),
            datatype: SpecType::Is(DataType::Bytes),
            shape: Some(vec![-1]),
        };
        Ok(RemoteModel {
            name: name.into(),
            kind,
            permits: Arc::new(Semaphore::new(settings.max_concurrent)),
            settings,
            client,
            handle,
            info,
            inputs: vec![bytes("text_input")],
            outputs: vec![bytes("text_output")],
        })
    }
}

impl Generator for RemoteModel {
    fn info(&self) -> &GeneratorInfo {
        &self.info
    }

    fn tokenize(&self, _text: &str) -> CoreResult<Vec<TokenSpan>> {
        Err(CoreError::UnsupportedTask {
            model: self.name.clone(),
            task: "tokenize".into(),
            reason: "remote models are tokenized by their server".into(),
        })
    }

    /// Refuses an empty prompt (Ollama would take it as "load the model") and
    /// a request past `max_concurrent` in flight; the rest arrives as events.
    fn start(
        &self,
        model: &str,
        req: GenerateRequest,
        deadline: Instant,
    ) -> CoreResult<mpsc::Receiver<Event>> {
        let empty = match &req.prompt {
            Prompt::Text(text) => text.is_empty(),
            Prompt::Chat(messages) => messages.is_empty(),
        };
        if empty {
            return Err(CoreError::BadRequest("the prompt is empty".into()));
        }
        let permit =
            self.permits
                .clone()
                .try_acquire_owned()
                .map_err(|_| CoreError::QueueFull {
                    model: model.into(),
                    max: self.settings.max_concurrent,
                })?;
        let s = &self.settings;
        let upstream = request::build(self.kind, &s.endpoint, s.model.as_deref(), &req);
        let seed = req.sampling.seed.filter(|_| !req.sampling.greedy());
        let assembler = Assembler::new(upstream.wire, req.sampling.stop.clone(), seed);
        // Room for every token, the text held back from a stop, and the end.
        let (tx, rx) = mpsc::channel(req.sampling.max_new_tokens as usize + 2);
        let job = Job {
            model: model.into(),
            client: self.client.clone(),
            api_key: s.api_key.clone(),
            upstream,
            assembler,
            started: Instant::now(),
            deadline,
        };
        self.handle.spawn(forward_task(job, tx, permit));
        Ok(rx)
    }

    fn probe(&self) -> Probe<'_> {
        Box::pin(async move {
            let url = format!("{}{}", self.settings.endpoint, self.kind.probe_path());
            let limit = self.settings.connect_timeout + PROBE_ANSWER_TIME;
            let mut request = self.client.get(&url);
            if let Some(key) = &self.settings.api_key {
                request = request.bearer_auth(&key.0);
            }
            match tokio::time::timeout(limit, request.send()).await {
                Err(_) => Err(format!("{url} did not answer within {limit:?}")),
                Ok(Err(e)) => Err(format!(
                    "cannot reach {url}: {}",
                    error_chain(&e.without_url())
                )),
                Ok(Ok(r)) if r.status().is_success() => Ok(()),
                Ok(Ok(r)) => Err(format!("{url} answered {}", r.status().as_u16())),
            }
        })
    }
}

impl LoadedModel for RemoteModel {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }
    fn memory_bytes(&self) -> u64 {
        MEMORY_BYTES
    }

    /// Triton's text-model tensors (`generate_rows`); runs on a scheduler
    /// worker thread, so it may block while the runtime forwards.
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        generate_rows(self, &self.name, &inputs, TENSOR_MAX_NEW_TOKENS)
    }

    fn generator(&self) -> Option<&dyn Generator> {
        Some(self)
    }
}
