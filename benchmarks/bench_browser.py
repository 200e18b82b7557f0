"""Benchmark: feature statistics for the browser (`saenb.browser.stream_latent_stats`).

Builds an activation store of N tokens (a small random saenb GPT over random token sequences, one residual hook, bf16 on disk)
and a TopK SAE with L latents, then measures in fresh processes, each reporting its wall time and peak memory
(VmHWM growth over the process's footprint before the computation):
- `stream`: the one streaming pass of `stream_latent_stats` over all N tokens (count, sum, max, histogram, top-k rows,
  reservoir samples, the histograms stacked by the values of two concepts, the sparse co-firing table giving each
  latent's 10 most correlated latents), plus `weight_stats` (neighbours by decoder cosine, encoder-decoder cosine);
- `naive` and `stream_small`: the straightforward approach (every activation in one dense [n, L] tensor, then an argsort
  per latent for the top-k and the quantiles) next to the streaming pass on the same n rows, with n the largest number of
  rows whose dense codes and argsort indices fit in `--naive_mb`.
Prints ONE JSON line. Usage: python benchmarks/bench_browser.py [--quick] [--n_tokens 1000000] [--d_sae 16384]
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, emit


def _rss_mb(field='VmHWM') -> float:
    for line in open('/proc/self/status'):
        if line.startswith(field): return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(root:Path, n_tokens:int, d_model:int, d_sae:int, k:int):
    "The store and the SAE directory the measurements read."
    from saenb.cache import Contexts, cache_activations
    from saenb.grammars import Concept
    from saenb.model import GPTConfig, build_model
    from saenb.sae import make_sae
    import saenb.sae_io  # noqa: F401  (adds SAE.save)
    n_ctx, vocab = 64, 16
    g = np.random.default_rng(0)
    n_seq = -(-n_tokens // n_ctx)
    ids = g.integers(3, vocab, n_seq * n_ctx)
    labels = {'kind': ids % 4, 'depth': g.integers(0, 24, len(ids))}   # two concepts for the stacked histograms
    concepts = {'kind': Concept('kind', 'categorical', 'token id mod 4', list('abcd')),
                'depth': Concept('depth', 'ordinal', 'a random level', None)}
    ctx = Contexts(ids, np.arange(n_seq + 1) * n_ctx, labels=labels, concepts=concepts, n_ctx=n_ctx, name='random')
    model = build_model(GPTConfig(n_layers=1, d_model=d_model, n_heads=2, d_mlp=2 * d_model, n_ctx=n_ctx, d_vocab=vocab)).eval()
    t0 = time.perf_counter()
    store = cache_activations(model, ctx, '0_residpost', root/'acts', n_tokens=n_tokens, dtype='bf16', batch_size=256, device='cpu', progress=False)['0_residpost']
    cache_s = time.perf_counter() - t0
    sae = make_sae('topk', d_model, d_sae=d_sae, k=k, seed=0)
    sae.save(root/'sae')
    return store, cache_s


def worker(mode:str, store:str, sae_dir:str, n_rows:int, top_k:int):
    "Run one measurement in this (fresh) process and print its JSON."
    from saenb.browser import stream_latent_stats, weight_stats
    from saenb.cache import ActivationStore
    from saenb.sae_io import load_sae
    s, sae = ActivationStore(store), load_sae(sae_dir).eval()
    base = _rss_mb('VmRSS')
    t0 = time.perf_counter()
    with torch.no_grad():
        if mode == 'naive':
            Z = torch.cat([sae.encode(s[i:min(i + 4096, n_rows)].float()) for i in range(0, n_rows, 4096)])  # [n, L], all in memory
            order = torch.argsort(Z, dim=0, descending=True)                                               # a sort per latent
            top_rows, top_act = order[:top_k].T, Z.gather(0, order[:top_k]).T
            cnt = (Z > 0).sum(0)
            srt = Z.gather(0, order)
            q = torch.stack([srt[((1 - p) * (cnt - 1).clamp_min(0).float()).long(), torch.arange(Z.shape[1])] for p in (0.5, 0.9, 0.99)], 1)
            res = {'count': cnt, 'max': srt[0], 'mean': Z.sum(0) / cnt.clamp_min(1)}
        else:
            res = stream_latent_stats(sae, s, n_rows=n_rows, top_k=top_k, progress=False)
            if mode == 'stream': weight_stats(sae)
    sec = time.perf_counter() - t0
    print(json.dumps({'seconds': sec, 'peak_mb': _rss_mb() - base, 'fired_total': int(res['count'].sum())}))


def measure(mode, store, sae_dir, n_rows, top_k) -> dict:
    env = {**os.environ, 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1')}
    r = subprocess.run([sys.executable, __file__, '--worker', mode, '--store', str(store), '--sae', str(sae_dir), '--n_rows', str(n_rows), '--top_k', str(top_k)],
                       capture_output=True, text=True, env=env)
    if r.returncode: raise RuntimeError(f"{mode} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true', help='tiny sizes (a smoke test)')
    ap.add_argument('--n_tokens', type=int, default=1_000_000)
    ap.add_argument('--d_sae', type=int, default=16384)
    ap.add_argument('--d_model', type=int, default=64)
    ap.add_argument('--k', type=int, default=32)
    ap.add_argument('--top_k', type=int, default=20)
    ap.add_argument('--naive_mb', type=int, default=1500, help='memory the naive approach may use (dense codes + argsort indices)')
    ap.add_argument('--worker'); ap.add_argument('--store'); ap.add_argument('--sae'); ap.add_argument('--n_rows', type=int)
    a = ap.parse_args()
    if a.worker: return worker(a.worker, a.store, a.sae, a.n_rows, a.top_k)
    if a.quick: a.n_tokens, a.d_sae, a.naive_mb = 20_000, 1024, 200
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        store, cache_s = build(root, a.n_tokens, a.d_model, a.d_sae, a.k)
        full = measure('stream', store, root/'sae', a.n_tokens, a.top_k)
        n_small = int(min(a.n_tokens, a.naive_mb * 2**20 // (a.d_sae * 16)))  # fp32 codes + int64 indices + a sorted copy
        small = measure('stream_small', store, root/'sae', n_small, a.top_k)
        naive = measure('naive', store, root/'sae', n_small, a.top_k)
        assert small['fired_total'] == naive['fired_total'], (small, naive)
    emit({'bench': 'browser_stats', 'device': device_name(), 'n_tokens': a.n_tokens, 'd_sae': a.d_sae, 'd_model': a.d_model, 'k': a.k,
          'cache_s': round(cache_s, 2), 'stream_s': round(full['seconds'], 2), 'stream_peak_mb': round(full['peak_mb'], 1),
          'stream_tok_s': round(a.n_tokens / full['seconds']),
          'compare_rows': n_small, 'stream_small_s': round(small['seconds'], 3), 'stream_small_peak_mb': round(small['peak_mb'], 1),
          'naive_s': round(naive['seconds'], 3), 'naive_peak_mb': round(naive['peak_mb'], 1),
          'naive_mb_at_n_tokens': round(a.n_tokens * a.d_sae * 16 / 2**20)})


if __name__ == '__main__': main()
