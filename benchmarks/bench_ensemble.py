"""Benchmark: a sweep of 8 TopK SAEs trained as one ensemble against 8 separate runs.

Measures, on the same machine, in one invocation, the same 8 SAEs (k in {16, 32} by expansion factor in {2, 4, 8, 16},
d_in = 64, the same data, seed and steps):
- `ensemble_s`: `saenb.ensemble.train_ensemble` over one data stream (each batch read, shuffled and scaled once);
- `sequential_inproc_s`: eight `saenb.train_sae.train_sae` calls in this process, one after another;
- `sequential_cli_s`: eight `saenb_train_sae` processes, one after another (what a shell loop does: each pays for
  Python/torch start-up, opening the data and building the validation set);
- the ratios `inproc_over_ensemble` and `cli_over_ensemble` (above 1: the ensemble is faster);
- `max_abs_weight_diff`: the largest difference between an ensemble member's weights and the matching in-process run's
  (the members are meant to be the same SAEs).
Prints ONE JSON line. Usage: OMP_NUM_THREADS=1 python benchmarks/bench_ensemble.py [--quick] [--threads N]
"""
import argparse, os, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, emit

def sparse_acts(n, d, n_feat, p, seed=0):
    g = np.random.default_rng(seed)
    D = g.standard_normal((n_feat, d)); D /= np.linalg.norm(D, axis=1, keepdims=True)
    return (((g.random((n, n_feat)) < p) * g.exponential(1.0, (n, n_feat))) @ D).astype(np.float32)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true', help='fewer tokens (a smoke test)')
    ap.add_argument('--threads', type=int, default=int(os.environ.get('OMP_NUM_THREADS', 1)), help='torch threads')
    ap.add_argument('--d_in', type=int, default=64)
    ap.add_argument('--n_tokens', type=int, default=None)
    ap.add_argument('--batch_size', type=int, default=1024)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from saenb.ensemble import train_ensemble, ensemble_members
    from saenb.train_sae import train_sae
    n_tokens = args.n_tokens or (40 * args.batch_size if args.quick else 150 * args.batch_size)
    grid = {'k': [16, 32], 'exp_factor': [2, 4, 8, 16]}
    kw = dict(arch='topk', n_tokens=n_tokens, batch_size=args.batch_size, lr=1e-3, seed=0, val_rows=4096)
    tmp = Path(tempfile.mkdtemp())
    acts = tmp/'acts.npy'
    np.save(acts, sparse_acts(100_000, args.d_in, 8 * args.d_in, 16 / (8 * args.d_in)))

    t0 = time.perf_counter()
    ens = train_ensemble(acts, grid=grid, progress=False, **kw)
    ensemble_s = time.perf_counter() - t0

    t0 = time.perf_counter(); singles = {}
    for key, spec in ensemble_members(grid).items(): singles[key] = train_sae(acts, progress=False, **{**kw, **spec})
    inproc_s = time.perf_counter() - t0
    diff = max((ens[k].sae.state_dict()[n] - v).abs().max().item() for k, r in singles.items() for n, v in r.sae.state_dict().items())

    env = {**os.environ, 'OMP_NUM_THREADS': str(args.threads)}
    t0 = time.perf_counter()
    for key, spec in ensemble_members(grid).items():
        cmd = ['saenb_train_sae', '--acts', str(acts), '--out', str(tmp/f'cli_{key[0]}_{key[1]}'), '--arch', 'topk', '--k', str(spec['k']),
               '--exp_factor', str(spec['exp_factor']), '--n_tokens', str(n_tokens), '--batch_size', str(args.batch_size),
               '--lr', '1e-3', '--quiet', '--sae', '{}']
        subprocess.run(cmd, env=env, check=True, capture_output=True)
    cli_s = time.perf_counter() - t0
    emit({'benchmark': 'ensemble', 'device': device_name('cpu'), 'n_saes': len(ens), 'd_in': args.d_in,
          'd_sae': sorted({r.summary['d_sae'] for r in ens.values()}), 'steps': ens[(16, 2)].summary['steps'], 'batch_size': args.batch_size,
          'ensemble_s': round(ensemble_s, 2), 'sequential_inproc_s': round(inproc_s, 2), 'sequential_cli_s': round(cli_s, 2),
          'inproc_over_ensemble': round(inproc_s / ensemble_s, 2), 'cli_over_ensemble': round(cli_s / ensemble_s, 2),
          'max_abs_weight_diff': diff})

if __name__ == '__main__': main()
