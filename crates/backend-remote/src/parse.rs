//! The remote servers' streams, read line by line: a splitter that joins lines
//! cut across network chunks, and one parser per wire format that turns a line
//! into a [`Parsed`] value. Pure functions, so every quirk has a unit test.

use inferd_core::generate::{FinishReason, Token};
use serde::Deserialize;
use serde_json::Value;

/// A line longer than this is not a stream we understand; refusing it keeps a
/// misbehaving server from growing our buffer without end.
pub const MAX_LINE: usize = 4 << 20;

/// Splits a byte stream into lines (`\n` or `\r\n`), keeping the unfinished
/// tail for the next chunk. Lines are decoded only once whole, so a UTF-8
/// character cut between chunks is joined before decoding.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// The lines the chunk completes; fails if a line grows past [`MAX_LINE`].
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<String>, String> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..at]);
            lines.push(decode(std::mem::take(&mut self.partial)));
            rest = &rest[at + 1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_LINE {
            return Err(format!("a stream line is longer than {MAX_LINE} bytes"));
        }
        Ok(lines)
    }

    /// The last line, when the stream ended without a newline after it.
    pub fn finish(&mut self) -> Option<String> {
        let rest = decode(std::mem::take(&mut self.partial));
        (!rest.trim().is_empty()).then_some(rest)
    }
}

fn decode(mut line: Vec<u8>) -> String {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The payload of an SSE `data:` line; None for comments (keep-alives),
/// blank lines and the other SSE fields, which carry nothing we use.
pub fn sse_data(line: &str) -> Option<&str> {
    let data = line.strip_prefix("data:")?;
    Some(data.strip_prefix(' ').unwrap_or(data))
}

/// What one line of a stream says.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Nothing to act on (an empty piece, a role-only delta, a blank line).
    Skip,
    Chunk(Chunk),
    /// The remote reported a failure inside the stream, or sent something
    /// that is not its format.
    Error(String),
}

/// The facts one line carries; any of them may be missing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chunk {
    /// A piece of text. Servers that do not report token ids give id 0 and
    /// logprob 0.0.
    pub token: Option<Token>,
    pub reason: Option<FinishReason>,
    pub generated_tokens: Option<u32>,
    pub prompt_tokens: Option<u32>,
    pub seed: Option<u64>,
    /// The stream says it is complete.
    pub end: bool,
}

fn malformed(what: &str, e: serde_json::Error) -> Parsed {
    Parsed::Error(format!("the server sent a malformed {what}: {e}"))
}

fn piece(text: Option<String>) -> Option<Token> {
    text.filter(|t| !t.is_empty()).map(|text| Token {
        id: 0,
        text,
        logprob: 0.0,
        special: false,
        last: false,
    })
}

/// An error object, as TGI (`{"error": "...", "error_type": "..."}`), vLLM
/// (`{"error": {"message", "type"}}`) or Ollama (`{"error": "..."}`) send it.
fn error_text(error: &Value, error_type: Option<&str>) -> String {
    let (message, kind) = match error {
        Value::String(s) => (s.clone(), error_type.map(str::to_owned)),
        Value::Object(o) => (
            o.get("message")
                .and_then(Value::as_str)
                .map_or_else(|| error.to_string(), str::to_owned),
            o.get("type").and_then(Value::as_str).map(str::to_owned),
        ),
        other => (other.to_string(), error_type.map(str::to_owned)),
    };
    match kind {
        Some(kind) => format!("{kind}: {message}"),
        None => message,
    }
}

#[derive(Deserialize)]
struct TgiEvent {
    token: Option<TgiToken>,
    details: Option<TgiDetails>,
    error: Option<Value>,
    error_type: Option<String>,
}

#[derive(Deserialize)]
struct TgiToken {
    id: u32,
    text: String,
    /// Null for tokens TGI cannot score.
    logprob: Option<f32>,
    #[serde(default)]
    special: bool,
}

#[derive(Deserialize)]
struct TgiDetails {
    finish_reason: String,
    generated_tokens: u32,
    seed: Option<u64>,
    /// Only newer TGI versions send it.
    input_length: Option<u32>,
}

/// The JSON of one `/generate_stream` event. Special tokens (the end of
/// sequence) keep their place in the stream but add no text, as TGI's own
/// `generated_text` skips them.
pub fn tgi_event(data: &str) -> Parsed {
    let event: TgiEvent = match serde_json::from_str(data) {
        Ok(e) => e,
        Err(e) => return malformed("TGI event", e),
    };
    if let Some(error) = &event.error {
        return Parsed::Error(error_text(error, event.error_type.as_deref()));
    }
    let token = event.token.map(|t| Token {
        id: t.id,
        text: if t.special { String::new() } else { t.text },
        logprob: t.logprob.filter(|l| l.is_finite()).unwrap_or(0.0),
        special: t.special,
        last: false,
    });
    let mut chunk = Chunk {
        token,
        ..Chunk::default()
    };
    if let Some(d) = event.details {
        chunk.reason = Some(match d.finish_reason.as_str() {
            "length" => FinishReason::Length,
            "stop_sequence" => FinishReason::StopSequence,
            _ => FinishReason::EndOfSequence,
        });
        chunk.generated_tokens = Some(d.generated_tokens);
        chunk.prompt_tokens = d.input_length;
        chunk.seed = d.seed;
        chunk.end = true;
    }
    Parsed::Chunk(chunk)
}

#[derive(Deserialize)]
struct OpenAiChunk {
    #[serde(default)]
    choices: Vec<OpenAiChoice>,
    usage: Option<OpenAiUsage>,
    error: Option<Value>,
    /// TGI's OpenAI routes report errors in its own shape.
    error_type: Option<String>,
}

#[derive(Deserialize)]
struct OpenAiChoice {
    /// Completions put the piece here...
    text: Option<String>,
    /// ...chat completions here.
    delta: Option<OpenAiDelta>,
    finish_reason: Option<String>,
    /// vLLM's extension: the stop string that ended the text, or the id of a
    /// stop token.
    stop_reason: Option<Value>,
}

#[derive(Deserialize)]
struct OpenAiDelta {
    content: Option<String>,
}

#[derive(Deserialize)]
struct OpenAiUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
}

/// The data of one OpenAI-style SSE event (completions or chat), including
/// the closing `[DONE]`.
pub fn openai_chunk(data: &str) -> Parsed {
    if data.trim() == "[DONE]" {
        return Parsed::Chunk(Chunk {
            end: true,
            ..Chunk::default()
        });
    }
    let raw: OpenAiChunk = match serde_json::from_str(data) {
        Ok(c) => c,
        Err(e) => return malformed("OpenAI chunk", e),
    };
    if let Some(error) = &raw.error {
        return Parsed::Error(error_text(error, raw.error_type.as_deref()));
    }
    let mut chunk = Chunk::default();
    if let Some(choice) = raw.choices.into_iter().next() {
        let text = choice.text.or(choice.delta.and_then(|d| d.content));
        chunk.token = piece(text);
        chunk.reason = choice.finish_reason.map(|r| match r.as_str() {
            "length" => FinishReason::Length,
            _ if matches!(choice.stop_reason, Some(Value::String(_))) => FinishReason::StopSequence,
            _ => FinishReason::EndOfSequence,
        });
    }
    if let Some(u) = raw.usage {
        chunk.prompt_tokens = Some(u.prompt_tokens);
        chunk.generated_tokens = Some(u.completion_tokens);
    }
    if chunk == Chunk::default() {
        return Parsed::Skip;
    }
    Parsed::Chunk(chunk)
}

#[derive(Deserialize)]
struct OllamaLine {
    /// `/api/generate` puts the piece here...
    response: Option<String>,
    /// ...`/api/chat` here.
    message: Option<OllamaMessage>,
    #[serde(default)]
    done: bool,
    done_reason: Option<String>,
    /// Left out by some versions when the whole prompt came from the cache.
    prompt_eval_count: Option<u32>,
    eval_count: Option<u32>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct OllamaMessage {
    content: Option<String>,
}

/// One NDJSON line of `/api/generate` or `/api/chat`.
pub fn ollama_line(line: &str) -> Parsed {
    if line.trim().is_empty() {
        return Parsed::Skip;
    }
    let raw: OllamaLine = match serde_json::from_str(line) {
        Ok(l) => l,
        Err(e) => return malformed("Ollama line", e),
    };
    if let Some(error) = &raw.error {
        return Parsed::Error(error_text(error, None));
    }
    let text = raw.response.or(raw.message.and_then(|m| m.content));
    let mut chunk = Chunk {
        token: piece(text),
        ..Chunk::default()
    };
    if raw.done {
        chunk.reason = Some(match raw.done_reason.as_deref() {
            Some("length") => FinishReason::Length,
            _ => FinishReason::EndOfSequence,
        });
        chunk.prompt_tokens = raw.prompt_eval_count;
        chunk.generated_tokens = raw.eval_count;
        chunk.end = true;
    }
    if chunk == Chunk::default() {
        return Parsed::Skip;
    }
    Parsed::Chunk(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(p: Parsed) -> Chunk {
        match p {
            Parsed::Chunk(c) => c,
            other => panic!("expected a chunk, got {other:?}"),
        }
    }

    #[test]
    fn lines_cut_across_chunks_are_joined() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"data:{\"a\"").unwrap(), Vec::<String>::new());
        assert_eq!(
            s.push(b":1}\r\n\r\ndata: x\nda").unwrap(),
            ["data:{\"a\":1}", "", "data: x"]
        );
        assert_eq!(s.push(b"ta: y").unwrap(), Vec::<String>::new());
        assert_eq!(s.finish().as_deref(), Some("data: y"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn a_character_cut_between_chunks_survives() {
        let mut s = LineSplitter::default();
        let line = "é\n".as_bytes();
        assert!(s.push(&line[..1]).unwrap().is_empty());
        assert_eq!(s.push(&line[1..]).unwrap(), ["é"]);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut s = LineSplitter::default();
        assert!(s.push(&vec![b'x'; MAX_LINE + 1]).is_err());
    }

    #[test]
    fn sse_fields_other_than_data_are_ignored() {
        assert_eq!(sse_data("data:{}"), Some("{}"));
        assert_eq!(sse_data("data: [DONE]"), Some("[DONE]"));
        assert_eq!(sse_data(": keep-alive"), None);
        assert_eq!(sse_data("event: message"), None);
        assert_eq!(sse_data(""), None);
    }

    #[test]
    fn tgi_tokens_and_the_final_details() {
        let c = chunk(tgi_event(
            r#"{"index":1,"token":{"id":7592,"text":" Hello","logprob":-0.25,"special":false},"top_tokens":null,"generated_text":null,"details":null}"#,
        ));
        assert_eq!(
            c.token.as_ref().map(|t| (t.id, t.text.as_str(), t.logprob)),
            Some((7592, " Hello", -0.25))
        );
        assert!(!c.end && c.reason.is_none());

        let c = chunk(tgi_event(
            r#"{"index":3,"token":{"id":2,"text":"</s>","logprob":-0.1,"special":true},"generated_text":" Hello world","details":{"finish_reason":"eos_token","generated_tokens":3,"seed":42,"input_length":5}}"#,
        ));
        let t = c.token.unwrap();
        assert!(t.special && t.text.is_empty(), "special tokens add no text");
        assert_eq!(c.reason, Some(FinishReason::EndOfSequence));
        assert_eq!(
            (c.generated_tokens, c.prompt_tokens, c.seed, c.end),
            (Some(3), Some(5), Some(42), true)
        );

        let c = chunk(tgi_event(
            r#"{"token":{"id":1,"text":"x","logprob":null,"special":false},"details":{"finish_reason":"length","generated_tokens":2,"seed":null}}"#,
        ));
        assert_eq!(c.token.unwrap().logprob, 0.0);
        assert_eq!(
            (c.reason, c.prompt_tokens, c.seed),
            (Some(FinishReason::Length), None, None)
        );
    }

    #[test]
    fn tgi_errors_and_garbage_are_errors() {
        assert_eq!(
            tgi_event(
                r#"{"error":"Request failed during generation: CUDA OOM","error_type":"generation"}"#
            ),
            Parsed::Error("generation: Request failed during generation: CUDA OOM".into())
        );
        assert!(
            matches!(tgi_event("not json"), Parsed::Error(e) if e.contains("malformed TGI event"))
        );
    }

    #[test]
    fn openai_completion_and_chat_pieces() {
        let c = chunk(openai_chunk(
            r#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" Paris","logprobs":null,"finish_reason":null}],"usage":null}"#,
        ));
        assert_eq!(c.token.unwrap().text, " Paris");
        let c = chunk(openai_chunk(
            r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
        ));
        assert_eq!(c.token.unwrap().text, "Hi");
        assert_eq!(
            openai_chunk(
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#
            ),
            Parsed::Skip
        );
    }

    #[test]
    fn openai_finish_usage_and_done() {
        let c = chunk(openai_chunk(
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
        ));
        assert_eq!((c.reason, c.end), (Some(FinishReason::Length), false));
        let c = chunk(openai_chunk(
            r#"{"choices":[{"index":0,"text":"","finish_reason":"stop","stop_reason":null}]}"#,
        ));
        assert_eq!(c.reason, Some(FinishReason::EndOfSequence));
        let c = chunk(openai_chunk(
            r#"{"choices":[{"index":0,"text":"","finish_reason":"stop","stop_reason":"\n\n"}]}"#,
        ));
        assert_eq!(c.reason, Some(FinishReason::StopSequence));
        let c = chunk(openai_chunk(
            r#"{"id":"c","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}"#,
        ));
        assert_eq!(
            (c.prompt_tokens, c.generated_tokens, c.token),
            (Some(9), Some(4), None)
        );
        assert!(chunk(openai_chunk("[DONE]")).end);
    }

    #[test]
    fn openai_errors_in_either_shape() {
        assert_eq!(
            openai_chunk(r#"{"error":{"message":"boom","type":"InternalServerError","code":500}}"#),
            Parsed::Error("InternalServerError: boom".into())
        );
        assert_eq!(
            openai_chunk(r#"{"error":"Model is overloaded","error_type":"overloaded"}"#),
            Parsed::Error("overloaded: Model is overloaded".into())
        );
        assert!(matches!(openai_chunk("{"), Parsed::Error(_)));
    }

    #[test]
    fn ollama_generate_chat_and_done_lines() {
        let c = chunk(ollama_line(
            r#"{"model":"llama3","created_at":"2024-01-01T00:00:00Z","response":"The","done":false}"#,
        ));
        assert_eq!(c.token.unwrap().text, "The");
        let c = chunk(ollama_line(
            r#"{"model":"llama3","message":{"role":"assistant","content":" sky"},"done":false}"#,
        ));
        assert_eq!(c.token.unwrap().text, " sky");
        let c = chunk(ollama_line(
            r#"{"model":"llama3","response":"","done":true,"done_reason":"length","total_duration":1,"prompt_eval_count":26,"eval_count":8}"#,
        ));
        assert_eq!(
            (
                c.token,
                c.reason,
                c.prompt_tokens,
                c.generated_tokens,
                c.end
            ),
            (None, Some(FinishReason::Length), Some(26), Some(8), true)
        );
        let c = chunk(ollama_line(
            r#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}"#,
        ));
        assert_eq!(
            (c.reason, c.prompt_tokens),
            (Some(FinishReason::EndOfSequence), None)
        );
        assert_eq!(ollama_line("  "), Parsed::Skip);
    }

    #[test]
    fn ollama_errors() {
        assert_eq!(
            ollama_line(r#"{"error":"model 'nope' not found"}"#),
            Parsed::Error("model 'nope' not found".into())
        );
    }
}
