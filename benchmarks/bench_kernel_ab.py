"""Benchmark: a training step on two builds of saenb's CPU kernels, on alternate steps of the same runs.

Whole runs' tokens/s swing by 15-30% from one run to the next on a shared 2-core machine, more than most kernel changes
gain. This script trains one SAE as `saenb_train_sae` does (`--arch`, on `--acts` or on `sae_vs_saelens.py`'s synthetic
activations, `--d_in` wide), and switches between two builds of `saenb/csrc/kernels.c` after every optimizer step:
the one at git revision `--before` (default HEAD) and the working tree's. Each step is timed from the end of the one
before (the callback of `train_sae`), and the first 10 steps of each run are left out; `--runs` runs, each starting
on the other build. Then it trains once on each build alone and says whether the two give the same weights. Prints ONE
JSON line: the median step in milliseconds of each build, per run and over all runs, their ratio, and the fraction
of latents dead at the end of a run (AuxK's selection depends on how many are).
"""
import argparse, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))
from _common import ab_activations, ab_arguments, device_name, emit, training_precision
from bench_kernels import kernels_as

ROOT = Path(__file__).resolve().parent.parent


def build(src:str) -> dict:
    "saenb's kernels built from C source `src`."
    from saenb.kernels import kernels_of
    if (fns := kernels_of(src)) is None: raise SystemExit("no C compiler: saenb's kernels cannot be built here")
    return fns


def main():
    ap = argparse.ArgumentParser()
    ab_arguments(ap, 'git revision whose saenb/csrc/kernels.c is the first build', runs=4)
    ap.add_argument('--k', type=int, default=16)
    a = ap.parse_args()
    import saenb.kernels as K
    from saenb.train_sae import train_sae
    before = subprocess.run(['git', 'show', f'{a.before}:saenb/csrc/kernels.c'], capture_output=True, text=True,
                            cwd=ROOT, check=True).stdout
    builds = {'before': build(before), 'after': build(K.kernel_source())}
    names = list(builds)
    with tempfile.TemporaryDirectory() as t:
        acts, val = ab_activations(a, t, a.k / 2)
        kw = dict(arch=a.arch, k=a.k, exp_factor=a.exp_factor, n_tokens=a.n_tokens, batch_size=a.batch_size, lr=a.lr,
                  seed=0, val_every=a.n_tokens, val_acts=val, progress=False, say=lambda s: None)
        st = {}
        def switch(step, sae):   # after each step: its time to the build it ran on, then the other build
            now = time.perf_counter()
            if 'on' in st: st['ms'][st['on']].append(1000 * (now - st['t']))
            st['on'] = names[(step + st['run']) % 2]
            K.load_kernels = lambda f=builds[st['on']]: f
            st['t'] = time.perf_counter()
        per_run, pooled = [], {n: [] for n in names}
        with kernels_as(builds['after']):   # `switch` changes them step by step; saenb's own ones back after
            for run in range(a.runs):
                st.clear(); st.update(run=run, ms={n: [] for n in names})
                train_sae(acts, callback=switch, **kw)
                for n in names: pooled[n] += st['ms'][n][10:]
                per_run.append({n: round(statistics.median(st['ms'][n][10:]), 3) for n in names})
        weights = {}
        for n in names:   # each build alone, from the same seed
            with kernels_as(builds[n]): r = train_sae(acts, **kw)
            weights[n], dead = r.sae.state_dict(), r.summary['dead_frac']
    med = {n: round(statistics.median(v), 3) for n, v in pooled.items()}
    emit({'bench': 'kernel_ab', 'device': device_name('cpu'), 'precision': training_precision()[0],
          'before': a.before, 'arch': a.arch, 'acts': str(a.acts or 'synthetic'), 'd_in': a.d_in,
          'exp_factor': a.exp_factor, 'k': a.k, 'batch_size': a.batch_size, 'n_tokens': a.n_tokens, 'lr': a.lr,
          'step_ms': med, 'after_over_before': round(med['after'] / med['before'], 4), 'runs': per_run,
          'dead_frac': round(dead, 4),
          'same_weights': all(torch.equal(v, weights['after'][k]) for k, v in weights['before'].items())})


if __name__ == '__main__': main()
