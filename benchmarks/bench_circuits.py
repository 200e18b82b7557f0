"""Benchmark: attribution patching between two SAEs (`saenb.circuits.latent_attributions`), issue 23's speed figure.

A 2-layer saenb GPT of the default pipeline's shape (d_model 128, d_mlp 512; random weights: the cost does not depend on
them) over 256 Dyck-2 contexts of 64 tokens, and a TopK SAE of 2,048 latents (k=8) at `0_residpost` and `1_residpost`.
Measures the attribution of every upstream latent into the 64 most active downstream latents (one backward pass per
downstream latent and batch of contexts, plus the forward pass that picks the latents), then the ablation check of the
32 strongest edges and the attribution into the next-token target. The target is <= 120 s for the attribution on 2 CPU
cores. Prints ONE JSON line.

Usage: python benchmarks/bench_circuits.py [--n_seqs 256] [--n_ctx 64] [--d_sae 2048] [--n_down 64] [--batch_size 64]
       [--threads 2] [--no_check]
"""
import argparse, sys, time
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, emit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n_seqs', type=int, default=256); ap.add_argument('--n_ctx', type=int, default=64)
    ap.add_argument('--d_sae', type=int, default=2048); ap.add_argument('--k', type=int, default=8)
    ap.add_argument('--n_down', type=int, default=64); ap.add_argument('--batch_size', type=int, default=64)
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--no_check', action='store_true')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from saenb.grammars import get_language
    from saenb.data import Tokenizer, pad_batch
    from saenb.model import GPTConfig, build_model
    from saenb.sae import make_sae
    from saenb.circuits import (latent_attributions, target_attributions, ablation_check, grammar_target)
    lang = get_language('dyck', min_len=a.n_ctx - 2, max_len=a.n_ctx - 2, max_depth=8)
    tok = Tokenizer.for_language(lang)
    seqs = [[tok.bos_id, *[tok.stoi[t] for t in s], tok.eos_id] for s in lang.sample(a.n_seqs, seed=0)]
    ids = pad_batch(seqs, pad_id=tok.pad_id)
    model = build_model(GPTConfig(n_layers=2, d_model=128, n_heads=2, d_mlp=512, n_ctx=max(128, a.n_ctx),
                                  d_vocab=tok.vocab_size)).eval()
    model.saenb_tokenizer = tok
    up = ('0_residpost', make_sae('topk', 128, d_sae=a.d_sae, k=a.k, seed=0).eval())
    down = ('1_residpost', make_sae('topk', 128, d_sae=a.d_sae, k=a.k, seed=1).eval())
    t0 = time.perf_counter()
    attr = latent_attributions(model, ids, up, down, n_down=a.n_down, batch_size=a.batch_size)
    attr_s = time.perf_counter() - t0
    rec = {'bench': 'circuits', 'attribution_s': round(attr_s, 2), 'target_s': 120, 'ok': attr_s <= 120,
           'n_seqs': len(ids), 'n_ctx': ids.shape[1], 'tokens': int(attr.n_tokens), 'd_sae': a.d_sae, 'k': a.k,
           'n_down': len(attr.down_latents), 'batch_size': a.batch_size, 'device': device_name()}
    if not a.no_check:
        t0 = time.perf_counter()
        where, _ = grammar_target(lang, tok, ids)
        target_attributions(model, ids, up, where, batch_size=a.batch_size)
        rec['target_attribution_s'] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        ablation_check(model, ids, up, attr, down[1], n_edges=32, batch_size=a.batch_size)
        rec['ablation_check_32_s'] = round(time.perf_counter() - t0, 2)
    emit(rec)


if __name__ == '__main__': main()
