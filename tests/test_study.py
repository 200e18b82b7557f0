"The formal-language SAE study (issue 18): `saenb_study` end to end at tiny sizes, resumed, and refusing bad input."
import json
import pandas as pd
from conftest import run

def test_tiny_study_runs_resumes_and_tabulates(tmp_path):
    r = run('saenb_study', '--lang', 'expr', '--out', tmp_path/'s', '--tiny', '--quiet')
    assert r.returncode == 0, r.stderr[-3000:]
    t = pd.read_parquet(tmp_path/'s'/'study.parquet')
    assert set(t.lang) == {'expr'} and len(t) == 11 and (t.causal_coeff > 0).sum() == 1
    assert t.grammatical.between(0, 1).all() and t.l0.gt(0).all()
    cal = json.loads((tmp_path/'s'/'expr'/'calibration.json').read_text())
    assert len(cal['relu']) == 2 and cal['gated'] > 0
    done = {p: p.stat().st_mtime for p in (tmp_path/'s'/'expr'/'saes'/'runs').glob('*/summary.json')}
    again = run('saenb_study', '--lang', 'expr', '--out', tmp_path/'s', '--tiny', '--quiet')
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.stat().st_mtime for p in done} == done                     # resumed: nothing retrained
    assert 'study:' in again.stdout and '== expr' in again.stdout

def test_study_refuses_an_unknown_language(tmp_path):
    r = run('saenb_study', '--lang', 'dyck,englsh', '--out', tmp_path/'s', '--tiny')
    assert r.returncode == 2 and "unknown study language 'englsh' (did you mean 'english'?)" in r.stderr
    assert not (tmp_path/'s').exists()                                      # checked before any work
