"""The defaults of Gated's auxiliary reconstruction from measurement: validation FVU at matched L0 of Gated SAEs trained
with each value of one setting (`--compare`):

- `frozen_aux_decoder`: the auxiliary reconstruction decodes through a frozen copy of the decoder (Rajamanoharan et al.
  2024; `True`) or through the decoder itself, which it then trains too (SAELens's; `False`). Record:
  `benchmarks/results/gated_aux_default.json`, at the default weight 0.25 (the one before it, at weight 1, is in git
  history). Its searches started from weight 1's coefficients, before they were scaled: in `synthetic_long` the frozen
  runs' FVU was interpolated between L0 26-28 and 249-267 (`bracket_l0`), where `gated_aux_coeff.json` has the same
  setting between 30 and 52: 0.128 there, 0.1283 here.
- `aux_coeff`: the auxiliary reconstruction's weight (the paper's 1, and 0.5, 0.25, 0.125; `--values`). Record:
  `benchmarks/results/gated_aux_coeff.json`.

Prints one JSON line and writes the same record, with every run, to the setting's record (`--out`), which `06_sae` and
the README cite. Each case trains every value at `--seeds`, searching the L1 coefficient of each (seed, value) until
two runs bracket each target L0 (`sae_vs_saelens._match_l0`, at most `--max_search_runs` runs; the first coefficient
of a search, `CASES`' for weight 1, times the weight the runs use, to which the coefficient at a given L0 is nearly
proportional: the value for `aux_coeff`, the default for `frozen_aux_decoder`), and
interpolates FVU in log L0 at the target (`_at_l0`), as `sae_vs_saelens.py` compares Gated with SAELens's; learning
rate 4e-3, every other setting at the trainer's defaults. Cases (`--cases`):

- `dyck`: the store given by `--store` (the default pipeline's Dyck GPT `0_residpost`: 128 dimensions, 512 latents),
  1,000,000 tokens in batches of 4,096, its validation split, L0 10 and 20;
- `synthetic`: `sae_vs_saelens.py`'s synthetic file and sizes (256 dimensions, 2,048 latents, batches of 4,096,
  524,288 tokens: 128 steps), L0 32;
- `synthetic_long`: the same at 2,097,152 tokens (512 steps), L0 32.

Choice (`recommended`): the value with the lowest geometric mean over the cases and targets of its mean FVU (over the
seeds) divided by the best value's; `per_case` gives each case's mean FVU of each value, their ratio to the best and,
for each seed, the two runs' L0 the FVU was interpolated between (`bracket_l0`: a wide bracket, where the search ran
out of runs, biases the FVU low, as FVU is convex in log L0).
Each run also records its training L0 at every logged step (`l0_by_step`): how far its sparsity had settled when it
ended.

    python benchmarks/gated_aux_default.py --store runs/dyck/acts/0_residpost [--compare aux_coeff]

All three cases, two seeds, on a 2-core AMD EPYC: `frozen_aux_decoder` 32 minutes (1,891 s, 65 runs); `aux_coeff`
(four values) 41 minutes (2,473 s, 126 runs).
"""
import argparse, json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _common import compared_values, device_name, recommend_value, save_record, train_small, value_table
from sae_vs_saelens import fvu_at_l0s, synthetic_files
from saenb.sae import GatedConfig

HERE = Path(__file__).parent
# case: (exp_factor, n_tokens, target L0s, first coefficient of each search)
CASES = {'dyck': (4, 1_000_000, (10, 20), 1.0), 'synthetic': (8, 524_288, (32,), 2.5),
         'synthetic_long': (8, 2_097_152, (32,), 2.5)}
# setting: (its values, by default; the factor of each value on the first coefficient of a search: the weight its runs
# use; its record)
SETTINGS = {'frozen_aux_decoder': ((True, False), lambda v: GatedConfig.aux_coeff, 'gated_aux_default.json'),
            'aux_coeff': ((1.0, 0.5, 0.25, 0.125), lambda v: v, 'gated_aux_coeff.json')}
LR = 4e-3

def at_targets(acts, val, case:str, seed:int, setting:str, value, max_runs:int, log) -> tuple:
    """`(FVU at each target L0, the L0s each was interpolated between, every run)` of one (case, seed, value of
    `setting`), each target's coefficient searched (`fvu_at_l0s`)."""
    exp_factor, n_tokens, targets, c0 = CASES[case]
    def train(c, target):
        r = dict(case=case, seed=seed, **{setting: value}, knob=c,
                 **train_small(acts, 'gated', seed, LR, n_tokens, val, l0_by_step=True, exp_factor=exp_factor,
                               sparsity_coeff=c, **{setting: value}))
        log(json.dumps(r)); return r
    return fvu_at_l0s(train, targets, round(c0 * SETTINGS[setting][1](value), 4), max_runs)

def parse_values(setting:str, text:str|None) -> tuple:
    "`--values` as the setting's type (its defaults where not given); a value of the wrong kind: `ValueError`."
    if text is None: return SETTINGS[setting][0]
    words = [t.strip().lower() for t in text.split(',')]
    if setting == 'frozen_aux_decoder':
        if bad := [w for w in words if w not in ('true', 'false')]:
            raise ValueError(f"{setting} takes true or false, got {bad[0]!r}")
        return tuple(w == 'true' for w in words)
    vs = tuple(float(w) for w in words)
    if any(v <= 0 for v in vs): raise ValueError(f"aux_coeff values must be > 0, got {text!r}")
    return vs

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--store', help="the `dyck` case's activation store")
    ap.add_argument('--compare', default='frozen_aux_decoder', choices=list(SETTINGS))
    ap.add_argument('--values', help="the setting's values, comma-separated (default: see above)")
    ap.add_argument('--cases', default='dyck,synthetic,synthetic_long')
    ap.add_argument('--seeds', default='0,1'); ap.add_argument('--max_search_runs', type=int, default=7)
    ap.add_argument('--out', help="the record (default: benchmarks/results/ and the setting's file name)")
    a = ap.parse_args()
    cases, values = a.cases.split(','), compared_values(ap, a, a.compare, parse_values, CASES)
    log = lambda s: print(s, file=sys.stderr, flush=True)
    t0, runs, fvu, bracket = time.perf_counter(), [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            acts, val = (a.store, None) if case == 'dyck' else synthetic_files(tmp, CASES[case][1])
            for seed in map(int, a.seeds.split(',')):
                for v in values:   # one after another, so that they share the machine's minutes
                    f, bs, rs = at_targets(acts, val, case, seed, a.compare, v, a.max_search_runs, log)
                    runs += rs
                    for t, x, b in zip(CASES[case][2], f, bs):
                        fvu.setdefault((case, t), {}).setdefault(v, []).append(x)
                        bracket.setdefault((case, t), {}).setdefault(v, []).append(b)
    means, per_case = value_table(fvu, bracket, lambda k: f'{k[0]}@L0={k[1]}')
    save_record(dict(benchmark='gated_aux_default', compare=a.compare, values=list(values), device=device_name(),
                     store=a.store, lr=LR, seeds=a.seeds, max_search_runs=a.max_search_runs,
                     cases={c: dict(zip(('exp_factor', 'n_tokens', 'target_l0', 'coef_start'), CASES[c]))
                            for c in cases},
                     recommended=recommend_value(means, a.compare), per_case=per_case,
                     seconds=round(time.perf_counter() - t0, 1), runs=runs),
                a.out or HERE/'results'/SETTINGS[a.compare][2])

if __name__ == '__main__': main()
