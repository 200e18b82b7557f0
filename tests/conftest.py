"Shared test helpers."
import configparser, shutil, sys, tempfile
from pathlib import Path

def console(name:str) -> list:
    "argv prefix running the console command `name`: the installed script or, when saenb is not pip-installed, a script calling its function."
    exe = shutil.which(name)
    if exe: return [exe]
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(Path(__file__).parents[1]/'settings.ini')
    mod, fn = dict(s.split('=', 1) for s in cfg['DEFAULT']['console_scripts'].split())[name].split(':')
    script = Path(tempfile.mkdtemp())/name  # fastcore's call_parse parses arguments only when run from a script file
    script.write_text(f"from {mod} import {fn}\n{fn}()\n")
    return [sys.executable, str(script)]

# ---- shared by the robustness tests (tests/test_robustness*.py)
import hashlib, os, subprocess
import pytest

ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'}

def run(name:str, *args, cwd=None, env=None) -> subprocess.CompletedProcess:
    "Run the console command `name` with `args` (converted to strings)."
    return subprocess.run(console(name) + [str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          env={**ENV, **(env or {})}, timeout=600)

def snapshot(*paths) -> dict:
    "Every file under `paths` (that exist) with the hash of its content: compare before and after a command."
    out = {}
    for p in map(Path, paths):
        files = [p] if p.is_file() else sorted(f for f in p.rglob('*') if f.is_file()) if p.exists() else []
        for f in files: out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out

def assert_fails(r:subprocess.CompletedProcess, prog:str, *needles:str):
    "A command ended with saenb's one-line error (exit status 2, `prog: error: ...`) containing every needle."
    err = r.stderr.strip()
    lines = [l for l in err.splitlines() if l.strip() and 'Warning' not in l and not l.startswith(' ')]
    assert r.returncode == 2, (r.returncode, err[-3000:])
    assert 'Traceback' not in err and len(lines) == 1 and lines[0].startswith(f'{prog}: error: '), err[-3000:]
    for n in needles: assert n in lines[0], (n, lines[0])

@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory):
    """The tiny run of issue 16, built once: `data` (2,000 Dyck sequences of at most 16 tokens), `model` (a 1-layer GPT
    of width 32), `acts` (its `0_residpost`) and `sae_topk` (a TopK SAE on it). Tests must not modify these: copy them."""
    root = tmp_path_factory.mktemp('tiny_run')
    steps = [('saenb_data', '--lang', 'dyck', '--n_seqs', 2000, '--max_len', 16, '--out', root/'data', '--quiet'),
             ('saenb_train_gpt', '--data', root/'data', '--out', root/'model', '--n_layers', 1, '--d_model', 32,
              '--n_heads', 2, '--d_mlp', 64, '--n_ctx', 20, '--steps', 60, '--batch_size', 32, '--eval_every', 30),
             ('saenb_cache', '--model', root/'model', '--data', root/'data', '--hooks', '0_residpost', '--out', root/'acts',
              '--quiet'),
             ('saenb_train_sae', '--acts', root/'acts'/'0_residpost', '--out', root/'sae_topk', '--k', 4, '--exp_factor', 4,
              '--n_tokens', 20_000, '--batch_size', 512, '--lr', 3e-3, '--quiet')]
    for name, *args in steps:
        r = run(name, *args)
        assert r.returncode == 0, (name, r.stderr[-3000:])
    return {'root': root, 'data': root/'data', 'model': root/'model', 'acts': root/'acts'/'0_residpost',
            'sae_topk': root/'sae_topk'}
