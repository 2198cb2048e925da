//! Text generation: what a face asks of a model that writes text, and what comes
//! back, token by token. Engines (the local llama.cpp loop, remote TGI, OpenAI or
//! Ollama servers) implement [`Generator`]; faces never learn which one answers.
//!
//! Every generation streams: a non-streaming answer is the stream collected. So
//! the streamed tokens of a request always concatenate to its unstreamed text.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::mpsc;

use crate::backend::BackendError;
use crate::error::{CoreError, CoreResult};
use crate::tensor::{Tensor, TensorData};

pub const TEXT_GENERATION: &str = "text-generation";
/// As TGI: more stop sequences than this are refused.
pub const MAX_STOP_SEQUENCES: usize = 4;
/// The most tokens one request may ask for, whatever the model's context.
pub const MAX_NEW_TOKENS: u32 = 4096;
/// Backends whose models write text (the task is implied by the backend).
pub const TEXT_BACKENDS: [&str; 4] = ["llama.cpp", "tgi", "openai", "ollama"];
/// The requests a model's default timeout covers; a request for more tokens gets
/// proportionally longer (seed 002: "60 s, adapted to `max_new_tokens`").
pub const TIMEOUT_COVERS_TOKENS: u32 = 512;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// A prompt as the client gave it: raw text the model continues, or chat
/// messages the model's own template turns into text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    Text(String),
    Chat(Vec<ChatMessage>),
}

/// How tokens are picked. Defaults are seed 002's.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub max_new_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
    /// 0: off.
    pub top_k: u32,
    /// false: greedy, whatever the temperature.
    pub do_sample: bool,
    /// 1.0: off.
    pub repetition_penalty: f32,
    pub seed: Option<u64>,
    /// Matched on the text; the text ends before the first match.
    pub stop: Vec<String>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            max_new_tokens: 128,
            temperature: 0.7,
            top_p: 0.9,
            top_k: 0,
            do_sample: true,
            repetition_penalty: 1.0,
            seed: None,
            stop: Vec::new(),
        }
    }
}

impl Sampling {
    /// Greedy when sampling is off or the temperature is 0 (OpenAI's way of
    /// asking for determinism).
    pub fn greedy(&self) -> bool {
        !self.do_sample || self.temperature == 0.0
    }

    /// Ranges every face shares; a face adds its own stricter rules first.
    pub fn validate(&self) -> CoreResult<()> {
        let bad = |m: String| Err(CoreError::BadRequest(m));
        if self.max_new_tokens == 0 || self.max_new_tokens > MAX_NEW_TOKENS {
            return bad(format!(
                "max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, got {}",
                self.max_new_tokens
            ));
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return bad(format!(
                "temperature must be between 0.0 and 2.0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!(
                "repetition_penalty must be greater than 0, got {}",
                self.repetition_penalty
            ));
        }
        if self.stop.len() > MAX_STOP_SEQUENCES {
            return bad(format!(
                "at most {MAX_STOP_SEQUENCES} stop sequences are allowed, got {}",
                self.stop.len()
            ));
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("stop sequences must not be empty".into());
        }
        Ok(())
    }
}

/// One generation as the core runs it.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: Prompt,
    pub sampling: Sampling,
}

/// A generated token. `text` is what this token adds to the answer: empty while
/// the text might be the start of a stop sequence, several tokens' worth once it
/// is known not to be.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub id: u32,
    pub text: String,
    pub logprob: f32,
    pub special: bool,
    /// The generation ends with this token (its `Done` follows at once). Set
    /// by engines that know it when they send the token, so faces that mark
    /// the last token (TGI's stream) need not hold every token back a step.
    pub last: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Length,
    EndOfSequence,
    StopSequence,
}

impl FinishReason {
    /// TGI's names.
    pub fn tgi(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::EndOfSequence => "eos_token",
            FinishReason::StopSequence => "stop_sequence",
        }
    }

    /// OpenAI's names.
    pub fn openai(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            _ => "stop",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub reason: FinishReason,
    pub generated_tokens: u32,
    pub prompt_tokens: u32,
    /// The seed sampling used (drawn by the server when the client gave none);
    /// None for greedy decoding.
    pub seed: Option<u64>,
}

/// What a generation sends, in order: tokens, then exactly one `Done` or
/// `Failed`.
#[derive(Debug)]
pub enum Event {
    Token(Token),
    Done(Finished),
    Failed(CoreError),
}

/// A token of a tokenized text, with its byte range in that text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpan {
    pub id: u32,
    pub text: String,
    pub start: usize,
    pub stop: usize,
}

/// What a face reports about a text model.
#[derive(Debug, Clone)]
pub struct GeneratorInfo {
    /// The model's real name (the GGUF's `general.name`, or what a remote server
    /// calls it), for seed 002's `model` field and TGI's `model_id`.
    pub served_name: String,
    /// Where a remote model is served; None for a local one.
    pub endpoint: Option<String>,
    pub max_input_tokens: u32,
    pub max_total_tokens: u32,
    /// Sequences decoded together.
    pub slots: usize,
    /// Requests waiting for a slot before new ones are refused.
    pub max_waiting: usize,
    /// The deadline of a request of up to [`TIMEOUT_COVERS_TOKENS`] tokens.
    pub timeout: Duration,
}

impl GeneratorInfo {
    /// The time a request may take: the model's timeout, grown in proportion
    /// for requests that ask for more than [`TIMEOUT_COVERS_TOKENS`] tokens.
    pub fn deadline_for(&self, max_new_tokens: u32) -> Duration {
        let scale = (max_new_tokens as f64 / TIMEOUT_COVERS_TOKENS as f64).max(1.0);
        self.timeout.mul_f64(scale)
    }
}

pub type Probe<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// A model that writes text.
pub trait Generator: Send + Sync {
    fn info(&self) -> &GeneratorInfo;

    /// Splits text into the model's tokens; remote models answer Unsupported
    /// where their server cannot.
    fn tokenize(&self, text: &str) -> CoreResult<Vec<TokenSpan>>;

    /// Starts a generation. Cheap checks (token budgets, a full queue) fail
    /// here; everything later arrives as events. Dropping the receiver cancels
    /// the generation and frees its slot; past `deadline` the generation ends
    /// with `Failed(DeadlineExceeded)`. Called on the async runtime.
    fn start(
        &self,
        model: &str,
        req: GenerateRequest,
        deadline: Instant,
    ) -> CoreResult<mpsc::Receiver<Event>>;

    /// Checks that the model answers now (a remote server is reachable).
    fn probe(&self) -> Probe<'_>;
}

/// The tensor form of a text model (Triton's text models): each `text_input`
/// row is a raw prompt, answered greedily in `text_output`. Every row starts
/// at once, so they decode together. Blocks: call it from a worker thread
/// (the scheduler's), never on the runtime.
pub fn generate_rows(
    generator: &dyn Generator,
    model: &str,
    inputs: &[Tensor],
    max_new_tokens: u32,
) -> Result<Vec<Tensor>, BackendError> {
    let run_err = |e: String| BackendError::Run(e);
    let Some(TensorData::Bytes(prompts)) = inputs.first().map(Tensor::data) else {
        return Err(run_err("input 'text_input' must be BYTES".into()));
    };
    let sampling = Sampling {
        do_sample: false,
        max_new_tokens,
        ..Sampling::default()
    };
    let deadline = crate::manager::deadline_after(
        Instant::now(),
        generator.info().deadline_for(max_new_tokens),
    );
    let streams = prompts
        .iter()
        .map(|p| {
            let text = std::str::from_utf8(p)
                .map_err(|e| run_err(format!("text_input is not UTF-8: {e}")))?;
            let req = GenerateRequest {
                prompt: Prompt::Text(text.into()),
                sampling: sampling.clone(),
            };
            generator
                .start(model, req, deadline)
                .map_err(|e| run_err(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut texts = Vec::with_capacity(streams.len());
    for mut rx in streams {
        let mut text = Vec::new();
        loop {
            match rx.blocking_recv() {
                Some(Event::Token(t)) => text.extend_from_slice(t.text.as_bytes()),
                Some(Event::Done(_)) => break,
                Some(Event::Failed(e)) => return Err(run_err(e.to_string())),
                None => return Err(run_err("the generation was dropped".into())),
            }
        }
        texts.push(text);
    }
    let n = texts.len();
    let out = Tensor::new("text_output", vec![n], TensorData::Bytes(texts))
        .map_err(|e| run_err(e.to_string()))?;
    Ok(vec![out])
}

/// A server-side prompt template (seed 002's scenarios): a system message and a
/// user message in which `{input}` stands for the client's text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub system: Option<String>,
    pub user: String,
}

impl Scenario {
    /// Checks the template when `model.toml` is read, so a broken one makes the
    /// model unavailable with a reason instead of failing each request.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        let rest = self.user.replace("{input}", "");
        if rest.len() == self.user.len() {
            return Err(format!(
                "model.toml: scenario '{name}': user template must contain {{input}}"
            ));
        }
        if rest.contains('{') || rest.contains('}') {
            return Err(format!(
                "model.toml: scenario '{name}': the only placeholder allowed is {{input}}"
            ));
        }
        Ok(())
    }
}

/// The scenarios every text model has unless its `model.toml` overrides them.
pub fn default_scenarios() -> BTreeMap<String, Scenario> {
    let s = |system: &str, user: &str| Scenario {
        system: Some(system.into()),
        user: user.into(),
    };
    BTreeMap::from([
        (
            "qa".into(),
            s(
                "You are a helpful assistant. Answer the question accurately and concisely.",
                "{input}",
            ),
        ),
        (
            "summarize".into(),
            s(
                "You are a helpful assistant that writes short, faithful summaries.",
                "Summarize the following text in a few sentences:\n\n{input}",
            ),
        ),
        (
            "rewrite".into(),
            s(
                "You are a helpful assistant that rewrites text clearly and fluently, keeping its meaning.",
                "Rewrite the following text:\n\n{input}",
            ),
        ),
    ])
}

/// Builds the prompt for a scenario: `base` is the raw text; the others become
/// chat messages that the model's chat template formats.
pub fn scenario_prompt(
    model: &str,
    scenarios: &BTreeMap<String, Scenario>,
    scenario: &str,
    input: &str,
) -> CoreResult<Prompt> {
    if scenario == "base" && !scenarios.contains_key("base") {
        return Ok(Prompt::Text(input.to_owned()));
    }
    let Some(s) = scenarios.get(scenario) else {
        let mut known: Vec<&str> = scenarios.keys().map(String::as_str).collect();
        if !known.contains(&"base") {
            known.insert(0, "base");
        }
        return Err(CoreError::PromptFormat {
            model: model.into(),
            reason: format!("unknown scenario '{scenario}'; this model has {known:?}"),
        });
    };
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = &s.system {
        messages.push(ChatMessage {
            role: "system".into(),
            content: system.clone(),
        });
    }
    messages.push(ChatMessage {
        role: "user".into(),
        content: s.user.replace("{input}", input),
    });
    Ok(Prompt::Chat(messages))
}

/// Turns token bytes into text that is safe to send: whole UTF-8 characters
/// only, and never the start of a possible stop sequence, which is held back
/// until it is known either to complete the stop (the text ends before it) or
/// not to.
#[derive(Debug, Default)]
pub struct TextStream {
    partial: Vec<u8>,
    held: String,
    stops: Vec<String>,
}

/// What one token's bytes released.
#[derive(Debug, PartialEq, Eq)]
pub enum Released {
    Text(String),
    /// A stop sequence completed: the text before it, and generation ends.
    Stopped(String),
}

impl TextStream {
    pub fn new(stops: Vec<String>) -> TextStream {
        TextStream {
            stops,
            ..TextStream::default()
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> Released {
        self.partial.extend_from_slice(bytes);
        loop {
            match std::str::from_utf8(&self.partial) {
                Ok(s) => {
                    self.held.push_str(s);
                    self.partial.clear();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    self.held
                        .push_str(std::str::from_utf8(&self.partial[..valid]).unwrap_or(""));
                    match e.error_len() {
                        // A character cut between tokens: wait for the rest.
                        None => {
                            self.partial.drain(..valid);
                            break;
                        }
                        Some(n) => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            self.partial.drain(..valid + n);
                        }
                    }
                }
            }
        }
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first_stop {
            self.held.truncate(at);
            return Released::Stopped(std::mem::take(&mut self.held));
        }
        let keep = self.longest_stop_prefix_suffix();
        let release = self.held.len() - keep;
        let rest = self.held.split_off(release);
        Released::Text(std::mem::replace(&mut self.held, rest))
    }

    /// Everything still held, when generation ends for another reason.
    pub fn finish(&mut self) -> String {
        let mut text = std::mem::take(&mut self.held);
        if !self.partial.is_empty() {
            text.push_str(&String::from_utf8_lossy(&self.partial));
            self.partial.clear();
        }
        text
    }

    /// Bytes at the end of the held text that could begin a stop sequence.
    fn longest_stop_prefix_suffix(&self) -> usize {
        let held = self.held.as_str();
        let mut best = 0;
        for stop in &self.stops {
            let max = stop.len().saturating_sub(1).min(held.len());
            for len in (best + 1..=max).rev() {
                let start = held.len() - len;
                if held.is_char_boundary(start) && stop.starts_with(&held[start..]) {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool) {
        let mut ts = TextStream::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        for p in pieces {
            match ts.push(p.as_bytes()) {
                Released::Text(t) => out.push(t),
                Released::Stopped(t) => {
                    out.push(t);
                    return (out, true);
                }
            }
        }
        out.push(ts.finish());
        (out, false)
    }

    #[test]
    fn text_without_stops_passes_through_token_by_token() {
        let (out, stopped) = run(&[], &["Hel", "lo", " world"]);
        assert_eq!(out, ["Hel", "lo", " world", ""]);
        assert!(!stopped);
    }

    #[test]
    fn a_stop_split_across_tokens_ends_the_text_before_it() {
        let (out, stopped) = run(&["\n\n"], &["one", "\n", "\ntwo"]);
        assert!(stopped);
        assert_eq!(out.concat(), "one");
        assert_eq!(out, ["one", "", ""]);
    }

    #[test]
    fn a_false_start_of_a_stop_is_released_once_it_diverges() {
        let (out, stopped) = run(&["END"], &["a E", "Nx", "y"]);
        assert!(!stopped);
        assert_eq!(out, ["a ", "ENx", "y", ""]);
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        let (out, stopped) = run(&["world", "lo"], &["hello world"]);
        assert!(stopped);
        assert_eq!(out.concat(), "hel");
    }

    #[test]
    fn utf8_cut_between_tokens_is_joined_and_bad_bytes_replaced() {
        let mut ts = TextStream::new(vec![]);
        let e = "é".as_bytes();
        assert_eq!(ts.push(&e[..1]), Released::Text(String::new()));
        assert_eq!(ts.push(&e[1..]), Released::Text("é".into()));
        assert_eq!(ts.push(&[0xff, b'a']), Released::Text("\u{fffd}a".into()));
        assert_eq!(ts.push(&e[..1]), Released::Text(String::new()));
        assert_eq!(ts.finish(), "\u{fffd}");
    }

    #[test]
    fn sampling_ranges_are_checked() {
        let ok = Sampling::default();
        assert!(ok.validate().is_ok());
        for bad in [
            Sampling {
                temperature: 3.0,
                ..ok.clone()
            },
            Sampling {
                max_new_tokens: 0,
                ..ok.clone()
            },
            Sampling {
                max_new_tokens: MAX_NEW_TOKENS + 1,
                ..ok.clone()
            },
            Sampling {
                top_p: 0.0,
                ..ok.clone()
            },
            Sampling {
                repetition_penalty: 0.0,
                ..ok.clone()
            },
            Sampling {
                stop: vec!["a".into(); 5],
                ..ok.clone()
            },
            Sampling {
                stop: vec![String::new()],
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scenarios_build_prompts_and_unknown_ones_fail() {
        let s = default_scenarios();
        assert_eq!(
            scenario_prompt("m", &s, "base", "hi").unwrap(),
            Prompt::Text("hi".into())
        );
        let Prompt::Chat(msgs) = scenario_prompt("m", &s, "summarize", "TEXT").unwrap() else {
            panic!("summarize is a chat scenario");
        };
        assert_eq!(msgs[0].role, "system");
        assert!(msgs[1].content.ends_with("TEXT"));
        let err = scenario_prompt("m", &s, "poem", "x").unwrap_err();
        assert!(err.to_string().contains("unknown scenario 'poem'"), "{err}");
        let bad = Scenario {
            system: None,
            user: "{input} {other}".into(),
        };
        assert!(bad.validate("x").is_err());
    }

    #[test]
    fn deadlines_grow_past_the_covered_tokens() {
        let info = GeneratorInfo {
            served_name: "m".into(),
            endpoint: None,
            max_input_tokens: 1,
            max_total_tokens: 2,
            slots: 1,
            max_waiting: 1,
            timeout: Duration::from_secs(60),
        };
        assert_eq!(info.deadline_for(128), Duration::from_secs(60));
        assert_eq!(info.deadline_for(1024), Duration::from_secs(120));
    }
}
