"""Shared pieces of the benchmark scripts (and of tests/test_sae_interop.py): machine description, measured
matrix-multiply peaks, and the virtual environments of the peers saenb is measured against (SAELens, sparsify)."""
import fcntl, json, math, os, platform, re, shutil, subprocess, sys, time
from pathlib import Path
import torch

def device_name(device:str='cpu') -> str:
    "A short description of the device the benchmark ran on."
    if device.startswith('cuda') and torch.cuda.is_available(): return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} x{os.cpu_count()} (torch threads {torch.get_num_threads()})"

def matmul_peak(dtype=torch.float32, device:str='cpu', n:int=2048, seconds:float=0.7, trials:int=3) -> float:
    """Best measured FLOP/s of square matrix multiplies of size `n` in `dtype` (smaller where one product would take
    over `seconds`/8), over `trials` windows: the practical peak figures are compared to."""
    sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)
    m = min(n, 256)
    while True:   # up to n, short of it where one product takes long (bf16 without bf16 units: 57 s at 2048 on AVX2)
        a, b = torch.randn(m, m, device=device, dtype=dtype), torch.randn(m, m, device=device, dtype=dtype)
        sync(); t0 = time.perf_counter(); a @ b; sync()
        if m >= n or time.perf_counter() - t0 > seconds / 8: break
        m = min(2 * m, n)
    for _ in range(2): a @ b
    best = 0.0
    for _ in range(trials):
        sync(); t0, reps = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds: a @ b; reps += 1
        sync(); best = max(best, 2 * m ** 3 * reps / (time.perf_counter() - t0))
    return best

def training_precision(device:str='cpu') -> tuple:
    "`(name, dtype)` of the precision saenb's training picks here (`precision='auto'`): bf16 only where it runs fast."
    from saenb.utils import resolve_precision
    name = resolve_precision('auto', torch.device(device), training=True)
    return name, torch.bfloat16 if name == 'bf16' else torch.float32

def saenb_command(name:str) -> str:
    "Path of saenb's console command `name`: the one beside this Python (its venv need not be activated), else on PATH."
    here = Path(sys.executable).parent/name
    if here.exists(): return str(here)
    if found := shutil.which(name): return found
    raise SystemExit(f"{name} is neither beside {sys.executable} nor on PATH: pip install -e . in this environment")

def has_k(arch:str) -> bool:
    "Whether SAEs of `arch` set their L0 by `k` (the TopK family) rather than by a sparsity coefficient."
    from dataclasses import fields
    from saenb.sae import SAE_REGISTRY   # imported where used, as in train_small: importing this module stays light
    return 'k' in {f.name for f in fields(SAE_REGISTRY[arch].config_class)}

def train_small(store:str, # activation store (or an `.npy` file, with `val_acts`)
                arch:str, # SAE architecture
                seed:int, lr:float, n_tokens:int=1_000_000,
                val_acts:str=None, # validation activations (default: the store's validation split)
                l0_by_step:bool=False, # also the training L0 at each logged step (`l0_by_step`, {step: L0})
                **settings) -> dict: # other `train_sae` settings (aux_k, dead_tokens, aux_coeff, k, batch_size, ...)
    """One SAE as the benchmarks that measure a default train it (`aux_k_default.py`, `dead_window_default.py`: by
    default exp_factor 4, k 8, batches of 4096, the store's validation split): its FVU, dead fraction and tokens/s."""
    from saenb.train_sae import train_sae
    settings = dict(exp_factor=4, batch_size=4096) | (dict(k=8) if has_k(arch) else {}) | settings
    res = train_sae(store, None, val_acts=val_acts, arch=arch, n_tokens=n_tokens, lr=lr, seed=seed, progress=False,
                    say=lambda s: None, **settings)
    r, h = res.summary, res.history
    steps = {'l0_by_step': {int(s): round(float(v), 1) for s, v in zip(h['step'], h['l0'])}} if l0_by_step else {}
    return dict(fvu=round(r['fvu'], 5), l0=round(r['l0'], 3), dead_frac=round(r['dead_frac'], 4),
                tokens_per_s=round(r['tokens_per_s']), **steps)

def ab_arguments(ap, # the script's `argparse.ArgumentParser`
                 before:str, # what `--before` names, for its help
                 runs:int, # default `--runs`
                ):
    "The flags of the A/B scripts (`bench_rev_ab.py`, `bench_kernel_ab.py`): the revision, the SAE, the data, the run."
    ap.add_argument('--before', default='HEAD', help=before)
    ap.add_argument('--arch', default='topk'); ap.add_argument('--acts', default=None)
    ap.add_argument('--d_in', type=int, default=256); ap.add_argument('--exp_factor', type=int, default=8)
    ap.add_argument('--batch_size', type=int, default=4096); ap.add_argument('--n_tokens', type=int, default=524288)
    ap.add_argument('--lr', type=float, default=4e-3); ap.add_argument('--runs', type=int, default=runs)

def ab_activations(a, # the A/B script's parsed flags (`ab_arguments`)
                   tmp:str, # directory for synthetic files
                   per_token:float, # synthetic features on per token
                  ) -> tuple:
    "`(train, validation)` files: `--acts` (and `--val`, if the script has it), else synthetic ones written to `tmp`."
    if a.acts is not None: return a.acts, getattr(a, 'val', None)
    import numpy as np
    from sae_vs_saelens import synthetic_activations
    x = synthetic_activations(a.n_tokens // 2 + 8192, a.d_in, 4 * a.d_in, per_token, 0)
    np.save(train := f'{tmp}/train.npy', x[:-8192]); np.save(val := f'{tmp}/val.npy', x[-8192:])
    return train, val

def emit(record:dict):
    "Print the benchmark's one JSON line."
    print(json.dumps(record), flush=True)

def save_record(record:dict, out, omit=('runs',)):
    "Write `record` to `out` (JSON, under a temporary name, then renamed) and print its JSON line without `omit`."
    out = Path(out); out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix('.json.partial')
    tmp.write_text(json.dumps(record, indent=1) + '\n'); os.replace(tmp, out)
    emit({k: v for k, v in record.items() if k not in omit})

def recommend_value(means:dict, # means[case][value]: a value's mean FVU in each case (lower is better)
                    setting:str, # the setting the values are of
                   ) -> dict:
    "The value whose FVUs over each case's best have the lowest geometric mean, and every value's geometric mean."
    values = list(next(iter(means.values())))
    score = {v: math.exp(sum(math.log(m[v] / min(m.values())) for m in means.values()) / len(means)) for v in values}
    return {setting: min(score, key=score.get), 'geo_mean_over_best': {str(v): round(s, 4) for v, s in score.items()}}

def compared_values(ap, # the script's `argparse.ArgumentParser`, whose `error` exits 2 with the reason
                    a, # its parsed flags: `cases`, `store`, `values`
                    setting:str, # the setting compared
                    parse, # parse(setting, text): the values, or `ValueError`
                    known_cases, # the cases the script has
                   ) -> tuple:
    """The values a default-measuring script compares, once its flags are checked: an unknown case, the `dyck` case
    without `--store`, values `parse` refuses, or fewer than two, stop it before any training."""
    if bad := [c for c in a.cases.split(',') if c not in known_cases]:
        ap.error(f"unknown case {bad[0]!r}: choose from {', '.join(known_cases)}")
    if 'dyck' in a.cases.split(',') and not a.store: ap.error('the dyck case needs --store')
    try: values = parse(setting, a.values)
    except ValueError as e: ap.error(f"--values: {e}")
    if len(values) < 2: ap.error('--values needs at least two values to compare')
    return values

def value_table(fvu:dict, # fvu[case][value]: that value's FVU at each seed
                bracket:dict, # bracket[case][value]: at each seed, the two L0s its FVU was interpolated between
                name, # name(case): the case's key in the table
               ) -> tuple:
    "`(means[case][value], per_case)`: each case's mean FVU of each value, its ratio to the best, seeds and brackets."
    means = {k: {v: sum(x) / len(x) for v, x in d.items()} for k, d in fvu.items()}
    r5 = lambda xs: [round(x, 5) for x in xs]
    return means, {name(k): dict(mean_fvu={str(v): round(x, 5) for v, x in m.items()},
                                 over_best={str(v): round(x / min(m.values()), 4) for v, x in m.items()},
                                 seeds={str(v): r5(fvu[k][v]) for v in m},
                                 bracket_l0={str(v): bracket[k][v] for v in m})
                   for k, m in means.items()}

# ---- the peers' virtual environments

TORCH_VERSION = torch.__version__.split('+')[0]   # the project's torch: the local build here, not a multi-GB download
# The peers share one environment: sparsify adds three small packages to SAELens's (eai-sparsify, natsort,
# schedulefree, by pip --dry-run); built together in 179 s on a 2-core AVX2 machine, sparsify's alone in 131
SAELENS_REQUIREMENTS = [f'torch=={TORCH_VERSION}', 'sae-lens>=6,<7',   # SAELens 6: the layout saenb writes and reads
                        'eai-sparsify>=1.3,<2']   # sparsify 1.3: the SparseCoder that _sparsify_worker.py drives
# peer: (variable naming another Python for it, its pip package, its module)
PEERS = {'saelens': ('SAENB_SAELENS_PYTHON', 'sae-lens', 'sae_lens'),
         'sparsify': ('SAENB_SPARSIFY_PYTHON', 'eai-sparsify', 'sparsify')}
# pip's words for an index it cannot reach, most telling first: the one reason a build is skipped rather than failed
NO_NETWORK = ('Failed to establish a new connection', 'Temporary failure in name resolution',
              'Name or service not known', 'Network is unreachable', 'No route to host', 'Connection refused',
              'ConnectTimeoutError', 'ReadTimeoutError', 'ProxyError', 'SSLError', 'NewConnectionError',
              '(from versions: none)')   # an index that lists no sae-lens at all is not the package index

def _no_network(pip_output:str):
    "Why pip could not reach the package index, in its words, or None if it could."
    for m in NO_NETWORK:
        for l in pip_output.splitlines():
            if m not in l: continue
            return (l.replace('ERROR: ', '') if m.startswith('(') else re.split('[\'"]', l[l.index(m):])[0]).strip()

class SAELensUnavailable(RuntimeError):
    "A peer's virtual environment cannot be built here, for a reason outside the project: no package index."

def peer_python(peer:str='saelens', log=sys.stderr) -> str:
    """The Python of an environment with `peer` (a key of `PEERS`; SAELens pins transformer-lens below 4, so it cannot
    share saenb's): `$SAENB_<PEER>_PYTHON` if set, else the peers' `~/.cache/saenb/saelens-venv-<torch version>`,
    built on first use."""
    var, package, _ = PEERS[peer]
    py = os.environ.get(var)
    if py:
        if not (Path(py).is_file() and os.access(py, os.X_OK)):
            raise RuntimeError(f"{var}={py} is not an executable file: point it at the python of a virtual environment "
                               f"with {package}, or unset it to build one under ~/.cache/saenb")
        return py
    return str(saelens_venv(log=log)/'bin'/'python')

def saelens_python(log=sys.stderr) -> str:
    "The Python of an environment with SAELens: `peer_python('saelens')`."
    return peer_python('saelens', log)

def sparsify_python(log=sys.stderr) -> str:
    "The Python of an environment with EleutherAI's sparsify: `peer_python('sparsify')`."
    return peer_python('sparsify', log)

def _built(final:Path, requirements:list) -> bool:
    "Whether `final` is a usable environment: its Python exists and, where saenb built it, with `requirements`."
    if not (final/'bin'/'python').exists(): return False
    rec = final/'saenb-build.json'   # absent: made by hand or by an older saenb; kept as it is
    return not rec.exists() or json.loads(rec.read_text()).get('requirements') == list(requirements)

def saelens_venv(root=None, requirements=SAELENS_REQUIREMENTS, log=sys.stderr) -> Path:
    """`root/saelens-venv-<torch version>` (`root`: ~/.cache/saenb), built once with `requirements` (SAELens's and
    sparsify's): in a temporary directory renamed into place when complete, so an interrupted build is never taken for a
    finished one, and under a file lock, so two processes that both need it build it once; one saenb built with other
    requirements is built again. Raises `SAELensUnavailable` when pip cannot reach the package index."""
    root = Path(root or Path.home()/'.cache'/'saenb'); root.mkdir(parents=True, exist_ok=True)
    final = root/f'saelens-venv-{TORCH_VERSION}'
    if _built(final, requirements): return final
    with open(root/f'{final.name}.lock', 'a+') as lock:
        try: fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or '?'
            print(f"waiting for process {holder}, which is building {final}...", file=log, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0); lock.truncate(); lock.write(str(os.getpid())); lock.flush()
        if _built(final, requirements): return final   # built by the process we waited for
        for old in [final, *root.glob(f'{final.name}.tmp*')]:   # broken, stale, or a build that was interrupted
            shutil.rmtree(old, ignore_errors=True)
        tmp = root/f'{final.name}.tmp{os.getpid()}'
        t0 = time.time()
        print(f"building SAELens's and sparsify's virtual environment in {final} (once; a few minutes)...", file=log,
              flush=True)
        try:
            _build_venv(tmp, final, requirements, root/f'{final.name}.log')
            os.rename(tmp, final)
        finally: shutil.rmtree(tmp, ignore_errors=True)
        print(f"built {final} in {time.time() - t0:.0f} s", file=log, flush=True)
    return final

def _build_venv(tmp:Path, final:Path, requirements:list, log:Path):
    "A virtual environment at `tmp` with `requirements`, checked to import, its scripts naming `final` (its home)."
    t0 = time.time()
    nopip = [] if requirements else ['--without-pip']
    subprocess.run([sys.executable, '-m', 'venv', '--prompt', final.name, *nopip, str(tmp)], check=True)
    py = tmp/'bin'/'python'
    with open(log, 'w') as f:
        cmd = [str(py), '-m', 'pip', 'install', '--disable-pip-version-check', *requirements] if requirements else \
              [str(py), '-c', '']
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=3600)
    out = log.read_text()
    if r.returncode:
        net = _no_network(out)
        if net: raise SAELensUnavailable(f"cannot build {final.name}: no network to the package index (pip: {net}); "
                                         f"build it where there is one, or set its SAENB_<PEER>_PYTHON")
        raise RuntimeError(f"pip could not install {' '.join(requirements)} into {final} (log: {log}):\n{out[-3000:]}")
    mods = [m for pkg, m in [('torch', 'torch'), *(v[1:] for v in PEERS.values())]
            if any(re.match(rf'{re.escape(pkg)}\b(?!-)', q) for q in requirements)]
    r = subprocess.run([str(py), '-c', f"import json, {', '.join(['sys', *mods])}; "
                        f"print(json.dumps({{m: sys.modules[m].__dict__.get('__version__') for m in {mods!r}}}))"],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"the new environment {final.name} cannot import {mods} (log: {log}):\n{r.stderr[-3000:]}")
    for f in [*(tmp/'bin').iterdir(), tmp/'pyvenv.cfg']:   # scripts (pip, activate) name where they were built
        if f.is_file() and not f.is_symlink():
            try: text = f.read_text()
            except UnicodeDecodeError: continue
            if str(tmp) in text: f.write_text(text.replace(str(tmp), str(final)))
    versions = json.loads(r.stdout.strip().splitlines()[-1])   # the last line: sparsify prints a note on import
    (tmp/'saenb-build.json').write_text(json.dumps({'requirements': requirements, 'versions': versions,
                                                    'python': sys.version.split()[0],
                                                    'seconds': round(time.time() - t0)}))
