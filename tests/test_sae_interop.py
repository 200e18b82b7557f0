"Other tools' formats: SAELens export and import, sparsify import, the export command; SAELens's own loader agrees with saenb."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from conftest import console
import torch
import torch.nn.functional as F
from safetensors.torch import save_file, load_file
from saenb.sae import SAE_REGISTRY, make_sae, synthetic_sparse_data, quick_train
from saenb.sae_io import load_sae, export_saelens, saelens_archs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO/'benchmarks'))   # SAELens's virtual environment is found or built where the benchmark's is
import _common
from _common import saelens_python, sparsify_python, saelens_venv, SAELensUnavailable
SAELENS_ARCHS = saelens_archs()   # every registered architecture SAELens has, read from the registry
KW = {a: SAE_REGISTRY[a].example for a in SAELENS_ARCHS}
VARIANTS = [(a, KW[a]) for a in KW] + [('relu', dict(sparsity_coeff=0.1, weighted_l1=True))]
IDS = [f"{a}-{i}" for i, (a, _) in enumerate(VARIANTS)]
X = synthetic_sparse_data(1024, 16, 32, seed=0)
XT = torch.randn(300, 16, generator=torch.Generator().manual_seed(5)) * 2   # raw inputs, off the training distribution too

@pytest.fixture(autouse=True, scope='module')
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

_cache = {}
def trained(i):
    "The eval-mode SAE of VARIANTS[i], trained briefly (cached across tests)."
    if i not in _cache:
        arch, kw = VARIANTS[i]
        sae = make_sae(arch, d_in=16, d_sae=64, **kw)
        quick_train(sae, X, steps=40)
        if arch == 'relu' and kw.get('weighted_l1'):
            with torch.no_grad(): sae.W_dec.mul_(torch.linspace(0.5, 2, 64)[:, None])   # decoder far from unit norm
        _cache[i] = sae.eval()
    return _cache[i]

def test_exportable_archs():
    "Every registered architecture names its SAELens architecture, or refuses to export with the list of those that can."
    assert {'relu', 'topk', 'jumprelu', 'gated'} <= set(SAELENS_ARCHS)
    for arch, cls in SAE_REGISTRY.items():
        if cls.saelens_arch is not None: continue
        with pytest.raises(ValueError, match='exportable ones are'): make_sae(arch, d_in=16, d_sae=64, **cls.example).to_saelens()

@pytest.mark.parametrize('i', range(len(VARIANTS)), ids=IDS)
def test_round_trip(i, tmp_path):
    sae = trained(i)
    p = export_saelens(sae, tmp_path / 'out', hook_name='blocks.0.hook_resid_post', model_name='toy')
    assert sorted(x.name for x in p.iterdir()) == ['cfg.json', 'sae_weights.safetensors']
    back = load_sae(p).eval()
    assert type(back) is type(sae) and back.cfg == sae.cfg
    assert torch.equal(back.encode(XT), sae.encode(XT)) and torch.equal(back(XT), sae(XT))
    assert back.source == {'format': 'saelens', 'architecture': SAELENS_ARCHS[sae.arch], 'hook_name': 'blocks.0.hook_resid_post', 'model_name': 'toy'}

@pytest.mark.parametrize('i', [0, 1, 3, 5], ids=['relu', 'topk', 'jumprelu', 'gated'])
def test_saelens_without_saenb_config(i, tmp_path):
    "A SAELens directory without saenb's metadata (as SAELens writes it) loads as the equivalent saenb architecture."
    sae = trained(i)
    p = export_saelens(sae, tmp_path / 'out')
    c = json.loads((p / 'cfg.json').read_text()); del c['metadata']['saenb_config']
    (p / 'cfg.json').write_text(json.dumps(c))
    back = load_sae(p).eval()
    assert back.arch == {'relu': 'relu', 'topk': 'topk', 'jumprelu': 'jumprelu', 'gated': 'gated'}[sae.arch]
    torch.testing.assert_close(back.encode(XT), sae.encode(XT), atol=1e-6, rtol=0)
    torch.testing.assert_close(back(XT), sae(XT), atol=1e-6, rtol=0)

def test_saelens_no_b_dec_to_input(tmp_path):
    "apply_b_dec_to_input=False is folded into the encoder biases (gated: both paths)."
    for i in (0, 5):
        sae = trained(i)
        p = export_saelens(sae, tmp_path / sae.arch)
        c = json.loads((p / 'cfg.json').read_text()); c['apply_b_dec_to_input'] = False; del c['metadata']['saenb_config']
        (p / 'cfg.json').write_text(json.dumps(c))
        w = {k: v for k, v in load_file(str(p / 'sae_weights.safetensors')).items()}
        if sae.arch == 'gated':
            g, m = XT @ w['W_enc'] + w['b_gate'], XT @ (w['W_enc'] * w['r_mag'].exp()) + w['b_mag']
            codes = (g > 0) * m.relu()
        else: codes = (XT @ w['W_enc'] + w['b_enc']).relu()
        back = load_sae(p).eval()
        torch.testing.assert_close(back.encode(XT), codes, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(back(XT), codes @ w['W_dec'] + w['b_dec'], atol=1e-4, rtol=1e-5)

def _sparsify_dir(p, transcode=False, bf16=False):
    g = torch.Generator().manual_seed(2)
    enc, W_dec = torch.randn(48, 16, generator=g), torch.randn(48, 16, generator=g)
    b_enc, b_dec = torch.randn(48, generator=g) * 0.1, torch.randn(16, generator=g)
    t = {'encoder.weight': enc, 'encoder.bias': b_enc, 'W_dec': W_dec / W_dec.norm(dim=-1, keepdim=True), 'b_dec': b_dec}
    if bf16: t = {k: v.bfloat16() for k, v in t.items()}
    p.mkdir()
    save_file(t, str(p / 'sae.safetensors'))
    (p / 'cfg.json').write_text(json.dumps({'activation': 'topk', 'expansion_factor': 3, 'normalize_decoder': True, 'num_latents': 0,
                                            'k': 5, 'multi_topk': False, 'skip_connection': False, 'transcode': transcode, 'd_in': 16}))
    return {k: v.float() for k, v in t.items()}

@pytest.mark.parametrize('transcode,bf16', [(False, False), (False, True), (True, False)])
def test_sparsify(tmp_path, transcode, bf16):
    t = _sparsify_dir(tmp_path / 's', transcode, bf16)
    sae = load_sae(tmp_path / 's').eval()
    assert (sae.arch, sae.cfg.d_sae, sae.cfg.k) == ('transcoder' if transcode else 'topk', 48, 5)
    xin = XT if transcode else XT - t['b_dec']
    v, i = F.relu(F.linear(xin, t['encoder.weight'], t['encoder.bias'])).topk(5, dim=-1)   # sparsify's fused_encoder
    codes = torch.zeros(len(XT), 48).scatter(-1, i, v)
    torch.testing.assert_close(sae.encode(XT), codes, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sae(XT), codes @ t['W_dec'] + t['b_dec'], atol=1e-4, rtol=1e-5)
    if not transcode:   # and it exports to SAELens like any topk SAE
        back = load_sae(export_saelens(sae, tmp_path / 'sl')).eval()
        assert torch.equal(back(XT), sae(XT))

def test_bad_files(tmp_path):
    t = _sparsify_dir(tmp_path / 's')
    f = tmp_path / 's' / 'sae.safetensors'; data = f.read_bytes()
    f.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match='corrupt or truncated'): load_sae(tmp_path / 's')
    f.write_bytes(data)
    (tmp_path / 's' / 'cfg.json').write_text(json.dumps({'k': 5, 'd_in': 16, 'skip_connection': True}))
    with pytest.raises(ValueError, match='no saenb equivalent'): load_sae(tmp_path / 's')
    (tmp_path / 's' / 'cfg.json').write_text(json.dumps({'k': 5, 'd_in': 16, 'num_latents': 48}))
    save_file({k: v for k, v in t.items() if k != 'b_dec'}, str(f))
    with pytest.raises(ValueError, match=r"missing tensors \['b_dec'\]"): load_sae(tmp_path / 's')
    p = export_saelens(trained(1), tmp_path / 'sl')
    c = json.loads((p / 'cfg.json').read_text())
    (p / 'cfg.json').write_text(json.dumps({**c, 'd_sae': 32}))
    with pytest.raises(ValueError, match='does not match cfg.json'): load_sae(p)
    (p / 'cfg.json').write_text(json.dumps({**c, 'architecture': 'matching_pursuit'}))
    with pytest.raises(ValueError, match='no saenb equivalent'): load_sae(p)
    (p / 'cfg.json').write_text('[1, 2')
    with pytest.raises(ValueError, match='not valid JSON'): load_sae(p)
    (tmp_path / 'other').mkdir(); (tmp_path / 'other' / 'cfg.json').write_text('{}')
    with pytest.raises(ValueError, match=r'known formats: saenb \(config.json \+ model.safetensors\), saelens'): load_sae(tmp_path / 'other')

def test_not_exportable(tmp_path):
    for arch, kw, msg in [('hard_concrete', {}, 'exportable ones are'), ('staircase', dict(k=4), 'exportable ones are'),
                          ('topk', dict(k=4, relu_after_topk=False), 'relu_after_topk=True'),
                          ('batchtopk', dict(k=4), 'train it before exporting')]:
        with pytest.raises(ValueError, match=msg): export_saelens(make_sae(arch, d_in=16, d_sae=64, **kw), tmp_path / 'x')
    assert not (tmp_path / 'x').exists()

# ---- the console command

def _cli(*args):
    return subprocess.run([*console('saenb_export_saelens'), *map(str, args)], capture_output=True, text=True, timeout=300)

def test_cli(tmp_path):
    trained(1).save(tmp_path / 'sae_0')
    r = _cli('--sae', tmp_path / 'sae_0', '--out', tmp_path / 'sl', '--hook_name', 'blocks.1.hook_resid_post', '--model_name', 'toy')
    assert r.returncode == 0, r.stderr
    assert 'topk -> SAELens topk' in r.stdout
    c = json.loads((tmp_path / 'sl' / 'cfg.json').read_text())
    assert (c['metadata']['hook_name'], c['metadata']['model_name'], c['k']) == ('blocks.1.hook_resid_post', 'toy', 4)
    assert torch.equal(load_sae(tmp_path / 'sl').eval()(XT), trained(1)(XT))
    for args, msg in [(('--out', tmp_path / 'x'), '--sae and --out are required'), (('--sae', tmp_path / 'nope', '--out', tmp_path / 'x'), 'no SAE directory'),
                      (('--sae', tmp_path / 'sl'), '--sae and --out are required')]:
        r = _cli(*args)
        assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith('saenb_export_saelens: error: ') and msg in r.stderr, r.stderr
    make_sae('hard_concrete', d_in=16, d_sae=64).save(tmp_path / 'hc')
    r = _cli('--sae', tmp_path / 'hc', '--out', tmp_path / 'x')
    assert r.returncode == 2 and 'exportable ones are' in r.stderr and r.stderr.count('\n') == 1

# ---- SAELens's own loader

@pytest.fixture(scope='module')
def saelens_py():
    "SAELens's interpreter: its virtual environment under ~/.cache/saenb is built on first use (about 1.5 minutes, once)."
    try: return saelens_python()
    except SAELensUnavailable as e: pytest.skip(str(e))   # no network to the package index: nothing the project can fix

WORKER = '''
import sys, numpy as np, torch
from sae_lens import SAE
x = torch.from_numpy(np.load(sys.argv[1]))
for d in sys.argv[2:]:
    sae = SAE.load_from_disk(d, device="cpu")
    with torch.no_grad(): codes = sae.encode(x); recon = sae.decode(codes); fwd = sae(x)
    np.savez(d + ".npz", codes=codes.numpy(), recon=recon.numpy(), fwd=fwd.numpy(), arch=sae.cfg.architecture())
'''

@pytest.fixture(scope='module')
def saelens_outputs(tmp_path_factory, saelens_py):
    "Export every variant, then load them all with SAELens's `SAE.load_from_disk` in one run of SAELens's interpreter."
    py = saelens_py
    tmp = tmp_path_factory.mktemp('saelens')
    dirs = [str(export_saelens(trained(i), tmp / IDS[i])) for i in range(len(VARIANTS))]
    np.save(tmp / 'x.npy', XT.numpy())
    (tmp / 'w.py').write_text(WORKER)
    r = subprocess.run([py, tmp / 'w.py', tmp / 'x.npy', *dirs], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return {IDS[i]: np.load(d + '.npz') for i, d in enumerate(dirs)}

@pytest.mark.parametrize('i', range(len(VARIANTS)), ids=IDS)
def test_saelens_equivalence(i, saelens_outputs):
    sae, o = trained(i), saelens_outputs[IDS[i]]
    assert str(o['arch']) == SAELENS_ARCHS[sae.arch]
    codes, recon = sae.encode(XT).detach().numpy(), sae(XT).detach().numpy()
    dc, dr = np.abs(o['codes'] - codes).max(), np.abs(o['fwd'] - recon).max()
    print(f"{IDS[i]}: SAELens {o['arch']}: max |codes diff| {dc:.2e}, max |recon diff| {dr:.2e}, l0 {(codes != 0).sum(-1).mean():.1f}")
    assert (codes != 0).any(-1).mean() > 0.5            # the comparison is not vacuous
    np.testing.assert_array_equal(o['codes'] != 0, codes != 0)   # the same latents fire
    np.testing.assert_allclose(o['codes'], codes, atol=1e-4, rtol=0)
    np.testing.assert_allclose(o['recon'], recon, atol=1e-4, rtol=0)
    np.testing.assert_allclose(o['fwd'], recon, atol=1e-4, rtol=0)

MAKER = '''
import sys, numpy as np, torch
from pathlib import Path
from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig, JumpReLUSAE, JumpReLUSAEConfig, GatedSAE, GatedSAEConfig
from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
from sae_lens.saes.matryoshka_batchtopk_sae import MatryoshkaBatchTopKTrainingSAE, MatryoshkaBatchTopKTrainingSAEConfig
torch.manual_seed(0)
out, x = Path(sys.argv[1]), torch.from_numpy(np.load(sys.argv[2]))
def randomize(sae):
    with torch.no_grad():
        for n, p in sae.named_parameters(): p.copy_(torch.randn_like(p) * (0.3 if n != "W_dec" else 1.0) + (0.2 if n == "threshold" else 0))
        sae.W_dec.mul_(torch.rand(sae.W_dec.shape[0], 1) * 2 + 0.3)   # decoder rows far from unit norm
    return sae
saes = {"standard_nobdec": StandardSAE(StandardSAEConfig(d_in=16, d_sae=48, apply_b_dec_to_input=False)),
        "topk_rescale": TopKSAE(TopKSAEConfig(d_in=16, d_sae=48, k=5, rescale_acts_by_decoder_norm=True)),
        "topk": TopKSAE(TopKSAEConfig(d_in=16, d_sae=48, k=5)),
        "jumprelu": JumpReLUSAE(JumpReLUSAEConfig(d_in=16, d_sae=48)),
        "gated_nobdec": GatedSAE(GatedSAEConfig(d_in=16, d_sae=48, apply_b_dec_to_input=False))}
for name, sae in saes.items():
    randomize(sae).save_model(out / name)
for name, cls, cfg in [("batchtopk", BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig(d_in=16, d_sae=48, k=4)),
                       ("matryoshka", MatryoshkaBatchTopKTrainingSAE, MatryoshkaBatchTopKTrainingSAEConfig(d_in=16, d_sae=48, k=4, matryoshka_widths=[12, 24, 48]))]:
    sae = randomize(cls(cfg))
    sae.topk_threshold = torch.tensor(0.4, dtype=torch.double)
    sae.save_inference_model(out / name)
from sae_lens import SAE
for d in sorted(p for p in out.iterdir() if p.is_dir()):
    sae = SAE.load_from_disk(d)
    with torch.no_grad(): np.savez(str(d) + ".npz", codes=sae.encode(x).numpy(), fwd=sae(x).numpy(), arch=sae.cfg.architecture())
'''

def test_saelens_written_dirs_load(tmp_path, saelens_py):
    "Directories written by SAELens itself (with its folding options on) load into saenb and compute what SAELens computes."
    py = saelens_py
    np.save(tmp_path / 'x.npy', XT.numpy())
    (tmp_path / 'm.py').write_text(MAKER)
    (tmp_path / 'sl').mkdir()
    r = subprocess.run([py, tmp_path / 'm.py', tmp_path / 'sl', tmp_path / 'x.npy'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    want = {'standard_nobdec': 'relu', 'topk_rescale': 'topk', 'topk': 'topk', 'jumprelu': 'jumprelu', 'gated_nobdec': 'gated',
            'batchtopk': 'batchtopk', 'matryoshka': 'matryoshka'}
    for name, arch in want.items():
        o = np.load(tmp_path / 'sl' / f'{name}.npz')
        sae = load_sae(tmp_path / 'sl' / name).eval()
        assert sae.arch == arch, name
        codes, recon = sae.encode(XT).detach().numpy(), sae(XT).detach().numpy()
        print(f"{name}: saenb {arch}: max |codes diff| {np.abs(o['codes'] - codes).max():.2e}, max |recon diff| {np.abs(o['fwd'] - recon).max():.2e}, l0 {(codes != 0).sum(-1).mean():.1f}")
        assert (codes != 0).any(-1).mean() > 0.5, name
        np.testing.assert_array_equal(o['codes'] != 0, codes != 0, err_msg=name)
        np.testing.assert_allclose(o['codes'], codes, atol=1e-4, rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(o['fwd'], recon, atol=1e-4, rtol=1e-5, err_msg=name)

# ---- sparsify itself: the benchmark's worker runs its trainer's inner step, and what it saves loads here

def test_sparsify_worker_trains_and_its_save_loads(tmp_path):
    """benchmarks/_sparsify_worker.py trains sparsify's own TopK SAE (in the peers' environment, which SAELens shares);
    the directory sparsify's `save_to_disk` writes loads into saenb and reconstructs what sparsify reconstructs."""
    try: py = sparsify_python()
    except SAELensUnavailable as e: pytest.skip(str(e))   # no network to the package index
    x = synthetic_sparse_data(5096, 16, 32, seed=1).numpy()
    np.save(tmp_path/'tr.npy', x[:4096]); np.save(tmp_path/'va.npy', x[4096:])
    r = subprocess.run([py, REPO/'benchmarks'/'_sparsify_worker.py', tmp_path/'tr.npy', tmp_path/'va.npy', '64', '4',
                        '256', str(256 * 60), '4e-3', '0', 'adam', 'cpu', tmp_path/'sp'],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out['steps'] == 60 and out['l0'] <= 4 and out['tokens_per_s'] > 0, out
    assert out['last_train_fvu'] < 0.6 * out['first_train_fvu'] and out['fvu'] < 0.6 * out['first_train_fvu'], out
    sae = load_sae(tmp_path/'sp').eval()
    assert (sae.arch, sae.cfg.d_sae, sae.cfg.k) == ('topk', 64, 4)
    recon = sae(torch.from_numpy(x[4096:])).detach().numpy()
    np.testing.assert_allclose(recon, np.load(tmp_path/'sp'/'val_recon.npy'), atol=1e-4, rtol=1e-4)

# ---- SAELens's virtual environment: built once, atomically, by one process at a time

def test_saelens_venv_interrupted_build(tmp_path, monkeypatch):
    "A build that fails (or is killed) leaves no environment to be taken for a finished one; the next call builds it anew."
    final = tmp_path/f'saelens-venv-{_common.TORCH_VERSION}'
    def killed(tmp, final, requirements, log):
        (tmp/'bin').mkdir(parents=True); (tmp/'bin'/'python').symlink_to(sys.executable)   # looks usable, is not done
        raise KeyboardInterrupt
    monkeypatch.setattr(_common, '_build_venv', killed)
    with pytest.raises(KeyboardInterrupt): saelens_venv(tmp_path, requirements=[], log=open(os.devnull, 'w'))
    assert not final.exists() and not list(tmp_path.glob('*.tmp*'))
    (tmp_path/f'{final.name}.tmp1'/'bin').mkdir(parents=True)   # a build killed with -9 leaves its temporary directory
    monkeypatch.undo()
    log = tmp_path/'log.txt'
    with open(log, 'w') as f: assert saelens_venv(tmp_path, requirements=[], log=f) == final
    assert 'building' in log.read_text() and not list(tmp_path.glob('*.tmp*'))
    assert json.loads((final/'saenb-build.json').read_text())['requirements'] == []
    r = subprocess.run([final/'bin'/'python', '-c', 'import sys; print(sys.prefix)'], capture_output=True, text=True)
    assert r.stdout.strip() == str(final)   # renamed into place, it still runs as itself
    with open(log, 'w') as f: assert saelens_venv(tmp_path, requirements=[], log=f) == final
    assert log.read_text() == ''   # reused, not rebuilt

def test_saelens_venv_one_builder(tmp_path):
    "While one process builds the environment, a second waits for it and then uses what it built."
    import fcntl
    final = tmp_path/f'saelens-venv-{_common.TORCH_VERSION}'
    code = f"import sys; sys.path.insert(0, {str(REPO/'benchmarks')!r}); from _common import saelens_venv; " \
           f"print(saelens_venv({str(tmp_path)!r}, requirements=[]))"
    with open(tmp_path/f'{final.name}.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX); lock.write('4242'); lock.flush()   # this process is the builder
        p = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = p.stderr.readline()   # returns once the second process has met the lock
            assert line.startswith('waiting for process 4242, which is building'), line
            (final/'bin').mkdir(parents=True); (final/'bin'/'python').symlink_to(sys.executable)   # the build completes
        except BaseException: p.kill(); raise
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and out.strip() == str(final) and err == '', err
    assert not (final/'saenb-build.json').exists()   # not built a second time

def test_stale_venv_rebuilt(tmp_path):
    "An environment saenb built with other requirements (SAELens alone, before sparsify joined it) is built again."
    final = tmp_path/f'saelens-venv-{_common.TORCH_VERSION}'
    (final/'bin').mkdir(parents=True); (final/'bin'/'python').symlink_to(sys.executable)
    (final/'saenb-build.json').write_text(json.dumps({'requirements': ['sae-lens>=6,<7']}))
    log = tmp_path/'log.txt'
    with open(log, 'w') as f: assert saelens_venv(tmp_path, requirements=[], log=f) == final
    assert 'building' in log.read_text()
    assert json.loads((final/'saenb-build.json').read_text())['requirements'] == []
    (final/'saenb-build.json').unlink()   # made by hand (no record): used as it is
    with open(log, 'w') as f: assert saelens_venv(tmp_path, requirements=['x'], log=f) == final
    assert log.read_text() == ''

def test_saelens_python_env_var(monkeypatch, tmp_path):
    "SAENB_SAELENS_PYTHON names the interpreter to use; one that does not exist is an error, not a silent rebuild."
    monkeypatch.setenv('SAENB_SAELENS_PYTHON', sys.executable)
    assert saelens_python() == sys.executable
    monkeypatch.setenv('SAENB_SAELENS_PYTHON', str(tmp_path/'nope'))
    with pytest.raises(RuntimeError, match='is not an executable file: point it at the python'): saelens_python()
    monkeypatch.setenv('SAENB_SPARSIFY_PYTHON', sys.executable)   # sparsify's, likewise
    assert sparsify_python() == sys.executable
    monkeypatch.setenv('SAENB_SPARSIFY_PYTHON', str(tmp_path/'nope'))
    with pytest.raises(RuntimeError, match='SAENB_SPARSIFY_PYTHON=.* with eai-sparsify'): sparsify_python()
