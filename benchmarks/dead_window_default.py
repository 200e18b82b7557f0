"""The default dead-latent window (`dead_tokens`) from measurement: validation FVU, dead fraction and training speed of
TopK-family SAEs whose latents count as dead (and so join AuxK) after a silence of 1/40, 1/20, 1/10, 1/5 or 2/5 of
the run's tokens, with AuxK off (`aux_coeff` 0) for reference. Prints one JSON line and writes the same record, with
every run, to `benchmarks/results/dead_window_default.json` (`--out`), which `07_train_sae` reads.

Source and training as `aux_k_default.py`: stores where latents die, e.g. the default `saenb_pipeline`'s
`runs/dyck/acts/0_residpost` and `1_residpost` (d_model 128), 512 latents (exp_factor 4) at k = 8, batches of 4096,
lr 4e-3, every other setting at the trainer's defaults; each configuration at `--seeds`, and each run length of
`--n_tokens` (the window is a share of the run, so a second length checks that the share, not a count, carries over).
The dead fraction each run reports is by its own window, so it is not comparable across windows: FVU decides.

Choice (`recommended`, per run length): one window for every architecture, as the trainer has one default. Each run's
FVU is taken relative to the mean over the windows of its architecture, store and seed, and averaged per window; the
longest window (fewest latents in AuxK, the cheapest) within `--tolerance` (1%) of the best is chosen.

    python benchmarks/dead_window_default.py --stores runs/dyck/acts/0_residpost,runs/dyck/acts/1_residpost
"""
import argparse, json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, save_record, train_small

HERE = Path(__file__).parent
DIVS = (40, 20, 10, 5, 2.5)   # the window is n_tokens / div

def train_one(store:str, arch:str, n_tokens:int, div, seed:int, lr:float) -> dict:
    "Train one SAE on `store` with window `n_tokens / div` (None: AuxK off): validation FVU, dead fraction, tokens/s."
    kw = dict(dead_tokens=int(n_tokens / div)) if div else dict(aux_coeff=0.0)
    return dict(store=Path(store).name, arch=arch, n_tokens=n_tokens, seed=seed, window_div=div, **kw,
                **train_small(store, arch, seed, lr, n_tokens, **kw))

def recommend(runs:list, tolerance:float) -> dict:
    "Per run length: the window for every architecture, and each architecture's mean FVU and tokens/s by window."
    # one default serves the whole trainer, so the windows are compared over every architecture, store and seed at
    # once: each run's FVU relative to its (architecture, store, seed)'s mean over the windows, then averaged
    out = {}
    for n in dict.fromkeys(r['n_tokens'] for r in runs):
        rs = [r for r in runs if r['n_tokens'] == n]
        groups, rel = {}, {}
        for r in rs:
            if r['window_div'] is not None: groups.setdefault((r['arch'], r['store'], r['seed']), []).append(r)
        for g in groups.values():
            m = sum(r['fvu'] for r in g) / len(g)
            for r in g: rel.setdefault(r['window_div'], []).append(r['fvu'] / m)
        mean = {d: sum(v) / len(v) for d, v in rel.items()}
        best = min(mean.values())
        per_arch = {}
        for r in rs: per_arch.setdefault(r['arch'], {}).setdefault(str(r['window_div']), []).append(r)
        per_arch = {a: {d: dict(fvu=round(sum(r['fvu'] for r in g) / len(g), 5),
                                tokens_per_s=round(sum(r['tokens_per_s'] for r in g) / len(g))) for d, g in ws.items()}
                    for a, ws in per_arch.items()}
        out[str(n)] = dict(window_div=min(d for d, m in mean.items() if m <= best * (1 + tolerance)),
                           relative_fvu={str(d): round(m, 4) for d, m in mean.items()}, by_arch=per_arch)
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--stores', required=True, help='comma list of activation stores')
    ap.add_argument('--archs', default='topk,batchtopk,matryoshka')
    ap.add_argument('--n_tokens', default='1000000', help='comma list of run lengths')
    ap.add_argument('--seeds', default='0,1'); ap.add_argument('--lr', type=float, default=4e-3)
    ap.add_argument('--tolerance', type=float, default=0.01)
    ap.add_argument('--out', default=str(HERE/'results'/'dead_window_default.json'))
    a = ap.parse_args()
    t0, runs = time.perf_counter(), []
    for n in map(int, a.n_tokens.split(',')):
        for store in a.stores.split(','):
            for arch in a.archs.split(','):
                for seed in map(int, a.seeds.split(',')):
                    for div in (*DIVS, None):   # None: AuxK off
                        runs.append(train_one(store, arch, n, div, seed, a.lr))
                        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    save_record(dict(benchmark='dead_window_default', device=device_name(), stores=a.stores.split(','), lr=a.lr,
                     n_tokens=[int(n) for n in a.n_tokens.split(',')], batch_size=4096, k=8, exp_factor=4,
                     tolerance=a.tolerance, recommended=recommend(runs, a.tolerance),
                     seconds=round(time.perf_counter() - t0, 1), runs=runs), a.out)

if __name__ == '__main__': main()
