"""Benchmark: a training run of saenb at a git revision against the working tree's, step by step in turn.

`bench_kernel_ab.py` compares two builds of the C kernels inside one process; a change to saenb's Python code (an
architecture's loss, the optimizer) cannot be swapped that way. This script runs two worker processes, one importing
saenb from git revision `--before` (default HEAD, unpacked to a temporary directory) and one from the working tree,
and lets them take optimizer steps in turn: worker A's step, then B's, then A's, ... so that both share the machine's
minute, where whole runs a minute apart differ by 15-30% on a shared 2-core machine. Each worker trains as
`saenb_train_sae` does (`--arch`, its settings `--sae` as JSON, on `--acts` or on `sae_vs_saelens.py`'s synthetic
activations) and times each of its steps from the moment it is let go to its next step's callback; `--runs` runs,
each starting with the other worker. With `--grid` (JSON axes, as `saenb_sweep`'s) each worker trains an ensemble
(`saenb.ensemble.train_ensemble`) instead, a step being every member's. Before each step the script idles `--gap`
milliseconds: a worker just paused keeps its OpenMP threads spinning for a few milliseconds (libgomp's default wait
policy), and without the pause TopK's step (256 x 2,048, k = 16) took 29-32 ms on both sides against 22-23 ms with 5
or 20. Prints ONE JSON line: each
side's median and mean step in milliseconds (the mean is what a whole run's tokens/s follows, where dense and sparse
steps differ, as ReLU's do), per run and pooled, their ratios, the validation FVU and L0 each side's last run ended
with, the largest difference of each parameter between the two, and whether the two trained the same weights.

    OMP_NUM_THREADS=2 python benchmarks/bench_rev_ab.py --arch relu --sae '{"sparsity_coeff": 1.5}' --runs 4
    OMP_NUM_THREADS=2 python benchmarks/bench_rev_ab.py --grid '{"k": [4, 8, 12, 16, 20, 24, 28, 32]}' --sae '{}' \
        --d_in 64 --batch_size 1024 --n_tokens 153600 --lr 1e-3 --runs 4   # bench_ensemble.py's headline sweep
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _common import ab_activations, ab_arguments, device_name, emit, training_precision

ROOT = Path(__file__).resolve().parent.parent
SIDES = ('before', 'after')


def worker(a):
    "Train `a.runs` runs, stopping after every step until the coordinator lets the next one go (a line on stdin)."
    import torch, saenb
    from saenb.train_sae import train_sae
    from saenb.ensemble import train_ensemble
    say = lambda s: (sys.stdout.write(s + '\n'), sys.stdout.flush())
    wait = lambda: sys.stdin.readline() or sys.exit(0)
    say(f'ready {saenb.__file__}'); wait()
    st = {}
    def step_done(step, sae):
        st['ms'].append(1000 * (time.perf_counter() - st['t']))
        say('step'); wait()
        st['t'] = time.perf_counter()
    kw = dict(arch=a.arch, exp_factor=a.exp_factor, n_tokens=a.n_tokens, batch_size=a.batch_size, lr=a.lr, seed=0,
              val_every=a.n_tokens, val_acts=a.val, progress=False, **json.loads(a.sae))
    for run in range(a.runs):
        st.update(ms=[], t=time.perf_counter())
        if a.grid:   # an ensemble: each member's figures, and every member's weights under its key
            res = train_ensemble(a.acts, grid=json.loads(a.grid), callback=step_done, **kw)
            fvu, l0 = ({str(k): r.summary.get(f) for k, r in res.items()} for f in ('fvu', 'l0'))
            state = {f'{k}/{n}': v for k, r in res.items() for n, v in r.sae.state_dict().items()}
        else:
            r = train_sae(a.acts, callback=step_done, say=lambda s: None, **kw)
            fvu, l0, state = r.summary.get('fvu'), r.summary.get('l0'), r.sae.state_dict()
        say('run ' + json.dumps({'ms': st['ms'], 'fvu': fvu, 'l0': l0}))
        if run == a.runs - 1: torch.save(state, a.weights)
        wait()


def start(side:str, pkg:str, a, argv:list, weights:str) -> subprocess.Popen:
    "A worker process importing saenb from `pkg` (None: the working tree's, as installed)."
    env = {**os.environ, **({'PYTHONPATH': pkg} if pkg else {})}
    p = subprocess.Popen([sys.executable, __file__, '--worker', '--weights', weights, *argv], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=env, cwd=tempfile.gettempdir())
    line = p.stdout.readline()
    if not line.startswith('ready '): raise SystemExit(f'{side} worker failed to start: {line!r}')
    where, want = Path(line.split(' ', 1)[1].strip()).parent.parent, Path(pkg) if pkg else ROOT
    if where.resolve() != want.resolve():   # (the working tree's side: saenb installed editable, as the README has it)
        raise SystemExit(f'{side} worker imported saenb from {where}, not {want}')
    return p


def main():
    ap = argparse.ArgumentParser()
    ab_arguments(ap, "git revision whose saenb/ is the first side", runs=2)
    ap.add_argument('--sae', default='{"k": 16}', help='its settings, JSON'); ap.add_argument('--val', default=None)
    ap.add_argument('--skip', type=int, default=5, help="each run's first steps left out of the medians")
    ap.add_argument('--gap', type=float, default=10,
                    help="milliseconds idle before each step, while the other worker's threads stop spinning")
    ap.add_argument('--grid', default=None, help="JSON axes: train an ensemble over them (train_ensemble's grid)")
    ap.add_argument('--worker', action='store_true'); ap.add_argument('--weights', default=None)
    a = ap.parse_args()
    if a.worker: return worker(a)
    with tempfile.TemporaryDirectory() as t:
        subprocess.run(f'git archive {a.before} saenb | tar -x -C {t}', shell=True, cwd=ROOT, check=True)
        acts, val = ab_activations(a, t, 8)
        argv = ['--arch', a.arch, '--sae', a.sae, '--acts', acts, '--exp_factor', str(a.exp_factor), '--batch_size',
                str(a.batch_size), '--n_tokens', str(a.n_tokens), '--lr', str(a.lr), '--runs', str(a.runs)]
        argv += (['--val', val] if val else []) + (['--grid', a.grid] if a.grid else [])
        ws = {s: f'{t}/{s}.pt' for s in SIDES}
        procs = {s: start(s, t if s == 'before' else None, a, argv, ws[s]) for s in SIDES}
        runs, last = [], {}
        for run in range(a.runs):
            order, live = (SIDES if run % 2 == 0 else SIDES[::-1]), {}
            for s in order: live[s] = True
            while live:
                for s in order:
                    if s not in live: continue
                    time.sleep(a.gap / 1000)
                    procs[s].stdin.write('\n'); procs[s].stdin.flush()
                    line = procs[s].stdout.readline()
                    if line.startswith('run '): last[s] = json.loads(line[4:]); del live[s]
                    elif line != 'step\n': raise SystemExit(f'{s} worker: {line!r}')
            runs.append({s: last[s]['ms'][a.skip:] for s in SIDES})
        for p in procs.values(): p.stdin.write('\n'); p.stdin.flush(); p.wait()
        import torch
        w = {s: torch.load(ws[s]) for s in SIDES}
        diff = {k: float((w['before'][k].double() - v.double()).abs().max()) for k, v in w['after'].items()
                if v.is_floating_point()}   # the parameters (and float buffers); counters apart
    pooled = {s: [m for r in runs for m in r[s]] for s in SIDES}
    med = {s: round(statistics.median(v), 3) for s, v in pooled.items()}
    mean = {s: round(statistics.fmean(v), 3) for s, v in pooled.items()}
    emit({'bench': 'rev_ab', 'device': device_name('cpu'), 'precision': training_precision()[0], 'before': a.before,
          'arch': a.arch, 'sae': json.loads(a.sae), 'grid': json.loads(a.grid) if a.grid else None,
          'acts': str(a.acts or 'synthetic'), 'd_in': a.d_in,
          'exp_factor': a.exp_factor, 'batch_size': a.batch_size, 'n_tokens': a.n_tokens, 'lr': a.lr,
          'step_ms_median': med, 'step_ms_mean': mean,
          'after_over_before_median': round(med['after'] / med['before'], 4),
          'after_over_before_mean': round(mean['after'] / mean['before'], 4),
          'runs': [{s: {'median': round(statistics.median(r[s]), 3), 'mean': round(statistics.fmean(r[s]), 3)}
                    for s in SIDES} for r in runs],
          'fvu': {s: last[s]['fvu'] for s in SIDES}, 'l0': {s: last[s]['l0'] for s in SIDES},
          'weights_max_abs_diff': diff,
          'same_weights': all(torch.equal(w['before'][k], v) for k, v in w['after'].items())})


if __name__ == '__main__': main()
