"""The default number of AuxK latents (`aux_k`) from measurement: validation FVU, dead fraction and training speed of
TopK-family SAEs with aux_k = d_in // 2 (Gao et al.'s appendix heuristic, SAELens's default), d_in // 4 and d_in // 8,
and with AuxK off (`aux_coeff` 0) for reference. Prints one JSON line and writes the same record, with every run, to
`benchmarks/results/aux_k_default.json` (`--out`), which `06_sae` reads.

Source: activation stores where latents die, e.g. the default `saenb_pipeline`'s `runs/dyck/acts/0_residpost` and
`1_residpost` (the Dyck-2 GPT's residual stream, d_model 128): a 512-latent dictionary (exp_factor 4) at k = 8 leaves
half to four fifths of its latents dead in a 1M-token run, so AuxK runs on most steps. Training as the small-dictionary
case of `sae_vs_saelens.py`: 1,000,000 tokens in batches of 4096, lr 4e-3 (that benchmark's best for saenb), the
store's validation split, every other setting at the trainer's defaults; each configuration at `--seeds`.

Choice (`recommended`, per architecture): the largest divisor (fewest AuxK latents, the cheapest) whose mean FVU over
the stores and seeds is within `--tolerance` (1%) of the best divisor's.

    python benchmarks/aux_k_default.py --stores runs/dyck/acts/0_residpost,runs/dyck/acts/1_residpost
"""
import argparse, json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, save_record, train_small

HERE = Path(__file__).parent
DIVS = (2, 4, 8)

def train_one(store:str, arch:str, aux:dict, seed:int, lr:float) -> dict:
    "Train one SAE on `store`: its validation FVU, dead fraction and tokens/s."
    return dict(store=Path(store).name, arch=arch, seed=seed, **aux, **train_small(store, arch, seed, lr, **aux))

def recommend(runs:list, tolerance:float) -> dict:
    "Per architecture: the largest divisor whose mean FVU is within `tolerance` of the best divisor's."
    out = {}
    for arch in dict.fromkeys(r['arch'] for r in runs):
        mean = {}
        for div in DIVS:
            f = [r['fvu'] for r in runs if r['arch'] == arch and r.get('aux_div') == div]
            if f: mean[div] = sum(f) / len(f)
        best = min(mean.values())
        out[arch] = dict(aux_k_div=max(d for d, m in mean.items() if m <= best * (1 + tolerance)),
                         mean_fvu={d: round(m, 5) for d, m in mean.items()})
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--stores', required=True, help='comma list of activation stores (d_in from each)')
    ap.add_argument('--archs', default='topk,batchtopk,matryoshka')
    ap.add_argument('--seeds', default='0,1'); ap.add_argument('--lr', type=float, default=4e-3)
    ap.add_argument('--tolerance', type=float, default=0.01)
    ap.add_argument('--out', default=str(HERE/'results'/'aux_k_default.json'))
    a = ap.parse_args()
    from saenb.cache import ActivationStore
    t0, runs = time.perf_counter(), []
    for store in a.stores.split(','):
        d_in = ActivationStore(store, 'train').d
        for arch in a.archs.split(','):
            for seed in map(int, a.seeds.split(',')):
                for div in (*DIVS, None):   # None: AuxK off
                    aux = dict(aux_k=d_in // div) if div else dict(aux_coeff=0.0)
                    r = train_one(store, arch, aux, seed, a.lr)
                    runs.append(dict(r, aux_div=div))
                    print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    save_record(dict(benchmark='aux_k_default', device=device_name(), stores=a.stores.split(','), lr=a.lr,
                     n_tokens=1_000_000, batch_size=4096, k=8, exp_factor=4, tolerance=a.tolerance,
                     recommended=recommend(runs, a.tolerance), seconds=round(time.perf_counter() - t0, 1),
                     runs=runs), a.out)

if __name__ == '__main__': main()
