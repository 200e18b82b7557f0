"""The default number of tokens AuxK reconstructs in each batch (`aux_tokens`) from measurement: validation FVU, dead
fraction and training speed of TopK, BatchTopK and Matryoshka SAEs with AuxK on every token of a batch (`aux_tokens`
0) and on its first 2,048, 1,024, 512 and 256 (a batch is a shuffled sample of the store, so its first tokens are one
too).
Prints one JSON line and writes the same record, with every run, to `benchmarks/results/aux_tokens_default.json`
(`--out`), which `06_sae` reads.

AuxK's entries cost as much as the codes' in the sparse pass: on the small dictionaries our pipeline trains, where
half the latents or more are dead, AuxK took about a third of a TopK step (`aux_k_default.py`: 300,000-395,000 tokens/s
with AuxK against 515,000-541,000 without), while its gradient only steers the dead latents back towards the residual,
which a sample of the batch estimates without bias (its loss is the mean over the tokens it covers, weighed as before).
Training as the small-dictionary case of `sae_vs_saelens.py`: the Dyck GPT's `0_residpost` store (128 dimensions, 512
latents, k = 8), 1,000,000 tokens in batches of 4096, the store's validation split, at learning rates 2e-3 and 4e-3
(each tool's best two there) and `--seeds`; every other setting at the trainer's defaults.

Choice (`recommended`, per architecture): the fewest tokens (the cheapest) whose mean FVU over the learning rates and
seeds is within `--tolerance` (2%: the spread of one setting's mean over seeds is about 1%) of the best count's.

    python benchmarks/aux_tokens_default.py --store runs/dyck/acts/0_residpost

Why a count and not a share of the batch, and where AuxK matters: `--batch_size`, `--counts` (`off`: no AuxK at all),
`--k`, `--exp_factor` and `--n_tokens` run other cases, and `--synthetic` trains on `sae_vs_saelens.py`'s synthetic
file instead of a store (256 dimensions, 2,048 latents, k = 32, 524,288 tokens, where hardly a latent dies), e.g.

    python benchmarks/aux_tokens_default.py --store STORE --archs topk --batch_size 1024 --counts 0,256 \
        --out benchmarks/results/aux_tokens_batch1024.json
    python benchmarks/aux_tokens_default.py --synthetic --archs topk --seeds 0,1 --exp_factor 8 --k 32 \
        --n_tokens 524288 --counts 0,2048,1024,off --out benchmarks/results/aux_tokens_synthetic.json

Only the default case's record (`aux_tokens_default.json`) sets the configs' defaults.
"""
import argparse, json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, save_record, train_small
from sae_vs_saelens import synthetic_files

HERE = Path(__file__).parent
COUNTS = (0, 2048, 1024, 512, 256)   # 0: every token of the batch

def aux_settings(count) -> dict:
    "`train_sae` settings for one count: AuxK on the batch's first `count` tokens (0: all), or 'off' (no AuxK)."
    return dict(aux_coeff=0.0) if count == 'off' else dict(aux_tokens=count)

def recommend(runs:list, tolerance:float, counts=COUNTS) -> dict:
    "Per architecture: the fewest AuxK tokens whose mean FVU is within `tolerance` of the best count's (0: all)."
    out = {}
    for arch in dict.fromkeys(r['arch'] for r in runs):
        mean, speed = {}, {}
        for n in counts:
            rs = [r for r in runs if r['arch'] == arch and r['aux_tokens'] == n]
            if rs:
                mean[n] = sum(r['fvu'] for r in rs) / len(rs)
                speed[n] = sorted(r['tokens_per_s'] for r in rs)[len(rs) // 2]
        best = min(mean.values())
        ok = [n for n, m in mean.items() if m <= best * (1 + tolerance)]
        out[arch] = dict(aux_tokens=min(ok, key=lambda n: -1 if n == 'off' else n or float('inf')),
                         mean_fvu={n: round(m, 5) for n, m in mean.items()},
                         median_tokens_per_s={n: round(s) for n, s in speed.items()})
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--store', help='an activation store where latents die')
    ap.add_argument('--synthetic', action='store_true', help="sae_vs_saelens.py's synthetic file instead of a store")
    ap.add_argument('--archs', default='topk,batchtopk,matryoshka')
    ap.add_argument('--seeds', default='0,1,2'); ap.add_argument('--lrs', default='2e-3,4e-3')
    ap.add_argument('--counts', default=','.join(map(str, COUNTS)), help="AuxK's tokens a batch (0: all; off: no AuxK)")
    ap.add_argument('--batch_size', type=int, default=4096); ap.add_argument('--n_tokens', type=int, default=1_000_000)
    ap.add_argument('--k', type=int, default=8); ap.add_argument('--exp_factor', type=int, default=4)
    ap.add_argument('--tolerance', type=float, default=0.02)
    ap.add_argument('--out', default=str(HERE/'results'/'aux_tokens_default.json'))
    a = ap.parse_args()
    if a.synthetic == bool(a.store): ap.error('give one of --store and --synthetic')
    counts = [c if c == 'off' else int(c) for c in a.counts.split(',') if c == 'off' or c.isdigit()]
    if len(counts) != len(a.counts.split(',')): ap.error(f"--counts {a.counts}: give counts of tokens >= 0, or off")
    t0, runs = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as tmp:
        acts, val = synthetic_files(tmp, a.n_tokens) if a.synthetic else (a.store, None)
        for arch in a.archs.split(','):
            for seed in map(int, a.seeds.split(',')):
                for lr in map(float, a.lrs.split(',')):
                    for n in counts:   # one after another, so that they share the machine's minutes
                        r = train_small(acts, arch, seed, lr, a.n_tokens, val, k=a.k, exp_factor=a.exp_factor,
                                        batch_size=a.batch_size, **aux_settings(n))
                        runs.append(dict(store='synthetic' if a.synthetic else Path(a.store).name, arch=arch,
                                         seed=seed, lr=lr, aux_tokens=n, **r))
                        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    save_record(dict(benchmark='aux_tokens_default', device=device_name(), store=a.store or 'synthetic', lrs=a.lrs,
                     n_tokens=a.n_tokens, batch_size=a.batch_size, k=a.k, exp_factor=a.exp_factor, counts=counts,
                     tolerance=a.tolerance, recommended=recommend(runs, a.tolerance, counts),
                     seconds=round(time.perf_counter() - t0, 1), runs=runs), a.out)

if __name__ == '__main__': main()
