"""The default of Gated's `frozen_aux_decoder` from measurement: validation FVU at matched L0 of Gated SAEs whose
auxiliary reconstruction decodes through a frozen copy of the decoder (Rajamanoharan et al. 2024; `True`) or through the
decoder itself, which it then trains too (SAELens's; `False`).
Prints one JSON line and writes the same record, with every run, to `benchmarks/results/gated_aux_default.json`
(`--out`), which `06_sae` and the README cite.

Each case trains both settings at `--seeds`, searching the L1 coefficient of each (seed, setting) until two runs bracket
each target L0 (`sae_vs_saelens._match_l0`, at most `--max_search_runs` runs), and interpolates FVU in log L0 at the
target (`_at_l0`), as `sae_vs_saelens.py` compares Gated with SAELens's; learning rate 4e-3, every other setting at the
trainer's defaults. Cases (`--cases`):

- `dyck`: the store given by `--store` (the default pipeline's Dyck GPT `0_residpost`: 128 dimensions, 512 latents),
  1,000,000 tokens in batches of 4,096, its validation split, L0 10 and 20;
- `synthetic`: `sae_vs_saelens.py`'s synthetic file and sizes (256 dimensions, 2,048 latents, batches of 4,096,
  524,288 tokens: 128 steps), L0 32;
- `synthetic_long`: the same at 2,097,152 tokens (512 steps), L0 32.

Choice (`recommended`): the setting with the lower geometric mean over the cases and targets of its mean FVU (over the
seeds) divided by the better setting's; `per_case` gives each case's means and ratio (frozen / trained). Each run
also records its training L0 at every logged step (`l0_by_step`): how far its sparsity had settled when it ended.

    python benchmarks/gated_aux_default.py --store runs/dyck/acts/0_residpost

All three cases, two seeds: 16 minutes on a 2-core AMD EPYC (985 s, 62 runs).
"""
import argparse, json, math, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, save_record, train_small
from sae_vs_saelens import _at_l0, _match_l0, synthetic_files

HERE = Path(__file__).parent
# case: (exp_factor, n_tokens, target L0s, first coefficient of each search)
CASES = {'dyck': (4, 1_000_000, (10, 20), 1.0), 'synthetic': (8, 524_288, (32,), 2.5),
         'synthetic_long': (8, 2_097_152, (32,), 2.5)}
LR = 4e-3

def at_targets(acts, val, case:str, seed:int, frozen:bool, max_runs:int, log) -> tuple:
    "`(FVU at each target L0, every run)` of one (case, seed, setting), each target's coefficient searched."
    exp_factor, n_tokens, targets, c0 = CASES[case]
    runs, done = [], {}
    def run(c):
        if c not in done:
            r = train_small(acts, 'gated', seed, LR, n_tokens, val, l0_by_step=True, exp_factor=exp_factor,
                            sparsity_coeff=c, frozen_aux_decoder=frozen)
            done[c] = dict(case=case, seed=seed, frozen=frozen, knob=c, **r)
            runs.append(done[c]); log(json.dumps(done[c]))
        return done[c]
    fvus = []
    for t in targets:
        near = [r for r in runs if r['l0'] > 0]   # start from the run whose L0 was nearest this target, if any
        start = min(near, key=lambda r: abs(math.log(r['l0'] / t)))['knob'] if near else c0
        fvus.append(_at_l0(_match_l0(run, start, float(t), max_runs), float(t))['fvu'])
    return fvus, runs

def recommend(means:dict) -> dict:
    "`means[(case, target)][frozen]`: the setting whose FVUs over the better one's have the lower geometric mean."
    score = {f: math.exp(sum(math.log(m[f] / min(m.values())) for m in means.values()) / len(means))
             for f in (True, False)}
    return dict(frozen_aux_decoder=min(score, key=score.get), geo_mean_over_best={str(f): round(v, 4)
                                                                                for f, v in score.items()})

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--store', help="the `dyck` case's activation store")
    ap.add_argument('--cases', default='dyck,synthetic,synthetic_long')
    ap.add_argument('--seeds', default='0,1'); ap.add_argument('--max_search_runs', type=int, default=5)
    ap.add_argument('--out', default=str(HERE/'results'/'gated_aux_default.json'))
    a = ap.parse_args()
    cases = a.cases.split(',')
    if bad := [c for c in cases if c not in CASES]: ap.error(f"unknown case {bad[0]!r}: choose from {', '.join(CASES)}")
    if 'dyck' in cases and not a.store: ap.error('the dyck case needs --store')
    log = lambda s: print(s, file=sys.stderr, flush=True)
    t0, runs, fvu = time.perf_counter(), [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            acts, val = (a.store, None) if case == 'dyck' else synthetic_files(tmp, CASES[case][1])
            for seed in map(int, a.seeds.split(',')):
                for frozen in (True, False):   # one after another, so that they share the machine's minutes
                    f, rs = at_targets(acts, val, case, seed, frozen, a.max_search_runs, log)
                    runs += rs
                    for t, v in zip(CASES[case][2], f): fvu.setdefault((case, t), {}).setdefault(frozen, []).append(v)
    means = {k: {f: sum(v) / len(v) for f, v in d.items()} for k, d in fvu.items()}
    r5 = lambda vs: [round(v, 5) for v in vs]
    per_case = {f'{c}@L0={t}': dict(frozen=round(m[True], 5), trained=round(m[False], 5),
                                    ratio=round(m[True] / m[False], 4),
                                    seeds_frozen=r5(fvu[(c, t)][True]), seeds_trained=r5(fvu[(c, t)][False]))
                for (c, t), m in means.items()}
    save_record(dict(benchmark='gated_aux_default', device=device_name(), store=a.store, lr=LR, seeds=a.seeds,
                     cases={c: dict(zip(('exp_factor', 'n_tokens', 'target_l0', 'coef_start'), CASES[c]))
                            for c in cases},
                     recommended=recommend(means), per_case=per_case, seconds=round(time.perf_counter() - t0, 1),
                     runs=runs), a.out)

if __name__ == '__main__': main()
