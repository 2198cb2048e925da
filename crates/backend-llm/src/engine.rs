//! The decode loop: one thread per model owns the llama.cpp context. Each step
//! feeds one llama batch holding the next token of every decoding sequence plus
//! a bounded chunk of prompt tokens of the sequences still prefilling; waiting
//! requests take free slots between steps. Cancelled (receiver dropped) and
//! expired sequences leave at the next step, freeing their slot and KV cells.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::mpsc::Sender;
use std::time::Instant;

use inferd_core::generate::{Event, FinishReason, Finished, Released, Sampling, TextStream, Token};
use inferd_core::CoreError;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::error::TrySendError;

use crate::{Pending, Shared};

/// Tokens the repetition penalty looks back over (llama.cpp's default).
const PENALTY_LAST_N: i32 = 64;

struct Seq {
    slot: i32,
    req: Pending,
    /// Prompt tokens already in the KV cache.
    prefilled: usize,
    /// The next position in this sequence.
    pos: i32,
    /// A sampled token not yet fed back.
    next: Option<LlamaToken>,
    /// Where this sequence's logits are in the current batch.
    logits_at: Option<i32>,
    sampler: LlamaSampler,
    seed: Option<u64>,
    text: TextStream,
    generated: u32,
}

/// Why a sequence leaves.
enum End {
    Done(FinishReason),
    Failed(CoreError),
    Cancelled,
}

fn random_seed() -> u64 {
    RandomState::new().build_hasher().finish()
}

fn sampler(model: &LlamaModel, s: &Sampling) -> (LlamaSampler, Option<u64>) {
    let mut chain = Vec::new();
    if s.repetition_penalty != 1.0 {
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            PENALTY_LAST_N,
            s.repetition_penalty,
            0.0,
            0.0,
        ));
    }
    if s.greedy() {
        chain.push(LlamaSampler::greedy());
        return (LlamaSampler::chain_simple(chain), None);
    }
    if s.top_k > 0 {
        chain.push(LlamaSampler::top_k(s.top_k as i32));
    }
    if s.top_p < 1.0 {
        chain.push(LlamaSampler::top_p(s.top_p, 1));
    }
    let seed = s.seed.unwrap_or_else(random_seed);
    chain.push(LlamaSampler::temp(s.temperature));
    // llama.cpp's RNG takes 32 bits; equal seeds still give equal text.
    chain.push(LlamaSampler::dist(seed as u32));
    (LlamaSampler::chain_simple(chain), Some(seed))
}

/// The log-probability of `token` under the model's raw distribution.
fn logprob(logits: &[f32], token: LlamaToken) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    logits
        .get(token.0 as usize)
        .map_or(f32::NAN, |l| l - max - sum.ln())
}

pub(crate) fn run(
    shared: &Shared,
    backend: &LlamaBackend,
    params: LlamaContextParams,
    n_batch: usize,
    ready: Sender<Result<(), String>>,
) {
    let mut ctx: LlamaContext<'_> = match shared.model.new_context(backend, params) {
        Ok(ctx) => ctx,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot create a llama.cpp context: {e}")));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let slots = shared.settings.slots;
    let mut batch = LlamaBatch::new(n_batch, 1);
    let mut free: Vec<i32> = (0..slots as i32).rev().collect();
    let mut active: Vec<Seq> = Vec::with_capacity(slots);
    loop {
        if !admit(shared, &mut active, &mut free) {
            for seq in active.drain(..) {
                let _ = seq.req.tx.try_send(Event::Failed(CoreError::ShuttingDown));
            }
            return;
        }
        // A panic in a step fails the sequences of that step, not the model:
        // their KV cells are cleared below and the loop serves the next ones.
        let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            step(shared, &mut ctx, &mut batch, &mut active)
        }));
        let ends = stepped.unwrap_or_else(|panic| {
            let reason = format!(
                "the decode step panicked: {}",
                inferd_core::error::panic_message(&*panic)
            );
            tracing::error!("{reason}");
            batch.clear();
            active
                .iter()
                .enumerate()
                .map(|(i, seq)| {
                    let e = CoreError::Backend {
                        model: seq.req.model.clone(),
                        reason: reason.clone(),
                    };
                    (i, End::Failed(e))
                })
                .collect()
        });
        // Leave in reverse so the indices stay valid.
        for (i, end) in ends.into_iter().rev() {
            let seq = active.swap_remove(i);
            let event = match end {
                End::Done(reason) => Some(Event::Done(Finished {
                    reason,
                    generated_tokens: seq.generated,
                    prompt_tokens: seq.req.tokens.len() as u32,
                    seed: seq.seed,
                })),
                End::Failed(e) => Some(Event::Failed(e)),
                End::Cancelled => None,
            };
            if let Some(event) = event {
                let _ = seq.req.tx.try_send(event);
            }
            let _ = ctx.clear_kv_cache_seq(Some(seq.slot as u32), None, None);
            free.push(seq.slot);
        }
    }
}

/// Moves waiting requests into free slots, dropping the cancelled and expired
/// ones; sleeps while there is nothing to do. False once the model unloads.
fn admit(shared: &Shared, active: &mut Vec<Seq>, free: &mut Vec<i32>) -> bool {
    let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if queue.shutdown {
            for p in queue.waiting.drain(..) {
                let _ = p.tx.try_send(Event::Failed(CoreError::ShuttingDown));
            }
            return false;
        }
        let now = Instant::now();
        queue.waiting.retain(|p| {
            if p.tx.is_closed() {
                return false;
            }
            if now >= p.deadline {
                let _ = p.tx.try_send(Event::Failed(expired(p)));
                return false;
            }
            true
        });
        while !free.is_empty() {
            let Some(req) = queue.waiting.pop_front() else {
                break;
            };
            let slot = free.pop().expect("checked non-empty");
            let (sampler, seed) = sampler(&shared.model, &req.sampling);
            active.push(Seq {
                slot,
                text: TextStream::new(req.sampling.stop.clone()),
                req,
                prefilled: 0,
                pos: 0,
                next: None,
                logits_at: None,
                sampler,
                seed,
                generated: 0,
            });
        }
        if !active.is_empty() {
            return true;
        }
        queue = shared.wake.wait(queue).unwrap_or_else(|e| e.into_inner());
    }
}

fn expired(p: &Pending) -> CoreError {
    CoreError::DeadlineExceeded {
        model: p.model.clone(),
        deadline: p.deadline.saturating_duration_since(Instant::now()),
    }
}

/// One decode step. Returns the sequences that end, by index.
fn step(
    shared: &Shared,
    ctx: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch,
    active: &mut [Seq],
) -> Vec<(usize, End)> {
    let now = Instant::now();
    let mut ends = Vec::new();
    batch.clear();
    let mut prefill_budget = shared.settings.prefill_chunk;
    for (i, seq) in active.iter_mut().enumerate() {
        seq.logits_at = None;
        if seq.req.tx.is_closed() {
            ends.push((i, End::Cancelled));
            continue;
        }
        if now >= seq.req.deadline {
            ends.push((i, End::Failed(expired(&seq.req))));
            continue;
        }
        let added = if let Some(token) = seq.next.take() {
            let r = batch.add(token, seq.pos, &[seq.slot], true);
            seq.pos += 1;
            r.map(|()| true)
        } else {
            let left = seq.req.tokens.len() - seq.prefilled;
            let n = left.min(prefill_budget);
            prefill_budget -= n;
            let mut r = Ok(false);
            for k in 0..n {
                let idx = seq.prefilled + k;
                let last = idx + 1 == seq.req.tokens.len();
                r = batch
                    .add(seq.req.tokens[idx], seq.pos, &[seq.slot], last)
                    .map(|()| last);
                seq.pos += 1;
                if r.is_err() {
                    break;
                }
            }
            seq.prefilled += n;
            r
        };
        match added {
            Ok(true) => seq.logits_at = Some(batch.n_tokens() - 1),
            Ok(false) => {}
            Err(e) => ends.push((i, End::Failed(backend_error(&seq.req, e)))),
        }
    }
    if batch.n_tokens() == 0 {
        return ends;
    }
    if let Err(e) = ctx.decode(batch) {
        // The batch is lost for everyone in it; they fail rather than hang.
        return active
            .iter()
            .enumerate()
            .map(|(i, seq)| (i, End::Failed(backend_error(&seq.req, &e))))
            .collect();
    }
    let vocab = shared.model.vocab();
    for (i, seq) in active.iter_mut().enumerate() {
        let Some(at) = seq.logits_at else { continue };
        if ends.iter().any(|(j, _)| *j == i) {
            continue;
        }
        let token = seq.sampler.sample(ctx, at);
        let lp = logprob(ctx.get_logits_ith(at), token);
        seq.generated += 1;
        let eos = vocab.is_eog(token);
        let special = eos || vocab.is_control(token);
        let (mut text, mut end) = if eos {
            (seq.text.finish(), Some(FinishReason::EndOfSequence))
        } else {
            match seq.text.push(&vocab.token_to_piece(token, false, None)) {
                Released::Text(t) => (t, None),
                Released::Stopped(t) => (t, Some(FinishReason::StopSequence)),
            }
        };
        let full = seq.pos as u32 >= shared.settings.max_total_tokens;
        if end.is_none() && (seq.generated >= seq.req.sampling.max_new_tokens || full) {
            text.push_str(&seq.text.finish());
            end = Some(FinishReason::Length);
        }
        let sent = seq.req.tx.try_send(Event::Token(Token {
            id: token.0 as u32,
            text,
            logprob: lp,
            special,
            last: end.is_some(),
        }));
        if let Err(TrySendError::Closed(_)) = sent {
            ends.push((i, End::Cancelled));
        } else if let Some(reason) = end {
            ends.push((i, End::Done(reason)));
        } else {
            seq.next = Some(token);
        }
    }
    ends.sort_by_key(|(i, _)| *i);
    ends
}

fn backend_error(p: &Pending, e: impl std::fmt::Display) -> CoreError {
    CoreError::Backend {
        model: p.model.clone(),
        reason: e.to_string(),
    }
}
