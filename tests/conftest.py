"Shared test helpers."
import configparser, shutil, sys, tempfile
from pathlib import Path
from saenb.utils import scratch_dir

def entry_point(name:str) -> tuple:
    "`(module, function)` of console command `name`, as settings.ini lists it."
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(Path(__file__).parents[1]/'settings.ini')
    return tuple(dict(s.split('=', 1) for s in cfg['DEFAULT']['console_scripts'].split())[name].split(':'))

def console(name:str) -> list:
    "argv prefix running the console command `name`: the installed script or, when saenb is not pip-installed, a script calling its function."
    exe = shutil.which(name)
    if exe: return [exe]
    mod, fn = entry_point(name)
    script = scratch_dir('saenb_cli_')/name  # fastcore's call_parse parses arguments only when run from a script file
    script.write_text(f"from {mod} import {fn}\n{fn}()\n")
    return [sys.executable, str(script)]

# ---- shared by the robustness tests (tests/test_robustness*.py)
import contextlib, hashlib, importlib, io, os, subprocess, threading, traceback, warnings
import pytest
from fastcore.script import _run_cli

ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'}

def command(name:str):
    "The function behind console command `name`."
    mod, fn = entry_point(name)
    return getattr(importlib.import_module(mod), fn)

def run_here(name:str, *args, cwd=None) -> subprocess.CompletedProcess:
    """Run the console command `name` in this process, as its script would (argv parsed by `call_parse`, exit status
    from `SystemExit`); an unexpected exception becomes a traceback in stderr and status 1, as in a process."""
    out, err, old_argv, old_cwd = io.StringIO(), io.StringIO(), sys.argv, os.getcwd()
    argv, code = [name, *map(str, args)], 0
    sys.argv = list(argv)
    try:
        if cwd is not None: os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter('ignore')  # a process prints them; the one-line checks skip them there too
            try: _run_cli(command(name).__wrapped__, False)  # what call_parse runs in a script: parse sys.argv
            except SystemExit as e: code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except Exception: traceback.print_exc(); code = 1
    finally: sys.argv = old_argv; os.chdir(old_cwd)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())

def run(name:str, *args, cwd=None, env=None, process:bool=None) -> subprocess.CompletedProcess:
    """Run the console command `name` with `args` (converted to strings). In this process (about 4 s faster: no new
    interpreter importing torch) unless `process`, `env` is given, or this process holds an output lock (a second
    writer must be another process) or is not in its main thread."""
    from saenb.utils import _HELD
    if process is None:
        process = env is not None or bool(_HELD) or threading.current_thread() is not threading.main_thread()
    if not process: return run_here(name, *args, cwd=cwd)
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

# ---- multi-process runs (torchrun)
import signal, time

def _descendants(pid:int) -> list:
    "Every process below `pid`, read from /proc: torchrun starts its workers in sessions of their own."
    kids = {}
    for d in Path('/proc').iterdir():
        if not d.name.isdigit(): continue
        try: ppid = int((d/'stat').read_text().rsplit(')', 1)[1].split()[1])
        except (OSError, IndexError, ValueError): continue
        kids.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        found = kids.get(todo.pop(), [])
        out += found; todo += found
    return out

def run_torchrun(*args, timeout:int=240, env:dict=None, nproc:int=2) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=nproc *args` with output in files, not pipes (a worker that outlived
    torchrun would hold a pipe open and block the test for ever). Past `timeout` seconds torchrun and every worker are
    killed and the test fails, so a hung collective costs one test, not the whole run. The workers are sent SIGABRT
    first: their fault handlers write every thread's Python stack to stderr, which the failure shows."""
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}', *map(str, args)]
    env = {**ENV, 'GLOO_SOCKET_IFNAME': 'lo', 'PYTHONFAULTHANDLER': '1', **(env or {})}  # gloo over loopback
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env, start_new_session=True)
        try: p.wait(timeout)
        except subprocess.TimeoutExpired:
            below = _descendants(p.pid)   # the workers (and anything they started)
            for pid in below:
                with contextlib.suppress(ProcessLookupError): os.kill(pid, signal.SIGABRT)
            time.sleep(3)  # the stacks are written
            for pid in [*below, p.pid]:
                with contextlib.suppress(ProcessLookupError): os.kill(pid, signal.SIGKILL)
            p.wait(); err.seek(0)
            pytest.fail(f"torchrun did not finish in {timeout} s: {' '.join(cmd)}\n{err.read()[-8000:]}")
        out.seek(0); err.seek(0)
        return subprocess.CompletedProcess(cmd, p.returncode, out.read(), err.read())

# ---- a test that hangs says where: every thread's stack goes to stderr after 10 minutes (no test takes 5)
import faulthandler

@pytest.fixture(autouse=True)
def _stacks_of_a_hung_test():
    faulthandler.dump_traceback_later(600, exit=False)
    yield
    faulthandler.cancel_dump_traceback_later()

def wandb_env(d) -> dict:
    "Environment that logs W&B runs offline under `d` (read back with `saenb.utils.offline_run`)."
    return {'WANDB_MODE': 'offline', 'WANDB_DIR': str(d), 'WANDB_SILENT': 'true'}

def wandb_offline(monkeypatch, d) -> None:
    "Log this process's W&B runs offline under `d`."
    for k, v in wandb_env(d).items(): monkeypatch.setenv(k, v)
