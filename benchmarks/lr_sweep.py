"""saenb's default SAE learning rate, from measurement: `saenb_train_sae` trained over a geometric grid of learning rates,
on two activation sources, two widths each and two architectures, and the validation FVU of each run recorded. Prints one
JSON line and writes the same record to `benchmarks/results/lr_sweep.json` (`--out`), for a notebook to plot.

Sources:
- `synthetic`: `sae_vs_saelens.synthetic_activations` (d_in 256, 4*d_in true features, k/2 active per row), the very rows
  that benchmark trains on (same count and seed), its last 8192 rows held out for FVU.
- `dyck_gpt`: the residual stream `0_residpost` of a saenb GPT trained on Dyck-2 (d_model 128): the activation store
  `--store` (e.g. the default `saenb_pipeline`'s `runs/dyck/acts/0_residpost`), trained on its train split, FVU on its
  validation split. Without `--store` one is built in the work directory with `saenb_data`, `saenb_train_gpt` and
  `saenb_cache` at the default pipeline's settings (`saenb.pipeline.PIPELINE_DEFAULT`: 20,000 sequences, a 2-layer
  d_model-128 GPT, batch 128, lr 1e-3), except the GPT's steps: `--gpt_steps` (default 1500, the pipeline's; fewer,
  e.g. 300, build it faster from a less trained GPT, whose residual stream then differs from the pipeline's).

Configurations (source, architecture, width): topk and lagrangian (its `target_l0` = the same number as topk's k: 32 on
synthetic, 8 on dyck, the default pipeline's), at exp_factor 4 and 16 (d_sae 1024/4096 on synthetic, 512/2048 on dyck),
plus `sae_vs_saelens.py`'s own configuration (synthetic, topk, exp_factor 8, k 32), marked `reference`. Token budgets:
sae_vs_saelens's (524,288 tokens) on synthetic, the default pipeline's (1,000,000) on dyck, batch 4096 for both; every
other setting at `saenb_train_sae`'s defaults (precision auto, constant schedule, no warmup, seed 0).

Learning rates: a geometric grid in steps of sqrt(2) (`--lr_min` to `--lr_max`), so that Gao et al. (2024)'s rule
lr = c * (d_sae / 2048) ** -0.5 lands on the grid at every width here (2x for 512, sqrt(2)x for 1024, ...). Each
configuration is measured from the grid's middle outwards, each side until its FVU passes `--stop_ratio` times the best
so far (FVU against lr is U-shaped: the points further out are worse still, and no candidate default within that ratio
can sit there; `--stop_ratio inf` measures the whole grid). A configuration whose best learning rate is at an edge of the
grid is extended one step beyond it, at most `--max_extend` times per side.

For each configuration: every run's lr, FVU, L0, dead fraction, seconds; its best lr; and each run's FVU as a ratio to
the configuration's best FVU. Candidate defaults, on the grid only (the FVU between grid points is not measured):
(a) a constant lr, each grid value; (b) the rule lr = c * (d_sae / 2048) ** -0.5, each grid value of c. For each
candidate, the worst ratio over all configurations (`complete`: every configuration was measured at its lr; if not,
`bound`, a lower bound from the U shape: past a configuration's measured range its ratio is at least the range end's).
An incomplete candidate whose bound beats the best complete candidate's worst ratio has its missing runs trained
(within 4x of the grid's ends, at most `--max_fill` runs), so the complete candidate with the smallest worst case,
`recommended`, is the best of all candidates. `recommended_within_ref_tol`: the same among the candidates whose FVU on the
reference configuration is within `--ref_tol` (2%) of its best (issue 17's acceptance check); `recommended_by_arch`: the
choice for each architecture alone. Seed noise: the reference configuration is retrained with `--noise_seeds` at its best
lr and at the recommended ones, to show how far apart two seeds' FVUs lie. Lagrangian runs do not all end at their L0
target (`l0_ratio`, L0 / target, is recorded with every run): their FVUs compare optimisation at somewhat different
sparsity.

Finished runs are kept in `--work` (default: a temporary directory, removed when the script ends) with their
summaries and a hash of the saenb source that trained them (`saenb_code`: the modules `saenb.train_sae` imports), so
rerunning with the same `--work` trains only what is missing or was trained by other code. `--threads 1` runs each training on one thread: on a machine whose cores other work
shares, two-thread runs wait on each other's threads and take several times longer.

    python benchmarks/lr_sweep.py --store runs/dyck/acts/0_residpost [--work DIR] [--threads 1] [--sources synthetic,dyck_gpt] [--archs topk,lagrangian] [--stop_ratio 1.3] [--device cpu]
"""
import argparse, hashlib, json, os, shutil, subprocess, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, emit, saenb_command
from saenb.utils import scratch_dir
from sae_vs_saelens import synthetic_activations, run_json as summary_line

HERE = Path(__file__).parent
GAO_REF = 2048  # the width at which the rule's lr is c

def run_json(cmd:list, env=None) -> dict:
    "`sae_vs_saelens.run_json` (a saenb command's JSON summary line), with its wall-clock seconds."
    t0 = time.perf_counter()
    return {**summary_line(cmd, env), 'wall_seconds': time.perf_counter() - t0}

def run_cmd(cmd:list, env=None):
    "Run a saenb console command, raising with its output if it fails."
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode: raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")

LR0 = 2.5e-4  # the grid's lattice: LR0 * sqrt(2)**i, i any integer (set from --lr_min)

def snap(lr:float) -> float:
    "`lr` on the grid's lattice: the nearest LR0 * sqrt(2)**i, to 6 significant digits (so equal lrs compare equal)."
    return float(f'{LR0 * 2 ** (round(2 * np.log2(lr / LR0)) / 2):.6g}')

def lr_grid(lo:float, hi:float) -> list:
    "Learning rates lo * sqrt(2)**i up to hi."
    return [snap(lo * 2 ** (i / 2)) for i in range(int(round(2 * np.log2(hi / lo))) + 1)]

def rule_lr(c0:float, c:dict) -> float:
    "Gao et al.'s lr = c0 * (d_sae / 2048) ** -0.5 at configuration `c`'s width (on the lattice: widths 2048 * 2**j)."
    return snap(c0 * (c['d_sae'] / GAO_REF) ** -0.5)

def same_lr(a:float, b:float) -> bool: return abs(np.log(a / b)) < 1e-3

def saenb_code() -> str:
    "A hash of the source of the saenb modules `saenb_train_sae` runs (those `saenb.train_sae` imports): which code trained a run."
    r = subprocess.run([sys.executable, '-c', "import sys, saenb.train_sae; print('\\n'.join(sorted(m.__file__ for n, m in "
                        "list(sys.modules.items()) if n.split('.')[0] == 'saenb' and getattr(m, '__file__', None))))"],
                       capture_output=True, text=True, check=True)
    h = hashlib.sha256()
    for f in r.stdout.split(): h.update(Path(f).name.encode() + Path(f).read_bytes())
    return h.hexdigest()[:12]

def build_dyck_store(work:Path, gpt_steps:int, device:str, log, env=None) -> Path:
    "The default pipeline's Dyck-2 corpus, GPT (`gpt_steps` steps) and `0_residpost` store, built in `work` once."
    store = work/'dyck'/'acts'/'0_residpost'
    if (store/'manifest.json').exists(): return store
    from saenb.pipeline import PIPELINE_DEFAULT as P
    g, c = P['gpt'], P['cache']
    t0 = time.time()
    log(f"building the Dyck store in {work/'dyck'}: corpus, GPT ({gpt_steps} steps), cache...")
    run_cmd(['saenb_data', '--lang', P['lang'], '--n_seqs', str(P['data']['n_seqs']), '--seed', str(P['seed']),
             '--out', str(work/'dyck'/'data'), '--overwrite', '--quiet'], env)
    shutil.rmtree(work/'dyck'/'model', ignore_errors=True)
    run_cmd(['saenb_train_gpt', '--data', str(work/'dyck'/'data'), '--out', str(work/'dyck'/'model'),
             *[a for k in ('n_layers', 'd_model', 'n_heads', 'd_mlp', 'n_ctx', 'batch_size', 'lr', 'precision')
               for a in (f'--{k}', str(g[k]))],
             '--steps', str(gpt_steps), '--warmup_steps', str(min(g['warmup_steps'], gpt_steps // 10)),
             '--ckpt_every', str(g['ckpt_every']), '--seed', str(P['seed']), '--device', device], env)
    run_cmd(['saenb_cache', '--model', str(work/'dyck'/'model'), '--data', str(work/'dyck'/'data'),
             '--hooks', ','.join(c['hooks']), '--out', str(work/'dyck'/'acts'), '--dtype', c['dtype'],
             '--batch_size', str(c['batch_size']), '--precision', c['precision'], '--device', device,
             '--overwrite', '--quiet'], env)
    log(f"built {store} in {time.time() - t0:.0f} s")
    return store

def label(c:dict) -> str: return f"{c['source']}/{c['arch']}/d_sae={c['d_sae']}"

def candidates(configs:list, grid:list) -> dict:
    """Worst ratio to the best FVU over `configs` of each constant lr and each c of lr = c * (d_sae / 2048) ** -0.5.
    Where a configuration was not measured at a candidate's lr (outside its measured range), `bound` is a lower bound
    of the worst ratio: FVU is taken to be U-shaped in lr, so past the range's end it is at least the end's."""
    def worst(lr_of) -> dict:
        ratios, missing, bound = {}, [], 0.
        for c in configs:
            lr = lr_of(c)
            r = [x for x in c['runs'] if same_lr(x['lr'], lr)]
            if r: ratios[label(c)] = r[0]['ratio']
            else:
                missing.append((label(c), lr))
                bound = max(bound, (c['runs'][0] if lr < c['runs'][0]['lr'] else c['runs'][-1])['ratio'])
        w = max(ratios, key=ratios.get) if ratios else None
        return {'worst_ratio': ratios[w] if w else None, 'worst_config': w, 'complete': not missing,
                'bound': max(bound, ratios[w] if w else 0.), 'missing': missing, 'ratios': ratios}
    return {'constant': [{'lr': lr, **worst(lambda c: lr)} for lr in grid],
            'gao_rule': [{'c': c0, **worst(lambda c: rule_lr(c0, c))} for c0 in grid]}

def recommend(configs:list, cand:dict, ok=lambda x: True) -> dict:
    "The complete candidate of `cand` (from `candidates`) passing `ok` with the smallest worst ratio, and its lr at each configuration."
    x = min((dict(x, kind=kind) for kind in ('constant', 'gao_rule') for x in cand[kind] if x['complete'] and ok(x)),
            key=lambda x: x['worst_ratio'], default=None)
    if x is None: return None
    return {'kind': x['kind'], **({'lr': x['lr']} if x['kind'] == 'constant' else {'c': x['c']}),
            'worst_ratio': x['worst_ratio'], 'worst_config': x['worst_config'], 'ratios': x['ratios'],
            'lr_at': {label(c): x['lr'] if x['kind'] == 'constant' else rule_lr(x['c'], c) for c in configs}}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--sources', default='synthetic,dyck_gpt'); ap.add_argument('--archs', default='topk,lagrangian')
    ap.add_argument('--store', default=None, help='dyck_gpt: an activation store of a Dyck GPT (default: build one in --work)')
    ap.add_argument('--gpt_steps', type=int, default=1500, help='dyck_gpt without --store: GPT training steps')
    ap.add_argument('--work', default=None, help='directory for the runs (kept; reused by a rerun) (default: a temporary one, removed at the end)')
    ap.add_argument('--out', default=str(HERE/'results'/'lr_sweep.json'), help='where the full record is written')
    ap.add_argument('--d_in', type=int, default=256, help='synthetic: input width')
    ap.add_argument('--k_synthetic', type=int, default=32); ap.add_argument('--k_dyck', type=int, default=8)
    ap.add_argument('--exp_factors', default='4,16'); ap.add_argument('--ref_exp_factor', type=int, default=8,
                    help="synthetic topk at this exp_factor, sae_vs_saelens.py's configuration (0: none)")
    ap.add_argument('--n_tokens_synthetic', type=int, default=524288); ap.add_argument('--n_tokens_dyck', type=int, default=1_000_000)
    ap.add_argument('--batch_size', type=int, default=4096)
    ap.add_argument('--lr_min', type=float, default=2.5e-4); ap.add_argument('--lr_max', type=float, default=1.6e-2)
    ap.add_argument('--max_extend', type=int, default=2, help='grid steps added beyond an edge holding the best lr, per side')
    ap.add_argument('--max_fill', type=int, default=40, help='runs added to complete promising candidates (see above)')
    ap.add_argument('--ref_tol', type=float, default=0.02, help='recommended_within_ref_tol: the best candidate within this of the best FVU on the reference configuration')
    ap.add_argument('--noise_seeds', default='1,2', help='reference configuration: seeds retrained at its best and the recommended lrs')
    ap.add_argument('--stop_ratio', type=float, default=1.3,
                    help="a configuration's grid is measured outwards from its middle until FVU / best FVU passes this on each side (inf: the whole grid)")
    ap.add_argument('--threads', type=int, default=None, help='CPU threads per run (OMP_NUM_THREADS; default: torch\'s); 1 on a shared machine')
    ap.add_argument('--device', default='cpu'); ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    global LR0; LR0 = a.lr_min
    code = saenb_code()
    env = {**os.environ, 'OMP_NUM_THREADS': str(a.threads)} if a.threads else None
    t_start = time.time()
    log = lambda s: print(s, file=sys.stderr, flush=True)
    work = Path(a.work) if a.work else scratch_dir('lr_sweep_')
    work.mkdir(parents=True, exist_ok=True)
    grid, sources, archs = lr_grid(a.lr_min, a.lr_max), a.sources.split(','), a.archs.split(',')
    exps = [float(e) for e in a.exp_factors.split(',')]
    record = {'bench': 'lr_sweep', 'saenb_code': code, 'device': device_name(a.device), 'threads': a.threads, 'grid': grid,
              'stop_ratio': a.stop_ratio, 'batch_size': a.batch_size, 'seed': a.seed, 'gao_ref_d_sae': GAO_REF, 'sources': {}}

    # the sources: (training acts, validation acts or None for the store's validation split, d_in, k, n_tokens)
    data = {}
    if 'synthetic' in sources:
        tr, va = work/'synthetic'/'train.npy', work/'synthetic'/'val.npy'
        if not va.exists():
            tr.parent.mkdir(parents=True, exist_ok=True)
            # exactly sae_vs_saelens.py's rows: max(n_tokens // 2, 65536) + 8192, the last 8192 for validation
            acts = synthetic_activations(max(a.n_tokens_synthetic // 2, 65536) + 8192, a.d_in, a.d_in * 4,
                                         a.k_synthetic / 2, a.seed)
            np.save(tr, acts[:-8192]); np.save(va, acts[-8192:])
        data['synthetic'] = (tr, va, a.d_in, a.k_synthetic, a.n_tokens_synthetic)
        record['sources']['synthetic'] = {'d_in': a.d_in, 'n_feat': a.d_in * 4, 'l0': a.k_synthetic / 2,
                                          'train_rows': len(np.load(tr, mmap_mode='r')), 'val_rows': 8192}
    if 'dyck_gpt' in sources:
        store = Path(a.store) if a.store else build_dyck_store(work, a.gpt_steps, a.device, log, env)
        m = json.loads((store/'manifest.json').read_text())
        data['dyck_gpt'] = (store.resolve(), None, m['d'], a.k_dyck, a.n_tokens_dyck)
        record['sources']['dyck_gpt'] = {'store': str(store), 'built': a.store is None,
                                         'gpt_steps': None if a.store else a.gpt_steps, 'd_in': m['d'],
                                         'hook': m.get('hook'), 'rows': m.get('rows')}

    configs = []
    for s in sources:
        for arch in archs:
            for e in exps + ([a.ref_exp_factor] if s == 'synthetic' and arch == 'topk' and a.ref_exp_factor else []):
                tr, va, d_in, k, n_tok = data[s]
                configs.append({'source': s, 'arch': arch, 'd_in': d_in, 'exp_factor': e, 'd_sae': int(d_in * e),
                                'knob': 'k' if arch in ('topk', 'batchtopk') else 'target_l0', 'k': k,
                                'n_tokens': n_tok, 'reference': s == 'synthetic' and arch == 'topk' and e == a.ref_exp_factor,
                                'runs': []})

    def train(c:dict, lr:float, seed:int) -> dict:
        tr, va, *_ = data[c['source']]
        out = work/'runs'/f"{c['source']}_{c['arch']}_{c['d_sae']}_lr{lr:.4g}_s{seed}"
        if (out/'lr_sweep_run.json').exists():
            r = json.loads((out/'lr_sweep_run.json').read_text())
            if r.get('code') == code: return r   # else trained by other saenb code: trained again
        shutil.rmtree(out, ignore_errors=True)  # an interrupted run, or one of other code
        s = run_json([saenb_command('saenb_train_sae'), '--acts', str(tr), *(['--val_acts', str(va)] if va else []),
                      '--arch', c['arch'],
                      f"--{c['knob']}", str(c['k']), '--exp_factor', str(c['exp_factor']), '--n_tokens', str(c['n_tokens']),
                      '--batch_size', str(a.batch_size), '--lr', str(lr), '--seed', str(seed), '--device', a.device,
                      '--out', str(out), '--quiet'], env)
        r = {'lr': lr, 'seed': seed, 'fvu': s['fvu'], 'l0': s['l0'], 'dead_frac': s['dead_frac'],
             'seconds': s['wall_seconds'], 'train_seconds': s['train_seconds'], 'precision': s.get('precision'),
             'd_sae': s['d_sae'], 'steps': s['steps'], 'code': code}
        (out/'lr_sweep_run.json').write_text(json.dumps(r))
        log(f"{label(c)} lr {lr:.3g} seed {seed}: fvu {r['fvu']:.4f} l0 {r['l0']:.2f} dead {r['dead_frac']:.3f} "
            f"({r['seconds']:.0f} s)")
        return r

    def rescore(c:dict):
        c['runs'].sort(key=lambda r: r['lr'])
        best = min(c['runs'], key=lambda r: r['fvu'])
        c.update(best_lr=best['lr'], best_fvu=best['fvu'], best_l0=best['l0'],
                 best_at_edge=best['lr'] in (c['runs'][0]['lr'], c['runs'][-1]['lr']))
        for r in c['runs']: r.update(ratio=r['fvu'] / best['fvu'], l0_ratio=r['l0'] / c['k'])  # L0 / k or target_l0

    n = len(grid) - 1   # grid point i: lr_min * sqrt(2)**i
    at = lambda i: snap(a.lr_min * 2 ** (i / 2))
    for c in sorted(configs, key=lambda c: (c['source'] != 'synthetic', c['arch'] != 'topk', c['d_sae'])):
        runs = {n // 2: train(c, at(n // 2), a.seed)}   # from the middle of the grid outwards
        while True:
            best = min(runs, key=lambda i: runs[i]['fvu'])
            ratio = lambda i: runs[i]['fvu'] / runs[best]['fvu']
            grow = []
            for i, end, side in ((max(runs), n, 1), (min(runs), 0, -1)):
                if (i - end) * side < 0 and ratio(i) <= a.stop_ratio: grow.append(i + side)  # inside the grid: go on
                # past its end: only while the best is at the edge, at most max_extend steps
                elif i == best and (i - end) * side < a.max_extend: grow.append(i + side)
            if not grow: break
            for i in grow: runs[i] = train(c, at(i), a.seed)
        c['runs'] = list(runs.values())
        rescore(c)

    # a candidate not measured in every configuration whose lower bound of its worst ratio beats the best complete
    # candidate's: measure what it misses (within 4x of the grid's ends), until none is left
    lo, hi, n_fill = a.lr_min / 4 * 0.999, a.lr_max * 4 * 1.001, 0
    while True:
        cand = candidates(configs, sorted({r['lr'] for c in configs for r in c['runs']}))
        flat = [x for kind in ('constant', 'gao_rule') for x in cand[kind]]
        w = min((x['worst_ratio'] for x in flat if x['complete']), default=np.inf)
        todo = [x for x in flat if not x['complete'] and x['bound'] < w and all(lo <= lr <= hi for _, lr in x['missing'])]
        if not todo or n_fill >= a.max_fill: break
        x = min(todo, key=lambda x: x['bound'])
        for name, lr in x['missing']:
            c = next(c for c in configs if label(c) == name)
            c['runs'].append(train(c, lr, a.seed)); rescore(c); n_fill += 1
    record['n_filled'] = n_fill

    rec = recommend(configs, cand)
    best_const = min((x for x in cand['constant'] if x['complete']), key=lambda x: x['worst_ratio'])
    best_rule = min((x for x in cand['gao_rule'] if x['complete']), key=lambda x: x['worst_ratio'])
    # the same choice made for each architecture alone (from the runs above: a candidate lacking a run is left out)
    by_arch = {arch: recommend(sub, candidates(sub, sorted({r['lr'] for c in sub for r in c['runs']})))
               for arch in archs for sub in [[c for c in configs if c['arch'] == arch]] if sub}
    record.update(configs=configs, candidates=cand, recommended=rec,
                  best_constant={k: best_const[k] for k in ('lr', 'worst_ratio', 'worst_config')},
                  best_gao_rule={k: best_rule[k] for k in ('c', 'worst_ratio', 'worst_config')},
                  recommended_by_arch=by_arch)
    ref = [c for c in configs if c['reference']]
    if ref:  # the acceptance check: the default within ref_tol of the best FVU on sae_vs_saelens's configuration
        record['ref_tol'] = a.ref_tol
        record['recommended_within_ref_tol'] = recommend(configs, cand, lambda x: x['ratios'][label(ref[0])] <= 1 + a.ref_tol)

    if ref and a.noise_seeds:  # how far apart two seeds lie, at the reference's best lr and at the recommended one
        c, noise = ref[0], []
        tol = record['recommended_within_ref_tol']
        for lr in sorted({c['best_lr'], rec['lr_at'][label(c)], *([tol['lr_at'][label(c)]] if tol else [])}):
            rs = [r for r in c['runs'] if same_lr(r['lr'], lr)] + [train(c, lr, int(s)) for s in a.noise_seeds.split(',')]
            f = [r['fvu'] for r in rs]
            noise.append({'lr': lr, 'seeds': [r['seed'] for r in rs], 'fvu': f, 'rel_std': float(np.std(f, ddof=1) / np.mean(f)),
                          'runs': rs})
        record['seed_noise'] = {'config': label(c), 'at': noise}
    if saenb_code() != code:   # saenb's source changed while the sweep ran: runs after the change trained other code
        record['saenb_code_after'] = saenb_code()
        log(f"warning: saenb's source changed during the sweep ({code} -> {record['saenb_code_after']}): run it again")
    record['seconds'] = time.time() - t_start   # this invocation's (runs found in --work take none)
    record['run_seconds'] = sum(r['seconds'] for c in configs for r in c['runs']) + \
        sum(r['seconds'] for x in record.get('seed_noise', {}).get('at', []) for r in x['runs'][1:])
    record['n_runs'] = sum(len(c['runs']) for c in configs) + sum(len(x['seeds']) - 1 for x in record.get('seed_noise', {}).get('at', []))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(record, indent=1))
    emit(record)

if __name__ == '__main__': main()
