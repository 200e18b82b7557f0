"""Benchmark: saenb's CPU kernels on what a training step hands them, each against the same call with the kernels off.

Trains a TopK SAE as `saenb_train_sae` does (bf16 autocast where training picks it) on `--acts` (a cached store, e.g.
the default pipeline's Dyck `0_residpost`; default: `bench_ensemble.py`'s synthetic sparse activations, `--d_in`
wide) for `--n_tokens` tokens in batches of `--batch`, then takes a fresh batch and that SAE, as its last steps saw it
(its dead latents too), and times the pieces of a step and of a log step on them:
- `topk`: the step's selection of each token's k latents (`TopKSAE.choose`: `fast_topk`);
- `auxk_selection`: AuxK's entries, each token's top positive pre-activations among the dead latents (`topk_positive`);
- `selection_fused`: the two selections in one pass over the pre-activations (`topk_blocks` with one block and its
  `aux`, as `TopKSAE.choose_with_auxk` makes it) against the two calls apart;
- `sparse_pass`: the step's squared error, codes and gradients in one pass (`sparse_sq_error`), backward included;
- `auxk_pass`: AuxK's pass over its entries against that pass's residual (`sparse_sq_error`), backward included;
- `sparse_pass_with_auxk`: the two in one call (`sparse_sq_error`'s `aux`), as a TopK step makes it; its reference
  without the kernels is the two calls in PyTorch, and `auxk_fused` times it against the two kernel calls apart;
- `reconstruct`: a log step's reconstruction from entries (`SAE.reconstruct`); its reference is `sae(x)`, which decodes
  a dense matrix of codes;
- `encoder_product`: the step's pre-activations (`SAE.centred_pre`: `encoder_product`, the bias a column of the
  product) against `F.linear`, which copies the bias into the output first, and whether the two are equal;
- `pre_activations`: a dense encoder's forward, centring included (`pre_activations(x, W_enc, b_enc, b_dec)`, as
  ReLU's, JumpReLU's and Gated's dense steps call it: the centred inputs written into the product's operand, the
  bias a column) against `addmm` of `(x - b_dec)` in the autocast dtype, and whether the two are equal;
- `relu_columns`, `relu_grad`: a ReLU SAE's dense step's passes over its codes (`relu_codes`), on this batch's
  pre-activations in the autocast dtype: the ReLU in place with the codes' column sums and counts, and the gradient
  (the L1's added, ReLU's mask, its column sums).
The reference of the others is the same call with saenb's compiled kernels off: their PyTorch fallbacks (what runs
without a C compiler, or with SAENB_NO_KERNELS=1), and `agree` says whether the two give the same top-k values and
AuxK entries, and how far apart their sparse-pass losses are. With `--ensemble`, also the top-k of an 8-member ensemble
(`bench_ensemble.py`'s headline sweep: 1,024 tokens of 64 dimensions, 512 latents a member, k from 4 to 32, each member
trained as part of the stack), all eight members' calls of a step together, the stack's one call for them all
(`one_call`: `topk_blocks` against a `fast_topk` call a member and the offsets added after, as the stack did before, and
whether the two give the same entries), and the stack's batched encoder product (`encoder_product` against
`baddbmm`).
Kernel and reference alternate in `--rounds` rounds of `--reps` calls each, and the median round is kept, so that a busy
machine slows both alike. Prints ONE JSON line: milliseconds per call of each, and the reference's over the kernel's.

    OMP_NUM_THREADS=2 python benchmarks/bench_kernels.py [--acts runs/dyck/acts/0_residpost] [--ensemble]
"""
import argparse, contextlib, itertools, statistics, sys, time
from pathlib import Path
import numpy as np, torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, emit, training_precision
from bench_ensemble import SAME_WIDTH, sparse_acts


@contextlib.contextmanager
def kernels_as(fns:dict|None):
    "saenb's functions on kernels `fns` (`saenb.kernels.kernels_of` of some source; None: their PyTorch fallbacks)."
    import saenb.kernels as K
    load = K.load_kernels
    K.load_kernels = lambda: fns
    try: yield
    finally: K.load_kernels = load


def kernels_off():
    "saenb's compiled kernels off: each function takes its PyTorch fallback, as without a C compiler."
    return kernels_as(None)


def timed(fn, ref, rounds:int, reps:int) -> dict:
    "Median milliseconds per call of `fn` and of `ref` (None: not timed), alternating round by round."
    t = {'kernel': [], 'reference': []}
    fn(); ref is not None and ref()   # warm: the kernels compiled, buffers allocated
    for _ in range(rounds):
        for name, f in (('kernel', fn), ('reference', ref)):
            if f is None: continue
            t0 = time.perf_counter()
            for _ in range(reps): f()
            t[name].append(1000 * (time.perf_counter() - t0) / reps)
    ms = {k: round(statistics.median(v), 3) for k, v in t.items() if v}
    if 'reference' in ms: ms['speedup'] = round(ms['reference'] / ms['kernel'], 2)
    return ms


def fused_vs_apart(fused, apart, rounds:int, reps:int) -> dict:
    "`timed` of one call doing two steps' work against the two calls apart, with the kernels on both ways."
    return {k.replace('kernel', 'fused').replace('reference', 'apart'): v
            for k, v in timed(fused, apart, rounds, reps).items()}


def ours_vs_torch(name:str, ours, ref, amp:dict, rounds:int, reps:int) -> dict:
    "`timed` of `ours` (under `name`) against PyTorch's `ref`, both without gradient under `amp`, and equal?"
    def run(f):
        def g():
            with torch.no_grad(), torch.autocast(**amp): return f()
        return g
    t = timed(run(ours), run(ref), rounds, reps)
    return {name: t['kernel'], 'torch': t['reference'], 'speedup': t['speedup'],
            'equal': bool(torch.equal(run(ours)(), run(ref)()))}


def product_vs_torch(x:torch.Tensor, W:torch.Tensor, b:torch.Tensor, amp:dict, rounds:int, reps:int) -> dict:
    "`encoder_product` against `F.linear` (`x [N, d]`) or `baddbmm` (`x [M, N, d]`), both under `amp`, and equal?"
    from saenb.kernels import encoder_product
    ref = (lambda: F.linear(x, W, b)) if x.ndim == 2 else (lambda: torch.baddbmm(b[:, None], x, W.transpose(1, 2)))
    return ours_vs_torch('encoder_product', lambda: encoder_product(x, W, b), ref, amp, rounds, reps)


def preact_vs_addmm(sae, x:torch.Tensor, amp:dict, rounds:int, reps:int) -> dict:
    "`pre_activations` of batch `x` (centring included) against `addmm` of `(x - b_dec)`, both under `amp`, and equal?"
    from saenb.kernels import pre_activations
    dt = amp['dtype'] if amp['enabled'] else torch.float32
    W, b, c = sae.W_enc, sae.b_enc, sae.b_dec
    return ours_vs_torch('pre_activations', lambda: pre_activations(x, W, b, c),
                         lambda: torch.addmm(b.to(dt), (x - c).to(dt), W.to(dt)), amp, rounds, reps)


def relu_passes(sae, x:torch.Tensor, amp:dict, rounds:int, reps:int) -> dict:
    "`relu_columns` and `relu_grad` on the pre-activations of batch `x`, each against its PyTorch fallback."
    from saenb.kernels import pre_activations, relu_columns, relu_grad
    with torch.no_grad(), torch.autocast(**amp): z = pre_activations(x, sae.W_enc, sae.b_enc, sae.b_dec)
    g = torch.randn(z.shape, generator=torch.Generator().manual_seed(0)).to(z.dtype)
    add = torch.full((z.shape[1],), 1e-3)
    def both(f):
        def ref():
            with kernels_off(): return f()
        return timed(f, ref, rounds, reps)
    res = {'relu_columns': both(lambda: relu_columns(z)), 'relu_grad': both(lambda: relu_grad(g, z, add))}
    gp, gs = relu_grad(g, z, add)
    with kernels_off(): rgp, rgs = relu_grad(g, z, add)
    res['agree'] = bool(torch.equal(gp, rgp)), float((gs - rgs).abs().max() / rgs.abs().max())
    return res


def step_pieces(sae, x:torch.Tensor, amp:dict, rounds:int, reps:int) -> dict:
    "Time a TopK step's kernels on batch `x` of `sae`, each called as `TopKSAE.loss` calls it (AuxK also apart)."
    from saenb.kernels import sparse_sq_error
    c, xc = sae.cfg, sae.centred(x)   # the step's centred inputs, without gradient
    with torch.no_grad(), torch.autocast(**amp): pre = sae.centred_pre(xc)   # bf16 where training autocasts
    idx, chosen, rows = sae.choose(pre, c.k)
    def main_pass(aux=None):   # `aux`: AuxK's entries in the same pass, as `TopKSAE.loss` passes them
        cnt = torch.empty(c.d_sae, dtype=torch.int32)
        with torch.autocast(**amp):
            out = sparse_sq_error(xc, sae.W_enc, sae.b_enc, sae.W_dec, sae._target(x, x, xc), idx, rows, sae.b_dec,
                                  sae._centre(xc), None, sae.relu_codes, codes=chosen, counts=cnt, aux=aux)
        sum(out[::4]).backward(); sae.zero_grad(set_to_none=True)   # the loss, and AuxK's
        return [t.detach() for t in out]
    def both(f):   # kernel, reference
        def ref():
            with kernels_off(): return f()
        return timed(f, ref, rounds, reps)
    res = {'topk': both(lambda: sae.choose(pre, c.k)), 'sparse_pass': both(main_pass),
           'encoder_product': product_vs_torch(xc, sae.W_enc.t(), sae.b_enc, amp, rounds, reps),
           'pre_activations': preact_vs_addmm(sae, x, amp, rounds, reps),
           'relu': relu_passes(sae, x, amp, rounds, reps)}
    loss, err, _, sq = main_pass()
    with kernels_off():   # the reference gives the same: top-k values, and the loss to float rounding
        ref_chosen, (ref_loss, *_) = sae.choose(pre, c.k)[1], main_pass()
    res['agree'] = {'topk_values': bool(torch.equal(chosen.sort(1).values, ref_chosen.sort(1).values)),
                    'sparse_pass_loss_rel_diff': float((loss - ref_loss).abs() / ref_loss.abs())}
    dead = sae.auxk_latents()
    res['dead_latents'] = 0 if dead is None else len(dead[0])
    if dead is not None:   # AuxK: its entries, then its pass apart, against the main pass's residual (-err)
        aidx, avals, arows = sae.auxk_entries(pre, dead)
        with kernels_off(): ref = sae.auxk_entries(pre, dead)
        res['agree']['auxk_entries'] = all(torch.equal(a, b) for a, b in zip((aidx, avals, arows), ref))
        n = c.aux_rows(len(err))   # AuxK's tokens: the first n (`aux_tokens`)
        w = c.aux_weight(err, sq[-1])
        def aux_pass():
            with torch.autocast(**amp):
                loss = sparse_sq_error(xc[:n], sae.W_enc, sae.b_enc, sae.W_dec, err[:n], aidx, arows,
                                       centre=sae._centre(xc), weights=w, codes=avals, neg_y=True)[0]
            loss.backward(); sae.zero_grad(set_to_none=True)
            return loss.detach()
        aux = sae.auxk_args(pre)   # the same entries, with AuxK's weight
        fused = lambda: main_pass(aux)
        apart_sel = lambda: (sae.choose(pre, c.k), sae.auxk_entries(pre, dead))
        res['selection_fused'] = fused_vs_apart(lambda: sae.auxk_entries(pre, dead, top=c.k), apart_sel, rounds, reps)
        res.update(auxk_selection=both(lambda: sae.auxk_entries(pre, dead)), auxk_pass=both(aux_pass),
                   sparse_pass_with_auxk=both(fused),
                   auxk_fused=fused_vs_apart(fused, lambda: (main_pass(), aux_pass()), rounds, reps),
                   auxk_entries_per_token=round(len(aidx) / len(x), 2))
        apart = aux_pass()
        res['agree']['auxk_fused_loss_rel_diff'] = float((fused()[4] - apart).abs() / apart.abs())
    def log_step(f):
        def g():
            with torch.no_grad(), torch.autocast(**amp): return f(x)
        return g
    res['reconstruct'] = timed(log_step(lambda v: sae.reconstruct(v)[0]), log_step(sae), rounds, reps)
    return res


def ensemble_topk(amp:dict, rounds:int, reps:int, tmp:Path) -> dict:
    "Time the eight members' top-k of a step of `bench_ensemble.py`'s headline sweep, trained as one stack."
    from saenb.ensemble import train_ensemble
    from saenb.kernels import fast_topk, topk_blocks
    d, B = 64, 1024
    acts = tmp/'ens_acts.npy'
    np.save(acts, sparse_acts(100_000, d, 8 * d, 16 / (8 * d)))
    runs = train_ensemble(acts, grid=SAME_WIDTH, arch='topk', n_tokens=150 * B, batch_size=B, lr=1e-3, seed=0,
                          val_rows=4096, val_every=150, progress=False)
    x = torch.from_numpy(np.load(acts)[-B:])
    pres = []
    for r in runs.values():
        with torch.no_grad(), torch.autocast(**amp): pres.append((r.sae, r.sae.centred_pre(r.sae.centred(x))))
    def all_members():
        for s, p in pres: s.choose(p, s.cfg.k)
    def ref():
        with kernels_off(): all_members()
    saes = [s for s, _ in pres]   # the stack's product: each member's centred inputs by its encoder, side by side
    xc, W, b = (torch.stack(t) for t in zip(*((s.centred(x), s.W_enc.t(), s.b_enc) for s in saes)))
    P, ks = torch.stack([p for _, p in pres]), [s.cfg.k for s in saes]   # the stack's one list of entries
    base, at = [i * s.cfg.d_sae for i, s in enumerate(saes)], [B * a for a in itertools.accumulate([0, *ks])]
    out = [tuple(torch.empty(at[-1], dtype=t) for t in (P.dtype, torch.int64)) for _ in range(2)]
    def one_call(): topk_blocks(P, ks, out[0], base)
    def a_call_each():
        v, i = out[1]
        for j, k in enumerate(ks):
            fast_topk(P[j], k, out=(v[at[j]:at[j + 1]].view(B, k), i[at[j]:at[j + 1]].view(B, k)))
        for j, k in enumerate(ks): i[at[j]:at[j + 1]].add_(base[j])
    one = fused_vs_apart(one_call, a_call_each, rounds, reps)
    one['same'] = all(torch.equal(u, w) for u, w in zip(*out))
    return {'members': len(pres), 'tokens': B, 'd_sae': pres[0][0].cfg.d_sae,
            'k': sorted(ks), **timed(all_members, ref, rounds, reps), 'one_call': one,
            'encoder_product': product_vs_torch(xc, W, b, amp, rounds, reps)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--acts', default=None, help='activation store to train on (default: synthetic, --d_in wide)')
    ap.add_argument('--d_in', type=int, default=128); ap.add_argument('--exp_factor', type=int, default=4)
    ap.add_argument('--k', type=int, default=8); ap.add_argument('--batch', type=int, default=4096)
    ap.add_argument('--lr', type=float, default=2e-3); ap.add_argument('--n_tokens', type=int, default=1_000_000)
    ap.add_argument('--rounds', type=int, default=7); ap.add_argument('--reps', type=int, default=20)
    ap.add_argument('--ensemble', action='store_true', help="also an 8-member ensemble's top-k")
    a = ap.parse_args()
    import tempfile
    from saenb.train_sae import train_sae, retain_freed_memory
    from saenb.cache import ActivationStore
    precision, dtype = training_precision()
    amp = dict(device_type='cpu', dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        if a.acts is None:   # 4 d directions, 16 active a row on average
            d = a.d_in; np.save(acts := tmp/'acts.npy', sparse_acts(max(a.n_tokens, 4 * a.batch), d, 4 * d, 4 / d))
        else: acts = a.acts
        r = train_sae(acts, arch='topk', k=a.k, exp_factor=a.exp_factor, batch_size=a.batch, n_tokens=a.n_tokens,
                      lr=a.lr, seed=0, val_every=a.n_tokens, progress=False, say=lambda s: None)
        retain_freed_memory()   # as training does: no fresh pages for each call's large tensors
        if a.acts is None: x = torch.from_numpy(np.load(acts)[:a.batch])
        else: x = next(ActivationStore(a.acts).batches(a.batch, shuffle=True, seed=1))
        sae = r.sae
        rec = {'bench': 'kernels', 'device': device_name('cpu'), 'acts': str(a.acts or 'synthetic'),
               'd_in': sae.cfg.d_in, 'd_sae': sae.cfg.d_sae, 'k': a.k, 'batch': a.batch, 'precision': precision,
               'rounds': a.rounds, 'reps': a.reps, **step_pieces(sae, x, amp, a.rounds, a.reps)}
        if a.ensemble: rec['ensemble_topk'] = ensemble_topk(amp, a.rounds, a.reps, tmp)
    emit(rec)


if __name__ == '__main__': main()
