#!/usr/bin/env python3
"""Quality of re-quantized GGUFs against a reference one, with llama-cpp-python.

  quant_quality.py REF.gguf OTHER.gguf...

For every file: perplexity on one fixed English paragraph (TEXT, ~350 tokens;
mean negative log-likelihood of each next token, from logits_all), and greedy
chat answers (create_chat_completion, temperature 0, max_tokens 48) to 20 fixed
prompts. For the others: how many answers equal the reference's, and the mean
common prefix with it, in characters and in reference tokens. 2 threads,
n_ctx 2048, seed 0.
"""

import os
import sys

import numpy as np

THREADS = int(os.environ.get("BENCH_THREADS", "2"))

TEXT = """\
The old lighthouse stood at the end of a narrow spit of rock, where the river \
met the sea. For more than a century its keepers had climbed the spiral stairs \
each evening to light the lamp, wind the clockwork that turned the lens, and \
write a few lines in the log book before the long night began. Most entries were \
short: the direction of the wind, the height of the waves, the names of ships \
that passed close to the shore. Some were longer. One keeper described a winter \
storm that lasted four days, during which the spray reached the gallery windows \
and the whole tower seemed to hum like a plucked string. Another recorded the \
arrival of a small boat carrying a family who had lost their way in the fog; \
they stayed for two nights, and the children were allowed to polish the brass \
fittings of the lamp. When electric light finally came to the coast, the \
clockwork was stopped and the keepers were sent to other posts. The log books \
were packed into wooden crates and taken to the town library, where they were \
forgotten for many years. A student found them by chance while looking for \
records of local shipwrecks. She spent a summer reading every page, copying the \
weather notes into a table and comparing them with the measurements taken at the \
harbour. The two sets of numbers agreed remarkably well, which suggested that \
the keepers had been careful observers rather than casual writers. Her work \
showed that the storms of the region had become slightly more frequent over the \
century, although the change was small and the records were incomplete in some \
decades. Today the lighthouse is a museum. Visitors can climb the stairs, look \
through the great lens, and read a few of the old entries, printed on panels \
along the wall. The lamp no longer turns, but on clear evenings the glass still \
catches the last light of the sun and throws it, briefly, across the water."""

PROMPTS = [
    "What is the capital of France?",
    "Who wrote the play Romeo and Juliet?",
    "What is the boiling point of water at sea level in degrees Celsius?",
    "How many planets are in our solar system?",
    "What is the largest ocean on Earth?",
    "What is 7 times 8?",
    "What is 15 plus 27?",
    "If I have 12 apples and give away 5, how many are left?",
    "What is 100 divided by 4?",
    "List three primary colors.",
    "List the days of the week.",
    "Name four kinds of fruit.",
    "Define the word 'photosynthesis' in one sentence.",
    "What is a prime number?",
    "Translate 'Good morning, how are you?' into French.",
    "Translate 'thank you very much' into Spanish.",
    "Write a Python function that returns the square of a number.",
    "Write a Python one-liner that reverses a string s.",
    "Give one tip for sleeping better.",
    "Summarize in one sentence what a computer does.",
]


def load(path, logits_all=False):
    from llama_cpp import Llama

    return Llama(model_path=path, n_threads=THREADS, n_threads_batch=THREADS, n_ctx=2048,
                 n_batch=512, seed=0, logits_all=logits_all, verbose=False)


def perplexity(path):
    llm = load(path, logits_all=True)
    tokens = llm.tokenize(TEXT.encode(), add_bos=True)
    llm.reset()
    llm.eval(tokens)
    logits = np.asarray(llm.scores[: len(tokens) - 1], dtype=np.float64)
    m = logits.max(axis=1, keepdims=True)
    logz = (m[:, 0] + np.log(np.exp(logits - m).sum(axis=1)))
    nll = logz - logits[np.arange(len(tokens) - 1), tokens[1:]]
    return float(np.exp(nll.mean())), len(tokens)


def answers(path):
    llm = load(path)
    out = []
    for p in PROMPTS:
        llm.reset()  # no KV reuse between prompts
        r = llm.create_chat_completion(messages=[{"role": "user", "content": p}],
                                       temperature=0.0, top_k=1, top_p=1.0, min_p=0.0,
                                       repeat_penalty=1.0, max_tokens=48, seed=0)
        out.append(r["choices"][0]["message"]["content"])
    return out, llm


def common_prefix(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def main():
    paths = sys.argv[1:]
    if len(paths) < 2:
        sys.exit(__doc__)
    ref_answers, ref_llm = answers(paths[0])
    tok = lambda s: ref_llm.tokenize(s.encode(), add_bos=False)  # noqa: E731
    rows, diverged = [], []
    for i, path in enumerate(paths):
        ppl, n = perplexity(path)
        ans = ref_answers if i == 0 else answers(path)[0]
        same = sum(a == b for a, b in zip(ans, ref_answers))
        chars = np.mean([common_prefix(a, b) for a, b in zip(ans, ref_answers)])
        toks = np.mean([common_prefix(tok(a), tok(b)) for a, b in zip(ans, ref_answers)])
        rows.append((os.path.basename(path), os.path.getsize(path) / 2**20, ppl, same, chars, toks))
        diverged += [(os.path.basename(path), PROMPTS[j], ref_answers[j], a)
                     for j, a in enumerate(ans) if i and a != ref_answers[j]]
    print(f"perplexity over {n} tokens; answers: {len(PROMPTS)} prompts, greedy, max 48 tokens; "
          f"reference {os.path.basename(paths[0])}")
    print(f"{'file':<36} {'MiB':>6} {'ppl':>7} {'same':>6} {'prefix chars':>12} {'prefix toks':>11}")
    for name, mib, ppl, same, chars, toks in rows:
        print(f"{name:<36} {mib:6.1f} {ppl:7.3f} {same:>3}/{len(PROMPTS)} {chars:12.1f} {toks:11.1f}")
    mean_ref = np.mean([len(a) for a in ref_answers])
    print(f"(reference answers: mean {mean_ref:.1f} chars)")
    if os.environ.get("SHOW_DIVERGENT"):
        for name, prompt, ref, a in diverged:
            print(f"\n[{name}] {prompt}\n  ref:   {ref!r}\n  other: {a!r}")


if __name__ == "__main__":
    main()
