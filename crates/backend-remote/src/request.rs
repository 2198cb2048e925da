//! The HTTP request each kind of server gets for a generation: which route, which
//! JSON, and which stream format comes back. Pure, so the sampling rules every
//! server enforces differently are unit-tested here.

use inferd_core::generate::{ChatMessage, GenerateRequest, Prompt, Sampling};
use serde_json::{json, Map, Value};

use crate::Kind;

/// The stream format of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// SSE of TGI's `/generate_stream` events.
    Tgi,
    /// SSE of OpenAI completion or chat chunks, closed by `[DONE]`.
    OpenAi,
    /// NDJSON lines of Ollama's `/api/generate` or `/api/chat`.
    Ollama,
}

/// A request ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub url: String,
    pub body: Value,
    pub wire: Wire,
}

/// Builds the request for `req`. `endpoint` has no trailing slash; `model` is
/// the remote's name for the model, if configured.
pub fn build(kind: Kind, endpoint: &str, model: Option<&str>, req: &GenerateRequest) -> Upstream {
    let s = &req.sampling;
    match (kind, &req.prompt) {
        (Kind::Tgi, Prompt::Text(text)) => Upstream {
            url: format!("{endpoint}/generate_stream"),
            body: json!({"inputs": text, "parameters": tgi_parameters(s)}),
            wire: Wire::Tgi,
        },
        // TGI's chat route applies the model's template; its `model` field is
        // required by the schema but not checked, hence the placeholder.
        (Kind::Tgi, Prompt::Chat(messages)) => Upstream {
            url: format!("{endpoint}/v1/chat/completions"),
            body: openai_body(model.unwrap_or("tgi"), "messages", chat(messages), s, false),
            wire: Wire::OpenAi,
        },
        (Kind::OpenAi, Prompt::Text(text)) => Upstream {
            url: format!("{endpoint}/completions"),
            body: openai_body(model.unwrap_or_default(), "prompt", json!(text), s, true),
            wire: Wire::OpenAi,
        },
        (Kind::OpenAi, Prompt::Chat(messages)) => Upstream {
            url: format!("{endpoint}/chat/completions"),
            body: openai_body(
                model.unwrap_or_default(),
                "messages",
                chat(messages),
                s,
                true,
            ),
            wire: Wire::OpenAi,
        },
        // `raw`: the prompt is the model's input as is, like a text prompt to
        // every other backend; without it Ollama wraps it in the chat template.
        (Kind::Ollama, Prompt::Text(text)) => Upstream {
            url: format!("{endpoint}/api/generate"),
            body: json!({
                "model": model.unwrap_or_default(),
                "prompt": text,
                "raw": true,
                "stream": true,
                "options": ollama_options(s),
            }),
            wire: Wire::Ollama,
        },
        (Kind::Ollama, Prompt::Chat(messages)) => Upstream {
            url: format!("{endpoint}/api/chat"),
            body: json!({
                "model": model.unwrap_or_default(),
                "messages": chat(messages),
                "stream": true,
                "options": ollama_options(s),
            }),
            wire: Wire::Ollama,
        },
    }
}

/// The shortest decimal that reads back as `x`: 0.7, not the 0.699999988 a
/// plain widening to f64 would put on the wire.
fn float(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

fn chat(messages: &[ChatMessage]) -> Value {
    messages
        .iter()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect()
}

/// TGI refuses `temperature <= 0` and `top_p >= 1`, and samples whenever a
/// sampling parameter is present, so greedy requests send none of them and
/// defaults are left out.
fn tgi_parameters(s: &Sampling) -> Value {
    let greedy = s.greedy();
    let mut p = Map::new();
    p.insert("max_new_tokens".into(), json!(s.max_new_tokens));
    p.insert("do_sample".into(), json!(!greedy));
    if !greedy {
        p.insert("temperature".into(), json!(float(s.temperature)));
        if s.top_p < 1.0 {
            p.insert("top_p".into(), json!(float(s.top_p)));
        }
        if s.top_k > 0 {
            p.insert("top_k".into(), json!(s.top_k));
        }
        if let Some(seed) = s.seed {
            p.insert("seed".into(), json!(seed));
        }
    }
    if s.repetition_penalty != 1.0 {
        p.insert(
            "repetition_penalty".into(),
            json!(float(s.repetition_penalty)),
        );
    }
    p.insert("stop".into(), json!(s.stop));
    p.insert("details".into(), json!(true));
    Value::Object(p)
}

/// OpenAI asks for determinism with temperature 0. `extras` adds `top_k` and
/// `repetition_penalty` (vLLM's and inferd's extensions) when they differ
/// from the defaults; TGI's chat route has no such fields.
fn openai_body(model: &str, field: &str, input: Value, s: &Sampling, extras: bool) -> Value {
    let greedy = s.greedy();
    let mut b = Map::new();
    b.insert("model".into(), json!(model));
    b.insert(field.into(), input);
    b.insert("stream".into(), json!(true));
    b.insert("stream_options".into(), json!({"include_usage": true}));
    b.insert("max_tokens".into(), json!(s.max_new_tokens));
    b.insert(
        "temperature".into(),
        json!(if greedy { 0.0 } else { float(s.temperature) }),
    );
    if !greedy && s.top_p < 1.0 {
        b.insert("top_p".into(), json!(float(s.top_p)));
    }
    if let Some(seed) = s.seed {
        b.insert("seed".into(), json!(seed));
    }
    if !s.stop.is_empty() {
        b.insert("stop".into(), json!(s.stop));
    }
    if extras {
        if !greedy && s.top_k > 0 {
            b.insert("top_k".into(), json!(s.top_k));
        }
        if s.repetition_penalty != 1.0 {
            b.insert(
                "repetition_penalty".into(),
                json!(float(s.repetition_penalty)),
            );
        }
    }
    Value::Object(b)
}

/// Every option is sent, because Ollama's own defaults differ from ours
/// (`top_k` 40, `repeat_penalty` 1.1); `top_k` 0 and `repeat_penalty` 1.0
/// turn them off there as here.
fn ollama_options(s: &Sampling) -> Value {
    let mut o = Map::new();
    o.insert("num_predict".into(), json!(s.max_new_tokens));
    o.insert(
        "temperature".into(),
        json!(if s.greedy() {
            0.0
        } else {
            float(s.temperature)
        }),
    );
    o.insert("top_p".into(), json!(float(s.top_p)));
    o.insert("top_k".into(), json!(s.top_k));
    o.insert("repeat_penalty".into(), json!(float(s.repetition_penalty)));
    if let Some(seed) = s.seed {
        o.insert("seed".into(), json!(seed));
    }
    if !s.stop.is_empty() {
        o.insert("stop".into(), json!(s.stop));
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(prompt: Prompt, sampling: Sampling) -> GenerateRequest {
        GenerateRequest { prompt, sampling }
    }

    fn text() -> Prompt {
        Prompt::Text("Once upon".into())
    }

    fn messages() -> Prompt {
        Prompt::Chat(vec![ChatMessage {
            role: "user".into(),
            content: "Hi".into(),
        }])
    }

    fn greedy() -> Sampling {
        Sampling {
            do_sample: false,
            max_new_tokens: 16,
            ..Sampling::default()
        }
    }

    #[test]
    fn tgi_greedy_sends_no_sampling_parameters() {
        let u = build(Kind::Tgi, "http://h:3000", None, &req(text(), greedy()));
        assert_eq!(u.url, "http://h:3000/generate_stream");
        assert_eq!(u.wire, Wire::Tgi);
        assert_eq!(
            u.body,
            json!({"inputs": "Once upon", "parameters": {
                "max_new_tokens": 16, "do_sample": false, "stop": [], "details": true
            }})
        );
    }

    #[test]
    fn tgi_sampling_leaves_out_defaults_it_would_refuse() {
        let s = Sampling {
            top_p: 1.0,
            seed: Some(7),
            stop: vec!["\n".into()],
            repetition_penalty: 1.2,
            ..Sampling::default()
        };
        let p = &build(Kind::Tgi, "http://h", None, &req(text(), s)).body["parameters"];
        assert_eq!(p["do_sample"], json!(true));
        assert_eq!(p["temperature"], json!(0.7));
        assert_eq!(p["seed"], json!(7));
        assert_eq!(p["stop"], json!(["\n"]));
        assert_eq!(p["repetition_penalty"], json!(1.2));
        assert!(p.get("top_p").is_none() && p.get("top_k").is_none());

        let s = Sampling {
            top_k: 40,
            ..Sampling::default()
        };
        let p = &build(Kind::Tgi, "http://h", None, &req(text(), s)).body["parameters"];
        assert_eq!(
            (p["top_p"].clone(), p["top_k"].clone()),
            (json!(0.9), json!(40))
        );
    }

    #[test]
    fn tgi_chat_goes_to_its_openai_route() {
        let u = build(Kind::Tgi, "http://h", None, &req(messages(), greedy()));
        assert_eq!(u.url, "http://h/v1/chat/completions");
        assert_eq!(u.wire, Wire::OpenAi);
        assert_eq!(u.body["model"], json!("tgi"));
        assert_eq!(u.body["temperature"], json!(0.0));
        assert_eq!(
            u.body["messages"],
            json!([{"role": "user", "content": "Hi"}])
        );
        assert_eq!(u.body["stream_options"], json!({"include_usage": true}));
        assert!(u.body.get("top_p").is_none());
    }

    #[test]
    fn openai_routes_and_fields() {
        let s = Sampling {
            top_k: 5,
            seed: Some(1),
            ..Sampling::default()
        };
        let u = build(
            Kind::OpenAi,
            "http://h/v1",
            Some("m"),
            &req(text(), s.clone()),
        );
        assert_eq!(u.url, "http://h/v1/completions");
        assert_eq!(
            u.body,
            json!({
                "model": "m", "prompt": "Once upon", "stream": true,
                "stream_options": {"include_usage": true}, "max_tokens": 128,
                "temperature": 0.7, "top_p": 0.9, "seed": 1, "top_k": 5
            })
        );
        let u = build(
            Kind::OpenAi,
            "http://h/v1",
            Some("m"),
            &req(messages(), greedy()),
        );
        assert_eq!(u.url, "http://h/v1/chat/completions");
        assert_eq!(u.body["temperature"], json!(0.0));
        assert!(u.body.get("top_k").is_none() && u.body.get("stop").is_none());
    }

    #[test]
    fn ollama_sends_every_option_and_raw_text() {
        let s = Sampling {
            stop: vec!["END".into()],
            ..greedy()
        };
        let u = build(
            Kind::Ollama,
            "http://h:11434",
            Some("llama3"),
            &req(text(), s),
        );
        assert_eq!(u.url, "http://h:11434/api/generate");
        assert_eq!(u.wire, Wire::Ollama);
        assert_eq!(
            u.body,
            json!({
                "model": "llama3", "prompt": "Once upon", "raw": true, "stream": true,
                "options": {"num_predict": 16, "temperature": 0.0, "top_p": 0.9,
                    "top_k": 0, "repeat_penalty": 1.0, "stop": ["END"]}
            })
        );
        let u = build(
            Kind::Ollama,
            "http://h:11434",
            Some("llama3"),
            &req(messages(), greedy()),
        );
        assert_eq!(u.url, "http://h:11434/api/chat");
        assert_eq!(u.body["messages"][0]["content"], json!("Hi"));
    }
}
