"saenb's compiled CPU kernels: they build where a C compiler exists, agree with PyTorch, and training without them gives the same SAE."
import contextlib, json, os, platform, shutil, subprocess, sys
import pytest
import torch
import torch.nn.functional as F
from saenb.kernels import load_kernels, gather_dot, scatter_mm, fast_topk, nonzeros_per_latent, sparse_encode
from saenb.sae import make_sae

EVERY_BUILD = [None, ['-mavx2', '-mfma', '-fopenmp'], ['-fopenmp']]   # this machine's flags, AVX2, plain C
HAS_CC = any(shutil.which(c) for c in ('cc', 'gcc', 'clang'))
needs_kernels = pytest.mark.skipif(load_kernels() is None, reason="saenb's kernels are not built here (no C compiler)")

@contextlib.contextmanager
def kernels_built_with(flags, monkeypatch, tmp_path, threads=None):
    """`saenb.kernels` with its kernels built by `flags` (None: this machine's) into `tmp_path`, on `threads` torch
    threads; skips where they do not build. Afterwards the next test builds (or finds) them with this machine's
    flags."""
    import saenb.kernels as K
    if flags is not None:
        if flags[0] == '-mavx2' and platform.machine() not in ('x86_64', 'AMD64'): pytest.skip('AVX2 is x86 only')
        monkeypatch.setenv('SAENB_KERNEL_DIR', str(tmp_path)); monkeypatch.setattr(K, '_C_FLAGS', (flags,))
    K.load_kernels.cache_clear()
    n = torch.get_num_threads()
    if threads: torch.set_num_threads(threads)
    try:
        if K.load_kernels() is None: pytest.skip(f'the kernels do not build with {flags}')
        yield K
    finally:
        torch.set_num_threads(n); K.load_kernels.cache_clear()

def assert_kernel_matches_torch(K, fn, args, params, monkeypatch, atol=1e-3, **kw):
    "`fn(*args, **kw)` with the kernel and with PyTorch (`_cpu_kernel` off): the same outputs and `params`' gradients."
    got = fn(*args, **kw)
    with monkeypatch.context() as m:
        m.setattr(K, '_cpu_kernel', lambda *a: None); want = fn(*args, **kw)
    for a, b in zip(got, want): torch.testing.assert_close(a, b, rtol=1e-4, atol=atol * float(b.detach().abs().max()))
    for a, b in zip(torch.autograd.grad(got[0], params), torch.autograd.grad(want[0], params)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))

def test_kernels_build_where_a_compiler_exists():
    if not HAS_CC: pytest.skip('no C compiler on PATH')
    assert load_kernels() is not None, "a C compiler is on PATH but saenb's kernels did not build: see compile_c"

@needs_kernels
@pytest.mark.parametrize('N,S,D,k', [(1, 7, 3, 1), (300, 2048, 256, 32), (513, 1000, 37, 9), (64, 64, 16, 64)])
def test_sparse_kernels_match_torch(N, S, D, k):
    g = torch.Generator().manual_seed(N)
    W, A = torch.randn(S, D, generator=g), torch.randn(N, D, generator=g)
    idx = torch.stack([torch.randperm(S, generator=g)[:k] for _ in range(N)])
    idx[0, :] = idx[0, 0]  # repeated latents in a row add up
    vals = torch.randn(N, k, generator=g)
    torch.testing.assert_close(gather_dot(A, W, idx), torch.einsum('nd,nkd->nk', A, W[idx]), rtol=1e-5, atol=1e-4)
    want = torch.zeros(S, D).index_add_(0, idx.reshape(-1), (vals[..., None] * A[:, None]).reshape(-1, D))
    torch.testing.assert_close(scatter_mm(idx, vals, A, S), want, rtol=1e-5, atol=1e-4)

@needs_kernels
def test_topk_kernel_on_training_shapes():
    g = torch.Generator().manual_seed(0)
    pre = torch.randn(4096, 2048, generator=g).bfloat16()
    v, i = fast_topk(pre, 32)
    rv, _ = pre.topk(32, dim=-1)
    assert torch.equal(v.float().sort(-1, descending=True)[0], rv.float()) and torch.equal(pre.gather(-1, i), v)

@pytest.mark.skipif(not HAS_CC, reason='no C compiler on PATH')
@pytest.mark.parametrize('flags', [['-mavx2', '-mfma', '-fopenmp'], ['-fopenmp']], ids=['avx2', 'plain'])
def test_selection_agrees_with_torch_on_every_instruction_set(flags, monkeypatch, tmp_path):
    "The selection kernels built for AVX2 and for plain C, paths a CPU with AVX-512 never runs, agree with PyTorch."
    with kernels_built_with(flags, monkeypatch, tmp_path) as K:
        g = torch.Generator().manual_seed(0)
        for S in (7, 37, 300, 1000):
            for shift in (-2.0, 0.5):   # few positive values a row, and many
                x = torch.randn(64, S, generator=g) + shift
                cols = torch.randperm(S, generator=g)[:max(1, S // 2)]
                for k in (1, 5, 16, 24, 33, 64):
                    for got, want in zip(K.topk_positive(x, k, cols), K._topk_positive_torch(x, k, cols)):
                        assert torch.equal(got, want), (S, k)
                    if k > S: continue
                    for xd in (x, x.bfloat16()):
                        v, i = K.fast_topk(xd, k)
                        assert torch.equal(v.float().sort(-1).values, xd.float().topk(k, -1).values.sort(-1).values)
                        assert torch.equal(xd.gather(-1, i), v), (S, k, xd.dtype)

@pytest.mark.skipif(not HAS_CC, reason='no C compiler on PATH')
@pytest.mark.parametrize('flags', EVERY_BUILD, ids=['native', 'avx2', 'plain'])
def test_sparse_sq_error_kernel_matches_torch(flags, monkeypatch, tmp_path):
    """`sparse_sq_error`'s kernel (on two threads: its token and latent passes) against its PyTorch version: widths with
    and without a remainder of 64 columns, one group and nested prefixes, packed rows with tokens that have none."""
    with kernels_built_with(flags, monkeypatch, tmp_path, threads=2) as K:
        g = torch.Generator().manual_seed(0)
        for N, d, S, k, packed, bounds, relu in ((700, 128, 512, 8, False, [512], True),
                                                 (600, 70, 256, 12, True, [32, 64, 128, 256], True),
                                                 (500, 200, 300, 5, True, [300], False)):
            We = torch.randn(d, S, generator=g, requires_grad=True)
            Wd = torch.randn(S, d, generator=g, requires_grad=True)
            be, bd = torch.randn(S, generator=g, requires_grad=True), torch.randn(d, generator=g, requires_grad=True)
            x = torch.randn(N, d, generator=g)
            idx = torch.stack([torch.randperm(S, generator=g)[:k] for _ in range(N)])
            rows = torch.randint(0, N, (N,), generator=g).sort().values if packed else None
            keep, w = torch.rand(idx.shape, generator=g) > 0.2, torch.rand(len(bounds), generator=g)
            args = (x - bd.detach(), We, be, Wd, x, idx, rows, bd, bd, keep, relu, torch.tensor(bounds), w)
            assert_kernel_matches_torch(K, K.sparse_sq_error, args, (We, be, Wd, bd), monkeypatch)
        # an ensemble's members: 3 blocks of tokens, each with its own output bias, weights and centre
        M, B, d, S, k = 3, 400, 72, 96, 6
        We = torch.randn(d, M * S, generator=g, requires_grad=True)
        Wd = torch.randn(M * S, d, generator=g, requires_grad=True)
        be, bd = torch.randn(M * S, generator=g, requires_grad=True), torch.randn(M, d, generator=g, requires_grad=True)
        x, member = torch.randn(B, d, generator=g), torch.arange(M).repeat_interleave(S)
        idx = torch.cat([torch.stack([torch.randperm(S, generator=g)[:k] + i * S for _ in range(B)]) for i in range(M)])
        xs = (x[None] - bd.detach()[:, None]).reshape(M * B, d)
        args = (xs, We, be, Wd, x.repeat(M, 1), idx)
        kw = dict(b_out=bd, centre=bd, weights=torch.rand(M, 1, generator=g), blocks=M, centre_of=member)
        assert_kernel_matches_torch(K, K.sparse_sq_error, args, (We, be, Wd, bd), monkeypatch, **kw)
        # members of k 2, 4 and 12 in rows of 2 entries, as `_TopKStack` packs them: most entries in the last block,
        # where the threads' split by entries (not by tokens and latents) falls
        ks = (2, 4, 12)
        idx = torch.cat([torch.stack([torch.randperm(S, generator=g)[:kk] + i * S for _ in range(B)]).view(-1, 2)
                         for i, kk in enumerate(ks)])
        rows = torch.cat([(i * B + torch.arange(B)).repeat_interleave(kk // 2) for i, kk in enumerate(ks)])
        args = (xs, We, be, Wd, x.repeat(M, 1), idx, rows)
        assert_kernel_matches_torch(K, K.sparse_sq_error, args, (We, be, Wd, bd), monkeypatch, **kw)
        # AuxK's call: its codes given (some at or below 0, which the ReLU drops), its target read negated, and each
        # latent's nonzero codes counted, on two threads
        N, d, S, E = 900, 64, 256, 2700
        We, Wd = torch.randn(d, S, generator=g, requires_grad=True), torch.randn(S, d, generator=g, requires_grad=True)
        be, x, y = torch.randn(S, generator=g, requires_grad=True), torch.randn(N, d, generator=g), torch.randn(N, d)
        idx, rows = torch.randint(0, S, (E, 1), generator=g), torch.randint(0, N, (E,), generator=g).sort().values
        kw = dict(codes=torch.rand(E, 1, generator=g) - 0.1, neg_y=True)
        args = (x, We, be, Wd, y, idx, rows)
        assert_kernel_matches_torch(K, K.sparse_sq_error, args, (We, be, Wd), monkeypatch, **kw)
        counts = [torch.full((S,), -1, dtype=torch.int32) for _ in range(2)]
        K.sparse_sq_error(*args, counts=counts[0], **kw)
        with monkeypatch.context() as m:
            m.setattr(K, '_cpu_kernel', lambda *a: None); K.sparse_sq_error(*args, counts=counts[1], **kw)
        assert torch.equal(counts[0], counts[1]) and int(counts[0].sum()) == int((kw['codes'] > 0).sum())
        # no entries at all (AuxK where no dead latent's pre-activation is positive): empty rows reach the kernel as
        # NULL, and the loss is the whole error
        loss = K.sparse_sq_error(x, We, be, Wd, y, idx[:0], rows[:0], codes=kw['codes'][:0], neg_y=True)[0]
        torch.testing.assert_close(loss, y.pow(2).sum() / N)

@pytest.mark.skipif(not HAS_CC, reason='no C compiler on PATH')
@pytest.mark.parametrize('flags', EVERY_BUILD, ids=['native', 'avx2', 'plain'])
def test_gated_sq_error_kernel_matches_torch(flags, monkeypatch, tmp_path):
    """`gated_sq_error`'s kernel (two threads) against its PyTorch version, two `sparse_sq_error` passes: output widths
    with and without a remainder of 64 columns (its two decodes at once), a token with no open gate, an odd number of
    open gates a token (its dot products two rows at once), the auxiliary decoder frozen and trained."""
    with kernels_built_with(flags, monkeypatch, tmp_path, threads=2) as K:
        g = torch.Generator().manual_seed(0)
        for N, d, S, aux in ((300, 128, 256, True), (257, 72, 100, False), (200, 200, 300, True)):
            W_enc, W_dec = torch.randn(d, S, generator=g) / d ** 0.5, torch.randn(S, d, generator=g) / d ** 0.5
            b_gate, b_mag, r_mag = (torch.randn(S, generator=g) * 0.1 for _ in range(3))
            b_dec, x = torch.randn(d, generator=g) * 0.1, torch.randn(N, d, generator=g)
            ps = [t.requires_grad_() for t in (W_enc, b_gate, b_mag, r_mag, W_dec, b_dec)]
            xc = x - b_dec.detach()
            open_ = (xc @ W_enc.detach() + b_gate.detach() > 0); open_[5] = False   # token 5: no open gate
            rows, idx = open_.nonzero(as_tuple=True)
            w = torch.tensor([1.0, 0.5, 0.01]) / N
            args = (xc, W_enc, b_gate, b_mag, r_mag, W_dec, b_dec, x, idx, rows, w, True, aux)
            assert_kernel_matches_torch(K, K.gated_sq_error, args, ps, monkeypatch, atol=1e-4)

@pytest.mark.skipif(not HAS_CC, reason='no C compiler on PATH')
@pytest.mark.parametrize('flags', EVERY_BUILD, ids=['native', 'avx2', 'plain'])
def test_clip_grads_kernel_matches_torch(flags, monkeypatch, tmp_path):
    """`clip_grads_`'s kernel on two threads (each its own sums, then one scaling) against its PyTorch version: an SAE's
    gradients (W_enc stored transposed, the decoder's projected off its rows) and an ensemble's, clipped by member."""
    with kernels_built_with(flags, monkeypatch, tmp_path, threads=2) as K:
        g = torch.Generator().manual_seed(0)
        Wd = torch.randn(1024, 72, generator=g); Wd /= Wd.norm(dim=-1, keepdim=True)
        member = torch.arange(4).repeat_interleave(256)
        cases = [([torch.randn(1024, 72, generator=g).t().contiguous().t(), torch.randn(1024, generator=g),
                   torch.randn(1024, 72, generator=g), torch.randn(72, generator=g)], None, 1),
                 ([torch.randn(1024, 72, generator=g), torch.randn(1024, generator=g),
                   torch.randn(1024, 72, generator=g), torch.randn(4, 72, generator=g)],
                  [member, member, member, torch.arange(4)], 4)]
        for grads, groups, G in cases:
            grads[1][7] *= 50   # one group far above the others
            for mx in (0.0, 5.0, 1e9):
                got, want = [t.clone(memory_format=torch.preserve_format) for t in grads], [t.clone() for t in grads]
                n_want = K._clip_grads_torch(want, mx, groups or [0] * 4, G, (2, Wd))
                with monkeypatch.context() as m:   # the compiled path, not PyTorch's
                    m.setattr(K, '_clip_grads_torch', None); n_got = K.clip_grads_(got, mx, groups, G, dec=(2, Wd))
                torch.testing.assert_close(n_got, n_want, rtol=1e-5, atol=0)
                for a, b in zip(got, want): torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
                if mx == 5.0: assert (n_want > 5.0).any()   # clipping that bites

@needs_kernels
@pytest.mark.parametrize('threads', [1, 2])
def test_nonzero_counts_match_torch(threads):
    n = torch.get_num_threads(); torch.set_num_threads(threads)
    try:
        z = torch.randn(4096, 2048, generator=torch.Generator().manual_seed(threads)).relu()
        z[z < 1.5] = 0; z[:, 11] = 0
        for dt in (torch.float32, torch.bfloat16): assert torch.equal(nonzeros_per_latent(z.to(dt)), (z != 0).sum(0))
    finally: torch.set_num_threads(n)

def test_bad_latent_indices_fail_clearly():
    W = torch.randn(16, 64)
    for bad in (64, -1):
        idx = torch.zeros(4, 2, dtype=torch.long); idx[1, 1] = bad
        with pytest.raises(ValueError, match=r'latent indices must lie in \[0, 64\)'): sparse_encode(torch.randn(4, 16), W, idx)

@needs_kernels
def test_packed_codes_cost_what_is_chosen():
    "BatchTopK on a batch where a few tokens take most latents: packed rows hold about k*N entries, not N times the widest token."
    sae = make_sae('batchtopk', d_in=16, d_sae=256, k=4)
    x = torch.randn(512, 16); x[:3] *= 40
    with torch.no_grad(): idx, vals, rows = sae.choose(F.relu(sae.pre_acts(x)), 4)
    assert (vals != 0).sum() == 4 * 512 and idx.shape[1] == 4 and idx.numel() < 2 * 4 * 512
    assert (rows[:, None] == torch.arange(3)).sum(0).min() > 10   # the three big tokens take many rows each

TRAIN = """
import json, sys, torch
from saenb.sae import make_sae, synthetic_sparse_data, quick_train
from saenb.kernels import load_kernels
torch.manual_seed(0)
x = synthetic_sparse_data(2048, 16, 32, seed=0)
out = {}
for arch, kw in (('topk', dict(k=4)), ('batchtopk', dict(k=4, threshold_beta=0.9)), ('matryoshka', dict(k=4, prefixes=[8, 32, 64]))):
    sae = make_sae(arch, d_in=16, d_sae=64, **kw)
    quick_train(sae, x, steps=60)
    out[arch] = {'fvu': sae.metrics(x)['fvu'], 'W_dec': sae.W_dec.flatten()[:200].tolist()}
print(json.dumps({'kernels': load_kernels() is not None, **out}))
"""

@needs_kernels
def test_training_without_kernels_gives_the_same_sae():
    "SAENB_NO_KERNELS=1 takes PyTorch's paths everywhere; the SAEs trained either way agree to float tolerance."
    runs = {}
    for off in ('0', '1'):
        r = subprocess.run([sys.executable, '-c', TRAIN], capture_output=True, text=True, env={**os.environ, 'SAENB_NO_KERNELS': off})
        assert r.returncode == 0, r.stderr[-2000:]
        runs[off] = json.loads(r.stdout.splitlines()[-1])
    assert runs['0']['kernels'] and not runs['1']['kernels']
    for arch in ('topk', 'batchtopk', 'matryoshka'):
        a, b = runs['0'][arch], runs['1'][arch]
        assert abs(a['fvu'] - b['fvu']) < 1e-3, (arch, a['fvu'], b['fvu'])
        assert max(abs(u - v) for u, v in zip(a['W_dec'], b['W_dec'])) < 1e-3, arch

def test_pytorch_path_of_sparse_sq_error_takes_an_empty_batch():
    "PyTorch's path of `sparse_sq_error` (GPUs, no C compiler, inputs needing a gradient) takes an empty batch."
    from saenb.kernels import sparse_sq_error
    We, Wd = torch.randn(16, 64), torch.randn(64, 16, requires_grad=True)
    x = torch.randn(0, 16, requires_grad=True)   # inputs that need a gradient take PyTorch's path
    loss, err, vals, sq = sparse_sq_error(x, We, None, Wd, x, torch.zeros(0, 4, dtype=torch.long))
    assert loss.item() == 0 and err.shape == (0, 16) and vals.shape == (0, 4)
    loss.backward()
    assert Wd.grad is not None and float(Wd.grad.abs().sum()) == 0

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gather_dot_on_gpu_is_fp32_under_autocast():
    "On a GPU `gather_dot` (`sparse_encode`'s codes) is the PyTorch product: in fp32 under bf16 autocast, as the kernel."
    g = torch.Generator().manual_seed(0)
    A, W = torch.randn(512, 64, generator=g).cuda(), torch.randn(300, 64, generator=g).cuda()
    idx = torch.randint(0, 300, (512, 8), generator=g).cuda()
    want = (A.double()[:, None] * W.double()[idx]).sum(-1)
    with torch.autocast('cuda', dtype=torch.bfloat16): got = gather_dot(A, W, idx)
    assert got.dtype == torch.float32 and (got.double() - want).abs().max() < 1e-4
