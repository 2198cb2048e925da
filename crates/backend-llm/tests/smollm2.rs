//! The decode loop on the real SmolLM2 (fetched by scripts/fetch-models):
//! determinism, batch invariance, stop sequences, cancellation, budgets.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use inferd_backend_llm::LlamaCppBackend;
use inferd_core::generate::{Event, FinishReason, GenerateRequest, Prompt, Sampling};
use inferd_core::{Backend, LoadSpec, LoadedModel, ModelConfig};

#[path = "../../../tests/prerequisite.rs"]
mod prerequisite;

fn load(overrides: &[(&str, &str)]) -> Option<Box<dyn LoadedModel>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/smollm2");
    let text = std::fs::read_to_string(dir.join("model.toml")).unwrap();
    let mut config = ModelConfig::from_toml(&text).unwrap();
    for (k, v) in overrides {
        config.parameters.insert(k.to_string(), v.to_string());
    }
    let version_dir = dir.join("1");
    if !version_dir.join("SmolLM2-135M-Instruct.Q4_1.gguf").exists() {
        prerequisite::missing("the SmolLM2 weights are missing; run scripts/fetch-models");
        return None;
    }
    let spec = LoadSpec {
        name: "smollm2",
        version: 1,
        model_dir: &dir,
        version_dir: &version_dir,
        config: &config,
    };
    Some(LlamaCppBackend.load(&spec).expect("SmolLM2 loads"))
}

fn greedy(prompt: &str, n: u32) -> GenerateRequest {
    GenerateRequest {
        prompt: Prompt::Text(prompt.into()),
        sampling: Sampling {
            do_sample: false,
            max_new_tokens: n,
            ..Sampling::default()
        },
    }
}

async fn collect(
    model: &dyn LoadedModel,
    req: GenerateRequest,
) -> (String, Option<FinishReason>, u32) {
    let g = model.generator().unwrap();
    let mut rx = g
        .start("smollm2", req, Instant::now() + Duration::from_secs(60))
        .unwrap();
    let mut text = String::new();
    while let Some(e) = rx.recv().await {
        match e {
            Event::Token(t) => text.push_str(&t.text),
            Event::Done(f) => return (text, Some(f.reason), f.generated_tokens),
            Event::Failed(e) => panic!("generation failed: {e}"),
        }
    }
    (text, None, 0)
}

const PROMPTS: [&str; 8] = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):",
    "The three primary colors are",
    "Water boils at",
    "My favourite book is",
    "In 1969, astronauts",
    "The quick brown fox",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_text_is_the_same_alone_and_in_a_batch_of_eight() {
    let Some(model) = load(&[]) else { return };
    let model = &*model;
    let mut alone = Vec::new();
    for p in PROMPTS {
        let (text, reason, n) = collect(model, greedy(p, 24)).await;
        assert!(!text.is_empty());
        assert!(n <= 24);
        if reason == Some(FinishReason::Length) {
            assert_eq!(n, 24);
        }
        alone.push(text);
    }
    let again = collect(model, greedy(PROMPTS[0], 24)).await.0;
    assert_eq!(again, alone[0], "greedy output changed run to run");
    // All eight are queued before any is read, so they decode in one batch.
    let g = model.generator().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let streams: Vec<_> = PROMPTS
        .iter()
        .map(|p| g.start("smollm2", greedy(p, 24), deadline).unwrap())
        .collect();
    for (i, mut rx) in streams.into_iter().enumerate() {
        let mut text = String::new();
        while let Some(Event::Token(t)) = rx.recv().await {
            text.push_str(&t.text);
        }
        assert_eq!(text, alone[i], "prompt {i} differs when batched");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_sequence_cuts_the_text_before_it() {
    let Some(model) = load(&[]) else { return };
    let (full, _, _) = collect(&*model, greedy(PROMPTS[1], 32)).await;
    let words: Vec<&str> = full.split_whitespace().collect();
    assert!(words.len() > 4, "{full:?}");
    let stop = words[3].to_string();
    let mut req = greedy(PROMPTS[1], 32);
    req.sampling.stop = vec![stop.clone()];
    let (cut, reason, _) = collect(&*model, req).await;
    assert_eq!(reason, Some(FinishReason::StopSequence));
    assert_eq!(cut, full[..full.find(&stop).unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_same_text_when_sampling() {
    let Some(model) = load(&[]) else { return };
    let req = |seed| GenerateRequest {
        prompt: Prompt::Text(PROMPTS[5].into()),
        sampling: Sampling {
            max_new_tokens: 24,
            temperature: 1.2,
            seed: Some(seed),
            ..Sampling::default()
        },
    };
    let a = collect(&*model, req(7)).await.0;
    let b = collect(&*model, req(7)).await.0;
    assert_eq!(a, b);
    let mut texts = std::collections::HashSet::new();
    for seed in 0..5 {
        texts.insert(collect(&*model, req(seed)).await.0);
    }
    assert!(texts.len() > 1, "five seeds gave one text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_frees_its_slot() {
    let Some(model) = load(&[("slots", "1"), ("max_waiting", "1")]) else {
        return;
    };
    let g = model.generator().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut long = g
        .start("smollm2", greedy(PROMPTS[1], 1000), deadline)
        .unwrap();
    assert!(matches!(long.recv().await, Some(Event::Token(_))));
    // The one slot is busy and the queue holds one: a third request is refused.
    let waiting = g.start("smollm2", greedy(PROMPTS[0], 4), deadline).unwrap();
    let refused = g.start("smollm2", greedy(PROMPTS[0], 4), deadline);
    assert!(refused.is_err(), "a full queue must refuse");
    drop(waiting);
    drop(long);
    let started = Instant::now();
    let (text, _, _) = collect(&*model, greedy(PROMPTS[0], 4)).await;
    assert!(!text.is_empty());
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_and_deadlines_give_clear_errors() {
    let Some(model) = load(&[]) else { return };
    let g = model.generator().unwrap();
    let far = Instant::now() + Duration::from_secs(60);
    let long_prompt = "hello ".repeat(3000);
    let e = g
        .start("smollm2", greedy(&long_prompt, 8), far)
        .unwrap_err();
    assert!(e.to_string().contains("more than the 1536 allowed"), "{e}");
    let e = g
        .start("smollm2", greedy(PROMPTS[0], 2046), far)
        .unwrap_err();
    assert!(e.to_string().contains("max_total_tokens"), "{e}");
    let soon = Instant::now() + Duration::from_millis(150);
    let mut rx = g.start("smollm2", greedy(PROMPTS[1], 1000), soon).unwrap();
    let last = loop {
        match rx.recv().await.unwrap() {
            Event::Token(_) => continue,
            other => break other,
        }
    };
    assert!(
        matches!(last, Event::Failed(ref e) if e.kind() == inferd_core::ErrorKind::Timeout),
        "{last:?}"
    );
}
