"Every SAE architecture: builds, trains, keeps its defining property, survives bf16 autocast, saves and loads; bad input fails clearly."
import json, math
from dataclasses import fields
import pytest
import torch
import torch.nn.functional as F
from saenb.sae import (SAE_REGISTRY, make_sae, synthetic_sparse_data, geometric_median, JumpReLUFn, StepFn,
                       hard_concrete_gate, expected_l0, resample_dead_latents, DeadLatentTracker, FixedCoeff,
                       TargetL0Quadratic, DualAscent, KDecay, quick_train)
from saenb.kernels import sparse_decode
from saenb.sae_io import load_sae

# Every registered architecture, with the example settings it gives itself (`SAE.example`), then variants of options.
KW = {a: cls.example for a, cls in SAE_REGISTRY.items()}
VARIANTS = list(KW.items()) + [
    ('relu', dict(sparsity_coeff=0.1, weighted_l1=True, sparsity_warmup=50)),
    ('hard_concrete', dict(sparsity_coeff=0.02, beta_end=0.3)),
    ('jumprelu', dict(sparsity='target_l0', target_l0=6, bandwidth=0.05, init_threshold=0.1)),
    ('hard_concrete', dict(sparsity='dual_ascent', target_l0=8, input_dependent_gates=True)),
    ('topk', dict(k=4, k_start=16, k_decay_steps=100, aux_norm='residual_var', dead_tokens=256)),
    ('transcoder', dict(d_out=12, k=4))]
IDS = [f"{a}-{i}" for i, (a, _) in enumerate(VARIANTS)]

X = synthetic_sparse_data(1024, 16, 32, seed=0)
XL = SAE_REGISTRY['staircase'].example_inputs()[0]   # two layers stacked
Y = SAE_REGISTRY['transcoder'].example_inputs()[1]   # a toy MLP's outputs

@pytest.fixture(autouse=True, scope='module')
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def data(arch):
    "(inputs, target) for an architecture, as it gives them itself."
    return SAE_REGISTRY[arch].example_inputs()

def build(arch, **kw): return make_sae(arch, d_in=16, d_sae=64, **kw)

@pytest.mark.parametrize('arch', list(SAE_REGISTRY))
def test_architecture_describes_itself(arch):
    "Each registered class names itself, documents itself, and builds and runs from its own example settings and inputs."
    cls = SAE_REGISTRY[arch]
    assert cls.arch == arch and cls.config_class is not None and cls.__doc__
    assert {f for f in cls.example} <= {f.name for f in fields(cls.config_class)}
    sae = build(arch, **cls.example)
    x, y = cls.example_inputs(n=64)
    codes = sae.encode(x)
    assert codes.shape == (*x.shape[:-1], 64) and sae.decode(codes).shape == (x if y is None else y).shape
    assert cls.stacked_inputs == (x.ndim == 3) and cls.transcodes == (y is not None)
    if cls.topk_codes:   # codes are each token's top k pre-activations, as `choose` gives them
        idx, vals, _ = sae.choose(sae.pre_acts(x.reshape(-1, 16)), sae.cfg.k)
        torch.testing.assert_close(codes.reshape(-1, 64).gather(1, idx), vals, rtol=1e-5, atol=1e-5)

@pytest.mark.parametrize('arch,kw', VARIANTS, ids=IDS)
def test_trains_and_mse_falls(arch, kw):
    torch.manual_seed(0)  # the noise of stochastic gates does not depend on which tests ran before
    sae = build(arch, **kw)
    x, y = data(arch)
    before = sae.metrics(x, y)
    out = quick_train(sae, x, steps=250, target=y)
    after = sae.metrics(x, y)
    assert set(out) >= {'loss', 'mse_loss', 'sparsity_loss', 'aux_loss', 'l0', 'fired'}
    assert out['loss'].ndim == 0 and out['fired'].dtype == torch.bool and out['fired'].shape == sae.dead.tokens_since_fired.shape
    assert after['mse'] < 0.5 * before['mse'] and after['fvu'] < 0.35, (before, after)
    assert 0 < after['l0'] < 64 and -1 <= after['cosine'] <= 1
    torch.testing.assert_close(after['explained_variance'], 1 - after['fvu'])

def test_make_sae_errors():
    with pytest.raises(ValueError, match='choose one of.*topk'): make_sae('topkk', d_in=16, d_sae=64)
    with pytest.raises(ValueError, match="no hyperparameter 'kk'.*valid ones are.*k"): make_sae('topk', d_in=16, d_sae=64, kk=3)
    with pytest.raises(ValueError, match='larger than the dictionary'): make_sae('topk', d_in=16, d_sae=64, k=65)
    with pytest.raises(ValueError, match='larger than the dictionary'): make_sae('batchtopk', d_in=16, exp_factor=2, k=40)
    with pytest.raises(ValueError, match='give d_sae'): make_sae('topk', d_in=16)
    with pytest.raises(ValueError, match='contradicts'): make_sae('topk', d_in=16, d_sae=10, exp_factor=2, k=4)
    with pytest.raises(ValueError, match='supports sparsity'): make_sae('relu', d_in=16, d_sae=64, sparsity='dual_ascent', target_l0=3)
    with pytest.raises(ValueError, match='needs target_l0'): make_sae('jumprelu', d_in=16, d_sae=64, sparsity='target_l0')
    with pytest.raises(ValueError, match="only arch='transcoder'"): make_sae('topk', d_in=16, d_sae=64, d_out=8)
    with pytest.raises(ValueError, match='widths'): make_sae('staircase', d_in=16, d_sae=64, widths=[64, 32])
    test = make_sae('topk', d_in=16, exp_factor=4, k=4)
    assert test.cfg.d_sae == 64 and tuple(test.W_enc.shape) == (16, 64) and tuple(test.W_dec.shape) == (64, 16)
    with pytest.raises(ValueError, match='expects last dim 16'): test(torch.randn(4, 15))
    with pytest.raises(ValueError, match='expects last dim 16'): test.loss(torch.randn(4, 15))
    with pytest.raises(ValueError, match='stacked per layer'): build('staircase', **KW['staircase']).loss(X[:8])
    with pytest.raises(ValueError, match='target=y'): build('transcoder', **KW['transcoder']).loss(X[:8])

def test_sparse_decode_matches_dense_value_and_grad():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(50, 7, generator=g, requires_grad=True)
    idx = torch.stack([torch.randperm(50, generator=g)[:5] for _ in range(9)])
    vals = torch.randn(9, 5, generator=g, requires_grad=True)
    b = torch.randn(7, requires_grad=True)
    out = sparse_decode(idx, vals, W, b)
    dense = torch.zeros(9, 50).scatter(1, idx, vals) @ W + b
    torch.testing.assert_close(out, dense)
    gr = torch.randn(9, 7, generator=g)
    torch.testing.assert_close(torch.autograd.grad(out, (W, vals, b), gr), torch.autograd.grad(dense, (W, vals, b), gr))
    assert torch.autograd.gradcheck(lambda v, w: sparse_decode(idx, v, w), (vals.double().detach().requires_grad_(), W.double().detach().requires_grad_()))

def test_topk_has_exactly_k_nonzeros():
    sae = build('topk', k=4, relu_after_topk=False)
    torch.testing.assert_close((sae.encode(torch.randn(200, 16)) != 0).sum(-1), torch.full((200,), 4))
    sae = build('topk', k=4)
    quick_train(sae, X, steps=50)
    nz = (sae.encode(X) != 0).sum(-1)
    assert (nz <= 4).all() and (nz == 4).float().mean() > 0.8
    out = sae.loss(X[:100])
    assert out['l0'] <= 4

def test_k_decay():
    sae = build('topk', k=4, k_start=20, k_decay_steps=10, relu_after_topk=False)
    x = torch.randn(32, 16)
    assert sae.loss(x, step=0)['l0'] == 20 and sae.loss(x, step=5)['l0'] == 12 and sae.loss(x, step=50)['l0'] == 4
    assert [KDecay(8, 2, 3).k_at(s) for s in range(5)] == [8, 6, 4, 2, 2]

@pytest.mark.parametrize('norm', ['residual_power', 'residual_var', 'none'])
def test_auxk(norm):
    sae = build('topk', k=4, dead_tokens=100, aux_norm=norm, aux_k=6)
    x = X[:128]
    assert sae.loss(x)['aux_loss'] == 0            # nobody dead yet
    dead = torch.zeros(64, dtype=torch.bool); dead[10:30] = True
    sae.dead.tokens_since_fired[dead] = 1000
    out = sae.loss(x)
    pre = sae.pre_acts(x)
    e = (x - sae(x)).detach()
    vals, idx = pre.masked_fill(~dead, -float('inf')).topk(6)
    err = (sparse_decode(idx, F.relu(vals), sae.W_dec) - e).pow(2).sum(-1)
    want = {'residual_power': err.mean() / e.pow(2).sum(-1).mean(), 'residual_var': err.mean() / (e - e.mean(0)).pow(2).sum(-1).mean(),
            'none': err.mean()}[norm]
    torch.testing.assert_close(out['aux_loss'], want / 32, rtol=1e-4, atol=1e-6)
    out['aux_loss'].backward()
    g = sae.W_enc.grad.abs().sum(0)
    assert g[dead].sum() > 0 and g[~dead].sum() == 0   # AuxK only trains the dead latents' encoders

def test_batchtopk_k_times_batch_and_threshold_at_eval():
    sae = build('batchtopk', k=4, threshold_beta=0.9)
    quick_train(sae, X, steps=100)
    out = sae.loss(X[:256])
    assert out['l0'] * 256 == 4 * 256
    assert (sae.encode(X[:256]) != 0).sum() == 4 * 256
    assert sae.threshold.dtype == torch.float32 and sae.threshold > 0
    sae.eval()
    pre = sae.pre_acts(X)
    codes = sae.encode(X)
    torch.testing.assert_close(codes != 0, pre > sae.threshold)
    torch.testing.assert_close(sae.encode(X[:3]), codes[:3])           # eval codes do not depend on the batch
    j = sae.to_jumprelu().eval()
    assert j.arch == 'jumprelu'
    torch.testing.assert_close(j(X), sae(X), rtol=1e-5, atol=1e-5)

def test_jumprelu_threshold_gradient_only_through_ste():
    theta = torch.tensor([0.5, 1.0], requires_grad=True)
    z = torch.tensor([[0.1, 0.9996], [0.5002, 2.0], [0.4999, 1.0004]], requires_grad=True)
    eps = 1e-3
    StepFn.apply(z, theta, eps).sum().backward()
    assert z.grad.abs().sum() == 0                                      # the step gives z no gradient
    torch.testing.assert_close(theta.grad, torch.tensor([-2 / eps, -2 / eps]), rtol=1e-3, atol=0)
    z.grad = None; theta.grad = None
    JumpReLUFn.apply(z, theta, eps).sum().backward()
    torch.testing.assert_close(z.grad, (z > theta).float())
    torch.testing.assert_close(theta.grad, torch.tensor([-2 * 0.5 / eps, -2 * 1.0 / eps]), rtol=1e-3, atol=0)
    # far from every threshold: no gradient at all to theta
    theta.grad = None
    StepFn.apply(torch.tensor([[0.1, 3.0]]), theta, eps).sum().backward()
    assert theta.grad.abs().sum() == 0
    # in the SAE: the L0 term trains thresholds only, never the encoder
    sae = build('jumprelu', sparsity_coeff=1.0, bandwidth=0.5, init_threshold=0.5)
    sae.loss(X[:128])['sparsity_loss'].backward()
    assert sae.log_threshold.grad.abs().sum() > 0
    assert sae.W_enc.grad is None or sae.W_enc.grad.abs().sum() == 0

def test_lagrangian_reaches_target_l0():
    sae = build('lagrangian', **KW['lagrangian'])
    quick_train(sae, X, steps=400)
    ctl = sae.sparsity_ctl
    assert ctl.alpha.dtype == ctl.l0_avg.dtype == torch.float32 and 0 <= ctl.alpha <= 50
    assert abs(ctl.l0_avg.item() - 6) < 1.2, ctl.l0_avg
    assert abs(sae.metrics(X)['l0'] - 6) < 1.5
    # without calibration the multiplier does the work: it rises while L0 is above target
    sae = build('lagrangian', **{**KW['lagrangian'], 'calibrate': False})
    out = quick_train(sae, X, steps=30)
    assert sae.sparsity_ctl.alpha > 0 and out['sparsity_loss'] > 0

def test_matryoshka_prefix_losses():
    sae = build('matryoshka', **KW['matryoshka'])
    quick_train(sae, X, steps=100)
    x = X[:128]
    out = sae.loss(x)
    codes = sae.encode(x)
    want = torch.stack([((codes[:, :m] @ sae.W_dec[:m] + sae.b_dec - x) ** 2).sum(-1).mean() for m in (8, 32, 64)])
    torch.testing.assert_close(out['prefix_mse'], want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out['mse_loss'], want.mean(), rtol=1e-4, atol=1e-4)
    assert out['prefix_mse'][0] > out['prefix_mse'][2]
    # the small prefix alone reconstructs better than the same-width prefix of a plain BatchTopK SAE
    plain = build('batchtopk', k=4, threshold_beta=0.9)
    quick_train(plain, X, steps=100)
    codes_p = plain.encode(x)
    assert want[0] < ((codes_p[:, :8] @ plain.W_dec[:8] + plain.b_dec - x) ** 2).sum(-1).mean()

def test_gated_aux_loss():
    sae = build('gated', sparsity_coeff=0.1, aux_coeff=1.0)
    quick_train(sae, X, steps=50)
    x = X[:128]
    out = sae.loss(x)
    pi_gate, pi_mag = sae.gate_mag(x)
    torch.testing.assert_close(out['aux_loss'], ((F.relu(pi_gate) @ sae.W_dec + sae.b_dec - x) ** 2).sum(-1).mean())
    torch.testing.assert_close(sae.encode(x), (pi_gate > 0) * F.relu(pi_mag))
    torch.testing.assert_close(out['sparsity_loss'], 0.1 * F.relu(pi_gate).sum(-1).mean())
    sae.zero_grad(); out['aux_loss'].backward()
    assert sae.W_dec.grad is None or sae.W_dec.grad.abs().sum() == 0   # decoder frozen in the aux loss
    assert sae.W_enc.grad.abs().sum() > 0 and sae.b_gate.grad.abs().sum() > 0 and sae.r_mag.grad is None
    assert {'W_enc', 'W_dec', 'b_dec', 'b_gate', 'b_mag', 'r_mag'} == {n for n, _ in sae.named_parameters()}

def test_hard_concrete_gate_and_expected_l0():
    logits = torch.tensor([-3., -1., 0., 0.5, 2., 4.])
    for beta in (2 / 3, 0.3):
        z = hard_concrete_gate(logits.expand(40000, 6), beta, generator=torch.Generator().manual_seed(1))
        assert ((z >= 0) & (z <= 1)).all() and (z == 0).any() and (z == 1).any()
        torch.testing.assert_close((z > 0).float().mean(0).sum(), expected_l0(logits, beta), atol=0.05, rtol=0.01)
        torch.testing.assert_close(expected_l0(logits, beta), torch.sigmoid(logits - beta * math.log(0.1 / 1.1)).sum())
    torch.testing.assert_close(hard_concrete_gate(logits, 0.5, training=False), (torch.sigmoid(logits) * 1.2 - 0.1).clamp(0, 1))
    sae = build('hard_concrete', sparsity_coeff=0.5, beta_start=1.0, beta_end=0.5, beta_anneal_steps=10)
    out = sae.loss(X[:64])
    torch.testing.assert_close(out['sparsity_loss'], 0.5 * expected_l0(sae.gate_logits, 1.0))
    for s in range(10): sae.after_step(out, s)
    assert sae.beta.dtype == torch.float32 and abs(sae.beta.item() - 0.5) < 1e-6
    sae.eval()
    torch.testing.assert_close(sae.encode(X[:64]), sae.encode(X[:64]))          # deterministic at eval

def test_transcoder_maps_x_to_y():
    sae = build('transcoder', **KW['transcoder'])
    assert tuple(sae.W_enc.shape) == (16, 64) and tuple(sae.W_dec.shape) == (64, 12)
    quick_train(sae, X, target=Y, steps=300)
    assert sae.metrics(X, Y)['fvu'] < 0.3
    assert sae(X).shape == (1024, 12)
    assert sae.metrics(X, Y)['fvu'] < sae.metrics(X, torch.roll(Y, 1, 0))['fvu']   # it predicts *this* y from x

@pytest.mark.parametrize('arch', ['staircase', 'noshare'])
def test_staircase_prefixes(arch):
    sae = build(arch, **KW[arch])
    quick_train(sae, XL, steps=100)
    codes = sae.encode(XL)
    assert codes.shape == (1024, 2, 64) and (codes[:, 0, 32:] == 0).all() and ((codes != 0).sum(-1) <= 4).all()
    for i in range(2):
        torch.testing.assert_close(sae.layer_sae(i)(XL[:, i]), sae(XL)[:, i], rtol=1e-4, atol=1e-4)
    # layer 0's loss never touches latents beyond its width
    sae.zero_grad()
    idx, vals = sae._topk(XL[:64])
    sparse_decode(idx[:, 0], vals[:, 0], sae.W_dec.reshape(-1, 16) if arch == 'staircase' else sae.W_dec[0]).pow(2).sum().backward()
    g = sae.W_dec.grad if arch == 'staircase' else sae.W_dec.grad[0]
    assert g[32:].abs().sum() == 0 and g[:32].abs().sum() > 0
    if arch == 'staircase':
        assert tuple(sae.W_enc.shape) == (16, 64) and tuple(sae.b_enc.shape) == (2, 64) and tuple(sae.b_dec.shape) == (2, 16)
    else:
        assert tuple(sae.W_enc.shape) == (2, 16, 64) and sae.dead.tokens_since_fired.shape == (2, 64)

@pytest.mark.parametrize('arch,kw', VARIANTS, ids=IDS)
def test_save_load_round_trip(arch, kw, tmp_path):
    sae = build(arch, **kw)
    x, y = data(arch)
    quick_train(sae, x, steps=20, target=y)
    m = sae.metrics(x, y)
    sae.save(tmp_path / 'sae_3', metrics=m)
    assert sorted(p.name for p in (tmp_path / 'sae_3').iterdir()) == ['config.json', 'metrics.json', 'model.safetensors']
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]       # no temporary left behind
    sae2 = load_sae(tmp_path / 'sae_3')
    assert type(sae2) is type(sae) and sae2.cfg == sae.cfg and sae2.saved_metrics == json.loads(json.dumps(m))
    for (k, a), (k2, b) in zip(sae.state_dict().items(), sae2.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    sae.eval(); sae2.eval()
    assert torch.equal(sae2(x), sae(x)) and torch.equal(sae2.encode(x), sae.encode(x))
    sae.save(tmp_path / 'sae_3')      # overwriting works too
    assert load_sae(tmp_path / 'sae_3').saved_metrics == {}

def test_corrupt_or_mismatched_checkpoint(tmp_path):
    sae = build('topk', k=4)
    d = sae.save(tmp_path / 'sae_0')
    f, c = d / 'model.safetensors', d / 'config.json'
    good_w, good_c = f.read_bytes(), json.loads(c.read_text())
    for cut in (len(good_w) // 2, 5, len(good_w) - 3):
        f.write_bytes(good_w[:cut])
        with pytest.raises(ValueError, match='corrupt or truncated'): load_sae(d)
    f.write_bytes(good_w)
    c.write_text(json.dumps({**good_c, 'd_sae': 32}))
    with pytest.raises(ValueError, match=r'does not match config.json.*W_enc.*\(16, 64\).*\(16, 32\)'): load_sae(d)
    c.write_text(json.dumps({**good_c, 'd_in': 8, 'd_out': 8}))
    with pytest.raises(ValueError, match='does not match config.json'): load_sae(d)
    c.write_text(json.dumps({**good_c, 'arch': 'batchtopk'}))
    with pytest.raises(ValueError, match="missing tensors \\['threshold'\\]"): load_sae(d)
    c.write_text(json.dumps({**good_c, 'arch': 'nope'}))
    with pytest.raises(ValueError, match='unknown architecture.*topk'): load_sae(d)
    c.write_text(json.dumps({**good_c, 'colour': 'red'}))
    with pytest.raises(ValueError, match='colour'): load_sae(d)
    c.write_text(json.dumps({**good_c, 'k': 1000}))
    with pytest.raises(ValueError, match='config.json is invalid.*larger than the dictionary'): load_sae(d)
    c.write_text(json.dumps({k: v for k, v in good_c.items() if k != 'saenb_format'}))
    with pytest.raises(ValueError, match='saenb_format'): load_sae(d)
    c.write_text('{"arch": "topk", ')
    with pytest.raises(ValueError, match='not valid JSON'): load_sae(d)
    c.write_text(json.dumps(good_c))
    (d / 'metrics.json').write_text('{oops')
    with pytest.raises(ValueError, match='metrics.json is not valid JSON'): load_sae(d)
    (d / 'metrics.json').write_text('{}')
    sae.W_dec.data[0, 0] = float('nan'); sae.save(d)
    with pytest.raises(ValueError, match='non-finite'): load_sae(d)
    f.unlink()
    with pytest.raises(ValueError, match='not a known SAE directory'): load_sae(d)
    with pytest.raises(FileNotFoundError): load_sae(tmp_path / 'nothing')

@pytest.mark.parametrize('arch,kw', VARIANTS, ids=IDS)
def test_bf16_autocast(arch, kw):
    sae = build(arch, **kw)
    x, y = data(arch)
    sae.init_from_data(x[:256], None if y is None else y[:256])
    opt = torch.optim.Adam(sae.parameters(), lr=3e-3)
    first = None
    for step in range(60):
        i = torch.arange(step * 128, (step + 1) * 128) % 1024
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = sae.loss(x[i], None if y is None else y[i], step=step, total_steps=60)
        for k in ('loss', 'mse_loss', 'sparsity_loss', 'aux_loss', 'l0'):
            assert out[k].dtype == torch.float32 and torch.isfinite(out[k]), (k, out[k])
        opt.zero_grad(); out['loss'].backward(); opt.step(); sae.after_step(out, step)
        first = first if first is not None else out['mse_loss'].item()
    assert out['mse_loss'].item() < first
    for n, p in sae.named_parameters():
        assert p.dtype == torch.float32 and torch.isfinite(p).all(), n
    for n, b in sae.named_buffers():
        assert b.dtype in (torch.float32, torch.long, torch.bool), n
    with torch.autocast('cpu', dtype=torch.bfloat16):
        m = sae.metrics(x, y)
    assert math.isfinite(m['fvu']) and m['fvu'] < 1.0

@pytest.mark.parametrize('arch,kw', VARIANTS, ids=IDS)
def test_fold_input_scale(arch, kw):
    sae = build(arch, **kw)
    x, y = data(arch)
    quick_train(sae, x, steps=30, target=y)
    sae.eval()
    s = 3.0
    raw = x / s
    codes, recon = sae.encode(raw * s), sae(raw * s) / s
    sae.fold_input_scale(s)
    torch.testing.assert_close(sae.encode(raw), codes, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sae(raw), recon, rtol=1e-4, atol=1e-4)

def test_transcoder_fold_with_output_scale():
    sae = build('transcoder', **KW['transcoder'])
    quick_train(sae, X, target=Y, steps=30)
    codes, recon = sae.encode(X), sae(X)
    sae.fold_input_scale(2.0, output_scale=5.0)
    torch.testing.assert_close(sae.encode(X / 2), codes, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sae(X / 2), recon / 5, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match='output_scale must equal scale'): build('topk', k=4).fold_input_scale(2.0, 3.0)

@pytest.mark.parametrize('arch', [*SAE_REGISTRY, 'hc_fixed'])
def test_resample_dead_latents(arch):
    sae = build('hard_concrete', sparsity_coeff=0.02) if arch == 'hc_fixed' else build(arch, **KW[arch])
    arch = sae.arch
    x, y = data(arch)
    if not sae._latent_axes:   # stacked SAEs: resampling is not defined, AuxK-free TopK per layer instead
        with pytest.raises(NotImplementedError): resample_dead_latents(sae, x, None, torch.zeros(64, dtype=torch.bool))
        return
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    out = sae.loss(x[:128], None if y is None else y[:128]); out['loss'].backward(); opt.step()
    dead = torch.zeros(64, dtype=torch.bool); dead[[1, 5, 9]] = True
    sae.dead.tokens_since_fired[dead] = 10**6
    before = sae.W_dec.detach().clone()
    assert resample_dead_latents(sae, x, opt, sae.dead.dead_mask(10**5), target=y, generator=torch.Generator().manual_seed(0)) == 3
    assert not torch.equal(sae.W_dec[dead], before[dead]) and torch.equal(sae.W_dec[~dead], before[~dead])
    torch.testing.assert_close(sae.W_dec[dead].norm(dim=-1), torch.ones(3))
    assert opt.state[sae.W_dec]['exp_avg'][dead].abs().sum() == 0 and opt.state[sae.W_dec]['exp_avg'][~dead].abs().sum() > 0
    assert opt.state[sae.W_enc]['exp_avg_sq'][:, dead].abs().sum() == 0
    assert not sae.dead.dead_mask(10**5).any()
    if hasattr(sae, 'log_threshold'): torch.testing.assert_close(sae.threshold[dead], torch.full((3,), sae.cfg.init_threshold))
    if hasattr(sae, 'gate_logits'): assert (sae.gate_logits[dead] == sae.cfg.gate_init).all()
    out = sae.loss(x[:128], None if y is None else y[:128]); out['loss'].backward(); opt.step()   # still trains
    assert torch.isfinite(out['loss'])
    assert resample_dead_latents(sae, x, opt, torch.zeros(64, dtype=torch.bool), target=y) == 0

def test_dead_latent_tracker_and_after_step():
    t = DeadLatentTracker(3)
    t.update(torch.tensor([True, False, False]), 10); t.update(torch.tensor([False, False, True]), 5)
    assert t.tokens_since_fired.tolist() == [5, 15, 0] and t.dead_mask(10).tolist() == [False, True, False]
    sae = build('topk', k=4)
    out = sae.loss(X[:100]); sae.after_step(out, 0)
    assert (sae.dead.tokens_since_fired[out['fired']] == 0).all() and (sae.dead.tokens_since_fired[~out['fired']] == 100).all()

def test_controllers():
    assert [FixedCoeff(1.0, 4).coeff_at(s) for s in (0, 2, 4, 8)] == [0, 0.5, 1.0, 1.0]
    torch.testing.assert_close(TargetL0Quadratic(8, 3.0).penalty(None, torch.tensor(4.)), torch.tensor(0.75))
    da = DualAscent(10, alpha_lr=0.5, alpha_max=3.0, rho=2.0, ema=0.0)
    torch.testing.assert_close(da.penalty(None, torch.tensor(15.)), torch.tensor(0.5))  # alpha 0: rho*v^2
    da.update(12, 0); torch.testing.assert_close(da.alpha, torch.tensor(1.0))
    da.update(30, 1); torch.testing.assert_close(da.alpha, torch.tensor(3.0))           # clamped at alpha_max
    da.update(0, 2); torch.testing.assert_close(da.alpha, torch.tensor(0.0))            # clamped at 0
    assert da.alpha.dtype == da.l0_avg.dtype == torch.float32
    sae = build('relu', sparsity_coeff=2.0, sparsity_warmup=10)
    assert sae.loss(X[:64], step=0)['sparsity_loss'] == 0 and sae.loss(X[:64], step=10)['sparsity_loss'] > 0

def test_init_from_data_geometric_median():
    x = torch.cat([torch.randn(200, 16) * 0.1 + 1.0, torch.full((5, 16), 100.)])
    sae = build('topk', k=4)
    sae.init_from_data(x)
    assert (sae.b_dec - 1.0).abs().max() < 0.1                     # outliers do not drag it
    sae = build('topk', k=4, b_dec_init='mean'); sae.init_from_data(x)
    torch.testing.assert_close(sae.b_dec, x.mean(0))
    torch.testing.assert_close(geometric_median(torch.tensor([[0., 0.], [2., 0.], [1., 5.]]), 200), torch.tensor([1., 0.577]), atol=1e-2, rtol=0)

def test_bf16_threshold_comparisons_are_exact_fp32():
    from saenb.sae import _gt, _lt, _JumpReLUL0
    g = torch.Generator().manual_seed(0)
    c = torch.rand(4096, generator=g) * 2 - 1
    for z in (torch.randn(64, 4096, generator=g).bfloat16(), c.bfloat16().expand(3, -1)):
        assert torch.equal(_gt(z, c), z.float() > c) and torch.equal(_lt(z, c), z.float() < c)
    # the fused JumpReLU gives a bf16 input the same codes and gradients as its exact fp32 copy
    theta = (torch.rand(4096, generator=g) + 0.05).requires_grad_()
    z = torch.randn(64, 4096, generator=g).bfloat16()
    w = torch.randn(64, 4096, generator=g)
    outs = []
    for zz in (z, z.float()):
        zz = zz.clone().requires_grad_()
        codes, n, fired = _JumpReLUL0.apply(zz, theta, 0.05)
        gz, gth = torch.autograd.grad((codes.float() * w).sum() + 0.3 * n / 64, (zz, theta))
        outs.append((codes.float(), n, fired, gz.float(), gth))
    for a, b in zip(outs[0][:4], outs[1][:4]): torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2)
    assert (outs[0][4] - outs[1][4]).norm() < 1e-2 * outs[1][4].norm()   # theta's grad: bf16 rounding of the incoming grads only
    assert torch.equal(outs[0][0] != 0, outs[1][0] != 0)

def test_batch_topk_selection_is_exact():
    sae = build('batchtopk', k=3)
    x = torch.randn(300, 16)
    x[:4] *= 30                      # a few tokens that take far more than 2k latents each
    xc = sae.center(x)
    pre = F.relu(sae.pre_acts(x))
    idx, vals, rows = sae.choose(pre, 3)
    want = torch.zeros_like(pre).reshape(-1)
    want[pre.reshape(-1).topk(3 * 300)[1]] = 1
    got = torch.zeros_like(pre).reshape(-1).index_add(0, (idx + rows[:, None] * pre.shape[1]).reshape(-1), (vals != 0).float().reshape(-1))
    assert torch.equal(got, want) and got.view_as(pre)[:4].sum(-1).max() > 6   # exact, with tokens far beyond their 2k candidates
    assert (rows[:, None] == torch.arange(4)).sum(0).min() > 1 and (vals != 0).sum() == 3 * 300   # ... in extra rows; every entry kept is selected

def test_transcoder_init_without_target_warns():
    sae = build('transcoder', **KW['transcoder'])
    with pytest.warns(UserWarning, match='pass target=y'): sae.init_from_data(X[:64])
    assert sae.b_dec.abs().sum() == 0
    sae.init_from_data(X[:64], Y[:64])
    assert sae.b_dec.abs().sum() > 0

@pytest.mark.parametrize('arch', ['topk', 'batchtopk'])
def test_sparse_training_path_matches_dense_reference(arch):
    "The O(k) encode/decode path gives the same loss and gradients as the dense textbook computation."
    sae = build(arch, k=4, seed=1)
    sae.init_from_data(X[:256])
    x = X[:200] + 0.01 * torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    out = sae.loss(x)
    grads = torch.autograd.grad(out['loss'], [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec])
    pre = F.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    if arch == 'topk': keep = torch.zeros_like(pre).scatter(1, pre.topk(4).indices, 1.)
    else: keep = torch.zeros_like(pre).reshape(-1).index_fill(0, pre.reshape(-1).topk(4 * 200).indices, 1.).reshape(pre.shape)
    loss = ((pre * keep) @ sae.W_dec + sae.b_dec - x).pow(2).sum(-1).mean()
    torch.testing.assert_close(out['loss'], loss, rtol=1e-5, atol=1e-5)
    for g, g2 in zip(grads, torch.autograd.grad(loss, [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec])):
        torch.testing.assert_close(g, g2, rtol=1e-4, atol=1e-5)
