"Sweeps: YAML configs, the saenb_sweep CLI with two CPU workers, a failing run, interrupt and resume; ensemble == single runs."
import json, os, signal, subprocess, time
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch, yaml
from saenb.sweep import load_sweep, run_id
from saenb.ensemble import train_ensemble, ensemble_members
from saenb.train_sae import train_sae
from conftest import run_torchrun

ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}

def sparse_acts(n, d=16, n_feat=32, p=4/32, seed=0):
    g = np.random.default_rng(seed)
    D = g.standard_normal((n_feat, d)); D /= np.linalg.norm(D, axis=1, keepdims=True)
    return (((g.random((n, n_feat)) < p) * g.exponential(1.0, (n, n_feat))) @ D).astype(np.float32)

@pytest.fixture(scope='module')
def acts(tmp_path_factory):
    d = tmp_path_factory.mktemp('acts')
    np.save(d/'acts.npy', sparse_acts(8192))
    return d/'acts.npy'

def write_configs(d:Path, acts:Path, n_tokens:int):
    (d/'base.yaml').write_text(yaml.safe_dump({'acts': os.path.relpath(acts, d), 'n_tokens': n_tokens, 'batch_size': 256, 'lr': 3e-3,
                                                'log_every': 10, 'saes': {'arch': 'topk', 'k': 4, 'exp_factor': 2}}))
    # 2 archs x 2 widths x 3 settings = 12 runs; k=24 > d_sae=16 fails on purpose
    (d/'sweep.yaml').write_text("saes.arch: [topk, relu]\nsaes.exp_factor: [1, 2]\n"
                                "arch_specific:\n  topk: {k: [2, 4, 24]}\n  relu: {sparsity_coeff: [1.0e-3, 1.0e-2, 1.0e-1]}\n")

def cli(*args, **kw):
    return subprocess.run(['saenb_sweep', *args], env=ENV, capture_output=True, text=True, **kw)

def test_load_sweep_resolves_paths(tmp_path, acts):
    write_configs(tmp_path, acts, 1024)
    runs = load_sweep(tmp_path/'base.yaml', tmp_path/'sweep.yaml')
    assert len(runs) == 12 and len({run_id(r) for r in runs}) == 12
    assert Path(runs[0]['acts']) == acts.resolve()
    assert sum(r['saes']['arch'] == 'relu' for r in runs) == 6 and not any('k' in r['saes'] for r in runs if r['saes']['arch'] == 'relu')

def test_cli_errors(tmp_path):
    r = cli('--base', str(tmp_path/'missing.yaml'))
    assert r.returncode == 2 and 'no sweep config' in r.stderr
    r = cli('--base', str(tmp_path/'missing.yaml'), '--devices', 'tpu')
    assert r.returncode == 2
    assert 'cpu' in cli('--show_devices').stdout

def test_sweep_two_workers_failure_interrupt_resume(tmp_path, acts):
    write_configs(tmp_path, acts, 60 * 256)
    out = tmp_path/'sweep'
    args = ['--base', str(tmp_path/'base.yaml'), '--sweep', str(tmp_path/'sweep.yaml'), '--out', str(out), '--devices', 'cpu,cpu', '--quiet']
    dry = cli(*args, '--dry_run')
    assert dry.returncode == 0 and dry.stdout.count('queued') == 12
    # interrupt once a few runs have finished
    p = subprocess.Popen(['saenb_sweep', *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while len(list(out.glob('runs/*/summary.json'))) < 3 and p.poll() is None and time.time() - t0 < 240: time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    done = {f.parent.name: f.stat().st_mtime for f in out.glob('runs/*/summary.json')}
    assert len(done) >= 3
    if len(done) + len(list(out.glob('runs/*/failed.json'))) < 12:  # it really was interrupted
        assert p.returncode == 130 and 'resume' in err, (p.returncode, err)
    # resume: finished runs are not redone
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary['runs'] == 12 and summary['finished'] == 11 and summary['failed'] == 1, summary
    assert {k: (out/'runs'/k/'summary.json').stat().st_mtime for k in done} == done
    df = pd.read_parquet(out/'results.parquet')
    assert len(df) == 12 and df[df.status == 'failed']['saes.k'].tolist() == [24]
    assert 'k' in df[df.status == 'failed'].error.iloc[0]
    assert {'l0', 'explained_variance', 'saes.sparsity_coeff', 'arch'} <= set(df.columns)
    assert (out/'pareto.html').stat().st_size > 1_000_000
    assert (out/'runs'/df[df.status == 'finished'].id.iloc[0]/'sae'/'model.safetensors').exists()

def test_ensemble_equals_single_runs(acts):
    kw = dict(arch='topk', n_tokens=20 * 256, batch_size=256, lr=3e-3, progress=False, bf16=False)
    ens = train_ensemble(acts, grid={'k': [2, 4], 'exp_factor': [1, 2]}, **kw)
    for key, spec in ensemble_members({'k': [2, 4], 'exp_factor': [1, 2]}).items():
        single = train_sae(acts, **{**kw, **spec})
        for n, v in single.sae.state_dict().items(): torch.testing.assert_close(ens[key].sae.state_dict()[n], v, atol=1e-6, rtol=1e-5)

def test_cli_ensemble_sequential(tmp_path, acts):
    write_configs(tmp_path, acts, 10 * 256)
    out = tmp_path/'sweep'
    r = cli('--base', str(tmp_path/'base.yaml'), '--sweep', str(tmp_path/'sweep.yaml'), '--out', str(out), '--ensemble', '--sequential', '--quiet')
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s['finished'] == 11 and s['failed'] == 1, s
    df = pd.read_parquet(out/'results.parquet')
    assert (df[df.status == 'finished'].ensemble_size > 1).all()

def test_sweep_with_model_eval_gives_loss_recovered(tmp_path):
    "An eval: section adds loss recovered (saenb.eval) to the table and a second Pareto panel."
    from saenb.grammars import get_language
    from saenb.data import make_corpus
    from saenb.model import GPTConfig
    from saenb.train_gpt import train_gpt, TrainConfig
    from saenb.cache import cache_activations
    from saenb.sweep import run_sweep, sweep_pareto_figure
    corpus = make_corpus(get_language('dyck', max_len=16, max_depth=4), 600, seed=0)
    model = train_gpt(corpus, tmp_path/'gpt', GPTConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=64, n_ctx=32),
                      TrainConfig(steps=60, batch_size=32, warmup_steps=5, lr=1e-2, eval_every=1000, ckpt_every=1000), progress=False)
    store = cache_activations(model, corpus, '0_residpost', tmp_path/'acts', device='cpu', progress=False)['0_residpost']
    base = {'acts': str(store), 'n_tokens': 20 * 256, 'batch_size': 256, 'lr': 3e-3, 'saes': {'arch': 'topk', 'exp_factor': 2},
            'eval': {'model': str(tmp_path/'gpt'), 'n_seqs': 32}}
    df = run_sweep(base, {'k': [2, 8]}, tmp_path/'sweep', sequential=True, progress=False)
    assert (df.status == 'finished').all(), df.get('error')
    assert df.loss_recovered.notna().all() and (df.loss_recovered <= 1.05).all()
    assert len(sweep_pareto_figure(df).layout.annotations) == 2  # two panels

def test_sweep_under_torchrun_two_ranks(tmp_path, acts):
    "torchrun with two ranks: each trains its share of the grid, rank 0 writes the complete table once both are done."
    write_configs(tmp_path, acts, 20 * 256)
    out = tmp_path/'sweep'
    r = run_torchrun('-m', 'saenb.sweep', '--base', tmp_path/'base.yaml', '--sweep', tmp_path/'sweep.yaml', '--out', out,
                     '--quiet', timeout=300)
    stdout, err = r.stdout, r.stderr
    assert r.returncode == 0, err[-3000:]
    logs = [yaml.safe_load((d/'config.yaml').read_text()) for d in (out/'runs').iterdir()]
    assert len(logs) == 12
    df = pd.read_parquet(out/'results.parquet')
    assert len(df) == 12 and (df.status == 'finished').sum() == 11 and (df.status == 'failed').sum() == 1
    assert (out/'pareto.html').exists()
    lines = [json.loads(l) for l in stdout.splitlines() if l.startswith('{')]
    assert len(lines) == 2 and max(l['runs'] for l in lines) == 12  # each rank reports; rank 0's table has every run
