"End-to-end tests of SAE training from the command line and from Python."
import json, subprocess, sys
import numpy as np, pytest, torch
from safetensors.torch import save_file
from saenb.train_sae import train_sae
from saenb.sae_io import load_sae
from conftest import wandb_env, wandb_offline, console, run, assert_fails, run_torchrun

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
    "Validation every `val_every` steps, whatever `log_every` is: with no progress, patience 2 stops at the third."
    res = train_sae(acts/'train.npy', k=3, exp_factor=2, n_tokens=1_000_000, batch_size=500, lr=1e-12, val_every=5,
                    patience=2, progress=False)
    assert res.summary['stopped_early'] and res.summary['steps'] == 15
    assert res.history.dropna(subset=['val_mse']).step.tolist() == [5, 10, 15]

def test_cli_validates_every_val_every_steps(acts, tmp_path):
    "--val_every sets when --patience's validations come: with no progress, patience 2 stops at the third, step 15."
    r = cli('--acts', acts/'train.npy', '--val_acts', acts/'val.npy', '--k', 3, '--exp_factor', 2, '--n_tokens',
            1_000_000, '--batch_size', 500, '--lr', 1e-12, '--val_every', 5, '--patience', 2, '--out', tmp_path/'s',
            '--quiet')
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary['stopped_early'] and summary['steps'] == 15

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
    out = tmp_path/'ddp'
    args = ['--acts', str(acts/'train.npy'), '--val_acts', str(acts/'val.npy'), '--arch', arch, *extra, '--exp_factor', '2',
            '--n_tokens', '60000', '--batch_size', '500', '--lr', '3e-3', '--resample_every', '40', '--quiet']
    r = run_torchrun('-m', 'saenb.train_sae', *args, '--out', out)
    stdout, err = r.stdout, r.stderr
    assert r.returncode == 0, err[-3000:]
    summaries = [json.loads(l) for l in stdout.splitlines() if l.startswith('{')]
    assert len(summaries) == 1; s = summaries[0]
    assert s['processes'] == 2 and s['replicas_equal'] and s['tokens'] == 60000 - 60000 % 500
    single = json.loads(cli(*args, '--out', tmp_path/'single').stdout.strip().splitlines()[-1])
    assert s['fvu'] < 0.5 and abs(s['fvu'] - single['fvu']) < 0.1 and abs(s['l0'] - single['l0']) < 0.25 * single['l0'], (s, single)
    assert load_sae(out).cfg.d_sae == 48


# ---- precision (issue 17): one `precision` setting, `auto` resolved once per run and saved resolved

def test_bf16_and_fp32_train_the_same_sae(acts):
    "The same run (data, seed) under bf16 autocast and in fp32 ends with the same validation FVU, within 2%."
    kw = dict(val_acts=acts/'val.npy', arch='topk', k=3, exp_factor=2, n_tokens=100_000, batch_size=500, lr=3e-3,
              progress=False)
    s16, s32 = (train_sae(acts/'train.npy', precision=p, **kw).summary for p in ('bf16', 'fp32'))
    assert (s16['precision'], s32['precision']) == ('bf16', 'fp32')
    assert abs(s16['fvu'] - s32['fvu']) <= 0.02 * s32['fvu'], (s16['fvu'], s32['fvu'])
    assert s32['fvu'] < 0.5

def _cli_args(acts, out, *more):
    return ('--acts', acts/'train.npy', '--k', 3, '--exp_factor', 2, '--n_tokens', 5000, '--batch_size', 500,
            '--out', out, '--quiet', *more)

def test_cli_prints_and_saves_the_resolved_precision(acts, tmp_path):
    "Default auto: the command says what it resolved to (also with --quiet) and saves that, never 'auto'."
    from saenb.utils import resolve_precision
    used = resolve_precision('auto', 'cpu', training=True)
    r = run('saenb_train_sae', *_cli_args(acts, tmp_path/'s'))
    assert r.returncode == 0, r.stderr
    assert f'saenb_train_sae: precision {used} (auto: this CPU has' in r.stderr, r.stderr
    assert json.loads((tmp_path/'s'/'train_config.json').read_text())['precision'] == used
    assert json.loads(r.stdout.strip().splitlines()[-1])['precision'] == used

def test_cli_dtype_is_an_alias_of_precision(acts, tmp_path):
    r = run('saenb_train_sae', *_cli_args(acts, tmp_path/'s', '--dtype', 'fp32'))
    assert r.returncode == 0, r.stderr
    assert 'saenb_train_sae: precision fp32' in r.stderr
    assert json.loads((tmp_path/'s'/'train_config.json').read_text())['precision'] == 'fp32'
    r = run('saenb_train_sae', *_cli_args(acts, tmp_path/'t', '--dtype', 'fp32', '--precision', 'bf16'))
    assert_fails(r, 'saenb_train_sae', '--dtype fp32 contradicts --precision bf16')
    assert not (tmp_path/'t').exists()

def test_cli_refuses_fp16_training_on_cpu(acts, tmp_path):
    r = run('saenb_train_sae', *_cli_args(acts, tmp_path/'s', '--precision', 'fp16'))
    assert_fails(r, 'saenb_train_sae', 'precision must be', 'fp16')
    assert not (tmp_path/'s').exists()

def test_resume_compares_the_resolved_precision_also_of_old_configs(acts, tmp_path):
    "A train_config.json saved before `precision` (with `bf16: true/false`) still resumes; auto matches its resolution."
    from saenb.utils import resolve_precision
    used = resolve_precision('auto', 'cpu', training=True)
    other = 'fp32' if used == 'bf16' else 'bf16'
    assert run('saenb_train_sae', *_cli_args(acts, tmp_path/'s')).returncode == 0
    f = tmp_path/'s'/'train_config.json'
    old = {k: v for k, v in json.loads(f.read_text()).items() if k != 'precision'}
    f.write_text(json.dumps({**old, 'bf16': used == 'bf16'}))  # as saenb wrote it before issue 17
    r = run('saenb_train_sae', *_cli_args(acts, tmp_path/'s', '--resume'))
    assert r.returncode == 0 and 'already holds this finished run' in r.stderr, r.stderr
    r = run('saenb_train_sae', *_cli_args(acts, tmp_path/'s', '--resume', '--precision', other))
    assert_fails(r, 'saenb_train_sae', f'trained with precision={used!r}, not {other!r}')

def test_cli_logs_to_weights_and_biases_offline(acts, tmp_path):
    "--wandb_project logs the run (settings, every logged step, final figures, the SAE as an artifact), read back offline."
    from saenb.utils import offline_run
    env = wandb_env(tmp_path)
    r = run('saenb_train_sae', '--acts', acts/'train.npy', '--k', 3, '--exp_factor', 2, '--n_tokens', 20_000,
            '--batch_size', 500, '--out', tmp_path/'sae', '--quiet', '--wandb_project', 'p', '--wandb_run_name', 'k3',
            '--wandb_tags', 'topk,test', '--wandb_artifacts', env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    w = offline_run(next((tmp_path/'wandb').glob('offline-run-*')))
    assert (w['run']['project'], w['run']['display_name'], w['run']['tags']) == ('p', 'k3', ['topk', 'test'])
    assert (w['config']['arch'], w['config']['sae']['k'], w['config']['n_tokens']) == ('topk', 3, 20_000)
    steps = [h['_step'] for h in w['history']]
    assert steps == sorted({25, *range(4, 41, 4)})   # every log_every (25) steps, and each validation (every 4)
    assert all('l0' in h and 'explained_variance' in h for h in w['history'])
    assert abs(w['summary']['fvu'] - summary['fvu']) < 1e-6 and abs(w['summary']['l0'] - summary['l0']) < 1e-6
    assert w['artifacts'] and w['artifacts'][0]['type'] == 'sae' and 'model.safetensors' in w['artifacts'][0]['files']

def test_wandb_is_optional(acts, tmp_path, monkeypatch):
    "Without --wandb_project nothing of W&B is imported; asked for without the package, a one-line error names it."
    code = ("import sys; from saenb.train_sae import train_sae; "
            f"train_sae('{acts/'train.npy'}', k=3, exp_factor=2, n_tokens=2000, batch_size=500, progress=False); "
            "print('wandb' in sys.modules)")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.stdout.strip().splitlines()[-1] == 'False', r.stdout + r.stderr[-2000:]
    monkeypatch.setitem(sys.modules, 'wandb', None)  # as if the package were missing
    r = run('saenb_train_sae', '--acts', acts/'train.npy', '--k', 3, '--n_tokens', 2000, '--batch_size', 500,
            '--out', tmp_path/'sae', '--wandb_project', 'p')
    assert_fails(r, 'saenb_train_sae', 'pip install wandb')
    assert not (tmp_path/'sae').exists()

def test_ensemble_members_are_logged_as_one_group(acts, tmp_path, monkeypatch):
    "Each member of an ensemble is its own W&B run, named after the member, in the ensemble's group."
    from saenb.ensemble import train_ensemble
    from saenb.utils import offline_run
    wandb_offline(monkeypatch, tmp_path)
    res = train_ensemble(acts/'train.npy', grid={'k': [2, 3]}, exp_factor=2, n_tokens=5000, batch_size=500,
                         progress=False, wandb_project='p', wandb_run_name='ens', wandb_group='g')
    runs = [offline_run(d) for d in sorted((tmp_path/'wandb').glob('offline-run-*'))]
    got = sorted((w['run']['display_name'], w['run']['run_group'], w['config']['sae']['k']) for w in runs)
    assert got == [('ens-2', 'g', 2), ('ens-3', 'g', 3)]
    for w in runs:
        k = w['config']['sae']['k']
        assert w['history'] and abs(w['summary']['fvu'] - res[k].summary['fvu']) < 1e-6

def test_resumed_run_continues_its_wandb_run(acts, tmp_path, monkeypatch):
    "Interrupted after a checkpoint and resumed with --resume, the run logs to the same W&B run, each step once."
    from saenb.utils import offline_run
    wandb_offline(monkeypatch, tmp_path)
    def crash_at_27(step, sae):
        if step == 27: raise KeyboardInterrupt  # after the log at step 25; the checkpoint is at step 20
    with pytest.raises(KeyboardInterrupt):
        train_sae(acts/'train.npy', tmp_path/'sae', k=3, exp_factor=2, n_tokens=20_000, batch_size=500, log_every=5,
                  checkpoint_every=10, progress=False, callback=crash_at_27, wandb_project='p', wandb_run_name='r')
    kept = json.loads((tmp_path/'sae'/'wandb_run.json').read_text())
    assert (kept['project'], kept['step']) == ('p', 25)
    r = run('saenb_train_sae', '--acts', acts/'train.npy', '--out', tmp_path/'sae', '--k', 3, '--exp_factor', 2,
            '--n_tokens', 20_000, '--batch_size', 500, '--checkpoint_every', 10, '--sae', '{"log_every": 5}',
            '--quiet', '--resume', '--wandb_project', 'p', '--wandb_run_name', 'r')
    assert r.returncode == 0, r.stderr[-3000:]
    runs = sorted((offline_run(d) for d in (tmp_path/'wandb').glob('offline-run-*')),
                  key=lambda w: w['run']['start_time'])
    assert [(w['run']['run_id'], w['run']['display_name'], w['run'].get('resume', False)) for w in runs] == \
        [(kept['id'], 'r', False), (kept['id'], 'r', True)]
    logged = sorted({*range(5, 41, 5), *range(4, 41, 4)})   # every log_every (5) steps, and each validation (every 4)
    assert [[h['_step'] for h in w['history']] for w in runs] == [[s for s in logged if s <= 25],
                                                                  [s for s in logged if s > 25]]
    assert abs(runs[1]['summary']['fvu'] - json.loads(r.stdout.strip().splitlines()[-1])['fvu']) < 1e-6
    assert not (tmp_path/'sae'/'wandb_run.json').exists()  # the saved SAE replaced the unfinished run's files
