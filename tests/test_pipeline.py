"saenb_pipeline as a user runs it: tiny end to end, the summary, resuming after an interrupt, and refusing to overwrite results."
import json, os, signal, subprocess, time
import pandas as pd, yaml
from conftest import console, wandb_env

ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}

def pipeline(*args, env=None, **kw):
    return subprocess.run(console('saenb_pipeline') + list(args), env={**ENV, **(env or {})}, capture_output=True,
                          text=True, **kw)

def test_tiny_pipeline_end_to_end_and_rerun(tmp_path):
    out = tmp_path/'run'
    wandb = wandb_env(tmp_path)
    r = pipeline('--tiny', '--out', str(out), '--quiet', '--wandb_project', 'p', '--wandb_tags', 'tiny', env=wandb)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'of free generations grammatical' in r.stdout and str(out/'index.html') in r.stdout
    table = pd.read_csv(out/'summary.csv')
    assert sorted(table.arch) == ['relu', 'relu', 'topk', 'topk'] and table[['fvu', 'l0', 'loss_recovered', 'depth_covered', 'bracket_median_auroc']].notna().all().all()
    assert ((table.l0 - 4).abs() < 1e-6).any()  # the TopK SAE keeps k=4 latents per token
    page = (out/'index.html').read_text()
    for i in table.id:
        assert f'saes/runs/{i}/eval/report.html' in page and (out/'saes'/'runs'/i/'site'/'browser.html').exists()
    assert all((out/'stages'/f'{s}.json').exists() for s in ('data', 'gpt', 'check', 'cache', 'saes', 'eval', 'browser',
                                                                'circuits'))
    # SAEs at 0_residpre and 0_residpost: a circuit across the tiny GPT's layer, per architecture, linked from the index
    for name in ('topk_k4', 'relu_sparsity_coeff0.1'):
        assert all((out/'circuits'/name/f).exists() for f in ('edges.parquet', 'validation.json', 'circuit.html'))
        assert f'circuits/{name}/circuit.html' in page
        assert '../../saes/runs/' in (out/'circuits'/name/'circuit.html').read_text()   # latents link to browsers
    edges = pd.read_parquet(out/'circuits'/'topk_k4'/'edges.parquet')
    assert {'0_residpre', '0_residpost'} <= set(edges.up_hook) and len(edges) > 0
    assert 'circuit: ' in r.stdout
    # one W&B run (offline) per trained model and SAE, grouped under the run's name
    from saenb.utils import offline_run
    runs = [offline_run(d) for d in sorted((tmp_path/'wandb').glob('offline-run-*'))]
    assert [w['run']['run_group'] for w in runs] == ['run'] * 9 and all(w['run']['tags'] == ['tiny'] for w in runs)
    gpt = [w for w in runs if w['run']['display_name'] == 'run-gpt']
    assert len(gpt) == 1 and 'val_loss' in gpt[0]['summary']
    evals = {w['run']['display_name'][:-5]: w for w in runs if w['run']['display_name'].endswith('-eval')}
    assert sorted(evals) == sorted(table.id) and all('loss_recovered' in w['summary'] for w in evals.values())
    trained = [w for w in runs if w is not gpt[0] and w not in evals.values()]
    assert sorted(w['config']['arch'] for w in trained) == ['relu', 'relu', 'topk', 'topk']
    # a second run (without tracking, which is not a setting of the results) skips every stage: the same table
    before = (out/'model'/'model.safetensors').stat().st_mtime
    r2 = pipeline('--tiny', '--out', str(out))
    assert r2.returncode == 0 and r2.stderr.count('already complete') == 8, r2.stderr[-2000:]
    assert (out/'model'/'model.safetensors').stat().st_mtime == before
    pd.testing.assert_frame_equal(pd.read_csv(out/'summary.csv'), table)
    # other settings for a finished stage: refused, results kept
    (tmp_path/'more.yaml').write_text(yaml.safe_dump({'gpt': {'steps': 31}}))
    r3 = pipeline('--tiny', '--out', str(out), '--config', str(tmp_path/'more.yaml'), '--quiet')
    assert r3.returncode == 2 and "'gpt' stage run with other settings" in r3.stderr and '--out' in r3.stderr
    assert (out/'model'/'model.safetensors').stat().st_mtime == before

def test_bad_config(tmp_path):
    (tmp_path/'bad.yaml').write_text("gpt: {stepz: 3}\n")
    r = pipeline('--tiny', '--out', str(tmp_path/'x'), '--config', str(tmp_path/'bad.yaml'))
    assert r.returncode == 2 and "'stepz'" in r.stderr and 'Traceback' not in r.stderr
    (tmp_path/'bad2.yaml').write_text("sae: {k: 3}\n")
    r = pipeline('--tiny', '--out', str(tmp_path/'x'), '--config', str(tmp_path/'bad2.yaml'))
    assert r.returncode == 2 and 'unknown pipeline section' in r.stderr
    r = pipeline('--tiny', '--lang', 'klingon', '--out', str(tmp_path/'y'))
    assert r.returncode == 2 and 'klingon' in r.stderr and 'Traceback' not in r.stderr

PAUSE = """
import os, time, pathlib, saenb.train_gpt as tg
_train = tg.train_gpt
def train_gpt(*a, on_step=None, **kw):
    "The GPT stage, held at step 50 (after its checkpoint at step 40) until the test interrupts it."
    def hold(step, row):
        if on_step is not None: on_step(step, row)
        if step == 50:
            pathlib.Path(os.environ['SAENB_TEST_PAUSED']).touch()
            time.sleep(600)
    return _train(*a, on_step=hold, **kw)
tg.train_gpt = train_gpt
"""

def test_interrupted_pipeline_resumes(tmp_path):
    out = tmp_path/'run'
    # a GPT stage checkpointing every 20 steps, held at step 50 (deterministic: no race with the interrupt); one hook
    # and one SAE after it: what is tested is the resumed GPT stage
    one = {'cache': {'hooks': ['0_residpost']},
           'sweep': {'saes': {'arch': ['topk']}, 'arch_specific': {'topk': {'k': 4}}}}
    (tmp_path/'long.yaml').write_text(yaml.safe_dump({'gpt': {'steps': 80, 'ckpt_every': 20}, **one}))
    args = ['--tiny', '--out', str(out), '--config', str(tmp_path/'long.yaml'), '--quiet']
    (tmp_path/'hold').mkdir(); (tmp_path/'hold'/'sitecustomize.py').write_text(PAUSE)
    env = {**ENV, 'PYTHONPATH': os.pathsep.join([str(tmp_path/'hold'), os.environ.get('PYTHONPATH', '')]),
           'SAENB_TEST_PAUSED': str(tmp_path/'paused')}
    # Ctrl-C as in a terminal: SIGINT at its default in the child, also where this test runs in a background job
    # (which starts with SIGINT ignored, and Python then raises no KeyboardInterrupt)
    p = subprocess.Popen(console('saenb_pipeline') + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.time()
    while not (tmp_path/'paused').exists() and p.poll() is None and time.time() - t0 < 300: time.sleep(0.1)
    assert (tmp_path/'paused').exists(), p.communicate()[1][-2000:]
    p.send_signal(signal.SIGINT)
    try: _, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill(); _, err = p.communicate()
        raise AssertionError(f'the pipeline did not stop within 120 s of Ctrl-C: {err[-3000:]}')
    assert p.returncode == 130 and 'run the same command again' in err, err[-2000:]
    assert (out/'stages'/'data.json').exists() and not (out/'stages'/'gpt.json').exists()
    step = json.loads((out/'model'/'checkpoint'/'trainer_state.json').read_text())['step']
    assert step == 40
    data_mtime = (out/'data'/'language.json').stat().st_mtime
    r = pipeline(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out/'data'/'language.json').stat().st_mtime == data_mtime  # the corpus was not regenerated
    assert pd.read_csv(out/'model'/'metrics.csv').step.tolist() == list(range(1, 81))  # resumed from the checkpoint: every step once
    assert (out/'index.html').exists()
