"The benchmark scripts' own logic (no training): how `sae_vs_saelens.py` reads a record against the issue's targets."
import json, subprocess, sys
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO/'benchmarks'))
from sae_vs_saelens import summary, fvu_at_matched_l0

def rec(**kw):
    "An architecture's record as `compare` writes it: on target, 6x and 4.5x, FVU 1% above SAELens's."
    return dict(speedup=6.0, speedup_vs_saelens_bf16=4.5, fvu_ratio=1.01, saenb_l0=32.0, saelens_l0=32.0,
                saenb_l0_off_target=False, saelens_l0_off_target=False) | kw

def test_targets_on_matched_l0():
    assert summary(rec())['targets_met'] and summary(rec())['matched_by'] == 'l0'
    assert not summary(rec(fvu_ratio=1.03))['targets_met']   # FVU more than 2% above SAELens's
    assert not summary(rec(speedup=4.9))['targets_met']
    assert not summary(rec(speedup_vs_saelens_bf16=3.9))['targets_met']
    assert summary(rec(speedup_vs_saelens_bf16=None))['targets_met']   # no bf16 run (a CPU without bf16 units)

def test_off_target_l0():
    # a BatchTopK-family pair with SAELens's inference L0 off target: compared on training-mode codes (L0 = k)
    r = rec(fvu_ratio=1.11, fvu_ratio_batch=1.012, saelens_l0=45.8, saelens_l0_off_target=True)
    assert fvu_at_matched_l0(r) == (1.012, 'training_codes') and summary(r)['targets_met']
    # SAELens off target above saenb's L0 and still the worse FVU: saenb's ratio bounds the matched one
    assert fvu_at_matched_l0(rec(fvu_ratio=0.77, saelens_l0=86.7, saelens_l0_off_target=True)) == (0.77, 'bound')
    # ... but not when SAELens reconstructs better with its extra latents, nor below saenb's L0: unmatched, not met
    for r in (rec(fvu_ratio=1.09, saelens_l0=86.7, saelens_l0_off_target=True),
              rec(fvu_ratio=0.9, saelens_l0=12.0, saelens_l0_off_target=True)):
        assert fvu_at_matched_l0(r) == (None, 'unmatched') and not summary(r)['targets_met']

def test_summarize_refuses_other_files(tmp_path):
    for text in ('not json', json.dumps({'bench': 'bench_ensemble'})):
        (p := tmp_path/'r.json').write_text(text)
        r = subprocess.run([sys.executable, REPO/'benchmarks'/'sae_vs_saelens.py', '--summarize', p],
                           capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.count('\n') == 1 and '--summarize' in r.stderr and not r.stdout

def test_summarize_a_record(tmp_path):
    arch = rec(fvu_ratio=1.11, fvu_ratio_batch=1.012, saelens_l0=45.8, saelens_l0_off_target=True)
    (p := tmp_path/'r.json').write_text(json.dumps({'bench': 'sae_vs_saelens', 'archs': ['matryoshka', 'gated'],
                                                    'matryoshka': arch, 'gated': rec(fvu_ratio=1.12)}) + '\n')
    r = subprocess.run([sys.executable, REPO/'benchmarks'/'sae_vs_saelens.py', '--summarize', p],
                       capture_output=True, text=True, check=True)
    out = json.loads(r.stdout)
    assert out['targets_met'] == ['matryoshka'] and out['summary']['gated']['fvu_ratio_matched_l0'] == 1.12

def refused(monkeypatch, capsys, main, cases):
    """Each `(flags, message)` of `cases` makes a default-measuring script's `main` exit 2 with `message` and print
    nothing, before any training (run in this process: a subprocess each took 3 s to import)."""
    for args, msg in cases:
        monkeypatch.setattr(sys, 'argv', ['script.py', '--cases', 'synthetic', *args])
        with pytest.raises(SystemExit) as e: main()
        out, err = capsys.readouterr()
        assert e.value.code == 2 and msg in err and not out, err

def test_gated_aux_default_choice_and_refusals(monkeypatch, capsys):
    "`gated_aux_default.py`: the value with the lowest geometric mean over the best wins; bad flags exit 2 at once."
    from gated_aux_default import parse_values, main
    from _common import recommend_value as recommend
    means = {('dyck', 10): {1.0: 0.021, 0.25: 0.019, 0.125: 0.018},
             ('long', 32): {1.0: 0.130, 0.25: 0.128, 0.125: 0.136}}
    r = recommend(means, 'aux_coeff')
    assert r['aux_coeff'] == 0.25 and r['geo_mean_over_best']['0.25'] < r['geo_mean_over_best']['0.125']
    assert recommend({('a', 1): {True: 1.0, False: 2.0}}, 'frozen_aux_decoder')['frozen_aux_decoder'] is True
    assert parse_values('frozen_aux_decoder', 'True,false') == (True, False)
    assert parse_values('aux_coeff', None)[0] == 1.0   # the defaults: the paper's weight first
    refused(monkeypatch, capsys, main, [(['--compare', 'aux_coeff', '--values', '1,-0.5'], 'must be > 0'),
                                        (['--compare', 'frozen_aux_decoder', '--values', 'true,maybe'], "got 'maybe'"),
                                        (['--compare', 'aux_coeff', '--values', '1'], 'at least two values'),
                                        (['--cases', 'dyck'], '--store')])

def test_fvu_at_l0s_searches_each_target():
    "`fvu_at_l0s`: each target bracketed and interpolated; a run reused across targets unless `train` reads the target."
    from sae_vs_saelens import fvu_at_l0s
    calls = []
    def train(c, t):   # L0 = 64 / c, FVU falling with L0
        calls.append((c, t)); l0 = 64 / c
        return dict(knob=c, l0=l0, fvu=0.5 / l0 ** 0.5, tokens_per_s=1000.0)
    fvus, brackets, runs = fvu_at_l0s(train, (8, 16), 1.0)
    assert len(runs) == len(calls) == len({c for c, _ in calls})   # no coefficient trained twice
    for t, f, (lo, hi) in zip((8, 16), fvus, brackets):
        if None in (lo, hi): assert abs((lo or hi) / t - 1) < 0.02 and f == 0.5 / (lo or hi) ** 0.5   # a run on it
        else: assert lo <= t <= hi and 0.5 / hi ** 0.5 <= f <= 0.5 / lo ** 0.5
    calls.clear()
    fvu_at_l0s(train, (8, 8.0001), 1.0, per_target=True)
    assert {t for _, t in calls} == {8, 8.0001}   # the second target trains its own runs

def test_at_best_lr_picks_each_lr_at_the_target():
    """`at_best_lr`: each learning rate's search reaches the target, the later one from the first's coefficient (scaled
    by the rates) and slope in fewer runs; the lower FVU at the target wins, a search that missed the target loses to
    one that reached it, and a rate lower than one where L0 did not answer to the coefficient is not searched."""
    from sae_vs_saelens import at_best_lr, _match_l0, COEF_LR_EXP
    def run(c, lr, scale={4e-3: 64, 2.8e-3: 80}, fvu0={4e-3: 0.5, 2.8e-3: 0.45}):   # L0 = scale / c^0.8
        l0 = scale[lr] / c ** 0.8
        return dict(knob=c, lr=lr, l0=l0, fvu=fvu0[lr] / l0 ** 0.5, tokens_per_s=1000.0)
    at, runs = at_best_lr(run, [4e-3, 2.8e-3], 0.01, 32.0)
    second = [r for r in runs if r['lr'] == 2.8e-3]
    cold = _match_l0(lambda c: run(c, 2.8e-3), 0.01, 32.0)   # the same search from the first one's start
    assert at['lr'] == 2.8e-3 and len(second) < len(cold)
    assert abs(second[0]['knob'] / (32 / 64) ** -1.25 / (4 / 2.8) ** COEF_LR_EXP - 1) < 1e-3   # scaled from the first
    assert abs(at['fvu'] / (0.45 / 32 ** 0.5) - 1) < 0.01   # interpolated at the target, close to the truth
    deaf = lambda c, lr: dict(run(c, lr), l0=90.0 + c / 1e3) if lr == 2.8e-3 else run(c, lr)   # L0 deaf at 2.8e-3
    at, runs = at_best_lr(deaf, [4e-3, 2.8e-3], 1.0, 32.0)
    assert at['lr'] == 4e-3 and at['l0'] == 32.0 and at['reached']
    deaf = lambda c, lr: dict(knob=c, lr=lr, l0=90.0 + c / 1e3, fvu=0.2, tokens_per_s=1.0)   # deaf at every rate
    at, runs = at_best_lr(deaf, [4e-3, 2.8e-3, 5.6e-3], 1.0, 32.0)
    assert {r['lr'] for r in runs} == {4e-3, 5.6e-3} and at['l0'] > 90   # no lower rate after a deaf search

def test_coef_plan_scales_the_measured_starts_to_the_rates_searched():
    """`coef_plan`: each coefficient-based arch's own rates by default, its measured start as is; with `--coef_lrs`
    every arch searches those, its start scaled from its first default rate; starts given are taken as is."""
    from sae_vs_saelens import coef_plan, COEF_LRS, COEF_START, COEF_LR_EXP
    rates, starts = coef_plan(['topk', 'relu', 'gated'])
    assert rates == {'relu': list(COEF_LRS['relu']), 'gated': list(COEF_LRS['gated'])}   # k-based: none
    assert starts['relu'] == COEF_START['relu'] and starts['gated'] == COEF_START['gated']
    rates, starts = coef_plan(['relu', 'gated'], [2e-3, 4e-3], {'gated': {'saelens': 0.5}})
    assert rates == {'relu': [2e-3, 4e-3], 'gated': [2e-3, 4e-3]}
    for x in ('relu', 'gated'):   # a lower rate needs a larger coefficient for the same L0
        assert abs(starts[x]['saenb'] / COEF_START[x]['saenb'] - (COEF_LRS[x][0] / 2e-3) ** COEF_LR_EXP) < 1e-9
    assert starts['gated']['saelens'] == 0.5 and coef_plan(['relu'], [2e-3], l1=0.3)[1]['relu']['saenb'] == 0.3

def test_trainer_default_values_and_refusals(monkeypatch, capsys):
    "`trainer_default.py`: values read as the setting's type; bad values, architectures or cases exit 2 at once."
    from trainer_default import main, parse_values
    assert parse_values('dec_lr', '1,2.5') == (1.0, 2.5) and parse_values('lr_schedule', None)[0] == 'constant'
    refused(monkeypatch, capsys, main, [(['--values', 'constant,cosin'], "unknown lr_schedule 'cosin'"),
                                        (['--setting', 'dec_lr', '--values', '1,-2'], 'must be > 0'),
                                        (['--archs', 'topk,topx'], "unknown architecture 'topx'"),
                                        (['--cases', 'dyk'], "unknown case 'dyk'"),
                                        (['--values', 'linear'], 'at least two'), (['--cases', 'dyck'], '--store')])
