//! The remote backends against fake servers on local sockets (port 0): canned
//! TGI, OpenAI and Ollama streams, error statuses, a closed port, a server that
//! never answers, the concurrency limit, cancellation, probes and the tensor
//! path. No network beyond 127.0.0.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use inferd_backend_remote::RemoteBackend;
use inferd_core::generate::{
    ChatMessage, Event, FinishReason, Finished, GenerateRequest, Prompt, Sampling, Token,
};
use inferd_core::{Backend, CoreError, LoadSpec, LoadedModel, ModelConfig, Tensor, TensorData};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// How a fake server answers every connection.
#[derive(Clone)]
enum Reply {
    /// Written in these pieces, with pauses between, so lines and characters
    /// are cut across network reads; then the connection is closed.
    Pieces(Vec<Vec<u8>>),
    /// Never answers; reports `CLOSED` once the client hangs up.
    Silent,
}

const CLOSED: &str = "<closed>";

/// A server on 127.0.0.1 port 0; every request it reads (head and body) comes
/// out of the receiver.
fn fake(reply: Reply) -> (SocketAddr, UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, requests) = unbounded_channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let (reply, seen) = (reply.clone(), seen.clone());
            std::thread::spawn(move || answer(stream.unwrap(), reply, seen));
        }
    });
    (addr, requests)
}

fn answer(mut stream: TcpStream, reply: Reply, seen: UnboundedSender<String>) {
    let _ = seen.send(read_request(&mut stream));
    match reply {
        Reply::Pieces(pieces) => {
            for p in pieces {
                if stream.write_all(&p).and_then(|_| stream.flush()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Reply::Silent => {
            let mut buf = [0u8; 64];
            while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            let _ = seen.send(CLOSED.into());
        }
    }
}

fn read_request(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if bytes.len() >= head_end + 4 + length {
                return text;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A 200 answer streamed in `pieces` (close-delimited, as SSE often is).
fn stream_reply(content_type: &str, pieces: &[&str]) -> Reply {
    let head =
        format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n");
    let mut all = vec![head.into_bytes()];
    all.extend(pieces.iter().map(|p| p.as_bytes().to_vec()));
    Reply::Pieces(all)
}

fn status_reply(status: &str, body: &str) -> Reply {
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    Reply::Pieces(vec![text.into_bytes()])
}

/// What the fake server saw next; the tests' runtime keeps running meanwhile.
async fn next(requests: &mut UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(5), requests.recv())
        .await
        .expect("the fake server saw nothing in 5 s")
        .expect("the fake server stopped")
}

/// A port nothing listens on.
fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn load(backend: RemoteBackend, params: &str) -> Result<Box<dyn LoadedModel>, String> {
    let config = ModelConfig::from_toml(&format!(
        "backend = \"{}\"\n[parameters]\n{params}",
        backend.name()
    ))?;
    let spec = LoadSpec {
        name: "remote",
        version: 1,
        model_dir: Path::new("/nonexistent"),
        version_dir: Path::new("/nonexistent/1"),
        config: &config,
    };
    backend.load(&spec).map_err(|e| e.to_string())
}

fn tgi_at(addr: SocketAddr) -> Box<dyn LoadedModel> {
    load(RemoteBackend::tgi(), &format!("endpoint = 'http://{addr}'")).unwrap()
}

fn greedy(prompt: Prompt, n: u32) -> GenerateRequest {
    GenerateRequest {
        prompt,
        sampling: Sampling {
            do_sample: false,
            max_new_tokens: n,
            ..Sampling::default()
        },
    }
}

fn text(t: &str) -> Prompt {
    Prompt::Text(t.into())
}

fn soon(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// Every event of a generation: its tokens, then its end.
async fn events(
    model: &dyn LoadedModel,
    req: GenerateRequest,
    deadline: Instant,
) -> (Vec<Token>, Result<Finished, CoreError>) {
    let mut rx = model
        .generator()
        .unwrap()
        .start("remote", req, deadline)
        .unwrap();
    let mut tokens = Vec::new();
    while let Some(e) = rx.recv().await {
        match e {
            Event::Token(t) => tokens.push(t),
            Event::Done(f) => return (tokens, Ok(f)),
            Event::Failed(e) => return (tokens, Err(e)),
        }
    }
    panic!("the channel closed without an end");
}

fn joined(tokens: &[Token]) -> String {
    tokens.iter().map(|t| t.text.as_str()).collect()
}

const TGI_STREAM: &[&str] = &[
    ":keep-alive\n\n",
    "data:{\"index\":1,\"token\":{\"id\":15496,\"text\":\"Hel\",\"logprob\":-0.1,\"special\":false},\"generated_text\":null,\"details\":null}\n\n",
    "data:{\"index\":2,\"token\":{\"id\":75,\"text\":\"lo wörld\",\"logprob\":-0.2,\"spe",
    "cial\":false},\"generated_text\":null,\"details\":null}\r\n\r\ndata:{\"index\":3,\"token\":{\"id\":0,\"text\":\"</s>\",\"logprob\":-0.3,\"special\":true},\"generated_text\":\"Hello wörld\",\"det",
    "ails\":{\"finish_reason\":\"eos_token\",\"generated_tokens\":3,\"seed\":null,\"input_length\":2}}\n\n",
];

#[tokio::test]
async fn a_tgi_stream_arrives_in_order_and_concatenates() {
    let (addr, mut requests) = fake(stream_reply("text/event-stream", TGI_STREAM));
    let model = tgi_at(addr);
    let (tokens, end) = events(model.as_ref(), greedy(text("Say hi"), 8), soon(10)).await;
    assert_eq!(
        tokens.iter().map(|t| t.id).collect::<Vec<_>>(),
        [15496, 75, 0]
    );
    assert_eq!(joined(&tokens), "Hello wörld");
    assert!(tokens[2].special);
    let f = end.unwrap();
    assert_eq!(
        (f.reason, f.generated_tokens, f.prompt_tokens, f.seed),
        (FinishReason::EndOfSequence, 3, 2, None)
    );
    let request = next(&mut requests).await;
    assert!(request.starts_with("POST /generate_stream "), "{request}");
    assert!(
        request.contains(r#""inputs":"Say hi""#) && request.contains(r#""do_sample":false"#),
        "{request}"
    );
}

#[tokio::test]
async fn an_openai_chat_stream_with_usage_and_a_bearer_key() {
    std::env::set_var("INFERD_TEST_REMOTE_KEY", "sk-test");
    let (addr, mut requests) = fake(stream_reply(
        "text/event-stream",
        &[
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Bon\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"jour\"},\"finish_reason\":\"length\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":2,\"total_tokens\":13}}\n\n",
            "data: [DONE]\n\n",
        ],
    ));
    let params = format!(
        "endpoint = 'http://{addr}/v1'\nmodel = 'qwen'\napi_key_env = 'INFERD_TEST_REMOTE_KEY'"
    );
    let model = load(RemoteBackend::openai(), &params).unwrap();
    let chat = Prompt::Chat(vec![ChatMessage {
        role: "user".into(),
        content: "Hello".into(),
    }]);
    let (tokens, end) = events(model.as_ref(), greedy(chat, 2), soon(10)).await;
    assert_eq!(joined(&tokens), "Bonjour");
    let f = end.unwrap();
    assert_eq!(
        (f.reason, f.generated_tokens, f.prompt_tokens),
        (FinishReason::Length, 2, 11)
    );
    let request = next(&mut requests).await;
    assert!(
        request.starts_with("POST /v1/chat/completions "),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("authorization: bearer sk-test"),
        "{request}"
    );
    assert_eq!(model.generator().unwrap().info().served_name, "qwen");
}

#[tokio::test]
async fn an_ollama_ndjson_stream() {
    let (addr, mut requests) = fake(stream_reply(
        "application/x-ndjson",
        &[
            "{\"model\":\"llama3\",\"response\":\"The\",\"done\":false}\n{\"model\":\"llama3\",\"resp",
            "onse\":\" sky\",\"done\":false}\n",
            "{\"model\":\"llama3\",\"response\":\"\",\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":5,\"eval_count\":2}",
        ],
    ));
    let model = load(
        RemoteBackend::ollama(),
        &format!("endpoint = 'http://{addr}'\nmodel = 'llama3'"),
    )
    .unwrap();
    let (tokens, end) = events(model.as_ref(), greedy(text("Why"), 8), soon(10)).await;
    assert_eq!(joined(&tokens), "The sky");
    let f = end.unwrap();
    assert_eq!(
        (f.reason, f.generated_tokens, f.prompt_tokens),
        (FinishReason::EndOfSequence, 2, 5)
    );
    let request = next(&mut requests).await;
    assert!(
        request.starts_with("POST /api/generate ") && request.contains(r#""raw":true"#),
        "{request}"
    );
}

#[tokio::test]
async fn an_error_status_is_an_upstream_error_with_the_body() {
    let (addr, _requests) = fake(status_reply(
        "500 Internal Server Error",
        r#"{"error":"boom","error_type":"generation"}"#,
    ));
    let (tokens, end) = events(tgi_at(addr).as_ref(), greedy(text("x"), 4), soon(10)).await;
    assert!(tokens.is_empty());
    match end.unwrap_err() {
        CoreError::UpstreamStatus {
            status,
            body,
            endpoint,
            ..
        } => {
            assert_eq!(status, 500);
            assert!(body.contains("boom"), "{body}");
            assert!(endpoint.ends_with("/generate_stream"), "{endpoint}");
        }
        other => panic!("expected UpstreamStatus, got {other:?}"),
    }
}

#[tokio::test]
async fn an_error_inside_the_stream_is_a_backend_error() {
    let (addr, _requests) = fake(stream_reply(
        "text/event-stream",
        &[
            TGI_STREAM[1],
            "data:{\"error\":\"CUDA out of memory\",\"error_type\":\"generation\"}\n\n",
        ],
    ));
    let (tokens, end) = events(tgi_at(addr).as_ref(), greedy(text("x"), 4), soon(10)).await;
    assert_eq!(joined(&tokens), "Hel");
    match end.unwrap_err() {
        CoreError::Backend { reason, .. } => assert_eq!(reason, "generation: CUDA out of memory"),
        other => panic!("expected Backend, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stream_cut_short_is_a_downstream_error() {
    let (addr, _requests) = fake(stream_reply("text/event-stream", &TGI_STREAM[..2]));
    let (_, end) = events(tgi_at(addr).as_ref(), greedy(text("x"), 4), soon(10)).await;
    assert!(matches!(end, Err(CoreError::Downstream { .. })), "{end:?}");
}

#[tokio::test]
async fn a_closed_port_loads_but_fails_requests_as_downstream() {
    let model = tgi_at(closed_port());
    let (_, end) = events(model.as_ref(), greedy(text("x"), 4), soon(10)).await;
    match end.unwrap_err() {
        CoreError::Downstream { reason, .. } => {
            assert!(reason.to_lowercase().contains("refused"), "{reason}")
        }
        other => panic!("expected Downstream, got {other:?}"),
    }
}

#[tokio::test]
async fn a_silent_server_runs_into_the_deadline() {
    let (addr, mut requests) = fake(Reply::Silent);
    let deadline = Instant::now() + Duration::from_millis(300);
    let (_, end) = events(tgi_at(addr).as_ref(), greedy(text("x"), 4), deadline).await;
    assert!(
        matches!(end, Err(CoreError::DeadlineExceeded { .. })),
        "{end:?}"
    );
    next(&mut requests).await;
    // The abandoned request's connection is closed, so the remote stops too.
    assert_eq!(next(&mut requests).await, CLOSED);
}

#[tokio::test]
async fn past_max_concurrent_requests_are_refused_until_one_leaves() {
    let (addr, mut requests) = fake(Reply::Silent);
    let model = load(
        RemoteBackend::tgi(),
        &format!("endpoint = 'http://{addr}'\nmax_concurrent = 1"),
    )
    .unwrap();
    let g = model.generator().unwrap();
    let first = g.start("remote", greedy(text("a"), 4), soon(30)).unwrap();
    let refused = g
        .start("remote", greedy(text("b"), 4), soon(30))
        .unwrap_err();
    assert!(
        matches!(refused, CoreError::QueueFull { max: 1, .. }),
        "{refused:?}"
    );
    next(&mut requests).await;
    drop(first);
    assert_eq!(next(&mut requests).await, CLOSED);
    let mut again = None;
    for _ in 0..100 {
        match g.start("remote", greedy(text("c"), 4), soon(30)) {
            Ok(rx) => {
                again = Some(rx);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    assert!(again.is_some(), "the slot was not freed");
}

#[tokio::test]
async fn probes_report_up_and_down() {
    let (addr, mut requests) = fake(status_reply("200 OK", ""));
    let model = tgi_at(addr);
    assert_eq!(model.generator().unwrap().probe().await, Ok(()));
    assert!(next(&mut requests).await.starts_with("GET /health "));

    let (addr, mut requests) = fake(status_reply("200 OK", r#"{"version":"0.5.1"}"#));
    let model = load(
        RemoteBackend::ollama(),
        &format!("endpoint = 'http://{addr}'\nmodel = 'm'"),
    )
    .unwrap();
    assert_eq!(model.generator().unwrap().probe().await, Ok(()));
    assert!(next(&mut requests).await.starts_with("GET /api/version "));

    let (addr, _) = fake(status_reply("500 Internal Server Error", "{}"));
    let model = load(
        RemoteBackend::openai(),
        &format!("endpoint = 'http://{addr}/v1'\nmodel = 'm'"),
    )
    .unwrap();
    let e = model.generator().unwrap().probe().await.unwrap_err();
    assert_eq!(e, format!("http://{addr}/v1/models answered 500"));

    let e = tgi_at(closed_port())
        .generator()
        .unwrap()
        .probe()
        .await
        .unwrap_err();
    assert!(e.starts_with("cannot reach "), "{e}");
}

#[tokio::test]
async fn tokenize_is_left_to_the_server() {
    let model = tgi_at(closed_port());
    let e = model.generator().unwrap().tokenize("hi").unwrap_err();
    assert!(
        matches!(e, CoreError::UnsupportedTask { ref task, .. } if task == "tokenize"),
        "{e:?}"
    );
    assert_eq!(model.memory_bytes(), 1 << 20);
}

#[tokio::test]
async fn loading_refuses_a_missing_endpoint_or_key() {
    let e = load(RemoteBackend::openai(), "model = 'm'").err().unwrap();
    assert!(e.contains("endpoint is required"), "{e}");
    let e = load(
        RemoteBackend::openai(),
        "endpoint = 'http://h/v1'\nmodel = 'm'\napi_key_env = 'INFERD_TEST_UNSET_KEY'",
    )
    .err()
    .unwrap();
    assert!(e.contains("INFERD_TEST_UNSET_KEY"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tensor_path_answers_each_row() {
    let (addr, mut requests) = fake(stream_reply("text/event-stream", TGI_STREAM));
    let model = tgi_at(addr);
    let input = Tensor::new(
        "text_input",
        vec![2],
        TensorData::Bytes(vec![b"a".to_vec(), b"b".to_vec()]),
    )
    .unwrap();
    // The scheduler calls run() on a plain worker thread, outside the runtime.
    let out = std::thread::spawn(move || model.run(vec![input]))
        .join()
        .unwrap()
        .unwrap();
    let TensorData::Bytes(texts) = out[0].data() else {
        panic!("text_output is BYTES")
    };
    assert_eq!(texts, &vec![b"Hello w\xc3\xb6rld".to_vec(); 2]);
    let request = next(&mut requests).await;
    assert!(
        request.contains(r#""max_new_tokens":128"#) && request.contains(r#""do_sample":false"#),
        "{request}"
    );
}
