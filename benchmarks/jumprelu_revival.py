"""Defaults of the JumpReLU family (`jumprelu`, `lagrangian`) from measurement: the STE bandwidth and the AuxK weight that
keep a dictionary alive without costing reconstruction. Prints one JSON line and writes the same record to
`benchmarks/results/jumprelu_revival.json` (`--out`), which `07_train_sae` reads.

Source: an activation store (`--store`, e.g. the default `saenb_pipeline`'s `runs/dyck/acts/0_residpost`: the residual
stream of the pipeline's Dyck-2 GPT, d_model 128), trained on its train split; FVU, L0 and the dead fraction (no
activation on the rows, as `saenb_eval`'s `dead_frac`) on the first `--eval_rows` (50,000) rows of its validation split.

Configurations: `lagrangian` (L0 = 8 as a constraint, the pipeline's target) and `jumprelu` with the quadratic L0 target
(`sparsity='target_l0'`, target 8), each at 128 and 512 latents (exp_factor 1 and 4). Training as the pipeline trains:
1,000,000 tokens in batches of 1024, lr 1e-3, every other setting at `saenb.train_sae`'s defaults. Grid: `bandwidth` x
`aux_coeff` (`--bandwidths`, `--aux_coeffs`).

Choice (`recommended`): the grid point with the smallest worst-case FVU ratio (FVU / the configuration's best FVU over
the grid) among those where every configuration ends within 10% of its L0 target and as alive as the grid allows: at
most `--max_dead` (0.10) dead, or at most 0.05 above the configuration's fewest dead over the grid where no grid point
reaches 0.10 (at 512 latents this language leaves over half of them dead whatever the settings); `null` if none.

    python benchmarks/jumprelu_revival.py --store runs/dyck/acts/0_residpost [--workers 2]
    python benchmarks/jumprelu_revival.py --runs benchmarks/results/jumprelu_revival.json   # re-score, no training
"""
import argparse, itertools, json, multiprocessing, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, save_record

HERE = Path(__file__).parent
CONFIGS = [(arch, ef) for arch in ('lagrangian', 'jumprelu') for ef in (1, 4)]
TARGET_L0 = 8.0

def sae_settings(arch:str, bandwidth:float, aux_coeff:float) -> dict:
    "The architecture settings of one grid point."
    kw = dict(target_l0=TARGET_L0, bandwidth=bandwidth, aux_coeff=aux_coeff)
    return kw if arch == 'lagrangian' else dict(kw, sparsity='target_l0', calibrate=True)

def train_one(store:str, arch:str, exp_factor:int, bandwidth:float, aux_coeff:float, eval_rows:int) -> dict:
    "Train one SAE on `store` and measure it on its validation rows (runs in a worker with one torch thread)."
    import numpy as np, torch
    torch.set_num_threads(1)
    from saenb.cache import ActivationStore
    from saenb.train_sae import train_sae, SAETrainConfig
    tr, va = ActivationStore(store, 'train'), ActivationStore(store, 'validation')
    t0 = time.perf_counter()
    tc = SAETrainConfig(arch=arch, exp_factor=exp_factor, n_tokens=1_000_000, batch_size=1024, lr=1e-3,
                        sae=sae_settings(arch, bandwidth, aux_coeff))
    sae = train_sae(tr, None, tc, progress=False, say=lambda s: None).sae.eval()
    x = va[np.arange(min(eval_rows, len(va)))].float()
    with torch.no_grad(): c = sae.encode(x); r = sae.decode(c).float()
    fvu = ((x - r).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()
    return dict(arch=arch, exp_factor=exp_factor, d_sae=sae.cfg.d_sae, bandwidth=bandwidth, aux_coeff=aux_coeff,
                fvu=round(fvu, 5), l0=round((c != 0).sum(-1).float().mean().item(), 3),
                dead_frac=round(((c != 0).sum(0) == 0).float().mean().item(), 4),
                seconds=round(time.perf_counter() - t0, 1))

def recommend(runs:list, max_dead:float) -> dict:
    "The grid point that keeps every configuration alive and on target with the smallest worst-case FVU ratio."
    best = {}
    for r in runs: best[r['arch'], r['exp_factor']] = min(best.get((r['arch'], r['exp_factor']), 1e9), r['fvu'])
    for r in runs: r['fvu_ratio'] = round(r['fvu'] / best[r['arch'], r['exp_factor']], 4)
    points = {}
    for r in runs: points.setdefault((r['bandwidth'], r['aux_coeff']), []).append(r)
    fewest = {}
    for r in runs: fewest[r['arch'], r['exp_factor']] = min(fewest.get((r['arch'], r['exp_factor']), 1), r['dead_frac'])
    alive = lambda r: r['dead_frac'] <= max(max_dead, fewest[r['arch'], r['exp_factor']] + 0.05)
    ok = {p: rs for p, rs in points.items() if len(rs) == len(CONFIGS)
          and all(alive(r) and abs(r['l0'] / TARGET_L0 - 1) <= 0.1 for r in rs)}
    if not ok: return None
    p, rs = min(ok.items(), key=lambda kv: max(r['fvu_ratio'] for r in kv[1]))
    return dict(bandwidth=p[0], aux_coeff=p[1], worst_fvu_ratio=max(r['fvu_ratio'] for r in rs),
                worst_dead_frac=max(r['dead_frac'] for r in rs))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--store', help='activation store to train on (or --runs)')
    ap.add_argument('--runs', help="a record this script wrote: re-score its runs instead of training")
    ap.add_argument('--bandwidths', default='0.001,0.01,0.1,0.3,1,3,10')
    ap.add_argument('--aux_coeffs', default='0,0.5,2,8')
    ap.add_argument('--eval_rows', type=int, default=50_000)
    ap.add_argument('--max_dead', type=float, default=0.10)
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--out', default=str(HERE / 'results' / 'jumprelu_revival.json'))
    a = ap.parse_args()
    grid = [(float(b), float(c)) for b in a.bandwidths.split(',') for c in a.aux_coeffs.split(',')]
    jobs = [(a.store, arch, ef, b, c, a.eval_rows) for (arch, ef), (b, c) in itertools.product(CONFIGS, grid)]
    t0 = time.perf_counter()
    if a.runs:
        old = json.loads(Path(a.runs).read_text())
        runs, store, device, t0 = old['runs'], old['store'], old['device'], t0 - old['seconds']
    elif not a.store: sys.exit('jumprelu_revival.py: pass --store (an activation store) or --runs (a record to re-score)')
    else:
        with ProcessPoolExecutor(a.workers, mp_context=multiprocessing.get_context('spawn')) as ex:
            runs = list(ex.map(train_one, *zip(*jobs)))
        store, device = str(Path(a.store).resolve()), device_name()
    rec = dict(benchmark='jumprelu_revival', device=device, store=store,
               target_l0=TARGET_L0, n_tokens=1_000_000, batch_size=1024, lr=1e-3, max_dead=a.max_dead,
               recommended=recommend(runs, a.max_dead), runs=runs, seconds=round(time.perf_counter() - t0, 1))
    save_record(rec, a.out)

if __name__ == '__main__': main()
