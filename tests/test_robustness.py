"""The robustness suite (issue 16): bad input to every command ends with one line naming the problem and the fix, exit
status 2, and nothing written or changed; two writers of one output are refused (the second is another process, naming
the first); checkpoints are never discarded; settings are strict; every case of issue 16 is pinned by a test here (its
number is in the test's docstring). The table of bad flags for every command comes first, then a section per stage.
Commands run in this process where they can (`conftest.run`: about 4 s faster each); concurrency tests run them as
processes of their own. Shared helpers: tests/conftest.py."""
import json, math, os, shutil, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np, pandas as pd, pytest, yaml
from conftest import ENV, console, run, run_torchrun, snapshot, assert_fails, tiny_run  # noqa: F401 (tiny_run: a fixture)
from saenb.sweep import load_sweep, run_sweep
from saenb.utils import InputError, output_lock

def test_the_tiny_run_builds(tiny_run):
    "The fixture the other robustness tests start from: every stage of the tiny run wrote its output."
    for k in ('data', 'model', 'acts', 'sae_topk'): assert tiny_run[k].is_dir(), k
    assert (tiny_run['model']/'provenance.json').exists() and (tiny_run['sae_topk']/'provenance.json').exists()



# ======================================================================================================================
# The table: bad input to every command
# Each row is a command line with one thing wrong. It must end with exit status 2 and one line `saenb_x: error: ...`
# naming the flag or file (the needles), leave the tiny run's files unchanged and write nothing where it was told to.
# ======================================================================================================================

def _cmd_args(t:dict, out) -> dict:
    "A valid command line for every command, on the tiny run, writing to `out`: rows below change one thing in it."
    sae = ('--sae', t['sae_topk'])
    return {'saenb_data': ('--lang', 'dyck', '--n_seqs', 200, '--max_len', 16, '--out', out, '--quiet'),
            'saenb_train_gpt': ('--data', t['data'], '--out', out, '--n_layers', 1, '--d_model', 32, '--n_heads', 2,
                                '--d_mlp', 64, '--n_ctx', 20, '--steps', 5, '--batch_size', 32),
            'saenb_generate': ('--model', t['model'], '--n', 8, '--out', out),
            'saenb_cache': ('--model', t['model'], '--data', t['data'], '--hooks', '0_residpost', '--out', out, '--quiet'),
            'saenb_train_sae': ('--acts', t['acts'], '--out', out, '--k', 4, '--n_tokens', 4096, '--batch_size', 512,
                                '--quiet'),
            'saenb_export_saelens': (*sae, '--out', out),
            'saenb_eval': (*sae, '--acts', t['acts'], '--model', t['model'], '--out', out, '--n_gen', 0, '--quiet'),
            'saenb_browser': (*sae, '--acts', t['acts'], '--out', out, '--quiet'),
            'saenb_sweep': ('--base', t['root']/'base.yaml', '--sweep', t['root']/'sweep.yaml', '--out', out, '--quiet'),
            'saenb_pipeline': ('--tiny', '--out', out, '--quiet')}

def _with(args:tuple, flag:str, value) -> tuple:
    "`args` with `flag` set to `value` (replaced if there, else added); `value` None removes the flag."
    args = list(args)
    if flag in args:
        i = args.index(flag)
        if value is None: del args[i:i + 2]
        else: args[i + 1] = value
    elif value is not None: args += [flag, value]
    return tuple(args)

# (command, flag, its wrong value ('{t}', '{tmp}': the tiny run's and this test's folders), what the message must say)
BAD_INPUT = [
    ('saenb_data', '--lang', 'dyk', ["unknown language 'dyk'", "did you mean 'dyck'"]),
    ('saenb_data', '--n_seqs', 0, ['n_seqs must be a positive']),
    ('saenb_data', '--max_len', -1, ['max_len']),
    ('saenb_data', '--val_frac', 1.5, ['val_frac']),
    ('saenb_train_gpt', '--data', '{tmp}/nowhere', ['{tmp}/nowhere']),
    ('saenb_train_gpt', '--lr', -1, ['lr must be a positive number']),
    ('saenb_train_gpt', '--n_heads', 3, ['n_heads']),
    ('saenb_train_gpt', '--device', 'gpu', ["'gpu'"]),
    ('saenb_generate', '--model', '{t}/data', ['{t}/data']),
    ('saenb_generate', '--temperature', -1, ['temperature must be a number >= 0']),
    ('saenb_generate', '--batch_size', 0, ['batch_size must be a positive']),
    ('saenb_cache', '--hooks', '0_residpost,mlp9', ["'mlp9'"]),
    ('saenb_cache', '--model', '{tmp}/nowhere', ['{tmp}/nowhere']),
    ('saenb_train_sae', '--arch', 'topkk', ["'topkk'", "did you mean 'topk'"]),
    ('saenb_train_sae', '--k', 1000, ['k=1000', 'd_sae']),
    ('saenb_train_sae', '--acts', '{t}/model', ['{t}/model']),
    ('saenb_train_sae', '--lr', 0, ['lr must be a positive number']),
    ('saenb_export_saelens', '--sae', '{t}/acts', ['{t}/acts']),
    ('saenb_export_saelens', '--out', '{t}/sae_topk', ['holds something other than a SAELens SAE', 'choose a new --out']),
    ('saenb_eval', '--sae', '{tmp}/nowhere', ['{tmp}/nowhere']),
    ('saenb_eval', '--n_rows', 0, ['n_rows must be']),
    ('saenb_browser', '--n_latents', 0, ['n_latents must be a positive number']),
    ('saenb_browser', '--sae', '{t}/model', ['{t}/model']),
    ('saenb_sweep', '--base', '{tmp}/nowhere.yaml', ['{tmp}/nowhere.yaml']),
    ('saenb_sweep', '--limit', 0, ['limit must be a positive number']),
    ('saenb_pipeline', '--lang', 'dyk', ["'dyk'", "did you mean 'dyck'"]),
    ('saenb_pipeline', '--config', '{tmp}/nowhere.yaml', ['{tmp}/nowhere.yaml']),
]

@pytest.mark.parametrize('cmd,flag,value,needles', BAD_INPUT, ids=[f'{c}{f}' for c, f, *_ in BAD_INPUT])
def test_bad_input_to_every_command(tiny_run, tmp_path, cmd, flag, value, needles):
    "One thing wrong in a command line that otherwise works: one line naming it, exit 2, nothing written or changed."
    t = tiny_run
    if not (t['root']/'sweep.yaml').exists():
        (t['root']/'base.yaml').write_text(yaml.safe_dump({'acts': str(t['acts']), 'n_tokens': 4096, 'batch_size': 512,
                                                          'saes': {'arch': 'topk', 'k': 4}}))
        (t['root']/'sweep.yaml').write_text('k: [2, 4]\n')
    fill = lambda v: v.format(t=t['root'], tmp=tmp_path) if isinstance(v, str) else v
    out = tmp_path/('out.jsonl' if cmd == 'saenb_generate' else 'out')
    before = {k: v for k, v in snapshot(t['root'], tmp_path).items() if not k.endswith('.lock')}
    r = run(cmd, *_with(_cmd_args(t, out)[cmd], flag, fill(value)), cwd=tmp_path)
    assert_fails(r, cmd, *map(fill, needles))
    assert {k: v for k, v in snapshot(t['root'], tmp_path).items() if not k.endswith('.lock')} == before
    assert not out.exists()


def test_the_command_lines_of_the_table_work(tiny_run, tmp_path):
    "The table's starting command lines are valid: its rows fail for the one thing they change (two quick ones run)."
    for cmd in ('saenb_generate', 'saenb_export_saelens'):
        out = tmp_path/('out.jsonl' if cmd == 'saenb_generate' else cmd)
        r = run(cmd, *_cmd_args(tiny_run, out)[cmd])
        assert r.returncode == 0 and out.exists(), r.stderr[-3000:]


def test_lock_of_a_killed_writer_is_taken_over(tmp_path):
    """A writer killed with SIGKILL (no cleanup ran) leaves its lock file behind, but the lock itself dies with it: the
    next command writes the output at once and records itself as the holder."""
    out, lock = tmp_path/'data', tmp_path/'.data.lock'
    code = (f"from saenb.utils import output_lock\nimport time\nwith output_lock({str(out)!r}):\n"
            "    print('held', flush=True); time.sleep(600)")
    p = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True, env=ENV)
    try: assert p.stdout.readline().strip() == 'held'
    finally: p.kill(); p.wait()
    assert json.loads(lock.read_text())['pid'] == p.pid   # what the killed writer left
    r = run('saenb_data', '--lang', 'dyck', '--n_seqs', 50, '--out', out, '--quiet', process=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out/'dataset_dict.json').exists() and json.loads(lock.read_text())['pid'] not in (p.pid, os.getpid())

# ====================================================================================================================
# Languages, data, the GPT and its generations
# Issue 16 for languages, data, the GPT and its generations: grammars travel with their data (case 14), `--steps 0`
# (case 8), one-line errors for bad numbers and corrupt files (cases 9-11), and one `saenb_data` writer per output.
# ====================================================================================================================

GRAMMAR = Path(__file__).parents[1]/'nbs'/'grammars'/'toy.yaml'   # the example grammar file the repository ships
GPT = ('--n_layers', 1, '--d_model', 32, '--n_heads', 2, '--d_mlp', 64, '--n_ctx', 20)   # tiny_run's model
TRAIN = (*GPT, '--steps', 60, '--batch_size', 32, '--eval_every', 30)                       # and its training

def test_grammar_file_corpus_trains_generates_and_is_checked_in_other_processes(tmp_path):
    """Case 14: a corpus of a grammar file (`saenb_data --grammar`) stores its grammar, so `saenb_train_gpt` trains on
    it and `saenb_generate` scores the model's generations with the grammar's parser, each in its own process."""
    from saenb.data import load_corpus
    from saenb.grammars import load_grammar
    data, model, gen = tmp_path/'toy', tmp_path/'model', tmp_path/'gen.jsonl'
    r = run('saenb_data', '--grammar', GRAMMAR, '--n_seqs', 1000, '--out', data, '--quiet')
    assert r.returncode == 0, r.stderr[-3000:]
    spec = json.loads((data/'language.json').read_text())
    assert spec['name'] == 'toy' and "'big' NP [0.3]" in spec['grammar']['pcfg']
    r = run('saenb_train_gpt', '--data', data, '--out', model, *GPT, '--steps', 60, '--batch_size', 32, '--lr', 3e-3,
            '--warmup_steps', 5, '--eval_every', 30)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run('saenb_generate', '--model', model, '--n', 40, '--out', gen)
    assert r.returncode == 0 and 'grammatical: ' in r.stdout, r.stderr[-3000:]
    rows = [json.loads(l) for l in gen.read_text().splitlines()]
    toy = load_grammar(GRAMMAR)
    assert len(rows) == 40 and 'tree_depth' in rows[0]   # the PCFG's own diagnostics
    assert sum(r['grammatical'] for r in rows) >= 20
    assert all(toy.is_grammatical(r['text'].split()) for r in rows if r['grammatical'])
    assert load_corpus(data).language.concepts == toy.concepts

def test_grammar_flags_and_files_are_checked(tmp_path):
    "Case 14: `--grammar` with `--lang` or a hyperparameter a grammar lacks, and a misspelled grammar file: refused."
    bad = tmp_path/'bad.yaml'
    bad.write_text("name: toy\npcfg: |\n  S -> 'a' S | 'b'\nmax_dept: 3\n")
    out = tmp_path/'never'
    for args, needles in [(('--grammar', GRAMMAR, '--lang', 'dyck'), ('give --lang or --grammar, not both',)),
                          (('--grammar', GRAMMAR, '--n_brackets', 2), ('--n_brackets does not apply to --grammar',)),
                          (('--grammar', bad), (str(bad), "'max_dept' (did you mean 'max_depth'?)"))]:
        r = run('saenb_data', *args, '--n_seqs', 20, '--out', out)
        assert_fails(r, 'saenb_data', *needles)
        assert not out.exists()

def test_grammar_fingerprint_and_corpus_of_a_pcfg_language(tmp_path):
    """Case 14: a corpus saved from a `PCFGLanguage` loads again (it said "unknown language 'toy'"), and two grammars
    under one name have different fingerprints."""
    from saenb.data import make_corpus, save_corpus, load_corpus, corpus_fingerprint
    from saenb.grammars import PCFG, PCFGLanguage
    rules = "S -> NP VP\nNP -> 'cats' | 'dogs' | 'big' NP [{}]\nVP -> 'sleep'"
    toy, twin = (PCFGLanguage(PCFG.from_string(rules.format(w)), name='toy') for w in (0.3, 0.6))
    a, b = save_corpus(make_corpus(toy, 40), tmp_path/'a'), save_corpus(make_corpus(twin, 40), tmp_path/'b')
    back = load_corpus(a)
    assert (back.language.name, back.language.vocab, back.concepts) == ('toy', toy.vocab, toy.concepts)
    assert corpus_fingerprint(a) == corpus_fingerprint(make_corpus(toy, 10, seed=1)) != corpus_fingerprint(b)

def test_train_gpt_refuses_zero_steps(tiny_run, tmp_path):
    "Case 8: `--steps 0` wrote an untrained model, then crashed with pandas' EmptyDataError; now refused up front."
    out = tmp_path/'model'
    r = run('saenb_train_gpt', '--data', tiny_run['data'], '--out', out, *GPT, '--steps', 0)
    assert_fails(r, 'saenb_train_gpt', 'steps must be a positive integer, got 0')
    assert not out.exists()

@pytest.mark.parametrize('cmd,args,needles', [
    ('saenb_train_gpt', ('--batch_size', 0), ('batch_size must be a positive integer, got 0',)),       # case 9
    ('saenb_generate', ('--n', 0), ('n must be a positive number, got 0',)),                             # case 9
    ('saenb_train_gpt', ('--normalization', 'foo'), ('normalization must be one of LN, LNPre, RMS', "'foo'")),  # 10
])
def test_bad_numbers_and_choices_are_one_line(tiny_run, tmp_path, cmd, args, needles):
    "Cases 9 and 10: a bad flag value is a one-line error naming the flag, before anything is written."
    out = tmp_path/'out'
    inputs = ('--data', tiny_run['data'], *TRAIN) if cmd == 'saenb_train_gpt' else ('--model', tiny_run['model'])
    before = snapshot(tiny_run['root'])
    r = run(cmd, *inputs, '--out', out, *args)
    assert_fails(r, cmd, *needles)
    assert not out.exists() and snapshot(tiny_run['root']) == before

def test_settings_are_range_checked_for_python_callers():
    "Case 9: the config dataclasses check every number and choice, so Python callers and pipeline files get it too."
    from saenb.model import GPTConfig, check_device
    from saenb.train_gpt import TrainConfig, check_sampling
    for make, msg in [(lambda: TrainConfig(eval_every=0), 'eval_every must be a positive integer'),
                      (lambda: TrainConfig(grad_accum=0), 'grad_accum must be a positive integer'),
                      (lambda: TrainConfig(lr=0), 'lr must be a positive number'),
                      (lambda: TrainConfig(min_lr_frac=1.5), 'min_lr_frac must be a number in [0, 1]'),
                      (lambda: TrainConfig(warmup_steps=-1), 'warmup_steps must be a non-negative integer'),
                      (lambda: GPTConfig(d_mlp=0), 'd_mlp must be a positive integer'),
                      (lambda: GPTConfig(act_fn='tanh'), 'act_fn must be one of gelu'),
                      (lambda: GPTConfig(normalization='none'), 'normalization must be one of'),
                      (lambda: check_sampling(temperature=float('nan')), 'temperature must be a number >= 0'),
                      (lambda: check_sampling(top_k=-1), 'top_k must be an integer >= 0'),
                      (lambda: check_device('cuda:999'), "device 'cuda:999'"),
                      (lambda: check_device('gpu'), 'use cpu, cuda or cuda:N')]:
        with pytest.raises(ValueError, match=msg.replace('[', r'\[').replace(']', r'\]')): make()

def test_model_config_of_the_wrong_type(tiny_run, tmp_path):
    'Case 9: `"n_layers": "two"` in config.json was a TypeError traceback; now one line naming the file and the fix.'
    model = tmp_path/'model'; shutil.copytree(tiny_run['model'], model)
    cfg = json.loads((model/'config.json').read_text())
    (model/'config.json').write_text(json.dumps({**cfg, 'n_layers': 'two'}))
    before = snapshot(model)
    r = run('saenb_generate', '--model', model, '--n', 5)
    assert_fails(r, 'saenb_generate', str(model/'config.json'), "n_layers must be a positive integer, got 'two'",
                 'retrain')
    assert snapshot(model) == before

@pytest.mark.parametrize('what,file', [('model', 'config.json'), ('data', 'dataset_dict.json'),
                                       ('checkpoint', 'checkpoint/trainer_state.json')])
def test_garbage_files_are_named(tiny_run, tmp_path, what, file):
    "Case 11: a file that is not JSON gave 'Expecting value: line 1 column 1 (char 0)' or a traceback; now its name."
    src = tiny_run['data' if what == 'data' else 'model']
    d = tmp_path/src.name; shutil.copytree(src, d)
    (d/file).write_text('garbage')
    before = snapshot(d)
    if what == 'model': cmd, args = 'saenb_generate', ('--model', d, '--n', 5)
    elif what == 'data': cmd, args = 'saenb_train_gpt', ('--data', d, '--out', tmp_path/'out', *TRAIN)
    else: cmd, args = 'saenb_train_gpt', ('--data', tiny_run['data'], '--out', d, *TRAIN, '--resume')
    r = run(cmd, *args)
    assert_fails(r, cmd, str(d/file), 'not a saenb tokenizer' if file == 'tokenizer.json' else 'is corrupt')
    assert snapshot(d) == before and not (tmp_path/'out').exists()

def test_garbage_files_are_named_for_python_callers(tiny_run, tmp_path):
    "Case 11: the other JSON files of a model, a corpus and a checkpoint, read by the same loaders the commands call."
    from saenb.data import load_corpus
    from saenb.model import load_language, load_tokenizer
    data, model = tmp_path/'data', tmp_path/'model'
    shutil.copytree(tiny_run['data'], data); shutil.copytree(tiny_run['model'], model)
    for load, d, file in [(load_tokenizer, model, 'tokenizer.json'), (load_language, model, 'language.json'),
                          (load_corpus, data, 'language.json'), (load_corpus, data, 'tokenizer.json'),
                          (load_corpus, data, 'train/state.json'), (load_corpus, data, 'validation/dataset_info.json')]:
        keep = (d/file).read_bytes(); (d/file).write_text('garbage')
        with pytest.raises(ValueError) as e: load(d)
        assert str(d/file) in str(e.value) and 'JSON' in str(e.value) and len(str(e.value).splitlines()) == 1, e.value
        (d/file).write_bytes(keep)
    load_corpus(data)

def test_resume_refuses_another_language(tiny_run, tmp_path):
    "`--resume` with a corpus of another language (same vocabulary) went on training silently; now refused."
    from saenb.data import make_corpus, save_corpus
    other = save_corpus(make_corpus('dyck', 200, max_len=32), tmp_path/'other')   # tiny_run's data has max_len=16
    model = tmp_path/'model'; shutil.copytree(tiny_run['model'], model)
    before = snapshot(model)
    r = run('saenb_train_gpt', '--data', other, '--out', model, *TRAIN, '--resume')
    assert_fails(r, 'saenb_train_gpt', 'Cannot resume', 'language fingerprint')
    assert snapshot(model) == before

def test_one_data_writer_per_output(tmp_path):
    "A second `saenb_data` into an output another run writes stops at once, naming the first (no sleeps: we hold it)."
    out = tmp_path/'data'
    with output_lock(out):
        r = run('saenb_data', '--n_seqs', 20, '--out', out)
    assert_fails(r, 'saenb_data', str(out), f'process {os.getpid()}')
    assert not out.exists()

def test_generations_never_replace_a_directory(tiny_run, tmp_path):
    """`saenb_generate --out DIR` replaced the directory, and all it held, with the JSON-lines file; now refused. A file
    another process is writing is refused too."""
    keep = tmp_path/'results'; keep.mkdir(); (keep/'notes.txt').write_text('precious')
    before = snapshot(keep)
    r = run('saenb_generate', '--model', tiny_run['model'], '--n', 5, '--out', keep)
    assert_fails(r, 'saenb_generate', str(keep), 'is a directory')
    assert snapshot(keep) == before
    gen = tmp_path/'gen.jsonl'
    with output_lock(gen):
        r = run('saenb_generate', '--model', tiny_run['model'], '--n', 5, '--out', gen)
    assert_fails(r, 'saenb_generate', f'process {os.getpid()}')
    assert not gen.exists()

def test_train_gpt_never_writes_into_a_corpus(tiny_run, tmp_path):
    "`saenb_train_gpt --out` naming its corpus overwrote the corpus's language.json (it no longer loaded); now refused."
    data = tmp_path/'data'; shutil.copytree(tiny_run['data'], data)
    before = snapshot(data)
    r = run('saenb_train_gpt', '--data', data, '--out', data, *TRAIN)
    assert_fails(r, 'saenb_train_gpt', str(data), 'holds a corpus')
    assert snapshot(data) == before


# ====================================================================================================================
# The activation cache
# Robustness of `saenb_cache` and of reading activation stores (issue 16, cases 1, 9 and 11, and bad flags): one
# writer per cache, no folder left by a run that cannot start, and damaged files named with the fix, whichever command
# opens them.
# ====================================================================================================================

class Stop(Exception): "Raised inside a forward pass to stop a run part-way, as a kill would."


def cache_args(tiny_run, out, *more) -> list:
    "The `saenb_cache` command line of the tiny run, into `out`."
    return ['--model', tiny_run['model'], '--data', tiny_run['data'], '--hooks', '0_residpost', '--out', out, '--quiet',
            *more]


def interrupted_cache(tiny_run, out, after:int, **kw):
    "Cache the tiny run into `out` in this process, stopped in forward pass `after`: what a run still going wrote."
    from saenb.cache import cache_activations
    from saenb.model import load_model
    model, calls = load_model(tiny_run['model']), {'n': 0}
    def stop(module, args, output):
        calls['n'] += 1
        if calls['n'] == after: raise Stop
    h = model.embed.register_forward_hook(stop)
    try:
        with pytest.raises(Stop):  # the settings `saenb_cache` passes, paths spelled as the command line gets them
            cache_activations(model, str(tiny_run['data']), '0_residpost', out, model_name=str(tiny_run['model']),
                              device='cpu', progress=False, **kw)
    finally: h.remove()
    assert (out/'.partial'/'state.json').exists() and not (out/'cache.json').exists()
    return model


# ---- case 1: two saenb_cache runs into one --out

def test_second_cache_run_into_a_locked_out_is_refused(tiny_run, tmp_path):
    "Case 1: while a run holds --out, a second one stops at once naming the holder's pid, and writes nothing."
    from saenb.utils import output_lock
    out = tmp_path/'acts'
    with output_lock(out): r = run('saenb_cache', *cache_args(tiny_run, out))
    assert_fails(r, 'saenb_cache', f'being written by process {os.getpid()}', str(out))
    assert not out.exists()
    # over a complete cache, even --overwrite (which would remove it) changes nothing while another run holds it
    shutil.copytree(tiny_run['acts'].parent, out)
    before = snapshot(out)
    with output_lock(out): r = run('saenb_cache', *cache_args(tiny_run, out, '--overwrite', '--batch_size', 4))
    assert_fails(r, 'saenb_cache', f'process {os.getpid()}')
    assert snapshot(out) == before


def test_cache_run_started_during_another_cannot_corrupt_it(tiny_run, tmp_path):
    """Case 1, the issue's scenario: a second run with the same settings starts while the first is part-way (its train
    split written, its validation split under way). Without the lock it would resume the same `.partial` and the two
    would end with a manifest claiming rows whose shards the other had moved away. Now it is refused and touches
    nothing, and the first run finishes with exactly the store an undisturbed run gives."""
    from saenb.cache import ActivationStore
    from saenb.utils import output_lock
    out = tmp_path/'acts'
    with output_lock(out):  # the first run, in this process, holds the lock ...
        interrupted_cache(tiny_run, out, after=62)   # ... and has written this much: 1 + 57 train forwards, then 4 more
        state = json.loads((out/'.partial'/'state.json').read_text())
        assert state['splits']['train']['complete'] and not state['splits'].get('validation', {}).get('complete')
        before = snapshot(out)
        r = run('saenb_cache', *cache_args(tiny_run, out))   # the same command, which resumes when nobody holds out
    assert_fails(r, 'saenb_cache', f'being written by process {os.getpid()}')
    assert snapshot(out) == before
    r = run('saenb_cache', *cache_args(tiny_run, out))  # the first run carries on (it resumes)
    assert r.returncode == 0, r.stderr[-3000:]
    got, ref = ActivationStore(out/'0_residpost'), ActivationStore(tiny_run['acts'])
    assert got.manifest['rows'] == ref.manifest['rows'] and got.manifest['shards'] == ref.manifest['shards']
    assert np.array_equal(got[:].numpy(), ref[:].numpy())
    val, ref_val = (ActivationStore(p, split='validation') for p in (out/'0_residpost', tiny_run['acts']))
    assert np.array_equal(val[:].numpy(), ref_val[:].numpy())
    assert np.array_equal(val.labels(slice(None))['seq_id'].numpy(), ref_val.labels(slice(None))['seq_id'].numpy())


# ---- case 9: an empty corpus

def test_empty_corpus_is_one_line_and_leaves_no_folder(tiny_run, tmp_path):
    "Case 9: a corpus with no sequences was an IndexError traceback that left an empty folder behind."
    from saenb.data import load_corpus, save_corpus
    corpus = load_corpus(tiny_run['data'])
    for split in ('train', 'validation'): corpus.splits[split] = corpus.splits[split].select([])
    save_corpus(corpus, tmp_path/'empty')
    before = snapshot(tmp_path/'empty', tiny_run['model'])
    r = run('saenb_cache', '--model', tiny_run['model'], '--data', tmp_path/'empty', '--hooks', '0_residpost',
            '--out', tmp_path/'acts', '--quiet')
    assert_fails(r, 'saenb_cache', 'no tokens to cache in its train split', 'saenb_data --n_seqs')
    assert not (tmp_path/'acts').exists() and snapshot(tmp_path/'empty', tiny_run['model']) == before


# ---- bad flags, refused before anything is written

BAD_FLAGS = [(('--n_tokens', 0), 'n_tokens must be a positive number, got 0'),
             (('--val_tokens', -1), 'or 0 for no validation split'),
             (('--batch_size', 0), 'batch_size must be a positive number, got 0'),
             (('--n_ctx', 0), 'n_ctx must be a positive number, got 0'),
             (('--dtype', 'fp8'), "unsupported dtype 'fp8': choose fp32, bf16 or fp16"),
             (('--autocast', 'bf61'), "autocast 'bf61' is not a precision to run in: pass bf16 or fp16"),
             (('--hooks', ' , '), 'hooks must be distinct non-empty names'),
             (('--data', 'no_such_corpus'), 'no corpus at no_such_corpus'),
             (('--device', 'gpu'), "device 'gpu' is not a device")]

@pytest.mark.parametrize('flags,needle', BAD_FLAGS, ids=[f[0][0] for f in BAD_FLAGS])
def test_bad_flag(tiny_run, tmp_path, flags, needle):
    "Every numeric flag is range-checked, unknown names are refused: one line, exit 2, no output, inputs unchanged."
    args = cache_args(tiny_run, tmp_path/'acts')
    for k, v in zip(flags[::2], flags[1::2]):
        if k in args: args[args.index(k) + 1] = v
        else: args += [k, v]
    before = snapshot(tiny_run['data'], tiny_run['model'])
    r = run('saenb_cache', *args, cwd=tmp_path)
    assert_fails(r, 'saenb_cache', needle)
    assert not (tmp_path/'acts').exists() and snapshot(tiny_run['data'], tiny_run['model']) == before


# ---- case 11: damaged stores, named with the fix by whichever command opens them

def truncate(f): os.truncate(f, os.path.getsize(f) // 2)

def shard(s, meta=False): return s/'train'/f"shard_00000{'.meta' if meta else ''}.npy"

def resave(f, fn): np.save(f, fn(np.load(f)))

def edit_manifest(s, **kw):
    m = s/'manifest.json'
    m.write_text(json.dumps({**json.loads(m.read_text()), **kw}))

ISSUE_DAMAGE = [(lambda s: truncate(shard(s)), 'shard_00000.npy is truncated'),
                (lambda s: (s/'manifest.json').write_text('garbage'), 'manifest.json is not valid JSON (Expecting')]

@pytest.mark.parametrize('damage,needle', ISSUE_DAMAGE, ids=['truncated_shard', 'garbage_manifest'])
def test_damaged_store_named_by_train_sae(tiny_run, tmp_path, damage, needle):
    "Case 11: 'mmap length is greater than file size', 'Expecting value: line 1 column 1' named neither file nor fix."
    shutil.copytree(tiny_run['acts'].parent, tmp_path/'acts')
    damage(tmp_path/'acts'/'0_residpost')
    before = snapshot(tmp_path/'acts')
    r = run('saenb_train_sae', '--acts', tmp_path/'acts'/'0_residpost', '--out', tmp_path/'sae', '--k', 4,
            '--exp_factor', 4, '--n_tokens', 2000, '--batch_size', 512, '--quiet')
    assert_fails(r, 'saenb_train_sae', needle, f"saenb_cache --out {tmp_path/'acts'} --overwrite")
    assert not (tmp_path/'sae').exists() and snapshot(tmp_path/'acts') == before


STORE_DAMAGE = {
    'missing_shard': (lambda s: shard(s).unlink(), 'train/shard_00000.npy is missing'),
    'garbage_shard': (lambda s: shard(s).write_bytes(b'garbage'), 'not a readable .npy file'),
    'shard_of_other_dtype': (lambda s: resave(shard(s), lambda a: a.astype(np.float16)),
                             'holds float16 values, not the fp32 its store records'),
    'shard_of_other_length': (lambda s: resave(shard(s), lambda a: a[:-1]), 'rows, the manifest says'),
    'truncated_meta': (lambda s: truncate(shard(s, meta=True)), 'shard_00000.meta.npy is truncated'),
    'missing_meta': (lambda s: shard(s, meta=True).unlink(), 'shard_00000.meta.npy is missing'),
    'meta_of_other_shape': (lambda s: resave(shard(s, meta=True), lambda a: a[:, :2]), 'the manifest says int64'),
    'empty_manifest': (lambda s: (s/'manifest.json').write_text('{}'), 'lacks or garbles d, dtype, rows, shards'),
    'list_manifest': (lambda s: (s/'manifest.json').write_text('[]'), 'manifest.json holds a JSON list, not an object'),
    'rows_do_not_add_up': (lambda s: edit_manifest(s, rows={'train': 5, 'validation': 0}), 'do not add up to its 5'),
    'unknown_dtype': (lambda s: edit_manifest(s, dtype='fp8'), 'lacks or garbles d, dtype'),
    'garbage_cache_json': (lambda s: (s.parent/'cache.json').write_text('garbage'), 'cache.json is not valid JSON'),
}

def test_every_file_a_store_reads_is_checked(tiny_run, tmp_path):
    "Case 11 for every file of a store: any damage is an InputError naming the file and the fix when the store opens."
    from saenb.cache import ActivationStore
    from saenb.utils import InputError
    for name, (damage, needle) in STORE_DAMAGE.items():
        acts = tmp_path/name/'acts'
        shutil.copytree(tiny_run['acts'].parent, acts)
        damage(acts/'0_residpost')
        with pytest.raises(InputError) as e: ActivationStore(acts if 'cache_json' in name else acts/'0_residpost')
        msg = str(e.value)
        assert needle in msg and f'saenb_cache --out {acts} --overwrite' in msg and '\n' not in msg, (name, msg)


def test_damaged_interrupted_cache_is_named(tiny_run, tmp_path):
    "Case 11 for the state of an interrupted cache: a garbage state.json, or a shard it records cut short."
    from saenb.cache import cache_activations
    from saenb.utils import InputError
    out = tmp_path/'acts'
    (out/'.partial').mkdir(parents=True); (out/'.partial'/'state.json').write_text('{"config": {"hooks": [')
    before = snapshot(out)
    r = run('saenb_cache', *cache_args(tiny_run, out))
    assert_fails(r, 'saenb_cache', f"{out/'.partial'/'state.json'} is not valid JSON", '--overwrite')
    assert snapshot(out) == before
    shutil.rmtree(out)
    kw = dict(shard_rows=2000)
    model = interrupted_cache(tiny_run, out, after=30, **kw)   # 29 batches of 32 sequences: 4 shards of ~2,000 rows
    shard = out/'.partial'/'0_residpost'/'train'/'shard_00001.npy'
    truncate(shard)
    before = snapshot(out)
    args = dict(model_name=str(tiny_run['model']), device='cpu', progress=False, **kw)
    with pytest.raises(InputError, match=f"{shard} is truncated .*pass overwrite=True \\(--overwrite\\) to start over"):
        cache_activations(model, str(tiny_run['data']), '0_residpost', out, **args)
    assert snapshot(out) == before
    cache_activations(model, str(tiny_run['data']), '0_residpost', out, overwrite=True, **args)
    assert (out/'cache.json').exists() and not (out/'.partial').exists()


# ====================================================================================================================
# SAE training
# Robustness of SAE training (`saenb_train_sae`, `train_sae`, ensembles; issue 16, cases 2, 6, 9, 10, 11 and 12, and
# settings of the wrong type): small stores cycle through as many passes as the budget needs, one writer per --out,
# bad settings and bad activations refused up front with one line and nothing written, checkpoints never discarded and
# finished runs never retrained.
# ====================================================================================================================

def sae_args(acts, out, *more) -> list:
    "A small `saenb_train_sae` command line on `acts` into `out`."
    return ['--acts', acts, '--out', out, '--k', 4, '--exp_factor', 4, '--n_tokens', 20_000, '--batch_size', 512,
            '--lr', 3e-3, '--quiet', *more]


def old_epochs_fall_short(rows:int, batch:int, n_steps:int) -> bool:
    "Whether the epoch count before issue 16 (ignoring the rows each pass drops) gave fewer batches than `n_steps`."
    return (rows // batch) * (math.ceil(n_steps * batch / rows) + 1) < n_steps


def short_run(rows:int, batch:int) -> int:
    "The fewest steps for which the old epoch count ran out of batches on a store of `rows` rows."
    return next(n for n in range(1, 100_000) if old_epochs_fall_short(rows, batch, n))


# ---- case 2: small stores cycle through as many passes as the budget needs

def test_small_store_cycles_through_the_passes_the_budget_needs(tiny_run, tmp_path):
    """Case 2: a budget of many passes over a store whose passes each drop a partial batch. The old count (rows needed
    / rows, + 1) ran out of batches ("generator raised StopIteration"); the run now ends with every step trained."""
    from saenb.train_sae import open_activations
    rows, batch = len(open_activations(tiny_run['acts'])), 4096
    n = short_run(rows, batch)
    assert n < 400, (rows, n)  # the issue's 2M tokens in batches of 512 fail the same way, only slower
    r = run('saenb_train_sae', *sae_args(tiny_run['acts'], tmp_path/'sae', '--n_tokens', n * batch,
                                          '--batch_size', batch))
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s['steps'] == n and s['tokens'] == n * batch and not s['stopped_early']


def test_small_store_cycles_in_ensembles(tmp_path):
    """Case 2 for ensembles (what PIPELINE_TINY's sweep trains): a store of 1,508 rows, 8,192 tokens in batches of 512
    (the old count gave 14 of the 16 batches)."""
    from saenb.ensemble import train_ensemble
    rng = np.random.default_rng(0)
    np.save(tmp_path/'acts.npy', rng.standard_normal((1508, 16)).astype(np.float32))
    assert old_epochs_fall_short(1508, 512, 16)
    res = train_ensemble(tmp_path/'acts.npy', grid={'k': [2, 4]}, n_tokens=8192, batch_size=512, exp_factor=2,
                         progress=False)
    assert [r.summary['steps'] for r in res.values()] == [16, 16]


def test_small_corpus_cycles_in_train_saes_on_model(tiny_run):
    "Case 2 for SAEs trained on the model's live activations: as many passes over the corpus as the budget needs."
    from saenb.ensemble import train_saes_on_model
    from saenb.cache import ModelActivationSource
    from saenb.model import load_model
    model = load_model(tiny_run['model'])
    rows = len(ModelActivationSource(model, tiny_run['data'], '0_residpost', device='cpu'))
    batch = rows // 2 + 1  # one batch per pass, the other half dropped: the old count fell short after 5 steps
    n = short_run(rows, batch)
    assert n < 10, (rows, n)
    res = train_saes_on_model(model, tiny_run['data'], {'res0': {'hook': '0_residpost', 'arch': 'topk', 'k': 4}},
                              n_tokens=n * batch, batch_size=batch, exp_factor=2, val_rows=512, progress=False)
    assert res['res0'].summary['steps'] == n


def test_store_smaller_than_one_batch_is_refused(tiny_run, tmp_path):
    "A store with fewer rows than one batch: one line naming the store and the fix, nothing written."
    from saenb.train_sae import open_activations
    rows = len(open_activations(tiny_run['acts']))
    r = run('saenb_train_sae', *sae_args(tiny_run['acts'], tmp_path/'sae', '--batch_size', rows + 1,
                                          '--n_tokens', 2 * (rows + 1)))
    assert_fails(r, 'saenb_train_sae', str(tiny_run['acts']), f'{rows:,} rows, fewer than one batch', 'lower batch_size')
    assert not (tmp_path/'sae').exists()


# ---- case 6: two writers of one --out

def test_second_writer_of_an_out_is_refused(tiny_run, tmp_path):
    "Case 6: while another run holds --out, a second run (another seed) stops at once naming its pid, writing nothing."
    from saenb.utils import output_lock
    out = tmp_path/'sae'
    with output_lock(out): r = run('saenb_train_sae', *sae_args(tiny_run['acts'], out, '--seed', 2))
    assert_fails(r, 'saenb_train_sae', f'being written by process {os.getpid()}', str(out))
    assert not out.exists()


# ---- cases 9 and 10: bad settings refused up front

@pytest.mark.parametrize('args,needles', [
    (['--batch_size', 0], ['batch_size must be a positive integer, got 0']),        # case 9: was a ZeroDivisionError
    (['--n_tokens', 0], ['n_tokens must be a positive integer, got 0']),            # case 10: trained a step, saved
    (['--sae', '{"aux_coeff": "x", "grad_accum": 2}'], ["aux_coeff must be a number, got 'x'"]),  # was a TypeError
    (['--sae', '{"seed": 1}'], ["--sae sets 'seed', which has its own flag: pass --seed"]),  # was a TypeError
])
def test_bad_settings_fail_with_one_line(tiny_run, tmp_path, args, needles):
    "Cases 9 and 10: out-of-range or ill-typed settings end with one line naming the setting, and nothing is written."
    before = snapshot(tiny_run['acts'])
    r = run('saenb_train_sae', *sae_args(tiny_run['acts'], tmp_path/'sae', *args))
    assert_fails(r, 'saenb_train_sae', *needles)
    assert not (tmp_path/'sae').exists() and snapshot(tiny_run['acts']) == before


def test_every_numeric_setting_is_range_checked_in_python():
    "Case 10: the checks live in SAETrainConfig (and run_config), so Python and sweeps get them as the CLI does."
    from saenb.train_sae import SAETrainConfig, run_config
    from saenb.utils import InputError
    for kw, msg in [(dict(n_tokens=100, batch_size=512), 'less than one step of batch_size\\*grad_accum=512'),
                    (dict(lr_schedule='cosin'), "lr_schedule must be 'constant', 'cosine' or 'linear'"),
                    (dict(device='gpu'), "device must be 'cpu', 'cuda' or 'cuda:N'"),
                    (dict(batch_size='512'), 'batch_size must be an integer'), (dict(bf16='no'), 'bf16 must be')]:
        with pytest.raises(InputError, match=msg): SAETrainConfig(**kw)
    bad = dict(n_tokens=0, batch_size=-1, lr=-1.0, grad_accum=0, val_rows=0, log_every=0, causal_rows=0, warmup_steps=-1,
               resample_every=-1, val_every=-1, patience=-1, checkpoint_every=-1, seed=-1, d_sae=0, dead_tokens=0,
               exp_factor=0.0, dec_lr=-1.0, bias_lr=-1.0, max_grad_norm=-1.0, causal_coeff=-1.0, decay_frac=2.0,
               min_lr_frac=-0.5, beta1=1.0, beta2=-0.1)
    for name, v in bad.items():
        with pytest.raises(InputError, match=name): SAETrainConfig(**{name: v})
        with pytest.raises(InputError, match=name): run_config(k=4, **{name: v})
    with pytest.raises(InputError, match='lr must be'): SAETrainConfig(lr=float('nan'))
    with pytest.raises(InputError, match="k must be an integer, got 'four'"): run_config(k='four')
    with pytest.raises(InputError, match="'n_tokns' \\(did you mean 'n_tokens'\\?\\)"): run_config(k=4, n_tokns=10)


def test_make_sae_refuses_settings_of_the_wrong_type():
    "make_sae names the setting of the wrong type (an InputError), instead of a TypeError from a comparison inside."
    from saenb.sae import make_sae
    from saenb.utils import InputError
    for arch, kw, msg in [('topk', {'k': 'four'}, 'k must be an integer'), ('topk', {'k': True}, 'k must be an integer'),
                          ('topk', {'aux_coeff': None}, 'aux_coeff must be a number'),
                          ('relu', {'sparsity_coeff': 'x'}, 'sparsity_coeff must be a number'),
                          ('jumprelu', {'bandwidth': [1]}, 'bandwidth must be a number')]:
        with pytest.raises(InputError, match=msg): make_sae(arch, d_in=16, d_sae=64, **kw)
    with pytest.raises(InputError, match='exp_factor must be a positive number'): make_sae('topk', 16, exp_factor='2')


def test_out_naming_a_file_is_refused_before_training(tiny_run, tmp_path):
    "Case 9: --out naming a file (or a path under one) is one line naming it, before training; the file is unchanged."
    from saenb.train_sae import train_sae
    from saenb.utils import InputError
    f = tmp_path/'notes.txt'; f.write_text('mine')
    r = run('saenb_train_sae', *sae_args(tiny_run['acts'], f))
    assert_fails(r, 'saenb_train_sae', f'{f} is a file, not a directory', '--out')
    with pytest.raises(InputError, match='notes.txt is a file, not a directory'):
        train_sae(tiny_run['acts'], f/'sae', k=4, n_tokens=20_000, batch_size=512, progress=False)
    assert f.read_text() == 'mine'


def test_out_holding_something_else_is_never_replaced(tiny_run, tmp_path):
    """Saving an SAE replaces its directory: an --out that holds other things (here a copy of the cache, or the GPT) is
    refused before training instead of being deleted at the end."""
    from saenb.train_sae import train_sae
    from saenb.utils import InputError
    for src in (tiny_run['acts'].parent, tiny_run['model']): shutil.copytree(src, tmp_path/src.name)
    before = snapshot(tmp_path/'acts', tmp_path/'model')
    r = run('saenb_train_sae', *sae_args(tiny_run['acts'], tmp_path/'acts'))
    assert_fails(r, 'saenb_train_sae', 'holding something other than an SAE (0_residpost, cache.json)',
                 'choose a new --out')
    with pytest.raises(InputError, match='holding something other than an SAE'):  # the GPT's checkpoint is not an SAE's
        train_sae(tiny_run['acts'], tmp_path/'model', k=4, n_tokens=20_000, batch_size=512, progress=False)
    assert snapshot(tmp_path/'acts', tmp_path/'model') == before


# ---- cases 9 and 11: activations that cannot train

def activations(path, value):
    "2,048 rows of width 16, ten of them set to `value` (0.0: all of them), saved to `path`."
    a = np.random.default_rng(0).standard_normal((2048, 16)).astype(np.float32)
    if value == 0.0: a[:] = 0
    else: a[100:110] = value
    np.save(path, a)
    return path


@pytest.mark.parametrize('value,needle', [(np.nan, 'inf/nan'), (1e30, 'too large for float32')])
def test_bad_activations_are_refused_naming_the_store(tmp_path, value, needle):
    """Case 9 (NaN/Inf: a FloatingPointError traceback) and case 11 (1e30: "scales must be positive, got 0.0, 0.0" after
    training): refused when the store is opened, naming it and what to do; nothing written."""
    acts = activations(tmp_path/'acts.npy', value)
    r = run('saenb_train_sae', *sae_args(acts, tmp_path/'sae', '--n_tokens', 4096))
    assert_fails(r, 'saenb_train_sae', str(acts), needle, 'saenb_cache --overwrite')
    assert not (tmp_path/'sae').exists()


def test_more_bad_activations_are_refused_in_python(tiny_run, tmp_path):
    "Inf and all-zero activations, and validation rows of another width or holding NaN, named before training."
    from saenb.train_sae import train_sae
    from saenb.utils import InputError
    kw = dict(k=4, n_tokens=4096, batch_size=512, progress=False)
    for value, msg in [(np.inf, 'holds inf/nan'), (0.0, 'holds only zero activations')]:
        with pytest.raises(InputError, match=msg): train_sae(activations(tmp_path/'a.npy', value), tmp_path/'sae', **kw)
    np.save(tmp_path/'val.npy', np.ones((64, 8), np.float32))
    with pytest.raises(InputError, match='are 8 wide but acts .* is 32 wide'):
        train_sae(tiny_run['acts'], tmp_path/'sae', val_acts=tmp_path/'val.npy', **kw)
    with pytest.raises(InputError, match='val_acts .* hold inf/nan'):
        train_sae(activations(tmp_path/'b.npy', 1.0), tmp_path/'sae', val_acts=activations(tmp_path/'v.npy', np.nan),
                  **kw)
    assert not (tmp_path/'sae').exists()


# ---- case 12: checkpoints are never discarded, finished runs never retrained

def interrupted_run(acts, out, at:int, **kw):
    "Train in this process as `saenb_train_sae` would, stopped after step `at`: what a run killed there leaves."
    from saenb.train_sae import train_sae
    class Stop(Exception): pass
    def stop(step, sae):
        if step == at: raise Stop
    with pytest.raises(Stop):
        train_sae(str(acts), out, arch='topk', k=4, exp_factor=4., n_tokens=20_000, batch_size=512, lr=3e-3,
                  checkpoint_every=10, progress=False, callback=stop, **kw)
    assert (out/'checkpoint').is_dir() and not (out/'config.json').exists()


def test_checkpoint_is_never_discarded_and_finished_runs_are_not_retrained(tiny_run, tmp_path):
    """Case 12: after a run is killed, rerunning without --resume refuses (saying how to resume or start over) and keeps
    the checkpoint; --resume finishes it; --resume again reports the finished run and changes nothing; without
    --resume a finished SAE is refused; --resume with other settings is refused."""
    out = tmp_path/'sae'
    interrupted_run(tiny_run['acts'], out, 25)
    args = sae_args(tiny_run['acts'], out, '--checkpoint_every', 10)
    before = snapshot(out)
    r = run('saenb_train_sae', *args)
    assert_fails(r, 'saenb_train_sae', 'checkpoint of an unfinished run (step 20 of 39)', '--resume',
                 f"delete {out/'checkpoint'} to start over")
    assert snapshot(out) == before
    r = run('saenb_train_sae', *args, '--resume')
    assert r.returncode == 0, r.stderr[-3000:]
    first = json.loads(r.stdout.strip().splitlines()[-1])
    assert first['steps'] == 39 and (out/'config.json').exists() and not (out/'checkpoint').exists()
    done = snapshot(out)
    r = run('saenb_train_sae', *args, '--resume')
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == first and 'nothing was trained' in r.stderr
    from saenb.train_sae import train_sae
    from saenb.utils import InputError
    kw = dict(arch='topk', exp_factor=4., n_tokens=20_000, batch_size=512, lr=3e-3, progress=False)
    with pytest.raises(InputError, match='already holds a trained SAE'): train_sae(tiny_run['acts'], out, k=4, **kw)
    with pytest.raises(InputError, match="trained with sae={'k': 4}, not {'k': 8}"):
        train_sae(tiny_run['acts'], out, k=8, resume=True, **kw)
    assert snapshot(out) == done


def test_ensembles_never_write_over_a_checkpoint_or_lose_a_member(tiny_run, tmp_path):
    "Ensembles: a member directory holding a single run's checkpoint is refused untouched; two members of one name too."
    from saenb.ensemble import train_ensemble
    from saenb.utils import InputError
    out = tmp_path/'ens'
    interrupted_run(tiny_run['acts'], out/'a', 15)
    before = snapshot(out)
    kw = dict(n_tokens=20_000, batch_size=512, exp_factor=2, progress=False)
    with pytest.raises(InputError, match='checkpoint of an unfinished'):
        train_ensemble(tiny_run['acts'], members=[{'name': 'a', 'k': 4}], out=out, **kw)
    with pytest.raises(InputError, match="two members are named 'b'"):
        train_ensemble(tiny_run['acts'], members=[{'name': 'b', 'k': 4}, {'name': 'b', 'k': 8}], out=out, **kw)
    assert snapshot(out) == before and not (out/'b').exists()


# ====================================================================================================================
# Evaluation and the feature browser
# Issue 16, evaluation and the browser: `saenb_eval` and `saenb_browser` refuse another model (by fingerprint) or one
# of another width with one line, find a moved run's own store and model, read SAELens directories, range-check every
# count up front, name every corrupt file they read, and leave nothing behind when they fail.
# ====================================================================================================================

def _files(*paths) -> dict:
    "`snapshot` without the lock files `output_lock` leaves beside the outputs it guarded."
    return {k: v for k, v in snapshot(*paths).items() if not Path(k).name.endswith('.lock')}

def _runs(*calls) -> list:
    """Run the commands `(name, *args)`: their results, in order. In this process one after another; while this process
    holds an output lock (the commands must then be processes of their own), side by side."""
    from saenb.utils import _HELD
    if not _HELD: return [run(*c) for c in calls]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as ex:
        return list(ex.map(lambda c: run(*c), calls))

def _ok(r):
    assert r.returncode == 0, r.stderr[-3000:]
    return r

EVAL_FAST = ('--n_gen', 0, '--no_probes', '--n_rows', 2000, '--n_seqs', 32, '--quiet')

@pytest.fixture(scope='module')
def eval_models(tiny_run, tmp_path_factory):
    """Two more GPTs on the tiny run's corpus: `other`, of the same width as the tiny run's model (another seed), and
    `wide` (width 48)."""
    root, data = tmp_path_factory.mktemp('eval_models'), tiny_run['data']
    gpt = ('--data', data, '--n_layers', 1, '--n_heads', 2, '--d_mlp', 64, '--n_ctx', 20, '--batch_size', 32,
           '--eval_every', 30)
    for r in _runs(('saenb_train_gpt', *gpt, '--out', root/'other', '--d_model', 32, '--steps', 60, '--seed', 1),
                   ('saenb_train_gpt', *gpt, '--out', root/'wide', '--d_model', 48, '--steps', 2)): _ok(r)
    return {'other': root/'other', 'wide': root/'wide'}

def test_case4_a_moved_run_finds_its_own_model_and_store(tiny_run, eval_models, tmp_path):
    """Case 4 (a): a store cached with a relative `--model`, browsed from a folder with another `model/`, uses its own
    model; moved as a whole, the run still finds its store (saved statistics) and model, and evaluates with it."""
    rundir, here = tmp_path/'run', tmp_path/'elsewhere'
    shutil.copytree(tiny_run['root'], rundir)
    _ok(run('saenb_cache', '--model', 'model', '--data', 'data', '--hooks', '0_residpost', '--out', 'acts_rel', '--quiet',
            cwd=rundir))
    shutil.copytree(eval_models['other'], here/'model')  # a folder holding another model/ of the same width
    _ok(run('saenb_browser', '--sae', '../run/sae_topk', '--acts', '../run/acts_rel/0_residpost', '--out', 'site',
            '--n_latents', 5, '--quiet', cwd=here))
    meta = json.loads((rundir/'sae_topk'/'browser'/'meta.json').read_text())
    assert Path(meta['model_dir']) == (rundir/'model').resolve() and 'provenance_overrides' not in meta, meta['model_dir']
    moved = tmp_path/'moved'; rundir.rename(moved)
    site2, ev = here/'site2', here/'ev'
    r_site, r_eval = _runs(('saenb_browser', '--sae', moved/'sae_topk', '--out', site2, '--n_latents', 5, '--quiet'),
                           ('saenb_eval', '--sae', moved/'sae_topk', '--acts', moved/'acts'/'0_residpost', '--model',
                            moved/'model', '--out', ev, *EVAL_FAST))
    _ok(r_site); _ok(r_eval)  # the saved statistics' store, found relative to them; the model, by fingerprint
    assert (site2/'index.html').exists() and 'provenance_overrides' not in json.loads((ev/'eval.json').read_text())
    _ok(run('saenb_browser', '--sae', '../moved/sae_topk', '--acts', '../moved/acts_rel/0_residpost', '--recompute',
            '--out', 'site3', '--n_latents', 5, '--quiet', cwd=here))
    meta = json.loads((moved/'sae_topk'/'browser'/'meta.json').read_text())
    assert Path(meta['model_dir']) == (moved/'model').resolve(), meta['model_dir']

def test_case4_another_model_is_refused_unless_allowed(tiny_run, eval_models, tmp_path):
    """Case 4 (b): `saenb_eval --model` and `saenb_browser --model` with another model of the same width are refused,
    naming both; `--allow_mismatch` goes ahead and records it in eval.json and the browser's meta.json."""
    sae, other = tmp_path/'sae', eval_models['other']
    shutil.copytree(tiny_run['sae_topk'], sae)
    before = _files(tmp_path)
    acts = tiny_run['acts']
    r_eval, r_site = _runs(('saenb_eval', '--sae', sae, '--acts', acts, '--model', other, '--out', tmp_path/'ev', *EVAL_FAST),
                           ('saenb_browser', '--sae', sae, '--acts', acts, '--model', other, '--out', tmp_path/'site', '--quiet'))
    for r, prog in ((r_eval, 'saenb_eval'), (r_site, 'saenb_browser')):
        assert_fails(r, prog, 'was cached from the model', str(tiny_run['model']), str(other.resolve()), '--allow_mismatch')
    assert _files(tmp_path) == before and not (tmp_path/'ev').exists() and not (tmp_path/'site').exists()
    r_eval, r_site = _runs(('saenb_eval', '--sae', sae, '--acts', acts, '--model', other, '--out', tmp_path/'ev',
                            '--allow_mismatch', *EVAL_FAST),
                           ('saenb_browser', '--sae', sae, '--acts', acts, '--model', other, '--out', tmp_path/'site',
                            '--allow_mismatch', '--n_latents', 5, '--quiet'))
    _ok(r_eval); _ok(r_site)
    for f in (tmp_path/'ev'/'eval.json', sae/'browser'/'meta.json'):
        over = json.loads(f.read_text()).get('provenance_overrides')
        assert over and str(other.resolve()) in over[0], (f, over)

def test_case7_saelens_directory_is_evaluated_and_browsed(tiny_run, tmp_path):
    "Case 7: the tiny SAE exported to SAELens's format is evaluated (with downstream figures) and browsed."
    sl = tmp_path/'saelens'
    _ok(run('saenb_export_saelens', '--sae', tiny_run['sae_topk'], '--out', sl, '--hook_name', 'blocks.0.hook_resid_post'))
    assert not (sl/'config.json').exists()  # what saenb_eval and saenb_browser once required
    r_eval, r_site = _runs(('saenb_eval', '--sae', sl, '--acts', tiny_run['acts'], '--model', tiny_run['model'],
                            '--out', tmp_path/'ev', *EVAL_FAST),
                           ('saenb_browser', '--sae', sl, '--acts', tiny_run['acts'], '--out', tmp_path/'site',
                            '--n_latents', 5, '--quiet'))
    _ok(r_eval); _ok(r_site)
    ev = json.loads((tmp_path/'ev'/'eval.json').read_text())
    assert ev['arch'] == 'topk' and ev['d_sae'] == 128 and ev['reconstruction']['explained_variance'] > 0.5
    assert 'downstream' in ev and (tmp_path/'site'/'index.html').exists()
    assert json.loads(r_site.stdout.strip().splitlines()[-1])['latents'] == 128

def test_case9_model_of_another_width_is_one_line(tiny_run, eval_models, tmp_path):
    """Case 9: a model of another width is refused with one line (not a tensor-size `RuntimeError`): allowed past the
    fingerprint, with a store that records none, with a plain `.npy` file, and in the browser (nothing saved)."""
    wide, acts, sae = eval_models['wide'], tiny_run['acts'], tmp_path/'sae'
    shutil.copytree(tiny_run['sae_topk'], sae)
    old = tmp_path/'old_store'; shutil.copytree(acts, old)  # a store from before provenance was recorded
    m = json.loads((old/'manifest.json').read_text()); m.pop('provenance'); (old/'manifest.json').write_text(json.dumps(m))
    shutil.copy(acts/'validation'/'shard_00000.npy', tmp_path/'plain.npy')  # [rows, 32] float32
    before = _files(tmp_path)
    rs = _runs(('saenb_eval', '--sae', sae, '--acts', acts, '--model', wide, '--allow_mismatch', '--out', tmp_path/'e1',
                *EVAL_FAST),
               ('saenb_eval', '--sae', sae, '--acts', old, '--model', wide, '--out', tmp_path/'e2', *EVAL_FAST),
               ('saenb_eval', '--sae', sae, '--acts', tmp_path/'plain.npy', '--model', wide, '--out', tmp_path/'e3',
                *EVAL_FAST),
               ('saenb_browser', '--sae', sae, '--acts', acts, '--model', wide, '--allow_mismatch', '--out',
                tmp_path/'site', '--quiet'))
    assert_fails(rs[0], 'saenb_eval', 'width 48', 'width 32', 'pass the model the store was cached from')
    assert_fails(rs[1], 'saenb_eval', 'width 48', 'width 32')
    assert_fails(rs[2], 'saenb_eval', 'width 32', '48 or 64 wide')
    assert_fails(rs[3], 'saenb_browser', 'width 48', 'width 32')
    assert _files(tmp_path) == before and not (sae/'browser').exists()

def test_case10_browser_latent_counts(tiny_run, tmp_path):
    "Case 10: `saenb_browser --n_latents 0` (an empty browser) and `-1` (all latents but one) are refused."
    sae = tmp_path/'sae'; shutil.copytree(tiny_run['sae_topk'], sae)
    before = _files(tmp_path)
    for n, r in zip((0, -1), _runs(*[('saenb_browser', '--sae', sae, '--acts', tiny_run['acts'], '--out', tmp_path/'site',
                                      '--n_latents', n, '--quiet') for n in (0, -1)])):
        assert_fails(r, 'saenb_browser', 'n_latents must be a positive number', f'got {n}')
    assert _files(tmp_path) == before and not (tmp_path/'site').exists()

def test_case11_numeric_flags_checked_up_front(tiny_run, tmp_path):
    """Case 11: every count of `saenb_eval` and `saenb_browser` is range-checked before any work (`--n_seqs 0` was
    "zero-size array to reduction operation maximum"); `--n_gen 0` stays valid: no grammaticality."""
    sae = tmp_path/'sae'; shutil.copytree(tiny_run['sae_topk'], sae)
    common = ('--sae', sae, '--acts', tiny_run['acts'])
    ev = ('saenb_eval', *common, '--model', tiny_run['model'], '--out', tmp_path/'ev', '--quiet')
    site = ('saenb_browser', *common, '--out', tmp_path/'site', '--quiet')
    bad = [(ev, '--n_seqs', 0), (ev, '--n_rows', -5), (ev, '--n_gen', -1), (site, '--n_rows', 0), (site, '--top_k', -2)]
    before = _files(tmp_path)
    for (cmd, flag, v), r in zip(bad, _runs(*[(*cmd, flag, v) for cmd, flag, v in bad])):
        assert_fails(r, cmd[0], f'{flag[2:]} must be', f'got {v}')
    assert _files(tmp_path) == before and not (sae/'browser').exists()
    _ok(run(*ev, '--n_gen', 0, '--no_probes', '--n_rows', 2000, '--n_seqs', 32))
    res = json.loads((tmp_path/'ev'/'eval.json').read_text())
    assert 'downstream' in res and 'grammaticality' not in res

def test_case11_bad_files_are_named(tiny_run, eval_models, tmp_path):
    """Case 11: corrupt saved browser statistics, a store without token labels or hook (a plain `.npy` file), and a
    garbage eval.json given to the pareto page: one line naming the file and the fix, nothing written. Saved statistics
    were also reused silently with another `--acts` (examples read from rows of the wrong store) or `--model`: refused,
    asking for `--recompute`."""
    sae = tmp_path/'sae'; shutil.copytree(tiny_run['sae_topk'], sae)
    r0, r1 = _runs(('saenb_browser', '--sae', sae, '--acts', tiny_run['acts'], '--out', tmp_path/'site0',
                    '--n_latents', 5, '--quiet'),
                   ('saenb_cache', '--model', tiny_run['model'], '--data', tiny_run['data'], '--hooks', '0_residpost',
                    '--out', tmp_path/'small', '--n_tokens', 3000, '--quiet'))
    _ok(r0); _ok(r1)
    junk = {'meta.json': '{"store": ', 'latents.parquet': 'PAR1 not parquet',
            'stats.safetensors': (sae/'browser'/'stats.safetensors').read_bytes()[:100]}
    for name, j in junk.items():
        d = tmp_path/f'sae_{name}'; shutil.copytree(sae, d)
        f = d/'browser'/name; f.write_bytes(j) if isinstance(j, bytes) else f.write_text(j)
    shutil.copy(tiny_run['acts']/'validation'/'shard_00000.npy', tmp_path/'plain.npy')  # [rows, 32], no tokens, no hook
    before = _files(tmp_path)
    calls = [('saenb_browser', '--sae', tmp_path/f'sae_{name}', '--out', tmp_path/f'site_{name}', '--quiet')
             + (() if name == 'meta.json' else ('--acts', tiny_run['acts'])) for name in junk]  # meta.json: finds --acts
    calls += [('saenb_browser', '--sae', sae, '--acts', tmp_path/'plain.npy', '--recompute', '--out', tmp_path/'s1'),
              ('saenb_eval', '--sae', sae, '--acts', tmp_path/'plain.npy', '--model', tiny_run['model'], '--out',
               tmp_path/'e1', *EVAL_FAST),
              ('saenb_browser', '--sae', sae, '--acts', tmp_path/'small'/'0_residpost', '--out', tmp_path/'s2', '--quiet'),
              ('saenb_browser', '--sae', sae, '--model', eval_models['other'], '--out', tmp_path/'s3', '--quiet')]
    rs = _runs(*calls)
    for name, r in zip(junk, rs): assert_fails(r, 'saenb_browser', f'browser/{name} is corrupt', '--recompute')
    assert_fails(rs[3], 'saenb_browser', 'plain.npy has no token labels', 'saenb_cache')
    assert_fails(rs[4], 'saenb_eval', 'plain.npy does not record its hook', 'saenb_cache')
    assert_fails(rs[5], 'saenb_browser', 'were computed on', 'small', '--recompute')
    assert_fails(rs[6], 'saenb_browser', 'were computed with the model', '--recompute')
    assert _files(tmp_path) == before
    assert not any((tmp_path/n).exists() for n in ('s1', 's2', 's3', 'e1', *(f'site_{n}' for n in junk)))
    _ok(run('saenb_browser', '--sae', tmp_path/'sae_meta.json', '--acts', tiny_run['acts'], '--recompute', '--out',
            tmp_path/'site_fixed', '--n_latents', 5, '--quiet'))  # the fix the message gives works
    from saenb.eval import pareto_figure
    from saenb.utils import InputError
    (tmp_path/'eval.json').write_text('{"reconstruction": ')
    with pytest.raises(InputError, match='eval.json is not valid JSON.*run saenb_eval'): pareto_figure([tmp_path])
    (tmp_path/'eval.json').write_text('{"reconstruction": {"l0": null}}')
    with pytest.raises(InputError, match='not an eval.json written by saenb_eval'): pareto_figure([tmp_path])

def test_several_saes_all_reports_or_none(tiny_run, tmp_path):
    """Two SAEs of one name under one `--out` overwrote each other's report silently, and a bad SAE after a good one left
    the good one's report behind: both refused before anything is written."""
    for d in ('a', 'b'): shutil.copytree(tiny_run['sae_topk'], tmp_path/d/'sae')
    bad = tmp_path/'bad'; shutil.copytree(tiny_run['sae_topk'], bad); (bad/'config.json').write_text('{')
    before = _files(tmp_path)
    r_dup, r_bad = _runs(('saenb_eval', '--sae', f"{tmp_path/'a'/'sae'},{tmp_path/'b'/'sae'}", '--acts', tiny_run['acts'],
                          '--out', tmp_path/'ev', *EVAL_FAST),
                         ('saenb_eval', '--sae', f"{tmp_path/'a'/'sae'},{bad}", '--acts', tiny_run['acts'],
                          *EVAL_FAST))
    assert_fails(r_dup, 'saenb_eval', 'would both write', 'distinct names')
    assert_fails(r_bad, 'saenb_eval', 'bad/config.json is corrupt')
    assert _files(tmp_path) == before and not (tmp_path/'ev').exists()

def test_two_writers_of_one_output(tiny_run, tmp_path):
    "A second writer of an eval `--out`, a browser `--out` or an SAE's saved statistics stops at once, naming the holder."
    from saenb.utils import output_lock
    sae, sae2 = tmp_path/'sae', tmp_path/'sae2'
    for d in (sae, sae2): shutil.copytree(tiny_run['sae_topk'], d)
    acts, pid = tiny_run['acts'], str(os.getpid())
    before = _files(tmp_path)
    with output_lock(tmp_path/'ev'), output_lock(tmp_path/'site'), output_lock(sae/'browser'):
        r_eval, r_site, r_stats = _runs(
            ('saenb_eval', '--sae', sae, '--acts', acts, '--out', tmp_path/'ev', *EVAL_FAST),
            ('saenb_browser', '--sae', sae2, '--acts', acts, '--out', tmp_path/'site', '--quiet'),
            ('saenb_browser', '--sae', sae, '--acts', acts, '--out', tmp_path/'site2', '--quiet'))
    assert_fails(r_eval, 'saenb_eval', 'is being written by process', pid)
    assert_fails(r_site, 'saenb_browser', 'is being written by process', pid)
    assert_fails(r_stats, 'saenb_browser', 'browser is being written by process', pid)
    assert _files(tmp_path) == before and not (tmp_path/'site2').exists()
    assert not (sae/'browser').exists() and not (sae2/'browser').exists()


# ====================================================================================================================
# Sweeps
# saenb_sweep robustness (issue 16, case 5 and its class): every YAML key and value is checked before any run starts
# (exit 2, one line naming the file, the key and its nearest spelling, nothing written); a sweep where no run finished
# exits 1; one writer per sweep directory, while its worker processes and torchrun ranks write inside it.
# ====================================================================================================================

BASE = {'acts': 'acts.npy', 'n_tokens': 2560, 'batch_size': 256, 'lr': 3e-3, 'saes': {'arch': 'topk', 'k': 4, 'exp_factor': 2}}

@pytest.fixture(scope='module')
def acts(tmp_path_factory):
    d = tmp_path_factory.mktemp('acts')
    np.save(d/'acts.npy', np.random.default_rng(0).standard_normal((2048, 16)).astype(np.float32))
    return d/'acts.npy'

def configs(d:Path, acts:Path, base=None, sweep:str='k: [2, 4]\n') -> list:
    "Write base.yaml (BASE, or `base`: a dict, or YAML text) and sweep.yaml into `d`; the command's config arguments."
    d.mkdir(parents=True, exist_ok=True)
    b = base if isinstance(base, str) else yaml.safe_dump({**BASE, 'acts': str(acts), **(base or {})})
    if isinstance(base, str): b = f"acts: {acts}\n" + b
    (d/'base.yaml').write_text(b); (d/'sweep.yaml').write_text(sweep)
    return ['--base', str(d/'base.yaml'), '--sweep', str(d/'sweep.yaml')]

def sweep_cli(*args, env=ENV, **kw):
    return subprocess.run(console('saenb_sweep') + [*map(str, args), '--quiet'], env=env, capture_output=True, text=True, **kw)

def assert_refused(r, out:Path, *contains):
    "Exit 2, one stderr line starting `saenb_sweep: error:` with each of `contains`, and nothing written at `out`."
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith('saenb_sweep: error:'), (r.returncode, r.stderr[-3000:])
    for c in contains: assert c in lines[0], (c, lines[0])
    assert not out.exists(), f'{out} was written'

# (name, base: dict overrides or YAML text after acts:, sweep YAML, extra arguments, what the message must say)
CASES = [
    ('saes_key', "n_tokens: 2560\nbatch_size: 256\nsaes: {arch: topk, k: 4, exp_fctor: 4}\n", 'k: [2, 4]\n', [],
     ['base.yaml', "'exp_fctor'", "did you mean 'exp_factor'"]),
    ('base_top_key', "n_tokns: 2560\nbatch_size: 256\nsaes: {arch: topk, k: 4, exp_factor: 2}\n", 'k: [2, 4]\n', [],
     ['base.yaml', "'n_tokns'", "did you mean 'n_tokens'"]),
    ('sweep_top_key', None, 'n_tokns: [2560, 5120]\n', [], ['sweep.yaml', "'n_tokns'", "did you mean 'n_tokens'"]),
    ('arch_specific', None, 'saes.arch: [topk, relu]\narch_specfic: {topk: {k: [2]}}\n', [],
     ['sweep.yaml', "'arch_specfic'", "did you mean 'arch_specific'"]),
    ('devices', None, 'k: [2, 4]\n', ['--devices', 'cpu,tpu'], ['tpu not available']),
]

def test_misspelled_keys_refused_before_any_run(tmp_path, acts):
    "Case 5: each misspelled key exits 2 with one line naming the file, the key and its spelling; nothing under --out."
    for name, base, sweep, extra, contains in CASES:
        d = tmp_path/name
        args = configs(d, acts, base, sweep)
        assert_refused(run('saenb_sweep', *args, '--out', d/'out', '--sequential', '--quiet', *extra), d/'out', *contains)

@pytest.mark.parametrize('base,sweep,contains', [
    ({}, 'saes.exp_fctor: [2, 4]\n', "sweep.yaml: unknown setting 'saes.exp_fctor' (did you mean 'saes.exp_factor'?)"),
    ({}, 'arch_specific: {topk: {kk: [2, 4]}}\n', "arch_specific.topk: unknown setting 'kk' (did you mean 'k'?)"),
    ({}, 'arch_specific: {topkk: {k: [2]}}\n', "unknown SAE architecture 'topkk' (did you mean 'topk'?)"),
    ({'saes': {'arch': 'reluu', 'sparsity_coeff': 0.1}}, 'lr: [1.0e-3]\n', "(did you mean 'relu'?)"),
    ({'lr': '1e-3'}, 'k: [2]\n', "lr must be a number, got '1e-3' (YAML reads 1e-3 as text: write 0.001)"),
    ({'n_tokens': '2e6'}, 'k: [2]\n', 'write 2000000'),
    ({'batch_size': 0}, 'k: [2]\n', 'batch_size must be a positive number, got 0'),
    ({}, 'n_tokens: [2560, -1]\n', 'n_tokens must be a positive number, got -1'),
    ({}, 'k: [2.5]\n', 'saes.k must be a whole number'),
    ({}, 'k: []\n', 'saes.k is an empty list'),
    ({}, 'k: [2, 4, 2]\n', 'saes.k lists 2 twice'),
    ({}, 'k: [2]\nsaes.k: [4]\n', "'k' and 'saes.k' both set saes.k"),
    ({'saes': {'arch': 'topk', 'exp_fctor': 4}}, 'k: [2]\n', "base.yaml, under saes: unknown setting 'exp_fctor'"),
    ({}, 'lr: {peak: 1.0e-3}\n', 'lr must be a value or a list of values'),
    ({'eval': {'n_seq': 8}}, 'k: [2]\n', "did you mean 'n_seqs'"),
    ({'saes': {'arch': 'topk', 'k': 4, 'lr': 1e-3}}, 'k: [2]\n', 'lr is a trainer setting'),
    ({'saes': {'arch': 'topk', 'k': 4, 'seed': 1}}, 'k: [2]\n', 'seed is a trainer setting'),
    ({'k': [4, 8]}, 'lr: [1.0e-3]\n', 'a list is an axis of the sweep'),
    ({}, 'saes.arch: [relu]\nk: [2]\n', "relu has no setting 'k'"),
    ({}, 'saes.arch: [topk, relu]\nk: [2]\n', 'move it under arch_specific'),
    ({}, 'saes.arch: [topk]\narch_specific: {relu: {sparsity_coeff: [0.1]}}\n', 'add it to saes.arch'),
])
def test_more_bad_settings(tmp_path, acts, base, sweep, contains):
    "The rest of the class, through load_sweep (what saenb_sweep runs first): each an InputError naming the file."
    configs(tmp_path, acts, base, sweep)
    with pytest.raises(InputError) as e: load_sweep(tmp_path/'base.yaml', tmp_path/'sweep.yaml')
    assert contains in str(e.value) and ('base.yaml' in str(e.value) or 'sweep.yaml' in str(e.value)), str(e.value)

@pytest.mark.parametrize('kw,contains', [({'limit': -1}, 'limit must be a positive number, got -1'),
                                         ({'limit': 0}, 'limit must be a positive number, got 0'),
                                         ({'max_ensemble': -2, 'ensemble': True}, 'max_ensemble must be a positive'),
                                         ({'devices': 'cpu,tpu'}, 'tpu not available here')])
def test_bad_arguments_write_nothing(tmp_path, acts, kw, contains):
    configs(tmp_path, acts)
    with pytest.raises(InputError, match=contains):
        run_sweep(tmp_path/'base.yaml', tmp_path/'sweep.yaml', tmp_path/'out', progress=False, **kw)
    assert not (tmp_path/'out').exists()

def test_out_is_a_file(tmp_path, acts):
    configs(tmp_path, acts)
    (tmp_path/'out').write_text('not a sweep')
    with pytest.raises(InputError, match='is a file'): run_sweep(tmp_path/'base.yaml', None, tmp_path/'out', progress=False)
    assert (tmp_path/'out').read_text() == 'not a sweep'

def summary_of(r) -> dict: return json.loads(r.stdout.strip().splitlines()[-1])

# A run's train_sae locks its own output below the sweep directory (as saenb_train_sae does), whatever train_sae
# does itself: the sweep's worker processes must be let through.
LOCKING = """from contextlib import nullcontext
import saenb.train_sae as t, saenb.utils as u
_train = t.train_sae
def train_sae(acts, out=None, *a, **kw):
    with u.output_lock(out) if out is not None else nullcontext(): return _train(acts, out, *a, **kw)
t.train_sae = train_sae
"""

def locking_env(tmp_path) -> dict:
    (tmp_path/'site').mkdir()
    (tmp_path/'site'/'sitecustomize.py').write_text(LOCKING)
    return {**ENV, 'PYTHONPATH': os.pathsep.join([str(tmp_path/'site'), os.environ.get('PYTHONPATH', '')])}

def test_all_failed_exits_1_some_failed_exits_0(tmp_path, acts):
    """No run finished: the summary line, then the first failure's error on stderr, exit 1. Some failed: exit 0 and a
    note; there two worker processes lock and write their runs inside the sweep directory their parent holds."""
    args = configs(tmp_path, acts, sweep='k: [100, 200]\n')  # k above d_sae = 32: every run fails
    r = sweep_cli(*args, '--out', tmp_path/'out', '--sequential')
    s = summary_of(r)
    assert r.returncode == 1 and s['runs'] == 2 and s['failed'] == 2 and 'finished' not in s, (r.returncode, r.stdout, r.stderr)
    assert '2 of 2 runs failed' in s['note']
    err = [l for l in r.stderr.splitlines() if l.startswith('saenb_sweep: error:')]
    assert len(err) == 1 and 'no run finished' in err[0] and 'k=' in err[0], r.stderr
    (tmp_path/'sweep.yaml').write_text('k: [2, 100]\n')
    r = sweep_cli(*args, '--out', tmp_path/'out2', '--devices', 'cpu,cpu', env=locking_env(tmp_path), timeout=300)
    s = summary_of(r)
    assert r.returncode == 0 and s['finished'] == 1 and s['failed'] == 1 and '1 of 2 runs failed' in s['note'], r.stderr[-3000:]
    failed = [json.loads(f.read_text())['error'] for f in (tmp_path/'out2').glob('runs/*/failed.json')]
    assert len(failed) == 1 and 'k=100' in failed[0], failed  # the failure is k's, not a lock's

def test_second_sweep_into_one_out_refused(tmp_path, acts):
    "A sweep directory held by another process: exit 2 naming its pid, nothing written."
    args = configs(tmp_path, acts)
    out = tmp_path/'out'
    with output_lock(out, 'saenb_sweep (the first sweep)'):
        r = sweep_cli(*args, '--out', out, '--sequential')
    assert_refused(r, out, f'is being written by process {os.getpid()}', 'the first sweep')

def test_torchrun_all_ranks_stop_when_rank0_cannot_lock(tmp_path, acts):
    "Under torchrun rank 0 takes the sweep's lock for all ranks; when another process holds it, no rank writes anything."
    args = configs(tmp_path, acts, sweep='k: [2, 3, 4, 5]\n')
    out = tmp_path/'out'
    with output_lock(out, 'saenb_sweep (the first sweep)'):
        r = run_torchrun('-m', 'saenb.sweep', *args, '--out', out, '--quiet', timeout=300)
    err = r.stderr
    assert r.returncode != 0 and f'is being written by process {os.getpid()}' in err, err[-3000:]
    assert not out.exists(), sorted(out.rglob('*'))


# ====================================================================================================================
# The pipeline
# Issue 16 for saenb_pipeline: settings checked before any stage, a failed SAE stage that can be fixed, --tiny for
# every language, and one pipeline per output directory.
# ====================================================================================================================

def config(tmp_path, **sections):
    f = tmp_path/'cfg.yaml'; f.write_text(yaml.safe_dump(sections)); return f

def test_bad_settings_fail_before_any_stage(tmp_path):
    "Case 15: a wrong hook or sweep setting stops the pipeline at once, before the data and GPT stages run."
    for sections, needle in [({'cache': {'hooks': ['0_residpost', 'mlp9']}}, 'mlp9'),
                             ({'sweep': {'saes': {'arch': ['topk']}, 'arch_specific': {'topk': {'kk': 4}}}}, "'kk'"),
                             ({'sweep': {'saes': {'arch': ['topkk']}}}, "'topkk' (did you mean 'topk'?)"),
                             ({'saes': {'n_tokns': 100}}, "'n_tokns'"),
                             ({'eval': {'n_seqz': 4}}, "'n_seqz' (did you mean 'n_seqs'?)"),
                             ({'data': {'n_bracket': 3}}, "'n_bracket'")]:
        out = tmp_path/'run'
        r = run('saenb_pipeline', '--tiny', '--out', out, '--config', config(tmp_path, **sections), '--quiet')
        assert_fails(r, 'saenb_pipeline', needle)
        assert not out.exists(), sections   # nothing was written

def test_failed_sae_stage_can_be_fixed(tmp_path):
    "Case 3: after the SAE stage fails, the same command with corrected settings finishes; the failed runs are kept aside."
    out = tmp_path/'run'
    one = {'cache': {'hooks': ['0_residpost']}}   # one hook: one SAE per setting
    bad = {**one, 'sweep': {'saes': {'arch': ['topk']}, 'arch_specific': {'topk': {'k': 1000}}}}   # k > the dictionary
    r = run('saenb_pipeline', '--tiny', '--out', out, '--config', config(tmp_path, **bad), '--quiet')
    assert_fails(r, 'saenb_pipeline', 'SAE run(s) failed', 'k=1000')
    good = {**one, 'sweep': {'saes': {'arch': ['topk']}, 'arch_specific': {'topk': {'k': 4}}}}
    r = run('saenb_pipeline', '--tiny', '--out', out, '--config', config(tmp_path, **good), '--quiet')
    assert r.returncode == 0, r.stderr[-3000:]
    table = pd.read_csv(out/'summary.csv')
    assert table.sae.tolist() == ['topk k=4 0_residpost']      # only the runs of the current settings
    assert len(list((out/'saes'/'runs').iterdir())) == 2      # the failed run is still there, not counted

def test_tiny_pipeline_for_every_language(tmp_path):
    "Case 13: --tiny works with --lang expr (the tiny sizes only set the hyperparameters a language has)."
    out = tmp_path/'expr'
    r = run('saenb_pipeline', '--tiny', '--lang', 'expr', '--out', out, '--quiet')
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((out/'grammaticality.json').read_text())['n'] > 0 and (out/'index.html').exists()

def test_one_pipeline_per_directory(tmp_path):
    "Two pipelines into one --out: the second stops at once, naming the first's process."
    out = tmp_path/'run'; out.mkdir()
    before = snapshot(out)
    with output_lock(out):
        r = run('saenb_pipeline', '--tiny', '--out', out, '--quiet')
    assert_fails(r, 'saenb_pipeline', f'being written by process {os.getpid()}')
    assert snapshot(out) == before

def test_pipeline_of_a_grammar_file(tmp_path):
    "Case 14: a pipeline YAML names a grammar file (relative to the YAML), and the whole pipeline runs on it."
    import shutil
    from pathlib import Path
    shutil.copy(Path(__file__).parents[1]/'nbs'/'grammars'/'toy.yaml', tmp_path/'toy.yaml')
    out = tmp_path/'toy'
    r = run('saenb_pipeline', '--tiny', '--out', out, '--config', config(tmp_path, grammar='toy.yaml'), '--quiet')
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((out/'data'/'language.json').read_text())['name'] == 'toy' and (out/'index.html').exists()
    r = run('saenb_pipeline', '--tiny', '--lang', 'expr', '--grammar', tmp_path/'toy.yaml', '--out', tmp_path/'x')
    assert_fails(r, 'saenb_pipeline', 'either lang')
