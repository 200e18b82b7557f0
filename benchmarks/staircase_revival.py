"""The AuxK weight of the stacked SAEs (`staircase`, `noshare`) from measurement: how much of the dictionary stays alive,
and at what cost in reconstruction. Prints one JSON line and writes the same record to
`benchmarks/results/staircase_revival.json` (`--out`), which `06_sae` reads.

Source: a saenb model and its corpus (`--model`, `--data`; e.g. the default `saenb_pipeline`'s `runs/dyck/model` and
`runs/dyck/data`: the Dyck-2 GPT, 2 layers, d_model 128). Every SAE reads the residual stream after both blocks
(`0_residpost`, `1_residpost`), stacked per layer, and all of them train together from one forward pass per batch
(`saenb.ensemble.train_saes_on_model`), on 1,000,000 tokens in batches of 1,024 at lr 1e-3, every other setting at the
trainer's defaults. FVU, L0 and the dead fraction are the trainer's final figures: FVU and L0 on its validation rows,
dead as silent for the run's window (a tenth of it) among the slots that are latents.

Configurations: `staircase` and `noshare`, k = 8 per layer, at 128 and 512 latents (exp_factor 1 and 4), with AuxK at
each weight of `--aux_coeffs` (0 turns it off). Choice (`recommended`): the weight with the smallest worst-case FVU
ratio (FVU / the configuration's best FVU over the weights) among those that leave every configuration at most
`--max_dead` (0.10) dead, or within 0.05 of its fewest dead where no weight reaches that; `null` if none.

    python benchmarks/staircase_revival.py --model runs/dyck/model --data runs/dyck/data
"""
import argparse, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, save_record

HERE = Path(__file__).parent
CONFIGS = [(arch, ef) for arch in ('staircase', 'noshare') for ef in (1, 4)]

def recommend(runs:list, max_dead:float) -> dict:
    "The AuxK weight that keeps every configuration alive with the smallest worst-case FVU ratio."
    key = lambda r: (r['arch'], r['exp_factor'])
    best, fewest = {}, {}
    for r in runs:
        best[key(r)] = min(best.get(key(r), 1e9), r['fvu']); fewest[key(r)] = min(fewest.get(key(r), 1), r['dead_frac'])
    for r in runs: r['fvu_ratio'] = round(r['fvu'] / best[key(r)], 4)
    by = {}
    for r in runs: by.setdefault(r['aux_coeff'], []).append(r)
    ok = {c: rs for c, rs in by.items() if all(r['dead_frac'] <= max(max_dead, fewest[key(r)] + 0.05) for r in rs)}
    if not ok: return None
    c, rs = min(ok.items(), key=lambda kv: max(r['fvu_ratio'] for r in kv[1]))
    return dict(aux_coeff=c, worst_fvu_ratio=max(r['fvu_ratio'] for r in rs),
                worst_dead_frac=max(r['dead_frac'] for r in rs))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', required=True, help='a saenb model directory')
    ap.add_argument('--data', required=True, help='its corpus directory')
    ap.add_argument('--aux_coeffs', default='0,0.03125,0.5,2')
    ap.add_argument('--n_tokens', type=int, default=1_000_000)
    ap.add_argument('--max_dead', type=float, default=0.10)
    ap.add_argument('--out', default=str(HERE / 'results' / 'staircase_revival.json'))
    a = ap.parse_args()
    from saenb.model import load_model
    from saenb.ensemble import train_saes_on_model
    coeffs = [float(c) for c in a.aux_coeffs.split(',')]
    saes = {f"{arch}_x{ef}_aux{c:g}": {'hooks': ['0_residpost', '1_residpost'], 'arch': arch, 'exp_factor': ef, 'k': 8,
                                       'aux_coeff': c} for arch, ef in CONFIGS for c in coeffs}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        res = train_saes_on_model(load_model(a.model), a.data, saes, Path(d)/'saes', n_tokens=a.n_tokens,
                                  batch_size=1024, lr=1e-3, progress=False)
    runs = [dict(arch=s['arch'], exp_factor=s['exp_factor'], aux_coeff=s['aux_coeff'], d_sae=r.summary['d_sae'],
                 **{k: round(float(r.summary[k]), 5) for k in ('fvu', 'l0', 'dead_frac')})
            for (n, s), r in zip(saes.items(), (res[n] for n in saes))]
    rec = dict(benchmark='staircase_revival', device=device_name(), model=str(Path(a.model).resolve()), k=8,
               n_tokens=a.n_tokens, batch_size=1024, lr=1e-3, max_dead=a.max_dead,
               recommended=recommend(runs, a.max_dead), runs=runs, seconds=round(time.perf_counter() - t0, 1))
    save_record(rec, a.out)

if __name__ == '__main__': main()
