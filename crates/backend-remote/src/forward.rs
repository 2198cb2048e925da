//! One generation carried from a remote server to the core's channel: the
//! request is sent, the answer read chunk by chunk, each line parsed and turned
//! into token events, then exactly one `Done` or `Failed`.
//!
//! The task owns the concurrency permit, so a slot is free again the moment
//! the task ends, whichever way. It races the whole exchange against the
//! deadline and against the client leaving (`tx.closed()`); losing either race
//! drops the response, which closes the connection and so stops the remote
//! from generating for nobody.

use std::time::Instant;

use inferd_core::generate::{Event, FinishReason, Finished, Released, TextStream, Token};
use inferd_core::CoreError;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::parse::{self, Chunk, LineSplitter, Parsed};
use crate::request::{Upstream, Wire};
use crate::settings::ApiKey;

/// The most of an error body kept for the client; servers answer errors with
/// whole HTML pages at times.
pub const ERROR_BODY_CHARS: usize = 500;

/// Why a stream could not be turned into a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    /// The server reported an error, or sent something unreadable.
    Remote(String),
    /// The stream ended before the server said it was complete.
    Cut,
}

/// What a line produced: a token to send, and the end if it came.
#[derive(Debug, Default, PartialEq)]
pub struct Fed {
    pub token: Option<Token>,
    pub done: Option<Finished>,
}

/// Turns a stream's lines into events. Stop sequences are matched again here
/// because TGI leaves the matched text in its answer while the core promises
/// the text ends before it; for servers that cut it themselves this changes
/// nothing.
pub struct Assembler {
    wire: Wire,
    text: TextStream,
    pieces: u32,
    reason: Option<FinishReason>,
    generated: Option<u32>,
    prompt: Option<u32>,
    seed: Option<u64>,
}

impl Assembler {
    /// `seed`: the request's seed when it samples, reported when the server
    /// does not say which seed it used.
    pub fn new(wire: Wire, stops: Vec<String>, seed: Option<u64>) -> Assembler {
        Assembler {
            wire,
            text: TextStream::new(stops),
            pieces: 0,
            reason: None,
            generated: None,
            prompt: None,
            seed,
        }
    }

    pub fn line(&mut self, line: &str) -> Result<Fed, Broken> {
        let parsed = match self.wire {
            Wire::Tgi => parse::sse_data(line).map_or(Parsed::Skip, parse::tgi_event),
            Wire::OpenAi => parse::sse_data(line).map_or(Parsed::Skip, parse::openai_chunk),
            Wire::Ollama => parse::ollama_line(line),
        };
        match parsed {
            Parsed::Skip => Ok(Fed::default()),
            Parsed::Error(e) => Err(Broken::Remote(e)),
            Parsed::Chunk(chunk) => Ok(self.chunk(chunk)),
        }
    }

    fn chunk(&mut self, c: Chunk) -> Fed {
        self.generated = c.generated_tokens.or(self.generated);
        self.prompt = c.prompt_tokens.or(self.prompt);
        self.seed = c.seed.or(self.seed);
        self.reason = c.reason.or(self.reason);
        let mut end = c.end;
        let token = c.token.map(|mut t| {
            self.pieces += 1;
            match self.text.push(t.text.as_bytes()) {
                Released::Text(text) => t.text = text,
                Released::Stopped(text) => {
                    t.text = text;
                    self.reason = Some(FinishReason::StopSequence);
                    end = true;
                }
            }
            t
        });
        if !end {
            return Fed { token, done: None };
        }
        let (token, done) = self.end(token);
        Fed {
            token,
            done: Some(done),
        }
    }

    /// The stream closed. OpenAI-style servers that forget `[DONE]` after a
    /// finish reason still gave a whole answer; anything else was cut off.
    pub fn eof(&mut self) -> Result<(Option<Token>, Finished), Broken> {
        if self.reason.is_none() {
            return Err(Broken::Cut);
        }
        Ok(self.end(None))
    }

    /// Releases the text held as a possible stop, on the last token or on a
    /// token of its own.
    fn end(&mut self, token: Option<Token>) -> (Option<Token>, Finished) {
        let rest = self.text.finish();
        let token = match token {
            Some(mut t) => {
                t.text.push_str(&rest);
                Some(t)
            }
            None if !rest.is_empty() => Some(Token {
                id: 0,
                text: rest,
                logprob: 0.0,
                special: false,
                last: false,
            }),
            None => None,
        };
        let stopped = self.reason == Some(FinishReason::StopSequence);
        let finished = Finished {
            reason: self.reason.unwrap_or(FinishReason::EndOfSequence),
            // A stop we matched ourselves ended the stream before the
            // server's count.
            generated_tokens: self.generated.filter(|_| !stopped).unwrap_or(self.pieces),
            prompt_tokens: self.prompt.unwrap_or(0),
            seed: self.seed,
        };
        (token, finished)
    }
}

/// Everything the forwarding task needs, owned.
pub struct Job {
    pub model: String,
    pub client: reqwest::Client,
    pub api_key: Option<ApiKey>,
    pub upstream: Upstream,
    pub assembler: Assembler,
    pub started: Instant,
    pub deadline: Instant,
}

/// Runs one generation to its end; see the module docs.
pub async fn forward_task(mut job: Job, tx: mpsc::Sender<Event>, _permit: OwnedSemaphorePermit) {
    let deadline = tokio::time::Instant::from_std(job.deadline);
    let outcome = tokio::select! {
        _ = tx.closed() => return,
        r = tokio::time::timeout_at(deadline, exchange(&mut job, &tx)) => r,
    };
    let last = match outcome {
        Ok(Ok(finished)) => Event::Done(finished),
        Ok(Err(e)) => Event::Failed(e),
        Err(_) => Event::Failed(CoreError::DeadlineExceeded {
            model: job.model.clone(),
            deadline: job.deadline.saturating_duration_since(job.started),
        }),
    };
    // A client gone by now has nothing left to hear.
    let _ = tx.send(last).await;
}

impl Job {
    fn downstream(&self, reason: String) -> CoreError {
        CoreError::Downstream {
            model: self.model.clone(),
            endpoint: self.upstream.url.clone(),
            reason,
        }
    }

    fn broken(&self, b: Broken) -> CoreError {
        match b {
            Broken::Remote(reason) => CoreError::Backend {
                model: self.model.clone(),
                reason,
            },
            Broken::Cut => {
                self.downstream("the connection closed before the answer was complete".into())
            }
        }
    }

    /// Sends the request; a 2xx answer is the stream to read.
    async fn open(&self) -> Result<reqwest::Response, CoreError> {
        let mut request = self
            .client
            .post(&self.upstream.url)
            .json(&self.upstream.body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(&key.0);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| self.downstream(error_chain(&e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            return Err(CoreError::UpstreamStatus {
                model: self.model.clone(),
                endpoint: self.upstream.url.clone(),
                status: status.as_u16(),
                body: error_body(&mut response).await,
            });
        }
        Ok(response)
    }
}

/// Sends the request and forwards the answer's tokens, giving back the end.
async fn exchange(job: &mut Job, tx: &mpsc::Sender<Event>) -> Result<Finished, CoreError> {
    let mut response = job.open().await?;
    let mut lines = LineSplitter::default();
    loop {
        let bytes = response
            .chunk()
            .await
            .map_err(|e| job.downstream(error_chain(&e.without_url())))?;
        let batch = match &bytes {
            Some(b) => lines.push(b).map_err(|e| job.broken(Broken::Remote(e)))?,
            None => lines.finish().into_iter().collect(),
        };
        for line in batch {
            let fed = job.assembler.line(&line).map_err(|b| job.broken(b))?;
            if let Some(done) = pass(tx, fed).await {
                return Ok(done);
            }
        }
        if bytes.is_none() {
            break;
        }
    }
    let (token, done) = job.assembler.eof().map_err(|b| job.broken(b))?;
    pass(tx, Fed { token, done: None }).await;
    Ok(done)
}

/// Sends the token, if any, and hands back the end, if any. A closed channel
/// is noticed by the `tx.closed()` race in [`forward_task`].
async fn pass(tx: &mpsc::Sender<Event>, fed: Fed) -> Option<Finished> {
    if let Some(t) = fed.token {
        let _ = tx.send(Event::Token(t)).await;
    }
    fed.done
}

/// Up to [`ERROR_BODY_CHARS`] of an error answer, read no further than needed.
pub async fn error_body(response: &mut reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < ERROR_BODY_CHARS * 4 {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    match text.char_indices().nth(ERROR_BODY_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// reqwest's own message is generic ("error sending request"); the cause
/// (connection refused, DNS, TLS) is further down the chain. Callers strip the
/// URL first, since the error they build names it already.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(a: &mut Assembler, lines: &[&str]) -> (String, Vec<Token>, Option<Finished>) {
        let mut text = String::new();
        let mut tokens = Vec::new();
        for line in lines {
            let fed = a.line(line).unwrap();
            if let Some(t) = fed.token {
                text.push_str(&t.text);
                tokens.push(t);
            }
            if fed.done.is_some() {
                return (text, tokens, fed.done);
            }
        }
        (text, tokens, None)
    }

    fn tgi(id: u32, text: &str) -> String {
        format!(
            r#"data:{{"token":{{"id":{id},"text":"{text}","logprob":-0.5,"special":false}},"details":null}}"#
        )
    }

    #[test]
    fn a_tgi_stream_ends_with_its_details() {
        let mut a = Assembler::new(Wire::Tgi, vec![], None);
        let last = r#"data:{"token":{"id":2,"text":"</s>","logprob":0,"special":true},"generated_text":"Hi there","details":{"finish_reason":"eos_token","generated_tokens":3,"seed":null,"input_length":4}}"#;
        let (text, tokens, done) = feed(
            &mut a,
            &[
                ":keep-alive",
                &tgi(1, "Hi"),
                "",
                &tgi(2, " there"),
                "",
                last,
            ],
        );
        assert_eq!(text, "Hi there");
        assert_eq!(tokens.iter().map(|t| t.id).collect::<Vec<_>>(), [1, 2, 2]);
        let done = done.unwrap();
        assert_eq!(
            (
                done.reason,
                done.generated_tokens,
                done.prompt_tokens,
                done.seed
            ),
            (FinishReason::EndOfSequence, 3, 4, None)
        );
    }

    #[test]
    fn tgi_stop_text_is_cut_as_the_core_promises() {
        let mut a = Assembler::new(Wire::Tgi, vec!["END".into()], Some(5));
        let (text, _, done) = feed(&mut a, &[&tgi(1, "one E"), &tgi(2, "N"), &tgi(3, "D two")]);
        assert_eq!(text, "one ");
        let done = done.unwrap();
        assert_eq!(
            (done.reason, done.generated_tokens, done.seed),
            (FinishReason::StopSequence, 3, Some(5))
        );
    }

    #[test]
    fn openai_usage_after_the_finish_reason_counts() {
        let mut a = Assembler::new(Wire::OpenAi, vec![], None);
        let (text, tokens, done) = feed(
            &mut a,
            &[
                r#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
                r#"data: {"choices":[{"index":0,"delta":{"content":"Par"}}]}"#,
                r#"data: {"choices":[{"index":0,"delta":{"content":"is"},"finish_reason":"length"}]}"#,
                r#"data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}"#,
                "data: [DONE]",
            ],
        );
        assert_eq!((text.as_str(), tokens.len()), ("Paris", 2));
        let done = done.unwrap();
        assert_eq!(
            (done.reason, done.generated_tokens, done.prompt_tokens),
            (FinishReason::Length, 2, 12)
        );
    }

    #[test]
    fn without_usage_the_pieces_are_counted_and_a_missing_done_is_forgiven() {
        let mut a = Assembler::new(Wire::OpenAi, vec![], None);
        let (_, _, done) = feed(
            &mut a,
            &[
                r#"data: {"choices":[{"text":"a"}]}"#,
                r#"data: {"choices":[{"text":"b","finish_reason":"stop"}]}"#,
            ],
        );
        assert!(done.is_none());
        let (_, f) = a.eof().unwrap();
        assert_eq!(
            (f.reason, f.generated_tokens, f.prompt_tokens),
            (FinishReason::EndOfSequence, 2, 0)
        );
    }

    #[test]
    fn a_stream_cut_before_its_end_is_broken() {
        let mut a = Assembler::new(Wire::Tgi, vec![], None);
        feed(&mut a, &[&tgi(1, "Hi")]);
        assert_eq!(a.eof().unwrap_err(), Broken::Cut);
    }

    #[test]
    fn held_stop_prefixes_are_released_at_the_end() {
        let mut a = Assembler::new(Wire::Ollama, vec!["STOP".into()], None);
        let (text, _, done) = feed(
            &mut a,
            &[
                r#"{"response":"a ST","done":false}"#,
                r#"{"response":"","done":true,"done_reason":"stop","eval_count":1}"#,
            ],
        );
        assert_eq!(text, "a ST");
        assert_eq!(done.unwrap().generated_tokens, 1);
    }

    #[test]
    fn errors_inside_a_stream_are_remote_failures() {
        let mut a = Assembler::new(Wire::Ollama, vec![], None);
        assert_eq!(
            a.line(r#"{"error":"out of memory"}"#).unwrap_err(),
            Broken::Remote("out of memory".into())
        );
        let mut a = Assembler::new(Wire::Tgi, vec![], None);
        let e = a
            .line(r#"data:{"error":"Input validation error","error_type":"validation"}"#)
            .unwrap_err();
        assert_eq!(
            e,
            Broken::Remote("validation: Input validation error".into())
        );
    }
}
