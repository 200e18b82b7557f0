"""Benchmark: 8 TopK SAEs trained as one ensemble against 8 separate runs in the same process.

Sweeps of 8 TopK SAEs over the same synthetic activations (d_in = 64, the same seed and tokens):
- `same_width` (the headline): one dictionary size (512 latents), k in {4, 8, ..., 32}, batches of 1,024;
- `same_width_small_batches`: the same in batches of 256 (four times the steps), where per-step overhead dominates;
- `grid`: k in {16, 32} by expansion factor in {2, 4, 8, 16} (128 to 1,024 latents), batches of 1,024.
Every run validates once, at its end (`val_every` at least its steps): validation is the same work in both ways.
For each it measures, interleaved and repeated (`--reps`, the best time of each kept, since a shared machine's timings
wander):
- `ensemble_s`: `saenb.ensemble.train_ensemble` over one data stream, where the members train as one stack
  (encoders side by side, one sparse encode and decode, one backward pass and one Adam step a step);
- `inproc_s`: eight `saenb.train_sae.train_sae` calls in this process, one after another;
- `inproc_over_ensemble`: the speed-up (above 1: the ensemble is faster; the issue asks for at least 2);
- `max_weight_diff`, `max_fvu_diff`, `max_l0_diff`: how far the members are from the single runs (float rounding
  only, until a near-tie in some token's top k goes the other way);
- `flops_per_s`, `peak_frac`: the model FLOPs of training (per token and member: the dense encoder product
  2 d S, and 12 d k for the sparse encode, decode and their gradients) over the time, against the machine's
  measured matrix-multiply peak in the precision training uses here (`precision`: bf16 where the CPU has bf16 matrix
  units, else fp32), for the single runs and the ensemble.
With `--cli` (the headline sweep only) it also times eight `saenb_train_sae` processes one after another (what a shell
loop does: each pays for Python/torch start-up, opening the data and building its validation set).
Prints ONE JSON line. Usage: OMP_NUM_THREADS=2 python benchmarks/bench_ensemble.py [--quick] [--cli] [--threads N]
"""
import argparse, os, subprocess, sys, time
from pathlib import Path
import numpy as np, torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, emit, matmul_peak, saenb_command, training_precision
from saenb.utils import scratch_dir

SAME_WIDTH = {'k': [4, 8, 12, 16, 20, 24, 28, 32], 'exp_factor': [8]}
SWEEPS = {'same_width': (SAME_WIDTH, 1), 'same_width_small_batches': (SAME_WIDTH, 4),   # (grid, batch divisor)
          'grid': ({'k': [16, 32], 'exp_factor': [2, 4, 8, 16]}, 1)}

def sparse_acts(n, d, n_feat, p, seed=0):
    g = np.random.default_rng(seed)
    D = g.standard_normal((n_feat, d)); D /= np.linalg.norm(D, axis=1, keepdims=True)
    return (((g.random((n, n_feat)) < p) * g.exponential(1.0, (n, n_feat))) @ D).astype(np.float32)

def compare(ens, singles):
    "Largest differences between ensemble members and their single runs: weights, FVU, L0."
    w = max((ens[k].sae.state_dict()[n] - v).abs().max().item() for k, r in singles.items()
            for n, v in r.sae.state_dict().items() if v.is_floating_point())
    f = max(abs(ens[k].summary['fvu'] - r.summary['fvu']) for k, r in singles.items())
    l0 = max(abs(ens[k].summary['l0'] - r.summary['l0']) for k, r in singles.items())
    return w, f, l0

def sweep(acts, grid, kw, reps, peak):
    from saenb.ensemble import train_ensemble, ensemble_members
    from saenb.train_sae import train_sae
    specs = ensemble_members(grid)
    t_ens, t_one = [], []
    for _ in range(reps):   # interleaved, so a slow spell of the machine falls on both
        t0 = time.perf_counter(); ens = train_ensemble(acts, grid=grid, progress=False, **kw)
        t_ens.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        singles = {key: train_sae(acts, progress=False, **{**kw, **s}) for key, s in specs.items()}
        t_one.append(time.perf_counter() - t0)
    d_in, steps = ens[next(iter(ens))].summary['d_in'], ens[next(iter(ens))].summary['steps']
    flops = sum(steps * kw['batch_size'] * (2 * d_in * r.summary['d_sae'] + 12 * d_in * s['k'])
                for r, s in zip(ens.values(), specs.values()))
    w, f, l0 = compare(ens, singles)
    e, o = min(t_ens), min(t_one)
    return {'d_sae': sorted({r.summary['d_sae'] for r in ens.values()}), 'k': sorted({s['k'] for s in specs.values()}),
            'steps': steps, 'ensemble_s': round(e, 2), 'inproc_s': round(o, 2), 'inproc_over_ensemble': round(o / e, 2),
            'ensemble_s_all': [round(t, 2) for t in t_ens], 'inproc_s_all': [round(t, 2) for t in t_one],
            'max_weight_diff': w, 'max_fvu_diff': round(f, 6), 'max_l0_diff': round(l0, 4),
            'flops_per_s': {'inproc': round(flops / o / 1e9, 2), 'ensemble': round(flops / e / 1e9, 2),
                            'unit': 'GFLOP/s'},
            'peak_frac': {'inproc': round(flops / o / peak, 4), 'ensemble': round(flops / e / peak, 4)}}

def cli_time(acts, grid, kw, tmp, threads):
    "Seconds for eight `saenb_train_sae` processes, one after another."
    from saenb.ensemble import ensemble_members
    env, t0 = {**os.environ, 'OMP_NUM_THREADS': str(threads)}, time.perf_counter()
    for i, s in enumerate(ensemble_members(grid).values()):
        cmd = [saenb_command('saenb_train_sae'), '--acts', str(acts), '--out', str(tmp/f'cli_{i}'), '--arch', 'topk',
               '--k', str(s['k']),
               '--exp_factor', str(s['exp_factor']), '--n_tokens', str(kw['n_tokens']), '--batch_size',
               str(kw['batch_size']), '--lr', str(kw['lr']), '--val_every', str(kw['val_every']),
               '--quiet', '--sae', '{}']
        subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true', help='fewer tokens and one repeat (a smoke test)')
    ap.add_argument('--threads', type=int, default=int(os.environ.get('OMP_NUM_THREADS', 2)), help='torch threads')
    ap.add_argument('--d_in', type=int, default=64)
    ap.add_argument('--batch_size', type=int, default=1024)
    ap.add_argument('--steps', type=int, default=None, help='optimizer steps (default 150, 40 with --quick)')
    ap.add_argument('--reps', type=int, default=None, help='interleaved repeats (default 2, 1 with --quick)')
    ap.add_argument('--cli', action='store_true', help='also time eight saenb_train_sae processes')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    steps, reps = args.steps or (40 if args.quick else 150), args.reps or (1 if args.quick else 2)
    kw = dict(arch='topk', n_tokens=steps * args.batch_size, batch_size=args.batch_size, lr=1e-3, seed=0, val_rows=4096)
    kw['val_every'] = steps * max(div for _, div in SWEEPS.values())   # every run's steps or more: one validation
    tmp = scratch_dir('bench_ensemble_')
    acts = tmp/'acts.npy'
    np.save(acts, sparse_acts(100_000, args.d_in, 8 * args.d_in, 16 / (8 * args.d_in)))
    from saenb.train_sae import train_sae
    train_sae(acts, progress=False, **{**kw, 'n_tokens': 5 * args.batch_size})   # kernels compiled, caches warm
    precision, dtype = training_precision()
    peak = matmul_peak(dtype)
    rec = {'benchmark': 'ensemble', 'device': device_name('cpu'), 'n_saes': 8, 'd_in': args.d_in,
           'batch_size': args.batch_size, 'reps': reps, 'precision': precision, 'peak_gflops': round(peak / 1e9, 1)}
    for name, (grid, div) in SWEEPS.items():
        b = args.batch_size // div
        rec[name] = {'batch_size': b, **sweep(acts, grid, {**kw, 'batch_size': b}, reps, peak)}
    if args.cli:
        c = cli_time(acts, SAME_WIDTH, kw, tmp, args.threads)
        rec['same_width'].update(cli_s=round(c, 2), cli_over_ensemble=round(c / rec['same_width']['ensemble_s'], 2))
    emit(rec)

if __name__ == '__main__': main()
