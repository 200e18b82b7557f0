"""saenb against SAELens: the same activation file, architecture, width, k (or L1 coefficient), batch size and token budget,
trained side by side in the same run. Prints one JSON line: tokens/s of each and their ratio, validation FVU and L0 of each,
and achieved FLOP/s (the products a step needs, counted the same for both tools) as a fraction of this machine's measured
fp32 and bf16 matmul peaks.

The two tools parametrise the decoder differently (saenb: unit-norm rows; SAELens: rows at norm 0.1 with activations rescaled
by the norm), so one learning rate means different effective step sizes. Each tool is therefore trained at every learning rate
of `--lrs` and its best validation FVU reported (with the learning rate that gave it): reconstruction is compared at each tool's
own best setting, speed (tokens/s, the median over the runs) does not depend on it.

For relu/standard the L1 coefficient means different sparsity in the two tools (their loss scales differ), so each tool's
coefficient is searched (geometric bisection, at `--relu_lr`) until its L0 brackets `--relu_l0`, and the FVU of each is
interpolated (in log L0) at that L0: reconstruction at matched sparsity.

SAELens trains in fp32 unless asked for autocast; it is also run once with its bf16 autocast at its best setting, and saenb's
speed against that is reported too (`speedup_vs_saelens_bf16`).

SAELens pins transformer-lens below 4, so it runs in its own virtual environment: `$SAENB_SAELENS_PYTHON` if set, else
`~/.cache/saenb/saelens-venv-<torch version>`, built on first use (about 1.5 minutes, from the package index, with torch pinned
to saenb's) and shared with tests/test_sae_interop.py (`_common.saelens_python`); nothing is downloaded at training time.

    python benchmarks/sae_vs_saelens.py [--archs topk,relu] [--d_in 256] [--exp_factor 8] [--k 32] [--n_tokens 524288] [--lrs 1e-3,1.4e-3,2e-3,2.8e-3,4e-3,5.6e-3,8e-3]
"""
import argparse, json, subprocess, sys, tempfile
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, matmul_peak, emit, saelens_python

HERE = Path(__file__).parent

def synthetic_activations(n:int, d:int, n_feat:int, l0:float, seed:int) -> np.ndarray:
    "Sparse nonnegative combinations of `n_feat` random unit directions (about `l0` active per row), plus a little noise."
    g = np.random.default_rng(seed)
    D = g.standard_normal((n_feat, d)).astype(np.float32); D /= np.linalg.norm(D, axis=1, keepdims=True)
    out = np.empty((n, d), np.float32)
    for i in range(0, n, 16384):
        m = min(16384, n - i)
        codes = (g.random((m, n_feat)) < l0 / n_feat) * g.exponential(1.0, (m, n_feat)).astype(np.float32)
        out[i:i+m] = codes @ D + 0.01 * g.standard_normal((m, d)).astype(np.float32)
    return out

def run_json(cmd:list, env=None) -> dict:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [l for l in r.stdout.splitlines() if l.startswith('{')]
    if r.returncode or not lines: raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return json.loads(lines[-1])

def _match_l0(run, c0:float, target:float, max_runs:int=7) -> list:
    "Runs at L1 coefficients searched geometrically from `c0` until two of them bracket L0 = `target`, then bisected (at most `max_runs`) until the bracket is tight."
    runs = [run(c0)]
    while len(runs) < max_runs:
        lo = [r for r in runs if r['l0'] <= target]; hi = [r for r in runs if r['l0'] > target]
        if lo and hi:
            a, b = max(lo, key=lambda r: r['l0']), min(hi, key=lambda r: r['l0'])
            gaps = sorted(abs(np.log(r['l0'] / target)) for r in (a, b))
            if gaps[0] < 0.1 and gaps[1] < 0.25: break  # a tight bracket: the interpolation's error is small
            runs.append(run(float(np.sqrt(a['knob'] * b['knob'])))); continue
        c = runs[-1]['knob'] * (4 if not lo else 0.25)  # L0 too high: more L1; too low: less
        runs.append(run(c))
    return runs

def _at_l0(runs:list, target:float) -> dict:
    "FVU interpolated in log L0 at `target` between the two runs that bracket it (else the closest run)."
    lo = [r for r in runs if r['l0'] <= target]; hi = [r for r in runs if r['l0'] > target]
    if not (lo and hi): return dict(min(runs, key=lambda r: abs(np.log(max(r['l0'], 1e-9) / target))))
    a, b = max(lo, key=lambda r: r['l0']), min(hi, key=lambda r: r['l0'])
    w = np.log(target / max(a['l0'], 1e-9)) / np.log(b['l0'] / max(a['l0'], 1e-9))
    return {**a, 'fvu': float(a['fvu'] + w * (b['fvu'] - a['fvu'])), 'l0': target, 'knob': (a['knob'], b['knob'])}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--archs', default='topk,relu'); ap.add_argument('--d_in', type=int, default=256)
    ap.add_argument('--exp_factor', type=int, default=8); ap.add_argument('--k', type=int, default=32)
    ap.add_argument('--l1', type=float, default=5.0, help='starting L1 coefficient of the relu/standard search')
    ap.add_argument('--relu_l0', type=float, default=None, help='L0 at which relu/standard are compared (default: k)')
    ap.add_argument('--relu_lr', type=float, default=4e-3, help='learning rate of the relu/standard runs')
    ap.add_argument('--batch_size', type=int, default=4096); ap.add_argument('--n_tokens', type=int, default=524288)
    ap.add_argument('--lrs', default='1e-3,1.4e-3,2e-3,2.8e-3,4e-3,5.6e-3,8e-3', help='learning rates tried for each tool (the best FVU of each is reported)'); ap.add_argument('--acts', default=None, help='an .npy [N, d] file to use instead of synthetic activations')
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    if a.relu_l0 is None: a.relu_l0 = float(a.k)
    tmp = Path(tempfile.mkdtemp())
    if a.acts: acts = np.load(a.acts, mmap_mode='r')
    else: acts = synthetic_activations(max(a.n_tokens // 2, 65536) + 8192, a.d_in, a.d_in * 4, a.k / 2, a.seed)
    np.save(tmp/'train.npy', np.asarray(acts[:-8192])); np.save(tmp/'val.npy', np.asarray(acts[-8192:]))
    d_in, d_sae = acts.shape[1], acts.shape[1] * a.exp_factor
    py = saelens_python()
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    record = {'bench': 'sae_vs_saelens', 'device': device_name(), 'd_in': d_in, 'd_sae': d_sae, 'k': a.k, 'batch_size': a.batch_size,
              'n_tokens': a.n_tokens, 'peak_fp32_flops': peak32, 'peak_bf16_flops': peak16}
    lrs = [float(v) for v in a.lrs.split(',')]
    record['lrs'] = lrs
    def saelens(arch, knob, lr, autocast=False):
        return {**run_json([py, str(HERE/'_saelens_worker.py'), str(tmp/'train.npy'), str(tmp/'val.npy'), 'topk' if arch != 'relu' else 'standard',
                            str(d_sae), str(knob), str(a.batch_size), str(a.n_tokens), str(lr), str(int(autocast)), str(a.seed)]), 'lr': lr, 'knob': knob}
    def saenb(arch, knob, lr):
        sae_args = ['--k', str(knob)] if arch != 'relu' else ['--sparsity_coeff', str(knob)]
        return {**run_json(['saenb_train_sae', '--acts', str(tmp/'train.npy'), '--val_acts', str(tmp/'val.npy'), '--arch', arch, *sae_args,
                            '--exp_factor', str(a.exp_factor), '--n_tokens', str(a.n_tokens), '--batch_size', str(a.batch_size),
                            '--lr', str(lr), '--seed', str(a.seed), '--out', str(tmp/f'saenb_{arch}_{lr}_{knob}'), '--quiet']), 'lr': lr, 'knob': knob}
    for arch in a.archs.split(','):
        if arch == 'relu':
            sls, ourss = _match_l0(lambda c: saelens(arch, c, a.relu_lr), a.l1, a.relu_l0), _match_l0(lambda c: saenb(arch, c, a.relu_lr), a.l1, a.relu_l0)
            sl, ours = _at_l0(sls, a.relu_l0), _at_l0(ourss, a.relu_l0)
        else:
            sls, ourss = [saelens(arch, a.k, lr) for lr in lrs], [saenb(arch, a.k, lr) for lr in lrs]
            sl, ours = min(sls, key=lambda r: r['fvu']), min(ourss, key=lambda r: r['fvu'])
        sl['tokens_per_s'] = float(np.median([r['tokens_per_s'] for r in sls]))
        ours['tokens_per_s'] = float(np.median([r['tokens_per_s'] for r in ourss]))
        # SAELens with its own bf16 autocast (off by default there), once, at its best setting: speed at equal precision
        near = min(sls, key=lambda r: abs(np.log(max(r['l0'], 1e-9) / a.relu_l0))) if arch == 'relu' else sl
        sl16 = saelens(arch, near['knob'], near['lr'], autocast=True)
        # the work a step needs, per token, counted the same for both tools: the encoder's forward and weight gradient
        # (the input gradient is not needed), and the decoder's forward and both gradients, dense for relu, over the
        # k active rows for topk
        enc = 4 * d_in * d_sae
        dec = 6 * (a.k if arch in ('topk', 'batchtopk') else d_sae) * d_in
        ours_flops, sl_flops = (enc + dec) * ours['tokens_per_s'], (enc + dec) * sl['tokens_per_s']
        record[arch] = {'saenb_tokens_per_s': ours['tokens_per_s'], 'saelens_tokens_per_s': sl['tokens_per_s'],
                        'speedup': ours['tokens_per_s'] / sl['tokens_per_s'],
                        'saelens_bf16_tokens_per_s': sl16['tokens_per_s'], 'speedup_vs_saelens_bf16': ours['tokens_per_s'] / sl16['tokens_per_s'],
                        'saelens_bf16_fvu': sl16['fvu'], 'saelens_bf16_l0': sl16['l0'],
                        'saenb_fvu': ours['fvu'], 'saelens_fvu': sl['fvu'], 'saenb_l0': ours['l0'], 'saelens_l0': sl['l0'],
                        'saenb_best_lr': ours['lr'], 'saelens_best_lr': sl['lr'],
                        'saenb_runs': [{k: round(r[k], 4) for k in ('lr', 'knob', 'fvu', 'l0')} for r in ourss],
                        'saelens_runs': [{k: round(r[k], 4) for k in ('lr', 'knob', 'fvu', 'l0')} for r in sls],
                        'saenb_flops_frac_fp32_peak': ours_flops / peak32, 'saenb_flops_frac_bf16_peak': ours_flops / peak16,
                        'saelens_flops_frac_fp32_peak': sl_flops / peak32, 'saelens_flops_frac_bf16_peak': sl_flops / peak16}
    emit(record)

if __name__ == '__main__': main()
