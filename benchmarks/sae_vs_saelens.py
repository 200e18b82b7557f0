"""saenb against SAELens, every architecture SAELens trains: the same activation file, architecture, width, k (or L0
target), batch size and token budget, trained side by side in the same run. Prints one JSON line: for each architecture
tokens/s of each tool and their ratio, validation FVU and L0 of each, the learning rate each was best at, and achieved
FLOP/s (the products a step needs, counted the same for both tools) as a fraction of this machine's measured fp32 and
bf16 matmul peaks; and a `summary` of every architecture's `speedup`, `speedup_vs_saelens_bf16` and `fvu_ratio` (saenb
FVU / SAELens FVU; below 1: saenb reconstructs better), its FVU ratio where the two tools' L0 is the same
(`fvu_ratio_matched_l0`, and `matched_by` how it was matched: see `fvu_at_matched_l0`), and whether it meets the targets
of at least 5x SAELens's tokens/s, 4x its bf16 autocast's and an FVU at most 2% above its at matched L0
(`targets_met`; the record's `targets_met` lists the architectures that do).

Architectures (`--archs`, a comma list, or `all` = relu,topk,topk_saelens,batchtopk,jumprelu,gated,gated_saelens,
matryoshka), saenb name (SAELens's):

- k-based, compared at the same `--k`: `topk`, `batchtopk`, `matryoshka` (SAELens's `MatryoshkaBatchTopKTrainingSAE`;
  both tools get the same nested widths, d_sae/8, d_sae/4, d_sae/2, d_sae: saenb's `prefixes`, SAELens's
  `matryoshka_widths`). The two tools parametrise the decoder differently (saenb: unit-norm rows; SAELens: rows at norm
  0.1 with activations rescaled by the norm), so one learning rate means different effective step sizes: each tool is
  trained at every learning rate of `--lrs` and its best validation FVU reported (with the learning rate that gave it).
- coefficient-based, compared at the same L0 (`--coef_l0`, default k): `relu` (SAELens's `standard`: L1), `jumprelu` (L0
  penalty; SAELens's default "step" loss) and `gated` (L1 on the gate). A coefficient means different sparsity in the
  two tools (their loss scales and input scaling differ), so each tool's coefficient is searched separately
  (`_match_l0`, from a per-architecture start measured at the default sizes, `COEF_START`, or `--coef_start`; at most
  `--max_search_runs` runs) until its L0 brackets the target, and the FVU of each is interpolated (in log L0) at it:
  reconstruction at matched sparsity. The search runs at each learning rate of `--coef_lrs` (default per architecture,
  `COEF_LRS`: each tool's best rate and, where that is one rate, a neighbour; 5.6e-3 and 8e-3 for relu and jumprelu,
  4e-3 and 2.8e-3 for gated; each later one starts from the coefficient the last one found at the target, scaled by the
  ratio of the rates to the power `COEF_LR_EXP`, and steps by the L0 slope it measured; a rate below one where L0 did
  not answer to the coefficient is skipped), and each tool's FVU at the target is that of its best rate (`at_best_lr`;
  `*_best_lr`, and `*_best_lr_at_edge` as for the k-based). `*_matched` says whether that rate's search reached the
  target (bracketed it, or a run within 2%); if not (the search stops when L0 does not answer to the coefficient), the
  run nearest to it is reported, and `l0_matched` is false. saenb's JumpReLU starts from thresholds calibrated on the
  first batch to the target L0 (its `calibrate`, on when `target_l0` is given; the coefficient stays fixed); SAELens's
  from its default 0.01, and they move at most ~lr a step: at lr 4e-3 its L0 hardly answers to the coefficient in a run
  this short (at the default sizes L0 86.7 to 93.5 for l0_coefficient 1 to 16, target 32), at 5.6e-3 and 8e-3 it does
  (l0_coefficient 0.062 and 0.038 give L0 32), hence jumprelu's default rates; a search that does not reach the target
  compares it off target.
  `gated_saelens` is saenb's Gated with SAELens's auxiliary reconstruction (`frozen_aux_decoder=False`: it trains the
  decoder too, and `aux_coeff=1`, SAELens's and the paper's weight; saenb's default decodes it through a frozen copy,
  the paper's, at weight 0.25), against the same SAELens runs as `gated` (each SAELens run is made once and reused):
  the same algorithm in both tools, where `gated` compares the defaults (`gated_aux_default.py` measures saenb's).
  `topk_saelens` is saenb's TopK with SAELens's dead-latent window (`dead_tokens` = its trainer's `dead_feature_window`,
  1,000 steps by default, times the batch: AuxK only for latents silent that long), against the same SAELens and
  sparsify runs as `topk`: the algorithm SAELens and sparsify train in runs shorter than that window (no AuxK at all:
  SAELens's never starts, sparsify has none), where `topk` compares the defaults (saenb's window is a tenth of the
  run's tokens, so its AuxK runs from there on). The record's `saenb_settings` gives a variant's settings.
  `--saelens_cfg` sets other SAELens training-config fields, e.g. '{"jumprelu": {"jumprelu_init_threshold": 0.3}}' (at
  the tiny sizes 0.1 gave L0 39, 0.3 gave 13; not searched).

Validation: saenb's FVU and L0 are its eval-mode codes'; SAELens's those of the inference SAE it saves
(`_saelens_worker.py`): BatchTopK and Matryoshka become JumpReLU SAEs with one learned threshold, as in SAELens, and the
L0 reported is that of the codes the FVU is computed with; for both tools also the FVU of their training-mode codes
(`*_batch_fvu`, the top k*B of each validation batch of B rows, L0 = k exactly; each tool's best run over the
learning rates) and their ratio, `fvu_ratio_batch`: the like-for-like comparison where SAELens's inference L0 is off
target. SAELens's threshold is an EMA (rate 0.01 per step, from 0) of
each batch's smallest kept activation, so on short runs it is still low and its inference L0 above k (at the default
sizes, 128 steps: 42 for BatchTopK, 67 for Matryoshka, k = 32); the FVU of its training-mode codes (the top k*B of each
validation batch, L0 = k) is reported beside it (`saelens_batch_fvu`, `_l0`), and `saelens_l0_off_target` flags an L0
more than 25% from the target (either tool: `*_l0_off_target`).

Speed is taken where FVU is: for the architectures whose L0 is matched by searching a coefficient, each tool's tokens/s
interpolated in log L0 at the target between the two runs that bracket it, as its FVU is (saenb's ReLU, JumpReLU and
Gated train on entries once their L0 is low, so their speed depends on the coefficient: a search probe at L0 500 runs
dense, and the median over all runs, reported as `*_tokens_per_s_all_runs`, mixed such probes in); for the k-based
ones, whose speed does not depend on the learning rate, the median over the learning rates, the tools' runs at each
rate one after another (SAELens, saenb, then sparsify for TopK): the 2-core machine's speed drifted by up to 1.6x over
minutes (saenb's default small-dictionary runs from 319k to 506k tokens/s), which, with each tool's runs all together,
moved the ratio with the hour as much as any change did (3.3x and 4.8x in two runs of the same code). Each
tool's clock starts with its first batch in memory: the peers load the whole file before theirs; saenb streams it
from disk in shuffle buffers, and its clock starts once the first buffer is read (`first_batch_seconds`, reported
beside it; the later buffers are read while it trains, on the clock). SAELens
trains in fp32 unless asked for autocast; it is also run once with its bf16 autocast at its best setting, and saenb's
speed against that is reported too (`speedup_vs_saelens_bf16`). That run is left out (its fields null, and
`saelens_bf16: "skipped: ..."` says why) on a CPU without bf16 matrix units, where saenb trains in fp32 too and bf16
products run 70x slower than fp32 ones (measured on a 2-core AMD EPYC with AVX2 only: 1 against 68 GFLOP/s), so the
run would take hours; `--saelens_bf16 on` runs it anyway. FLOPs per token, both tools: the encoder's forward and
weight gradient, 4*d_in*d_sae (twice for gated: its gate and magnitude products), plus the decoder's forward and both
gradients, 6*k*d_in for the k-based (sparse) architectures and 6*d_sae*d_in for the dense ones (relu, jumprelu, gated;
gated's auxiliary reconstruction through the gate is not counted); on CPU saenb's JumpReLU, ReLU and Gated decode and
take the encoder's gradient on their entries (above threshold, positive, open gates; ReLU and Gated once few enough
are), so their shares of the peak in these FLOPs are effective rates, above what the hardware runs).

`--archs all` trains each tool at 5 learning rates (`LRS_ALL`: 2e-3 to 8e-3, x1.41 apart, the upper five of `--lrs`'s 7:
with three rates x2 apart, 1.4e-3 was never an architecture's best and saenb's Matryoshka best fell between two rates,
`sae_vs_saelens_all_s44.json`), searches the coefficients at each architecture's two rates of `COEF_LRS`, and stops each
search after 5 runs instead of 7, so that the whole comparison fits in an hour on a 2-core CPU at the default sizes: 49
minutes (2,920 s) measured on a 2-core AMD EPYC without AMX (`benchmarks/results/sae_vs_saelens_all_s71.json`; 45
minutes in `_all_s70.json`; median seconds a run, SAELens / saenb: topk 53 / 11, topk_saelens - / 13 (SAELens's and
sparsify's topk runs reused), batchtopk 82 / 15, matryoshka 87 / 14, standard (relu) 54 / 11, jumprelu 70 / 15, gated
97 / 18, gated_saelens - / 17 (SAELens's gated runs reused); 5 SAELens runs and 5 saenb runs for each k-based
architecture and 5 sparsify runs of 28 s, 2-5 and 4-5 for each coefficient-based one, and one SAELens bf16 run for each
architecture SAELens trains). The record's `lrs`
says which grid ran, `lrs_reduced` whether it was the reduced one, and `*_best_lr_at_edge` flags a best learning rate at
an end of the grid.
Pass `--lrs` to choose the grid yourself.

Activations (`--acts`): synthetic by default (sparse nonnegative combinations of 4*d_in random directions, k/2 active
per row); or an `.npy` [N, d] file (its last 8192 rows for validation); or an activation store directory written by
`saenb_cache` (a store, or a one-hook cache), read with `saenb.cache.ActivationStore`: at most `--n_tokens` rows of its
`train` split for training, its `validation` split for validation (at most `--val_rows`), or, if it has none, the last
8192 rows of the training split. Both tools then read the same two `.npy` files.

A second peer for TopK: EleutherAI's sparsify (`eai-sparsify`, `_sparsify_worker.py`), trained on the same two files at
the same width, k, batch size and token budget, at every learning rate of the grid (its best validation FVU reported),
with the inner step of its trainer: FVU loss, its fused TopK encoder and `embedding_bag` decoder, the decoder gradient
made orthogonal to its unit-norm rows, Adam (`--sparsify_optimizer signum`: its default schedule-free sign descent) at a
constant learning rate. The `topk` record then also holds `sparsify_tokens_per_s`, `speedup_vs_sparsify`,
`sparsify_fvu` and `fvu_ratio_vs_sparsify`, and the summary the two ratios. `--no_sparsify` leaves it out.

SAELens pins transformer-lens below 4, so it runs in its own virtual environment: `$SAENB_SAELENS_PYTHON` if set, else
`~/.cache/saenb/saelens-venv-<torch version>`, built on first use (about 1.5 minutes, from the package index, with torch
pinned to saenb's) and shared with tests/test_sae_interop.py (`_common.saelens_python`). sparsify is installed in the
same environment (three more small packages) unless `$SAENB_SPARSIFY_PYTHON` names another; nothing is downloaded at
training time.

    python benchmarks/sae_vs_saelens.py [--archs topk,relu | all] [--d_in 256] [--exp_factor 8] [--k 32]
        [--n_tokens 524288] [--batch_size 4096] [--lrs 1e-3,1.4e-3,2e-3,2.8e-3,4e-3,5.6e-3,8e-3]
        [--coef_l0 K] [--coef_lrs 5.6e-3,8e-3] [--coef_start '{"gated": {"saenb": 2, "saelens": 1}}']
        [--max_search_runs 7] [--saelens_cfg '{"jumprelu": {...}}'] [--acts FILE.npy | STORE_DIR] [--val_rows 65536]
        [--no_sparsify] [--sparsify_optimizer adam|signum] [--saelens_bf16 auto|on|off] [--device cpu|cuda[:N]]

`--device cuda` (or `cuda:N`) trains all three tools on that GPU: saenb with `saenb_train_sae --device`, SAELens with
its trainer's `device`, sparsify with its Triton decoder where Triton is installed, and the peaks are measured there;
one command gives the GPU table: `python benchmarks/sae_vs_saelens.py --device cuda --archs all`.

Progress (one line per training run) goes to stderr; the JSON line to stdout.
"""
import argparse, json, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, matmul_peak, emit, saelens_python, sparsify_python, saenb_command, training_precision

HERE = Path(__file__).parent
ALL_ARCHS = ('relu', 'topk', 'topk_saelens', 'batchtopk', 'jumprelu', 'gated', 'gated_saelens', 'matryoshka')
K_ARCHS = ('topk', 'topk_saelens', 'batchtopk', 'matryoshka')   # compared at the same k, each at its best learning rate
BATCH_ARCHS = ('batchtopk', 'matryoshka')   # a batch-level top k in training, a learned threshold at inference
COEF_ARCHS = ('relu', 'jumprelu', 'gated', 'gated_saelens')   # compared at one L0, each tool's coefficient searched
SAELENS_ARCH = {'relu': 'standard', 'topk': 'topk', 'topk_saelens': 'topk', 'batchtopk': 'batchtopk',
                'jumprelu': 'jumprelu', 'gated': 'gated',
                'gated_saelens': 'gated', 'matryoshka': 'matryoshka'}   # the worker's names (SAELens's architectures)
# a variant: saenb's architecture with settings of its own (`--sae`), against the same SAELens runs as that architecture
# Gated with SAELens's auxiliary reconstruction; TopK with SAELens's dead-latent window, `dead_steps` (its trainer's
# `dead_feature_window`, in steps, 1000 by default, which the worker reports) of batches: AuxK only for latents silent
# that long, which in runs shorter than that is never (saenb's default: a tenth of the run's tokens)
VARIANTS = {'gated_saelens': ('gated', lambda dead_steps, batch: {'frozen_aux_decoder': False, 'aux_coeff': 1.0}),
            'topk_saelens': ('topk', lambda dead_steps, batch: {'dead_tokens': dead_steps * batch})}
SAELENS_DEAD_STEPS = 1000   # SAETrainerConfig.dead_feature_window's default, until a SAELens run reports its own
def saenb_arch(arch:str) -> str: return VARIANTS[arch][0] if arch in VARIANTS else arch
LRS = '1e-3,1.4e-3,2e-3,2.8e-3,4e-3,5.6e-3,8e-3'
LRS_ALL = '2e-3,2.8e-3,4e-3,5.6e-3,8e-3'   # `--archs all`: the upper 5 of LRS (x1.41 apart), where every best rate
                                            # of the k-based architectures fell (see the docstring)
# the learning rates each tool's coefficient is searched at, in this order: each architecture's pair holds each tool's
# best rate (relu: 5.6e-3 both; jumprelu: saenb 5.6e-3, SAELens 8e-3; gated: 2.8e-3 both) and, where that is one rate,
# the neighbour x1.41 away where SAELens did better, measured at the default sizes (FVU at L0 32, saenb / SAELens).
# relu: 4e-3 0.166 / 0.179, 5.6e-3 0.161 / 0.175, 8e-3 0.241 / 0.177. jumprelu: 4e-3 0.172 / (none: L0 86.7 to 93.5 for
# coefficients 1 to 16), 5.6e-3 0.162 / 0.204, 8e-3 0.164 / 0.183 (sae_vs_saelens_relu_lr_s70.json, _relu_lr8_s70.json).
# gated: 2e-3 0.162 / 0.179, 2.8e-3 0.161 / 0.159, 4e-3 0.165 / 0.162 (sae_vs_saelens_all_s69.json, _gated_lr2_s69.json)
COEF_LRS = {'relu': (5.6e-3, 8e-3), 'jumprelu': (5.6e-3, 8e-3), 'gated': (4e-3, 2.8e-3),
            'gated_saelens': (4e-3, 2.8e-3)}
# where each tool's coefficient search starts (saenb: --sparsity_coeff; SAELens: l1_coefficient, l0_coefficient for
# jumprelu), and the slope of L0 against it (log-log, L0 ~ c^-p) that its first steps take: for L0 = 32 at the default
# sizes and the first rate of COEF_LRS, interpolated in log-log between the two runs of the last searches that
# bracketed it (relu, jumprelu: the mean of sae_vs_saelens_relu_lr_s70.json's and _relu_lr8_s70.json's; gated,
# gated_saelens: sae_vs_saelens_dec_lr_s68.json), e.g. saenb's gated 0.625 -> L0 28.9, 0.6058 -> 32.6
COEF_START = {'relu': {'saenb': 1.08, 'saelens': 0.437}, 'jumprelu': {'saenb': 0.165, 'saelens': 0.0621},
              'gated': {'saenb': 0.609, 'saelens': 0.763}, 'gated_saelens': {'saenb': 1.66, 'saelens': 0.763}}
COEF_SLOPE = {'relu': {'saenb': 2.07, 'saelens': 1.72}, 'jumprelu': {'saenb': 0.4, 'saelens': 1.5},
              'gated': {'saenb': 3.86, 'saelens': 2.79}, 'gated_saelens': {'saenb': 1.6, 'saelens': 2.79}}
COEF_LR_EXP = 0.65   # the coefficient at L0 = 32 went up ~(4e-3 / 2.8e-3)^0.65 from lr 4e-3 to 2.8e-3: x1.24 (SAELens
                     # relu), x1.27 (saenb relu), x1.27 (SAELens gated), x1.24 (saenb gated); saenb jumprelu x1.64
                     # (sae_vs_saelens_all_s69_first.json); from 5.6e-3 to 8e-3 it went down x0.85 (SAELens relu), x0.88
                     # (saenb jumprelu), x0.61 (SAELens jumprelu), and up x1.24 for saenb's relu, unstable there
                     # (FVU 0.241; sae_vs_saelens_relu_lr8_s70.json)
VAL_ROWS = 8192

def synthetic_activations(n:int, d:int, n_feat:int, l0:float, seed:int) -> np.ndarray:
    """Sparse nonnegative combinations of `n_feat` random unit directions (about `l0` active per row), plus a little
    noise."""
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
    if r.returncode or not lines:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return json.loads(lines[-1])

def _match_l0(run, c0:float, target:float, max_runs:int=7, p0:float|None=None) -> list:
    """Runs at sparsity coefficients searched from `c0` until two of them bracket L0 = `target`, then narrowed until the
    bracket is tight, at most `max_runs` in all. Outside a bracket each step is x4 (or /4), or, once two runs give L0's
    slope against the coefficient (log-log; before that `p0`, a slope another search measured, where given), the step
    that slope says lands a little past the target (x1.5 to x16);
    inside, the secant in log coefficient against log L0, kept within the bracket's middle 70%. Stops early when an
    8-fold change of the coefficient over the last three runs moved L0 by less than 25%: L0 does not answer to the
    coefficient in a run this long (the target is out of its reach), or when a run lands within 2% of the target."""
    ll = lambda r: float(np.log(max(r['l0'], 1e-3)))
    lc = lambda r: float(np.log(r['knob']))
    go = lambda c: run(float(f'{c:.4g}'))   # coefficients to 4 significant digits
    runs, lt = [go(c0)], float(np.log(target))
    while len(runs) < max_runs:
        if abs(ll(runs[-1]) - lt) < 0.02: break  # on the target (2%): nothing left to narrow
        lo = [r for r in runs if r['l0'] <= target]; hi = [r for r in runs if r['l0'] > target]
        if lo and hi:
            a, b = max(lo, key=lambda r: r['l0']), min(hi, key=lambda r: r['l0'])
            gaps = sorted(abs(ll(r) - lt) for r in (a, b))
            if gaps[0] < 0.1 and gaps[1] < 0.25: break  # a tight bracket: the interpolation's error is small
            t = (lt - ll(a)) / (ll(b) - ll(a)) if ll(b) != ll(a) else 0.5
            t = float(np.clip(t, 0.15, 0.85))
            runs.append(go(np.exp(lc(a) + t * (lc(b) - lc(a))))); continue
        if len(runs) >= 3 and abs(lc(runs[-1]) - lc(runs[-3])) >= np.log(8) - 1e-9 \
                and abs(ll(runs[-1]) - ll(runs[-3])) < np.log(1.25): break  # L0 deaf to the coefficient
        up = not lo  # L0 too high: a larger coefficient; too low: a smaller one
        step, p = np.log(4), p0
        if len(runs) >= 2 and lc(runs[-1]) != lc(runs[-2]):
            p = -(ll(runs[-1]) - ll(runs[-2])) / (lc(runs[-1]) - lc(runs[-2]))   # L0 ~ c^-p
        if p is not None and p > 0.1:
            aim = lt + (np.log(0.8) if up else np.log(1.25))   # a little past the target: a bracket, close to it
            step = float(np.clip(abs(ll(runs[-1]) - aim) / p, np.log(1.5), np.log(16)))
        runs.append(go(np.exp(lc(runs[-1]) + (step if up else -step))))
    return runs

def _at_l0(runs:list, target:float) -> dict:
    """FVU and tokens/s interpolated in log L0 at `target` between the two runs that bracket it (else the closest
    run's), and `knob_at_target`, the coefficient interpolated there (log-log; the closest run's)."""
    lo = [r for r in runs if r['l0'] <= target]; hi = [r for r in runs if r['l0'] > target]
    if not (lo and hi):
        r = min(runs, key=lambda r: abs(np.log(max(r['l0'], 1e-9) / target)))
        return {**r, 'knob_at_target': r['knob']}
    a, b = max(lo, key=lambda r: r['l0']), min(hi, key=lambda r: r['l0'])
    w = np.log(target / max(a['l0'], 1e-9)) / np.log(b['l0'] / max(a['l0'], 1e-9))
    at = lambda f: float(a[f] + w * (b[f] - a[f]))
    return {**a, 'fvu': at('fvu'), 'tokens_per_s': at('tokens_per_s'), 'l0': target, 'knob': (a['knob'], b['knob']),
            'knob_at_target': float(np.exp(np.log(a['knob']) + w * np.log(b['knob'] / a['knob'])))}

def _reached(runs:list, target:float) -> bool:
    "Whether a search reached L0 = `target`: two of its runs bracket it, or one is within 2% of it."
    return (any(r['l0'] <= target for r in runs) and any(r['l0'] > target for r in runs)) or \
        any(abs(np.log(max(r['l0'], 1e-9) / target)) < 0.02 for r in runs)

def _slope(runs:list, target:float) -> float|None:
    "L0's slope against the coefficient (log-log, L0 ~ c^-p) between the two runs nearest `target`: None if one knob."
    near = sorted(runs, key=lambda r: abs(np.log(max(r['l0'], 1e-9) / target)))
    b = next((r for r in near[1:] if r['knob'] != near[0]['knob']), None)
    if b is None: return None
    a = near[0]
    return float(-np.log(max(a['l0'], 1e-3) / max(b['l0'], 1e-3)) / np.log(a['knob'] / b['knob']))

def at_best_lr(run, # run(coefficient, lr): one run's record, with its 'l0', 'fvu', 'knob' and 'lr'
               lrs:list, # the learning rates, searched in this order
               c0:float, # the first search's starting coefficient
               target:float, # the L0 to match
               max_runs:int=7, # at most this many runs per learning rate's search
               p0:float|None=None, # the slope of L0 against the coefficient the first search steps by (`_match_l0`)
              ) -> tuple:
    """`(at, runs)`: a tool's coefficient searched (`_match_l0`) at each learning rate of `lrs` for L0 = `target`, and
    `_at_l0` (with `reached`, whether its search reached the target) of the learning rate with the lowest FVU there (of
    those whose search reached the target; if none did, the one that came nearest), with every run. Each search after
    the first starts from the coefficient the last one interpolated at the target, scaled by (its rate / this
    rate)^`COEF_LR_EXP`, and steps by the L0 slope it measured. After a search whose L0 did not answer to the
    coefficient (it missed the target, and L0's slope is under 0.1), the lower rates are not searched: their parameters
    (JumpReLU's thresholds) move less still in a run as long."""
    found, start, p, deaf_at, last = [], c0, p0, None, None
    for lr in lrs:
        if deaf_at is not None and lr < deaf_at: continue
        if last: start *= (last / lr) ** COEF_LR_EXP
        last = lr
        runs = _match_l0(lambda c: run(c, lr), start, target, max_runs, p0=p)
        at, reached, slope = _at_l0(runs, target), _reached(runs, target), _slope(runs, target)
        if not reached and (slope is None or abs(slope) < 0.1): deaf_at = max(lr, deaf_at or 0.0)
        start, p = at['knob_at_target'], slope if slope is not None and slope > 0.1 else p
        found.append((reached, at, runs))
    miss = lambda f: abs(np.log(max(f[1]['l0'], 1e-9) / target))
    best = min(found, key=lambda f: (not f[0], f[1]['fvu'] if f[0] else miss(f)))
    return {**best[1], 'reached': best[0]}, [r for f in found for r in f[2]]

def coef_plan(archs, # the architectures compared
              given:list|None=None, # `--coef_lrs`: every coefficient search's rates (None: each arch's `COEF_LRS`)
              coef_start:dict|None=None, # `--coef_start`: {arch: {tool: coefficient}}, taken as is
              l1:float|None=None, # `--l1`: relu's start for both tools, taken as is
             ) -> tuple:
    """`(rates, starts)`: each coefficient-based arch's learning rates, and where each tool's first search starts:
    `COEF_START`, measured at the arch's first rate of `COEF_LRS`, scaled to the first rate searched by
    (that rate / this one)^`COEF_LR_EXP`, unless a start is given."""
    rates = {x: list(given or COEF_LRS[x]) for x in archs if x in COEF_ARCHS}
    starts = {x: {t: c * (COEF_LRS[x][0] / (given or COEF_LRS[x])[0]) ** COEF_LR_EXP for t, c in v.items()}
              for x, v in COEF_START.items()}
    if l1 is not None: starts['relu'] = {'saenb': l1, 'saelens': l1}
    for arch, v in (coef_start or {}).items(): starts.setdefault(arch, {}).update(v)
    return rates, starts

def fvu_at_l0s(train, # train(coefficient, target L0): one run's record, with its 'l0', 'fvu' and 'knob' (coefficient)
               targets, # the target L0s
               c0:float, # the first coefficient of the first target's search
               max_runs:int=7, # at most this many runs per target's search
               per_target:bool=False, # `train` uses the target (not only the coefficient): no run serves two targets
              ) -> tuple:
    """`(FVU at each target L0, the two L0s each was interpolated between, every run)` of one configuration: each
    target's coefficient searched by `_match_l0` from the run nearest it in L0 so far (the first from `c0`), its FVU by
    `_at_l0` (a wide bracket, where a search ran out of runs, biases the FVU low, as FVU is convex in log L0)."""
    runs, done, fvus, brackets = [], {}, [], []
    for t in map(float, targets):
        def run(c):
            key = (c, t) if per_target else c
            if key not in done: done[key] = train(c, t); runs.append(done[key])
            return done[key]
        near = [r for r in runs if r['l0'] > 0]   # a start: any run, with per_target too
        start = min(near, key=lambda r: abs(np.log(r['l0'] / t)))['knob'] if near else c0
        found = _match_l0(run, start, t, max_runs)
        fvus.append(_at_l0(found, t)['fvu'])
        lo, hi = [r['l0'] for r in found if r['l0'] <= t], [r['l0'] for r in found if r['l0'] > t]
        brackets.append([max(lo, default=None), min(hi, default=None)])
    return fvus, brackets, runs

def synthetic_files(tmp, n_tokens:int, d_in:int=256, k:int=32, seed:int=0) -> tuple:
    """`(train.npy, val.npy)` in `tmp`: this script's synthetic activations for a run of `n_tokens` (half as many
    training rows, at least 65,536, and `VAL_ROWS` for validation; about k/2 features on a row), for other scripts
    too."""
    x = synthetic_activations(max(n_tokens // 2, 65536) + VAL_ROWS, d_in, d_in * 4, k / 2, seed)
    np.save(train := Path(tmp)/'train.npy', x[:-VAL_ROWS]); np.save(val := Path(tmp)/'val.npy', x[-VAL_ROWS:])
    return train, val

def write_acts(acts:str|None, tmp:Path, a) -> tuple:
    "`(train.npy, val.npy, source)` in `tmp`: synthetic rows, an `.npy` file's, or a store's (see the docstring)."
    train, val = tmp/'train.npy', tmp/'val.npy'
    if acts is None:
        synthetic_files(tmp, a.n_tokens, a.d_in, a.k, a.seed)
        return train, val, {'kind': 'synthetic', 'train_rows': len(np.load(train, mmap_mode='r')), 'val_rows': VAL_ROWS}
    p = Path(acts)
    if p.is_file() and p.suffix == '.npy':
        x = np.load(p, mmap_mode='r')
        np.save(train, np.asarray(x[:-VAL_ROWS])); np.save(val, np.asarray(x[-VAL_ROWS:]))
        return train, val, {'kind': 'npy', 'path': str(p), 'train_rows': len(x) - VAL_ROWS, 'val_rows': VAL_ROWS}
    if not p.is_dir(): raise SystemExit(f"--acts {p}: neither an .npy file nor an activation store directory")
    from saenb.cache import ActivationStore
    tr = ActivationStore(p, 'train')
    has_val = tr.manifest['rows'].get('validation', 0) > 0
    n_val = 0 if has_val else VAL_ROWS
    if not has_val and len(tr) <= n_val: raise SystemExit(f"--acts {p}: {len(tr)} rows, too few to hold out {VAL_ROWS}")
    n_train = min(len(tr) - n_val, a.n_tokens)
    def copy(store, lo, hi, out):
        m = np.lib.format.open_memmap(out, 'w+', np.float32, (hi - lo, store.d))
        for i in range(lo, hi, 65536): m[i - lo:min(i + 65536, hi) - lo] = store[i:min(i + 65536, hi)].numpy()
        m.flush(); del m
    copy(tr, 0, n_train, train)
    if has_val:
        va = ActivationStore(p, 'validation'); n_val = min(len(va), a.val_rows); copy(va, 0, n_val, val)
    else: copy(tr, len(tr) - n_val, len(tr), val)
    return train, val, {'kind': 'store', 'path': str(tr.path), 'train_rows': n_train, 'val_rows': n_val,
                        'val_split': 'validation' if has_val else f'last {VAL_ROWS} rows of train'}

def batch_codes(sae_dir:Path, val:Path, batch:int) -> dict:
    """`batch_fvu` and `batch_l0` of the saved BatchTopK-family SAE in `sae_dir`: its training-mode codes (the top
    k*`batch` of each batch of `batch` validation rows, L0 = k), as `_saelens_worker.py` reports SAELens's."""
    from saenb.sae_io import load_sae
    from _peer_data import fvu
    sae, v = load_sae(sae_dir).train(), torch.from_numpy(np.load(val)).float()
    with torch.no_grad():
        codes = torch.cat([sae.encode(b) for b in v.split(batch)])
        return {'batch_fvu': fvu(sae.decode(codes), v), 'batch_l0': (codes != 0).float().sum(-1).mean().item()}

def flops_per_token(arch:str, d_in:int, d_sae:int, k:int) -> int:
    """The products one training token needs, counted the same for both tools: the encoder's forward and weight
    gradient (its input gradient is not needed), twice for gated (gate and magnitude), and the decoder's forward and
    both gradients, over the k active rows for the k-based architectures, dense for the others."""
    enc = 4 * d_in * d_sae * (2 if saenb_arch(arch) == 'gated' else 1)
    return enc + 6 * (k if arch in K_ARCHS else d_sae) * d_in

def log(*m): print(*m, file=sys.stderr, flush=True)

# the targets: tokens/s at least 5x SAELens's and 4x its bf16 autocast's, FVU at most 2% above its at matched L0
TARGETS = dict(speedup=5.0, speedup_vs_saelens_bf16=4.0, fvu_ratio=1.02)

def fvu_at_matched_l0(rec:dict) -> tuple:
    """`(ratio, how)`: saenb's FVU over SAELens's where their L0 is the same. `'l0'`: both on target, `fvu_ratio`;
    `'training_codes'`: an L0 off target in a BatchTopK-family pair, whose training-mode codes have L0 = k exactly
    (`fvu_ratio_batch`); `'bound'`: saenb on target, SAELens off it above, and saenb's FVU the lower all the same, so
    at SAELens's L0 (more latents, a lower FVU) saenb's ratio would be lower still; `(None, 'unmatched')` otherwise."""
    if not (rec['saenb_l0_off_target'] or rec['saelens_l0_off_target']): return rec['fvu_ratio'], 'l0'
    if 'fvu_ratio_batch' in rec: return rec['fvu_ratio_batch'], 'training_codes'
    if not rec['saenb_l0_off_target'] and rec['saelens_l0'] > rec['saenb_l0'] and rec['fvu_ratio'] <= 1:
        return rec['fvu_ratio'], 'bound'
    return None, 'unmatched'

def summary(rec:dict) -> dict:
    "An architecture's line of the record's `summary`: its ratios, L0s, the FVU ratio at matched L0 and the targets."
    out = {k: rec[k] for k in ('speedup', 'speedup_vs_saelens_bf16', 'fvu_ratio', 'fvu_ratio_batch',
                               'speedup_vs_sparsify', 'fvu_ratio_vs_sparsify') if k in rec}
    out['l0'] = [rec['saenb_l0'], rec['saelens_l0']]
    out['l0_matched'] = not (rec['saenb_l0_off_target'] or rec['saelens_l0_off_target'])
    out['fvu_ratio_matched_l0'], out['matched_by'] = fvu_at_matched_l0(rec)
    bf16 = rec['speedup_vs_saelens_bf16']
    out['targets_met'] = bool(rec['speedup'] >= TARGETS['speedup'] and
                              (bf16 is None or bf16 >= TARGETS['speedup_vs_saelens_bf16']) and
                              out['fvu_ratio_matched_l0'] is not None and
                              out['fvu_ratio_matched_l0'] <= TARGETS['fvu_ratio'])
    return out

def _versus_sparsify(ours:dict, lrs:list, sparsify, flops:int, peak32:float, edge) -> dict:
    "sparsify's TopK at every learning rate of `lrs`: its best FVU, median speed, and saenb's ratios to both."
    sps = [sparsify(lr) for lr in lrs]
    sp = min(sps, key=lambda r: r['fvu'])
    tps = float(np.median([r['tokens_per_s'] for r in sps]))
    return {'sparsify_tokens_per_s': tps, 'speedup_vs_sparsify': ours['tokens_per_s'] / tps,
            'sparsify_fvu': sp['fvu'], 'sparsify_l0': sp['l0'], 'fvu_ratio_vs_sparsify': ours['fvu'] / sp['fvu'],
            'sparsify_best_lr': sp['lr'], 'sparsify_best_lr_at_edge': edge(sp['lr']),
            'sparsify_flops_frac_fp32_peak': flops * tps / peak32,
            'sparsify_runs': [{k: (round(r[k], 6) if isinstance(r[k], float) else r[k]) for k in ('lr', 'fvu', 'l0')}
                              for r in sps]}

def targets_met(summaries:dict) -> list:
    "The architectures whose `summary` meets every target (a failed one's has none)."
    return [arch for arch, sm in summaries.items() if sm.get('targets_met')]

def summarize(path:str):
    "Print the `summary` and `targets_met` this script's code gives a saved record (its last line), training nothing."
    def refuse(why):
        print(f"--summarize {path}: {why}: give a record of benchmarks/results/", file=sys.stderr); sys.exit(2)
    try: rec = json.loads(Path(path).read_text().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError) as e: refuse(f"not a saved record ({e})")
    if not isinstance(rec, dict) or rec.get('bench') != 'sae_vs_saelens': refuse("not a sae_vs_saelens.py record")
    archs = [x for x in rec['archs'] if 'error' not in rec[x]]
    sm = {x: summary(rec[x]) for x in archs}
    emit({'bench': 'sae_vs_saelens', 'summarized_from': str(path), 'archs': archs, 'summary': sm,
          'targets_met': targets_met(sm)})

def main():
    t_start = time.perf_counter()
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--archs', default='topk,relu', help=f"comma list of {', '.join(ALL_ARCHS)}, or all")
    ap.add_argument('--d_in', type=int, default=256, help='width of the synthetic activations')
    ap.add_argument('--exp_factor', type=int, default=8); ap.add_argument('--k', type=int, default=32)
    ap.add_argument('--coef_l0', '--relu_l0', type=float, default=None,
                    help='L0 at which relu, jumprelu and gated are compared (default: k)')
    ap.add_argument('--coef_lrs', '--coef_lr', '--relu_lr', default=None,
                    help='learning rates of every coefficient search, searched in this order, the best FVU at the '
                         'target of each tool reported (default, per architecture: '
                         + '; '.join(f"{x} {','.join(f'{lr:g}' for lr in v)}" for x, v in COEF_LRS.items()) + ')')
    ap.add_argument('--coef_start', default=None,
                    help='JSON {arch: {"saenb": c, "saelens": c}} overriding where the coefficient searches start')
    ap.add_argument('--l1', type=float, default=None, help="start of relu's search for both tools (old flag)")
    ap.add_argument('--max_search_runs', type=int, default=None,
                    help='most runs of one coefficient search (default 7; with --archs all 5)')
    ap.add_argument('--saelens_cfg', default=None,
                    help='JSON {arch: {field: value}}: SAELens training-config fields other than its defaults, e.g. '
                         '\'{"jumprelu": {"jumprelu_init_threshold": 0.1}}\' (recorded)')
    ap.add_argument('--batch_size', type=int, default=4096); ap.add_argument('--n_tokens', type=int, default=524288)
    ap.add_argument('--lrs', default=None,
                    help=f'learning rates tried for each tool, the best FVU of each reported (default {LRS}; '
                         f'with --archs all {LRS_ALL})')
    ap.add_argument('--acts', default=None, help='an .npy [N, d] file, or a saenb_cache store directory, instead of '
                                                 'synthetic activations')
    ap.add_argument('--val_rows', type=int, default=65536, help="at most this many rows of a store's validation split")
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--device', default='cpu', help="cpu, cuda or cuda:N: where every tool trains")
    ap.add_argument('--saelens_bf16', default='auto', choices=('auto', 'on', 'off'),
                    help="also run SAELens with its bf16 autocast (auto: where the CPU has bf16 matrix units)")
    ap.add_argument('--no_sparsify', action='store_true', help="leave sparsify out of the topk comparison")
    ap.add_argument('--sparsify_optimizer', default='adam', choices=('adam', 'signum'),
                    help="sparsify's optimizer: adam, or its default schedule-free sign descent (signum)")
    ap.add_argument('--summarize', default=None, metavar='RECORD',
                    help="train nothing: print the summary and targets of a record this script wrote (a results file)")
    a = ap.parse_args()
    if a.summarize: return summarize(a.summarize)
    if a.device.startswith('cuda') and not torch.cuda.is_available(): ap.error(f"--device {a.device}: no GPU here")
    archs = list(ALL_ARCHS) if a.archs == 'all' else [s.strip() for s in a.archs.split(',') if s.strip()]
    bad = [x for x in archs if x not in ALL_ARCHS]
    if bad: ap.error(f"unknown architecture(s) {', '.join(bad)}: choose from {', '.join(ALL_ARCHS)}, or all")
    if a.coef_l0 is None: a.coef_l0 = float(a.k)
    lrs_reduced = a.lrs is None and a.archs == 'all'
    def rates(flag, text):
        try: v = [float(x) for x in text.split(',')]
        except ValueError: v = []
        if not v or min(v) <= 0:
            ap.error(f"{flag} {text}: give positive learning rates as a comma list, e.g. {LRS_ALL}")
        return v
    lrs = rates('--lrs', a.lrs or (LRS_ALL if lrs_reduced else LRS))
    coef_lrs, starts = coef_plan(archs, rates('--coef_lrs', a.coef_lrs) if a.coef_lrs else None,
                                 json.loads(a.coef_start or '{}'), a.l1)
    max_runs = a.max_search_runs or (5 if a.archs == 'all' else 7)
    saelens_cfg = json.loads(a.saelens_cfg or '{}')
    with tempfile.TemporaryDirectory(prefix='sae_vs_saelens_') as tmp:   # the activations' copies and saenb's SAEs
        return _run(a, archs, starts, lrs, coef_lrs, lrs_reduced, max_runs, saelens_cfg, Path(tmp), t_start)

def _run(a, archs, starts, lrs, coef_lrs, lrs_reduced, max_runs, saelens_cfg, tmp, t_start):
    train, val, source = write_acts(a.acts, tmp, a)
    d_in = int(np.load(val, mmap_mode='r').shape[1]); d_sae = d_in * a.exp_factor
    widths = sorted({max(1, d_sae // 8), max(1, d_sae // 4), max(1, d_sae // 2), d_sae})   # saenb's default prefixes
    py = saelens_python()
    sp_py = sparsify_python() if {'topk', 'topk_saelens'} & set(archs) and not a.no_sparsify else None
    sl16_on = a.saelens_bf16 == 'on' or (a.saelens_bf16 == 'auto' and training_precision(a.device)[0] == 'bf16')
    peak32, peak16 = matmul_peak(torch.float32, a.device), matmul_peak(torch.bfloat16, a.device)
    record = {'bench': 'sae_vs_saelens', 'device': device_name(a.device), 'd_in': d_in, 'd_sae': d_sae, 'k': a.k,
              'coef_l0': a.coef_l0, 'batch_size': a.batch_size, 'n_tokens': a.n_tokens, 'acts': source,
              'archs': archs, 'lrs': lrs, 'lrs_reduced': lrs_reduced, 'coef_lrs': coef_lrs,
              'max_search_runs': max_runs,
              'coef_start': {x: starts[x] for x in archs if x in COEF_ARCHS},
              'coef_slope': {x: COEF_SLOPE[x] for x in archs if x in COEF_ARCHS}, 'saelens_cfg': saelens_cfg,
              'matryoshka_widths': widths if 'matryoshka' in archs else None,
              'sparsify_optimizer': a.sparsify_optimizer if sp_py else None,
              'peak_fp32_flops': peak32, 'peak_bf16_flops': peak16,
              'saelens_bf16': 'run' if sl16_on else 'skipped: ' + (
                  '--saelens_bf16 off' if a.saelens_bf16 == 'off' else
                  f'no bf16 matrix units (bf16 {peak16 / 1e9:.1f} GFLOP/s against fp32 {peak32 / 1e9:.1f})')}

    done = {}   # SAELens's runs by (architecture, knob, lr, autocast): a variant's search repeats its architecture's
    def saelens(arch, knob, lr, autocast=False):
        key = (SAELENS_ARCH[arch], float(knob), lr, autocast)
        if key not in done: done[key] = _saelens(arch, knob, lr, autocast)
        return dict(done[key])

    def _saelens(arch, knob, lr, autocast):
        t0 = time.perf_counter()
        r = run_json([py, str(HERE/'_saelens_worker.py'), str(train), str(val), SAELENS_ARCH[arch], str(d_sae),
                      str(knob), str(a.batch_size), str(a.n_tokens), str(lr), str(int(autocast)), str(a.seed),
                      ','.join(map(str, widths)) if arch == 'matryoshka' else '-',
                      json.dumps(saelens_cfg.get(saenb_arch(arch), {})), a.device])
        log(f"saelens {arch}{' bf16' if autocast else ''} knob={knob:.4g} lr={lr:g}: fvu {r['fvu']:.4f} "
            f"l0 {r['l0']:.2f} {r['tokens_per_s']:,.0f} tok/s ({time.perf_counter() - t0:.0f} s)")
        return {**r, 'lr': lr, 'knob': knob}

    def dead_steps():
        "SAELens's dead-latent window in steps, as its runs report it (its default before any has run)."
        return next((r['dead_feature_window'] for r in done.values() if 'dead_feature_window' in r), SAELENS_DEAD_STEPS)

    sparsified = {}   # sparsify's runs by learning rate: `topk` and `topk_saelens` compare with the same runs
    def sparsify(lr):
        if lr not in sparsified: sparsified[lr] = _sparsify(lr)
        return dict(sparsified[lr])

    def _sparsify(lr):
        t0 = time.perf_counter()
        r = run_json([sp_py, str(HERE/'_sparsify_worker.py'), str(train), str(val), str(d_sae), str(a.k),
                      str(a.batch_size), str(a.n_tokens), str(lr), str(a.seed), a.sparsify_optimizer, a.device])
        log(f"sparsify topk k={a.k} lr={lr:g}: fvu {r['fvu']:.4f} l0 {r['l0']:.2f} {r['tokens_per_s']:,.0f} tok/s "
            f"({time.perf_counter() - t0:.0f} s)")
        return {**r, 'lr': lr, 'knob': a.k}

    def saenb(arch, knob, lr):
        t0 = time.perf_counter()
        flags = ['--k', str(knob)] if arch in K_ARCHS else ['--sparsity_coeff', str(knob)]
        if arch == 'matryoshka': flags += ['--sae', json.dumps({'prefixes': widths})]
        if arch in VARIANTS: flags += ['--sae', json.dumps(VARIANTS[arch][1](dead_steps(), a.batch_size))]
        # saenb's JumpReLU starts from thresholds calibrated on the first batch to the target L0 (its `calibrate`, on
        # when target_l0 is set; the coefficient stays 'fixed'): without, they move too little in a short run
        if arch == 'jumprelu': flags += ['--target_l0', str(a.coef_l0)]
        # validation once, after the last step: the peers validate nothing while they train (SAELens evaluates only
        # when it logs to W&B, off here), and saenb's default, ten validations a run, would be on its clock
        flags += ['--val_every', str(max(1, a.n_tokens // a.batch_size))]
        r = run_json([saenb_command('saenb_train_sae'), '--acts', str(train), '--val_acts', str(val), '--arch',
                      saenb_arch(arch),
                      *flags,
                      '--exp_factor', str(a.exp_factor), '--n_tokens', str(a.n_tokens), '--batch_size',
                      str(a.batch_size), '--lr', str(lr), '--seed', str(a.seed),
                      '--device', a.device, '--out', str(tmp/f'saenb_{arch}_{lr}_{knob}'), '--quiet'])
        if arch in BATCH_ARCHS: r.update(batch_codes(tmp/f'saenb_{arch}_{lr}_{knob}', val, a.batch_size))
        log(f"saenb   {arch} knob={knob:.4g} lr={lr:g}: fvu {r['fvu']:.4f} l0 {r['l0']:.2f}"
            f" {r['tokens_per_s']:,.0f} tok/s ({time.perf_counter() - t0:.0f} s)")
        return {**r, 'lr': lr, 'knob': knob}

    def runs_of(rs):
        return [{k: (round(r[k], 6) if isinstance(r[k], float) else r[k])
                 for k in ('lr', 'knob', 'fvu', 'l0', 'tokens_per_s')} for r in rs]

    def compare(arch) -> dict:
        target = float(a.k) if arch in K_ARCHS else a.coef_l0
        if arch in K_ARCHS:   # each learning rate's runs of the tools in turn: they see the same drift of the machine
            sls, ourss = [], []
            for lr in lrs:
                sls.append(saelens(arch, a.k, lr)); ourss.append(saenb(arch, a.k, lr))
                if saenb_arch(arch) == 'topk' and sp_py: sparsify(lr)   # (`_versus_sparsify` reads these runs)
            sl, ours = min(sls, key=lambda r: r['fvu']), min(ourss, key=lambda r: r['fvu'])
            near = sl
        else:
            c_sl, c_ours = starts[arch]['saelens'], starts[arch]['saenb']
            slope = COEF_SLOPE.get(arch, {})
            sl, sls = at_best_lr(lambda c, lr: saelens(arch, c, lr), coef_lrs[arch], c_sl, target, max_runs,
                                 slope.get('saelens'))
            ours, ourss = at_best_lr(lambda c, lr: saenb(arch, c, lr), coef_lrs[arch], c_ours, target, max_runs,
                                     slope.get('saenb'))
            near = min((r for r in sls if r['lr'] == sl['lr']), key=lambda r: abs(np.log(max(r['l0'], 1e-9) / target)))
        all_sl, all_ours = (float(np.median([r['tokens_per_s'] for r in rs])) for rs in (sls, ourss))
        if arch in K_ARCHS:   # else: at the matched L0; copies, so that the runs' records keep their own speeds
            sl, ours = {**sl, 'tokens_per_s': all_sl}, {**ours, 'tokens_per_s': all_ours}
        # SAELens with its own bf16 autocast (off by default there), once, at its best setting: speed at equal precision
        sl16 = saelens(arch, near['knob'], near['lr'], autocast=True) if sl16_on else \
            {'tokens_per_s': None, 'fvu': None, 'l0': None}
        f = flops_per_token(arch, d_in, d_sae, a.k)
        ours_flops, sl_flops = f * ours['tokens_per_s'], f * sl['tokens_per_s']
        off = lambda l0: bool(abs(np.log(max(l0, 1e-9) / target)) > np.log(1.25))
        rec = {'saelens_arch': SAELENS_ARCH[arch], 'compared_at': 'k' if arch in K_ARCHS else 'l0', 'target_l0': target,
               'saenb_tokens_per_s': ours['tokens_per_s'], 'saelens_tokens_per_s': sl['tokens_per_s'],
               'saenb_tokens_per_s_all_runs': all_ours, 'saelens_tokens_per_s_all_runs': all_sl,
               'saenb_first_batch_seconds': float(np.median([r.get('first_batch_seconds', 0.0) for r in ourss])),
               'speedup': ours['tokens_per_s'] / sl['tokens_per_s'],
               'saelens_bf16_tokens_per_s': sl16['tokens_per_s'],
               'speedup_vs_saelens_bf16': ours['tokens_per_s'] / sl16['tokens_per_s'] if sl16_on else None,
               'saelens_bf16_fvu': sl16['fvu'], 'saelens_bf16_l0': sl16['l0'],
               'saenb_fvu': ours['fvu'], 'saelens_fvu': sl['fvu'], 'saenb_l0': ours['l0'], 'saelens_l0': sl['l0'],
               'fvu_ratio': ours['fvu'] / sl['fvu'],
               'saenb_l0_off_target': off(ours['l0']), 'saelens_l0_off_target': off(sl['l0']),
               'saenb_best_lr': ours['lr'], 'saelens_best_lr': sl['lr'],
               'saenb_knob': ours['knob'], 'saelens_knob': sl['knob'],
               'saelens_eval_arch': sl.get('eval_arch'),
               'flops_per_token': f,
               'saenb_flops_frac_fp32_peak': ours_flops / peak32, 'saenb_flops_frac_bf16_peak': ours_flops / peak16,
               'saelens_flops_frac_fp32_peak': sl_flops / peak32, 'saelens_flops_frac_bf16_peak': sl_flops / peak16,
               'saenb_runs': runs_of(ourss), 'saelens_runs': runs_of(sls)}
        grid = lrs if arch in K_ARCHS else coef_lrs[arch]
        edge = lambda lr: len(grid) > 1 and lr in (min(grid), max(grid))
        rec.update(saenb_best_lr_at_edge=edge(ours['lr']), saelens_best_lr_at_edge=edge(sl['lr']))
        if arch in K_ARCHS:
            if arch in BATCH_ARCHS:   # both tools' training-mode codes, at L0 = k exactly: each tool's best run
                sb, ob = (min(rs, key=lambda r: r['batch_fvu']) for rs in (sls, ourss))
                for tool, r in (('saelens', sb), ('saenb', ob)):
                    rec.update({f'{tool}_batch_fvu': r['batch_fvu'], f'{tool}_batch_l0': r['batch_l0'],
                                f'{tool}_batch_lr': r['lr']})
                rec['fvu_ratio_batch'] = ob['batch_fvu'] / sb['batch_fvu']
            if saenb_arch(arch) == 'topk' and sp_py: rec.update(_versus_sparsify(ours, lrs, sparsify, f, peak32, edge))
        else:
            rec.update(saenb_matched=ours['reached'], saelens_matched=sl['reached'])   # the best rate's search
        if arch in VARIANTS: rec['saenb_settings'] = VARIANTS[arch][1](dead_steps(), a.batch_size)
        return rec

    failed = []
    for arch in archs:
        t0 = time.perf_counter()
        try: record[arch] = compare(arch)
        except Exception as e:   # one architecture's failure does not lose the others' hour
            failed.append(arch); record[arch] = {'error': str(e)[-3000:]}; log(f"{arch} failed: {e}")
        record[arch]['seconds'] = round(time.perf_counter() - t0, 1)
    record['summary'] = {arch: summary(record[arch]) if arch not in failed else {'error': True} for arch in archs}
    record['targets_met'] = targets_met(record['summary'])
    record['wall_seconds'] = round(time.perf_counter() - t_start, 1)
    emit(record)
    if failed: sys.exit(1)


if __name__ == '__main__': main()
