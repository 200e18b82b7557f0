"""Benchmark: caching activations to disk, and streaming them back.

Measures, side by side in one run on the same machine:
- `forward_tok_s`: a bare forward pass (`model(ids)` under `torch.inference_mode`) of a saenb GPT over a Dyck corpus;
- `cache_tok_s`: `cache_activations` of one hook of the same model over the same tokens and batches, written to disk
  (the whole call: model checks, forward passes, masking, shard writes, statistics, manifest);
  `cache_vs_forward` = cache_tok_s / forward_tok_s (goal >= 0.8);
- `seq_read_gb_s`: reading every shard of an activation store sequentially with `np.load`;
- `shuffled_gb_s`: `ActivationStore.batches(shuffle=True)` over the same store (float32 batches);
  `shuffled_vs_sequential` (goal >= 0.5);
- `peak_rss_stream_mb` (VmHWM) of a fresh process that streams a store ten times larger than its shuffle buffer, and
  `stream_rss_growth_mb` over its RSS before streaming, with `cache_mb` and `buffer_mb` for scale
  (goal: the growth is a few buffers, not the cache).
Prints ONE JSON line. Usage: python benchmarks/bench_cache.py [--quick]
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, emit


def bench_cache(args, device):
    from saenb.cache import cache_activations, corpus_contexts
    from saenb.data import make_corpus
    from saenb.model import GPTConfig, build_model
    from saenb.utils import scratch_dir
    corpus = make_corpus('dyck', args.n_seqs, seed=0, max_len=126, val_frac=0.01)
    cfg = GPTConfig(n_layers=args.n_layers, d_model=args.d_model, n_heads=args.d_model // 64, d_mlp=4 * args.d_model, n_ctx=128,
                    d_vocab=corpus.tokenizer.vocab_size)
    model = build_model(cfg, device=device).eval()
    ctx = corpus_contexts(corpus, 'train', n_ctx=cfg.n_ctx)
    bs = args.batch_size
    batches = [ctx.batch(np.arange(i, min(i + bs, len(ctx))))[0] for i in range(0, len(ctx), bs)]
    n_tok = int(ctx.lengths.sum())
    sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)

    def bare():
        sync(); t0 = time.perf_counter()
        with torch.inference_mode():
            for ids in batches: model(ids.to(device))
        sync()
        return n_tok / (time.perf_counter() - t0)

    tmp = scratch_dir('bench_cache_')
    def cache():
        out = tmp / 'acts'
        if out.exists(): shutil.rmtree(out)
        sync(); t0 = time.perf_counter()
        cache_activations(model, ctx, [args.hook], out, batch_size=bs, device=device, progress=False)
        sync()
        return n_tok / (time.perf_counter() - t0)

    bare(); cache()  # warm up
    fw, ca = [], []
    for _ in range(args.reps): fw.append(bare()); ca.append(cache())
    rows = json.loads((tmp / 'acts' / args.hook / 'manifest.json').read_text())['rows']['train']
    shutil.rmtree(tmp)
    return {'model': f"saenb GPT {cfg.n_layers}x{cfg.d_model} (d_mlp {cfg.d_mlp})", 'hook': args.hook, 'tokens': n_tok, 'rows_cached': rows,
            'batch_size': bs, 'forward_tok_s': round(max(fw)), 'cache_tok_s': round(max(ca)), 'cache_vs_forward': round(max(ca) / max(fw), 3)}


def write_store(path:Path, n_rows:int, d:int, shard_rows:int):
    "A synthetic activation store (random fp32 rows), written shard by shard in the `cache_activations` layout."
    from saenb.utils import write_atomic, write_json
    def write_npy(p, a):
        def write(tmp):
            with open(tmp, 'wb') as f: np.save(f, a)
        write_atomic(p, write)
    rng = np.random.default_rng(0)
    shards = []
    (path / 'train').mkdir(parents=True)
    for i, s in enumerate(range(0, n_rows, shard_rows)):
        n = min(shard_rows, n_rows - s)
        write_npy(path / 'train' / f'shard_{i:05d}.npy', rng.standard_normal((n, d), dtype=np.float32))
        write_npy(path / 'train' / f'shard_{i:05d}.meta.npy', np.zeros((n, 3), np.int64))
        shards.append(n)
    write_json(path / 'manifest.json', {'format': 'saenb-activations', 'version': 1, 'model': 'synthetic', 'hook': 'x', 'hook_point': 'x', 'd': d,
                                         'dtype': 'fp32', 'meta_columns': ['seq_id', 'ctx_position', 'token_id'], 'concepts': {},
                                         'rows': {'train': n_rows}, 'shards': {'train': shards},
                                         'stats': {'train': {'mean': [0.0] * d, 'mean_norm': float(np.sqrt(d)), 'rows': n_rows}}})


def status_mb(key:str) -> float:
    "A memory figure of this process from /proc/self/status (VmRSS: now, VmHWM: peak), in MiB."
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'): return int(line.split()[1]) / 1024
    return float('nan')


def read_part(path:str, batch_size:int, buffer_rows:int, reps:int=3):
    "Run in a fresh process: shuffled batches first (their peak RSS), then the sequential numpy read of the same files."
    from saenb.cache import ActivationStore
    store = ActivationStore(path)
    files = sorted(Path(path, 'train').glob('shard_?????.npy'))
    for f in files:  # warm the page cache for both measurements, without holding the data
        with open(f, 'rb') as fh:
            while fh.read(1 << 24): pass
    base_rss = status_mb('VmRSS')
    def shuffled():
        t0, rows = time.perf_counter(), 0
        for b in store.batches(batch_size, shuffle=True, seed=0, buffer_rows=buffer_rows): rows += len(b)
        return rows, time.perf_counter() - t0
    def sequential():
        t0 = time.perf_counter()
        for f in files: np.load(f)
        return time.perf_counter() - t0
    rows, shuf_s = shuffled()
    peak = status_mb('VmHWM')  # before any np.load: the peak of streaming alone
    best = float('inf')
    for _ in range(reps):  # interleaved, best of each, so that load from other processes hits both alike
        best = min(best, sequential())
        shuf_s = min(shuf_s, shuffled()[1])
    nbytes = len(store) * store.d * 4
    return {'seq_read_gb_s': round(nbytes / best / 1e9, 3), 'shuffled_gb_s': round(rows * store.d * 4 / shuf_s / 1e9, 3),
            'shuffled_rows_s': round(rows / shuf_s), 'rss_before_stream_mb': round(base_rss), 'peak_rss_stream_mb': round(peak),
            'stream_rss_growth_mb': round(peak - base_rss)}


def bench_read(args):
    with tempfile.TemporaryDirectory(prefix='bench_store_') as tmp:
        tmp, n_rows = Path(tmp), 10 * args.buffer_rows
        write_store(tmp / 'store', n_rows, args.read_d, shard_rows=args.buffer_rows // 2)
        r = subprocess.run([sys.executable, __file__, '--_read', str(tmp / 'store'), '--batch_size_read', str(args.batch_size_read),
                            '--buffer_rows', str(args.buffer_rows)], capture_output=True, text=True, check=True)
        res = json.loads(r.stdout.strip().splitlines()[-1])
    res.update({'cache_rows': n_rows, 'read_d': args.read_d, 'cache_mb': round(n_rows * args.read_d * 4 / 2**20),
                'buffer_rows': args.buffer_rows, 'buffer_mb': round(args.buffer_rows * args.read_d * 4 / 2**20)})
    res['shuffled_vs_sequential'] = round(res['shuffled_gb_s'] / res['seq_read_gb_s'], 3)
    return res


if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--quick', action='store_true', help='small sizes, for a smoke test')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--n_seqs', type=int, default=1000)
    p.add_argument('--n_layers', type=int, default=4)
    p.add_argument('--d_model', type=int, default=256)
    p.add_argument('--batch_size', type=int, default=64)
    p.add_argument('--hook', default='2_residpost')
    p.add_argument('--reps', type=int, default=2)
    p.add_argument('--read_d', type=int, default=256)
    p.add_argument('--buffer_rows', type=int, default=2**16)
    p.add_argument('--batch_size_read', type=int, default=4096)
    p.add_argument('--parts', default='cache,read', help='which measurements: cache, read, or both')
    p.add_argument('--_read', default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._read:
        print(json.dumps(read_part(args._read, args.batch_size_read, args.buffer_rows)))
        sys.exit(0)
    if args.quick: args.n_seqs, args.reps, args.buffer_rows, args.read_d = 400, 1, 2**12, 128
    t0 = time.time()
    rec = {'bench': 'cache', 'device': device_name(args.device)}
    parts = args.parts.split(',')
    rec['goals'] = {}
    if 'cache' in parts:
        rec.update(bench_cache(args, args.device))
        rec['goals']['cache_vs_forward>=0.8'] = rec['cache_vs_forward'] >= 0.8
    if 'read' in parts:
        rec.update(bench_read(args))
        rec['goals'].update({'shuffled_vs_sequential>=0.5': rec['shuffled_vs_sequential'] >= 0.5,
                             'stream_rss_growth<=3*buffer': rec['stream_rss_growth_mb'] <= 3 * rec['buffer_mb'] + 16})
    rec['load_avg_1min'] = os.getloadavg()[0]
    rec['wall_s'] = round(time.time() - t0, 1)
    emit(rec)
