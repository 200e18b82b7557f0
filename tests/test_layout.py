"""The codebase's layout: imports run one way in pipeline order, notebooks keep house style, the C kernels ship with the
package, and a new SAE architecture needs no edit outside its own cell."""
import ast, json, os, subprocess, sys
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The pipeline's order: a module may import only modules before it (circuits is still to come).
ORDER = ['utils', 'grammars', 'data', 'model', 'train_gpt', 'cache', 'kernels', 'sae', 'sae_io', 'train_sae', 'ensemble',
         'eval', 'circuits', 'browser', 'sweep', 'pipeline', 'study']
MODULES = sorted(p for p in (REPO/'saenb').glob('*.py') if p.stem not in ('__init__', '_modidx'))

def saenb_imports(path:Path):
    "(line, imported saenb module, whether the import sits inside a function) for every import of a saenb module."
    tree = ast.parse(path.read_text())
    local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom):
            if n.level == 1 and n.module: mods = [n.module.split('.')[0]]
            elif n.level == 1: mods = [a.name for a in n.names]
            elif n.module and n.module.startswith('saenb.'): mods = [n.module.split('.')[1]]
            elif n.module == 'saenb': mods = [a.name for a in n.names]
            else: continue
        elif isinstance(n, ast.Import): mods = [a.name.split('.')[1] for a in n.names if a.name.startswith('saenb.')]
        else: continue
        for m in mods: yield n.lineno, m, id(n) in local

def test_every_module_has_a_place_in_the_order():
    assert [p.stem for p in MODULES if p.stem not in ORDER] == []

@pytest.mark.parametrize('path', MODULES, ids=[p.stem for p in MODULES])
def test_imports_follow_the_pipeline_order(path):
    later = [f"line {ln}: saenb.{m}" for ln, m, _ in saenb_imports(path) if m in ORDER and ORDER.index(m) >= ORDER.index(path.stem)
             and m != path.stem]
    assert later == [], f"saenb/{path.name} imports modules that come later in the pipeline: {later}"

@pytest.mark.parametrize('path', MODULES, ids=[p.stem for p in MODULES])
def test_function_local_imports_say_why(path):
    "An import inside a function only defers an optional or slow dependency, and says so in a comment."
    lines = path.read_text().splitlines()
    tree = ast.parse(path.read_text())
    bad = [f"line {n.lineno}: {lines[n.lineno - 1].strip()}" for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
           for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom)) and '#' not in lines[n.lineno - 1]]
    assert bad == [], f"saenb/{path.name} has function-local imports without a reason: {bad}"

def test_pipeline_pulls_in_every_stage():
    "The last module in the order (the study, built on the pipeline) imports every other one."
    last = [m for m in ORDER if (REPO/'saenb'/f'{m}.py').exists()][-1]
    code = f"import sys, saenb.{last}; print(' '.join(sorted(m for m in sys.modules if m.startswith('saenb.'))))"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    got = {m.split('.')[1] for m in r.stdout.split()}
    assert {p.stem for p in MODULES} <= got, sorted({p.stem for p in MODULES} - got)

def export_cells(nb:Path):
    for c in json.loads(nb.read_text())['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'code' and src.startswith('#| export'): yield src

@pytest.mark.parametrize('nb', sorted((REPO/'nbs').glob('[0-9]*.ipynb')), ids=lambda p: p.stem)
def test_export_cells_are_short(nb):
    "House style: small export cells (fastcore's and execnb's average 7-14 lines); none over 60."
    long = [(len(s.splitlines()), s.splitlines()[1][:60]) for s in export_cells(nb) if len(s.splitlines()) > 60]
    assert long == [], f"{nb.name}: export cells over 60 lines: {long}"

def test_examples_leave_no_temporary_folders():
    """Notebook examples, tests and benchmarks make scratch folders with `saenb.utils.scratch_dir` (removed when the
    process ends) or `tempfile.TemporaryDirectory`: a bare `tempfile.mkdtemp` outlives the run (each `nbdev_test` run
    left about 0.4 GB behind before scratch_dir)."""
    found = []
    for nb in sorted((REPO/'nbs').glob('*.ipynb')):
        for c in json.loads(nb.read_text())['cells']:
            src = ''.join(c['source'])
            if c['cell_type'] == 'code' and not src.startswith('#| export') and 'mkdtemp(' in src: found.append(nb.name)
    found += [p.name for d in ('tests', 'benchmarks') for p in sorted((REPO/d).glob('*.py'))
              if 'mkdtemp(' in p.read_text() and p.name != 'test_layout.py']
    assert found == [], f"tempfile.mkdtemp in {sorted(set(found))}: use saenb.utils.scratch_dir"

def test_wheel_ships_the_kernel_source(tmp_path):
    "A non-editable install carries saenb/csrc/kernels.c, and `kernel_source` finds it there."
    r = subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-build-isolation', '--no-index', '-q',
                        '--target', str(tmp_path/'site'), str(REPO)], capture_output=True, text=True, cwd=tmp_path)
    if r.returncode != 0 and 'No module named' in r.stderr: pytest.skip(f"cannot build a wheel here: {r.stderr[-300:]}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path/'site'/'saenb'/'csrc'/'kernels.c').is_file()
    assert {p.name for p in (tmp_path/'site'/'saenb'/'presets').iterdir()} == \
           {p.name for p in (REPO/'saenb'/'presets').glob('*.yaml')}   # the grammar presets travel too
    code = "import saenb.kernels as k; print(k.__file__); print(len(k.kernel_source()))"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, 'PYTHONPATH': str(tmp_path/'site')})
    assert r.returncode == 0, r.stderr[-2000:]
    where, n = r.stdout.split()
    assert where.startswith(str(tmp_path/'site')) and int(n) == len((REPO/'saenb'/'csrc'/'kernels.c').read_text())

def test_a_new_architecture_needs_no_other_edit(tmp_path):
    "Registered in a test, a new architecture trains with train_sae, saves and loads, and runs in a sequential sweep."
    from saenb.sae import SAE, SAEConfig, SAE_REGISTRY, register_sae, synthetic_sparse_data
    from saenb.sae_io import load_sae
    from saenb.train_sae import train_sae
    from saenb.sweep import run_sweep

    @dataclass
    class SoftShrinkConfig(SAEConfig):
        "Config of `soft_shrink` SAEs."
        shrink:float=0.3 # subtracted from positive pre-activations
        sparsity_coeff:float=0.05 # L1 coefficient

    @register_sae
    class SoftShrinkSAE(SAE):
        "Soft thresholding, `relu(z - shrink)`, with an L1 penalty."
        arch, config_class, example = 'soft_shrink', SoftShrinkConfig, dict(shrink=0.3)
        def encode(self, x): return torch.relu(self.pre_acts(x) - self.cfg.shrink)
        def loss(self, x, target=None, step=0, total_steps=None):
            x, y = self._xy(x, target)
            codes = self.encode(x)
            mse = (self.decode(codes).float() - y.float()).pow(2).sum(-1).mean()
            return self._out(x, mse, codes, sparsity=self.cfg.sparsity_coeff * codes.float().abs().sum(-1).mean())
    try:
        np.save(tmp_path/'acts.npy', synthetic_sparse_data(4096, 16, 32).numpy())
        res = train_sae(tmp_path/'acts.npy', tmp_path/'sae', arch='soft_shrink', shrink=0.2, exp_factor=4, n_tokens=30 * 256,
                        batch_size=256, lr=3e-3, progress=False)
        assert res.summary['explained_variance'] > 0.5, res.summary
        back = load_sae(tmp_path/'sae')
        assert type(back) is SoftShrinkSAE and back.cfg == res.sae.cfg
        x = synthetic_sparse_data(64, 16, 32, seed=1)
        torch.testing.assert_close(back(x), res.sae(x))
        df = run_sweep({'acts': str(tmp_path/'acts.npy'), 'n_tokens': 10 * 256, 'batch_size': 256,
                        'saes': {'arch': 'soft_shrink', 'exp_factor': 2}}, {'saes.shrink': [0.1, 0.5]},
                       out=tmp_path/'sweep', sequential=True, progress=False)
        assert len(df) == 2 and set(df.status) == {'finished'}, df
    finally: SAE_REGISTRY.pop('soft_shrink', None)

def test_modules_import_without_transformer_lens():
    "TransformerLens (2.4 of a console command's 6.2 s start) is imported when a model is first built, not with saenb."
    code = "import sys, saenb.study; print('transformer_lens' in sys.modules)"  # the last module imports all the others
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.stdout.strip() == 'False', r.stdout + r.stderr[-2000:]
