"End-to-end tests of SAE training from the command line and from Python."
import json, subprocess, sys
import numpy as np, pytest, torch
from safetensors.torch import save_file
from saenb.train_sae import train_sae
from saenb.sae_io import load_sae
from conftest import console

def sparse_acts(n, d=24, n_feat=48, l0=3, seed=0):
    g = np.random.default_rng(seed)
    D = g.standard_normal((n_feat, d)); D /= np.linalg.norm(D, axis=1, keepdims=True)
    return (((g.random((n, n_feat)) < l0 / n_feat) * g.exponential(1.0, (n, n_feat))) @ D).astype(np.float32)

@pytest.fixture(scope='module')
def acts(tmp_path_factory):
    d = tmp_path_factory.mktemp('acts')
    a = sparse_acts(12_000)
    np.save(d/'train.npy', a[:10_000]); np.save(d/'val.npy', a[10_000:])
    save_file({'activations': torch.from_numpy(a[:10_000])}, str(d/'train.safetensors'))
    return d

def cli(*args):
    return subprocess.run(console('saenb_train_sae') + list(map(str, args)), capture_output=True, text=True)

def test_cli_trains_and_prints_summary(acts, tmp_path):
    r = cli('--acts', acts/'train.npy', '--val_acts', acts/'val.npy', '--arch', 'topk', '--k', 3, '--exp_factor', 2,
            '--n_tokens', 100_000, '--batch_size', 500, '--lr', 3e-3, '--out', tmp_path/'sae_0')
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    for k in ('train_seconds', 'tokens_per_s', 'fvu', 'l0', 'dead_frac'): assert k in summary
    assert summary['fvu'] < 0.5 and 2.5 < summary['l0'] <= 3
    assert {p.name for p in (tmp_path/'sae_0').iterdir()} >= {'config.json', 'model.safetensors', 'metrics.json'}
    sae = load_sae(tmp_path/'sae_0')
    x = torch.from_numpy(np.load(acts/'val.npy'))
    assert abs(sae.metrics(x)['fvu'] - summary['fvu']) < 0.05

def test_cli_reads_safetensors(acts, tmp_path):
    r = cli('--acts', acts/'train.safetensors', '--arch', 'relu', '--sparsity_coeff', 1e-3, '--exp_factor', 2,
            '--n_tokens', 20_000, '--batch_size', 500, '--out', tmp_path/'sae_1', '--quiet')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])['tokens_per_s'] > 0

@pytest.mark.parametrize('args,msg', [(['--arch', 'nope'], 'topk'), (['--arch', 'topk', '--k', 1000], 'k'),
                                      (['--acts', '/no/such/file.npy'], 'no activations')])
def test_cli_bad_input_gives_one_line_error(acts, tmp_path, args, msg):
    base = ['--acts', acts/'train.npy', '--out', tmp_path/'x', '--n_tokens', 1000, '--batch_size', 500, '--exp_factor', 2]
    r = cli(*(base + args))
    assert r.returncode != 0 and 'Traceback' not in r.stderr and msg in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

def test_existing_sae_is_never_overwritten(acts, tmp_path):
    args = ['--acts', acts/'train.npy', '--k', 3, '--exp_factor', 2, '--n_tokens', 5000, '--batch_size', 500, '--out', tmp_path/'s', '--quiet']
    assert cli(*args).returncode == 0
    before = (tmp_path/'s'/'model.safetensors').read_bytes()
    r = cli(*args)
    assert r.returncode != 0 and '--resume' in r.stderr
    assert (tmp_path/'s'/'model.safetensors').read_bytes() == before

def test_early_stopping_with_patience(acts):
    res = train_sae(acts/'train.npy', k=3, exp_factor=2, n_tokens=1_000_000, batch_size=500, lr=1e-12, val_every=5,
                    patience=2, progress=False)
    assert res.summary['stopped_early'] and res.summary['steps'] < 100

def test_resampling_revives_dead_latents(acts):
    "Latents silenced by a huge negative bias are dead; resampling points them at badly reconstructed inputs, where they fire again."
    seen = {}
    x = torch.from_numpy(np.load(acts/'val.npy'))
    def watch(step, sae):
        with torch.no_grad():
            if step == 1: sae.b_enc[:24] = -1e4   # silence a quarter of the latents
            if step == 19: seen['dead'] = sae.dead.dead_mask(2000).clone()
            if step == 20: seen['fires'] = (sae.encode(x) != 0).any(0)
    train_sae(acts/'train.npy', arch='relu', sparsity_coeff=1e-3, exp_factor=4, n_tokens=21 * 500, batch_size=500,
              lr=1e-3, dead_tokens=2000, resample_every=20, normalize=False, progress=False, callback=watch)
    dead = seen['dead']
    assert dead[:24].all(), "the silenced latents should count as dead"
    assert seen['fires'][dead].float().mean() > 0.5, "resampled latents should fire on the data again"

@pytest.mark.parametrize('arch,extra', [('topk', ['--k', '3']), ('batchtopk', ['--k', '3'])])
def test_torchrun_data_parallel_two_cpu_processes(acts, tmp_path, arch, extra):
    "Two processes under torchrun train one SAE together: equal replicas, and as good as one process on the same batches."
    import os, signal
    out = tmp_path/'ddp'
    args = ['--acts', str(acts/'train.npy'), '--val_acts', str(acts/'val.npy'), '--arch', arch, *extra, '--exp_factor', '2',
            '--n_tokens', '60000', '--batch_size', '500', '--lr', '3e-3', '--resample_every', '40', '--quiet']
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '-m', 'saenb.train_sae', *args, '--out', str(out)]
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try: stdout, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f'torchrun did not finish in 240 s: {err[-3000:]}')
    assert proc.returncode == 0, err[-3000:]
    summaries = [json.loads(l) for l in stdout.splitlines() if l.startswith('{')]
    assert len(summaries) == 1; s = summaries[0]
    assert s['processes'] == 2 and s['replicas_equal'] and s['tokens'] == 60000 - 60000 % 500
    single = json.loads(cli(*args, '--out', tmp_path/'single').stdout.strip().splitlines()[-1])
    assert s['fvu'] < 0.5 and abs(s['fvu'] - single['fvu']) < 0.1 and abs(s['l0'] - single['l0']) < 0.25 * single['l0'], (s, single)
    assert load_sae(out).cfg.d_sae == 48
