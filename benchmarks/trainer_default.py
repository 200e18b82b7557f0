"""Defaults of the SAE trainer from measurement: validation FVU at matched L0 of SAEs of every architecture SAELens
trains, each trained with each value of one `SAETrainConfig` setting (`--setting`, `--values`):

- `lr_schedule`: `constant` (the peak rate throughout, after `warmup_steps`, 0 by default), `linear` (constant, then
  down linearly to 0 over the last `decay_frac` of the run: 0.2, as Conerly et al. 2024, Anthropic's April 2024 update)
  and `cosine` (from the peak to `min_lr_frac` of it, 0, over the whole run). Record:
  `benchmarks/results/lr_schedule_default.json` (16 minutes, 171 runs).
- `dec_lr`: the decoder weights' learning rate as a multiple of `lr` (1, 2, 3 and 4). Record:
  `benchmarks/results/dec_lr_default.json` (24 minutes, 232 runs); then 4, 6 and 8 in the architectures best at 4,
  `--values 4,6,8 --archs jumprelu,gated,matryoshka --out benchmarks/results/dec_lr_high.json` (12 minutes, 102 runs).
  `07_train_sae` chooses each architecture's own multiple (`SAE.dec_lr`) from the two.

Prints one JSON line and writes the same record, with every run, to the setting's record (`--out`), which
`07_train_sae` cites. The TopK family (`topk`, `batchtopk`, `matryoshka`) trains at k = each target L0; the others
search their sparsity coefficient for each (seed, value) until two runs bracket each target
(`sae_vs_saelens.fvu_at_l0s`, at most `--max_search_runs` runs, from the arch's first coefficient in
`sae_vs_saelens.COEF_START`) and interpolate FVU in log L0 at it. Every run uses the trainer's default learning rate
(`--lr`) and every other setting at its default, so the measurement is of the defaults it decides. Cases (`--cases`):

- `dyck`: the store given by `--store` (the default pipeline's Dyck GPT `0_residpost`: 128 dimensions, 512 latents),
  1,000,000 tokens in batches of 4,096, its validation split, L0 8 (the pipeline's k);
- `synthetic`: `sae_vs_saelens.py`'s synthetic file and sizes (256 dimensions, 2,048 latents, batches of 4,096,
  524,288 tokens: 128 steps), L0 32;
- `synthetic_long`: the same at 2,097,152 tokens (512 steps), L0 32.

Choice (`recommended`): the value with the lowest geometric mean, over every (case, architecture, target), of its mean
FVU over the seeds divided by the best value's (`_common.recommend_value`); `per_case` gives each one's mean FVU of each
value, their ratio to the best and, for the searched architectures, the two L0s each FVU was interpolated between
(`bracket_l0`).

    python benchmarks/trainer_default.py --setting dec_lr --store runs/dyck/acts/0_residpost [--cases dyck,synthetic]
"""
import argparse, json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _common import compared_values, device_name, has_k, recommend_value, save_record, train_small, value_table
from sae_vs_saelens import COEF_START, fvu_at_l0s, synthetic_files
from saenb.train_sae import SAETrainConfig

HERE = Path(__file__).parent
# case: (exp_factor, n_tokens, target L0s)
CASES = {'dyck': (4, 1_000_000, (8,)), 'synthetic': (8, 524_288, (32,)), 'synthetic_long': (8, 2_097_152, (32,))}
# setting: (its values, by default; their type; the values it can take (None: any positive); its record)
SETTINGS = {'lr_schedule': (('constant', 'linear', 'cosine'), str, ('constant', 'linear', 'cosine'),
                            'lr_schedule_default.json'),
            'dec_lr': ((1.0, 2.0, 3.0, 4.0), float, None, 'dec_lr_default.json')}
ARCHS = ('relu', 'topk', 'batchtopk', 'jumprelu', 'gated', 'matryoshka')

def parse_values(setting:str, text:str|None) -> tuple:
    "`--values` as the setting's type (its defaults where not given); a value it cannot take: `ValueError`."
    default, kind, allowed, _ = SETTINGS[setting]
    if text is None: return default
    words = [w.strip() for w in text.split(',')]
    if allowed is not None:
        if bad := [w for w in words if w not in allowed]:
            raise ValueError(f"unknown {setting} {bad[0]!r}: choose from {', '.join(allowed)}")
        return tuple(words)
    vs = tuple(kind(w) for w in words)
    if any(v <= 0 for v in vs): raise ValueError(f"{setting} values must be > 0, got {text!r}")
    return vs

def at_targets(acts, val, case:str, arch:str, seed:int, setting:str, value, lr:float, max_runs:int, log) -> tuple:
    """`(FVU at each target L0, the L0s each was interpolated between, every run)` of one (case, architecture, seed,
    value of `setting`): the TopK family at k = each target, the others' coefficient searched (`fvu_at_l0s`)."""
    exp_factor, n_tokens, targets = CASES[case]
    def train(tag:dict, **kw):   # tag: the run's k or coefficient ('knob'), as the record names it
        r = dict(case=case, arch=arch, seed=seed, **{setting: value}, **tag,
                 **train_small(acts, arch, seed, lr, n_tokens, val, exp_factor=exp_factor, **{setting: value}, **kw))
        log(json.dumps(r)); return r
    if has_k(arch):
        runs = [train({'k': t}, k=t) for t in targets]
        return [r['fvu'] for r in runs], [[r['l0'], r['l0']] for r in runs], runs
    # JumpReLU starts from thresholds calibrated to the target on the first batch (its `calibrate`, on when target_l0
    # is set), as `sae_vs_saelens.py` trains it: without, they move too little in a short run
    calibrate = lambda t: dict(target_l0=t) if arch == 'jumprelu' else {}
    return fvu_at_l0s(lambda c, t: train({'knob': c}, sparsity_coeff=c, **calibrate(t)), targets,
                      COEF_START[arch]['saenb'], max_runs, per_target=arch == 'jumprelu')

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--setting', default='lr_schedule', choices=list(SETTINGS))
    ap.add_argument('--values', help="the setting's values, comma-separated (default: see above)")
    ap.add_argument('--store', help="the `dyck` case's activation store")
    ap.add_argument('--archs', default=','.join(ARCHS)); ap.add_argument('--cases', default='dyck,synthetic')
    ap.add_argument('--seeds', default='0,1'); ap.add_argument('--max_search_runs', type=int, default=7)
    ap.add_argument('--lr', type=float, default=SAETrainConfig.lr, help="the peak learning rate (the trainer's)")
    ap.add_argument('--out', help="the record (default: benchmarks/results/ and the setting's file name)")
    a = ap.parse_args()
    cases, archs = a.cases.split(','), a.archs.split(',')
    if bad := [g for g in archs if g not in ARCHS]:
        ap.error(f"unknown architecture {bad[0]!r}: choose from {', '.join(ARCHS)}")
    values = compared_values(ap, a, a.setting, parse_values, CASES)
    log = lambda s: print(s, file=sys.stderr, flush=True)
    t0, runs, fvu, bracket = time.perf_counter(), [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            acts, val = (a.store, None) if case == 'dyck' else synthetic_files(tmp, CASES[case][1])
            for arch in archs:
                for seed in map(int, a.seeds.split(',')):
                    for v in values:   # one after another, so that they share the machine's minutes
                        f, bs, rs = at_targets(acts, val, case, arch, seed, a.setting, v, a.lr, a.max_search_runs, log)
                        runs += rs
                        for t, x, b in zip(CASES[case][2], f, bs):
                            fvu.setdefault((case, arch, t), {}).setdefault(v, []).append(x)
                            bracket.setdefault((case, arch, t), {}).setdefault(v, []).append(b)
    means, per_case = value_table(fvu, bracket, lambda k: f'{k[0]}/{k[1]}@L0={k[2]}')
    defaults = {n: getattr(SAETrainConfig, n) for n in ('lr_schedule', 'decay_frac', 'min_lr_frac', 'dec_lr',
                                                          'bias_lr')}
    save_record(dict(benchmark='trainer_default', setting=a.setting, values=list(values), device=device_name(),
                     store=a.store, lr=a.lr, defaults=defaults, archs=archs, seeds=a.seeds,
                     max_search_runs=a.max_search_runs,
                     cases={c: dict(zip(('exp_factor', 'n_tokens', 'target_l0'), CASES[c])) for c in cases},
                     recommended=recommend_value(means, a.setting), per_case=per_case,
                     seconds=round(time.perf_counter() - t0, 1), runs=runs),
                a.out or HERE/'results'/SETTINGS[a.setting][3])

if __name__ == '__main__': main()
