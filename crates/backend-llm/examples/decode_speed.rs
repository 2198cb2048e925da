//! Decode throughput of the engine alone (no HTTP): N concurrent greedy
//! sequences of 128 tokens on SmolLM2, aggregate tokens/s. For comparing the
//! decode loop with a bare llama.cpp loop: `cargo run --release -p
//! inferd-backend-llm --example decode_speed -- 1 4 8` (extra `[parameters]`
//! as KEY=VALUE arguments, e.g. kv_unified=true).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use inferd_backend_llm::LlamaCppBackend;
use inferd_core::generate::{Event, GenerateRequest, Prompt, Sampling};
use inferd_core::{Backend, LoadSpec, ModelConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/smollm2");
    let mut config =
        ModelConfig::from_toml(&std::fs::read_to_string(dir.join("model.toml")).unwrap()).unwrap();
    let mut counts = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.split_once('=') {
            Some((k, v)) => {
                config.parameters.insert(k.into(), v.into());
            }
            None => counts.push(arg.parse::<usize>().expect("a stream count")),
        }
    }
    let version_dir = dir.join("1");
    let spec = LoadSpec {
        name: "smollm2",
        version: 1,
        model_dir: &dir,
        version_dir: &version_dir,
        config: &config,
    };
    let model = LlamaCppBackend
        .load(&spec)
        .expect("SmolLM2 loads (run scripts/fetch-models)");
    let g = model.generator().unwrap();
    for n in counts {
        let mut best = 0.0f64;
        for _ in 0..3 {
            let started = Instant::now();
            let streams: Vec<_> = (0..n)
                .map(|i| {
                    let req = GenerateRequest {
                        prompt: Prompt::Text(format!("{i}: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,")),
                        sampling: Sampling {
                            do_sample: false,
                            max_new_tokens: 128,
                            ..Sampling::default()
                        },
                    };
                    g.start("smollm2", req, Instant::now() + Duration::from_secs(600))
                        .unwrap()
                })
                .collect();
            let mut tokens = 0u32;
            for mut rx in streams {
                while let Some(e) = rx.recv().await {
                    match e {
                        Event::Token(_) => tokens += 1,
                        Event::Done(_) => break,
                        Event::Failed(e) => panic!("{e}"),
                    }
                }
            }
            best = best.max(f64::from(tokens) / started.elapsed().as_secs_f64());
        }
        println!("{n} streams: {best:.1} tok/s (best of 3, prefill included)");
    }
}
