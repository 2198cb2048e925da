//! What the fuzz targets share: the real HTTP router over a repository of
//! builtin models and one text model, built once per fuzzing process, and a
//! way to send it a request without a socket.
//!
//! The text model is an echo engine registered under the `llama.cpp` backend
//! name, so the generation faces (seed 002, TGI, OpenAI, `/inference`) run
//! their whole path (parsing, sampling checks, deadlines, the stop-sequence
//! stream, SSE framing) without llama.cpp's weights or build.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use inferd_backend_builtin::BuiltinBackend;
use inferd_core::backend::{Backend, BackendError, LoadSpec, LoadedModel};
use inferd_core::generate::{
    generate_rows, Event, FinishReason, Finished, GenerateRequest, Generator, GeneratorInfo, Probe,
    Prompt, Released, TextStream, Token, TokenSpan,
};
use inferd_core::{CoreResult, DataType, Manager, ManagerConfig, SpecType, Tensor, TensorSpec};
use inferd_http::{router, AppState, Compat};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tower::ServiceExt;

/// The repository the router serves: typed identities for Triton's raw binary
/// form, Triton's add_sub, an image classifier over an identity, and the echo
/// text model.
const MODELS: &[(&str, &str)] = &[
    (
        "identity",
        "backend = 'builtin'\nkind = 'identity'\nmax_batch_size = 0\n\
         [[input]]\nname = 'INPUT0'\ndatatype = 'ANY'\n\
         [[output]]\nname = 'OUTPUT0'\ndatatype = 'ANY'\n",
    ),
    (
        "rows",
        "backend = 'builtin'\nkind = 'identity'\nmax_batch_size = 8\n\
         [[input]]\nname = 'INPUT0'\ndatatype = 'FP32'\nshape = [-1, 4]\n\
         [[output]]\nname = 'OUTPUT0'\ndatatype = 'FP32'\nshape = [-1, 4]\n",
    ),
    (
        "text",
        "backend = 'builtin'\nkind = 'identity'\nmax_batch_size = 0\n\
         [[input]]\nname = 'INPUT0'\ndatatype = 'BYTES'\nshape = [1]\n\
         [[output]]\nname = 'OUTPUT0'\ndatatype = 'BYTES'\nshape = [1]\n",
    ),
    (
        "add_sub",
        "backend = 'builtin'\nkind = 'add_sub'\n\
         [[input]]\nname = 'INPUT0'\ndatatype = 'INT32'\nshape = [16]\n\
         [[input]]\nname = 'INPUT1'\ndatatype = 'INT32'\nshape = [16]\n\
         [[output]]\nname = 'OUTPUT0'\ndatatype = 'INT32'\nshape = [16]\n\
         [[output]]\nname = 'OUTPUT1'\ndatatype = 'INT32'\nshape = [16]\n",
    ),
    (
        "pixels",
        "backend = 'builtin'\nkind = 'identity'\nmax_batch_size = 4\n\
         [[input]]\nname = 'input'\ndatatype = 'FP32'\nshape = [-1, 16]\n\
         [[output]]\nname = 'scores'\ndatatype = 'FP32'\nshape = [-1, 16]\n\
         [image]\nwidth = 4\nheight = 4\nchannels = 'gray'\nlayout = 'flat'\n",
    ),
    ("echo", "backend = 'llama.cpp'\n"),
];

/// The tokens one echo generation writes at most, whatever it is asked for.
const ECHO_TOKENS: usize = 16;

/// One process-wide server: the runtime that drives it and its router.
pub struct Fixture {
    pub rt: Runtime,
    pub app: Router,
}

/// The fixture, built on first use.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build)
}

fn build() -> Fixture {
    let root = repository();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let app = rt.block_on(async {
        let config = ManagerConfig {
            max_elements: 1 << 16,
            ..ManagerConfig::default()
        };
        let backends: Vec<Arc<dyn Backend>> = vec![Arc::new(BuiltinBackend), Arc::new(EchoBackend)];
        let manager = Manager::new(&root, backends, config);
        manager.load_all().await;
        router(AppState::new(manager, Compat::Kserve, 1 << 20))
    });
    Fixture { rt, app }
}

fn repository() -> PathBuf {
    let root = std::env::temp_dir().join(format!("inferd-fuzz-models-{}", std::process::id()));
    for (name, toml) in MODELS {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("1")).expect("model folder");
        std::fs::write(dir.join("model.toml"), toml).expect("model.toml");
    }
    root
}

/// Sends one request through the router and reads the whole answer (a
/// streamed one included). With `INFERD_FUZZ_TRACE` set, prints each route,
/// status and the start of the answer (to check that seeds reach past parsing).
pub fn send(
    method: &str,
    uri: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let f = fixture();
    f.rt.block_on(async {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req.body(Body::from(body)).expect("a valid request");
        let res = f
            .app
            .clone()
            .oneshot(req)
            .await
            .expect("the router is infallible");
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        if std::env::var_os("INFERD_FUZZ_TRACE").is_some() {
            let head = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            eprintln!("{method} {uri} -> {status} {head}");
        }
        (status, body)
    })
}

/// Fails the run on a server error: a request the server cannot parse is the
/// client's fault (4xx), never a 500. 503 (overloaded) and 504 (the deadline
/// the request itself set, such as a V2 `timeout` of 0) are answers, not faults.
pub fn assert_not_server_error(route: &str, status: StatusCode, body: &[u8]) {
    let answer = matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    );
    assert!(
        !status.is_server_error() || answer,
        "{route} answered {status}: {}",
        String::from_utf8_lossy(body)
    );
}

struct EchoBackend;

impl Backend for EchoBackend {
    fn name(&self) -> &'static str {
        "llama.cpp"
    }

    fn load(&self, spec: &LoadSpec<'_>) -> Result<Box<dyn LoadedModel>, BackendError> {
        let bytes = |name: &str| TensorSpec {
            name: name.into(),
            datatype: SpecType::Is(DataType::Bytes),
            shape: Some(vec![-1]),
        };
        Ok(Box::new(Echo {
            name: spec.name.to_string(),
            info: GeneratorInfo {
                served_name: "echo".into(),
                endpoint: None,
                max_input_tokens: 64,
                max_total_tokens: 128,
                slots: 2,
                max_waiting: 4,
                timeout: Duration::from_secs(60),
            },
            inputs: vec![bytes("text_input")],
            outputs: vec![bytes("text_output")],
        }))
    }
}

/// Writes the prompt back in 3-byte pieces (so characters split between
/// tokens), through the core's stop-sequence stream.
struct Echo {
    name: String,
    info: GeneratorInfo,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl LoadedModel for Echo {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }
    fn memory_bytes(&self) -> u64 {
        0
    }
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        generate_rows(self, &self.name, &inputs, 4)
    }
    fn generator(&self) -> Option<&dyn Generator> {
        Some(self)
    }
}

fn prompt_text(prompt: &Prompt) -> String {
    match prompt {
        Prompt::Text(t) => t.clone(),
        Prompt::Chat(messages) => messages
            .iter()
            .map(|m| format!("{}: {}\n", m.role, m.content))
            .collect(),
    }
}

impl Generator for Echo {
    fn info(&self) -> &GeneratorInfo {
        &self.info
    }

    fn tokenize(&self, text: &str) -> CoreResult<Vec<TokenSpan>> {
        let mut spans = Vec::new();
        let mut start = None;
        for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
            match (c.is_whitespace(), start) {
                (false, None) => start = Some(i),
                (true, Some(s)) => {
                    spans.push(TokenSpan {
                        id: spans.len() as u32,
                        text: text[s..i].to_string(),
                        start: s,
                        stop: i,
                    });
                    start = None;
                }
                _ => {}
            }
        }
        Ok(spans)
    }

    fn start(
        &self,
        _model: &str,
        req: GenerateRequest,
        _deadline: Instant,
    ) -> CoreResult<mpsc::Receiver<Event>> {
        let text = prompt_text(&req.prompt);
        let prompt_tokens = self.tokenize(&text)?.len() as u32;
        let wanted = (req.sampling.max_new_tokens as usize).min(ECHO_TOKENS);
        let (tx, rx) = mpsc::channel(ECHO_TOKENS + 2);
        let mut stream = TextStream::new(req.sampling.stop.clone());
        let token = |id: usize, text: String, last: bool| {
            Event::Token(Token {
                id: id as u32,
                text,
                logprob: -0.5,
                special: false,
                last,
            })
        };
        let done = |reason, generated: usize| {
            Event::Done(Finished {
                reason,
                generated_tokens: generated as u32,
                prompt_tokens,
                seed: req.sampling.seed,
            })
        };
        let pieces: Vec<&[u8]> = text.as_bytes().chunks(3).take(wanted).collect();
        for (i, piece) in pieces.iter().enumerate() {
            match stream.push(piece) {
                Released::Text(t) => {
                    let _ = tx.try_send(token(i, t, false));
                }
                Released::Stopped(t) => {
                    let _ = tx.try_send(token(i, t, true));
                    let _ = tx.try_send(done(FinishReason::StopSequence, i + 1));
                    return Ok(rx);
                }
            }
        }
        let rest = stream.finish();
        if !rest.is_empty() {
            let _ = tx.try_send(token(pieces.len(), rest, true));
        }
        let _ = tx.try_send(done(FinishReason::Length, pieces.len().max(1)));
        Ok(rx)
    }

    fn probe(&self) -> Probe<'_> {
        Box::pin(async { Ok(()) })
    }
}
