"Tests of the `saenb_data` console command: run in a subprocess, then load and check what it wrote."
import subprocess

import pytest

from saenb.data import load_corpus, Tokenizer
from saenb.grammars import get_language
from conftest import console


@pytest.fixture(scope='session')
def cmd():
    "The `saenb_data` command."
    return console('saenb_data')


def run(cmd, *args):
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=300)


def check_corpus(path, lang_name, n_seqs):
    c = load_corpus(path)
    assert c.language.name == lang_name
    assert len(c.train) + len(c.validation) == n_seqs and len(c.validation) > 0
    tok = c.tokenizer
    assert tok == Tokenizer.for_language(c.language)
    for split in (c.train, c.validation):
        for ex in split:
            toks = ex['text'].split()
            assert len(toks) == ex['length']
            assert c.language.is_grammatical(toks), ex['text']
            ids = ex['input_ids']
            assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and ids[1:-1] == tok.encode(toks)
            ref = c.language.labels(toks) if lang_name != 'english' else None
            for name in c.concepts:
                assert len(ex[name]) == len(ids) and ex[name][0] == -1 and ex[name][-1] == -1
                if ref is not None: assert ex[name][1:-1] == ref[name], (name, ex['text'])
    return c


@pytest.mark.parametrize('lang,args', [
    ('dyck', ['--n_brackets', 3, '--max_len', 20, '--max_depth', 4]),
    ('expr', ['--n_digits', 5, '--n_ops', 2, '--bracket', 'False']),
    ('english', ['--max_len', 14]),
])
def test_languages(cmd, tmp_path, lang, args):
    out = tmp_path / lang
    r = run(cmd, '--lang', lang, '--n_seqs', 60, '--seed', 1, '--out', out, *args)
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stdout and 'vocabulary' in r.stdout
    c = check_corpus(out, lang, 60)
    if lang == 'dyck':
        assert c.language.hparams['n_brackets'] == 3 and c.language.hparams['max_len'] == 20
        assert max(len(t.split()) for t in c.train['text'][:]) <= 20
    if lang == 'expr':
        assert c.language.hparams['bracket'] is False and '(' not in c.tokenizer.vocab
    if lang == 'english':
        # English is ambiguous, so compare the part of speech, which is a function of the word
        pos = c.concepts['pos'].values
        lex = {t: set() for t in c.language.vocab}
        for ex in c.train:
            for t, p in zip(ex['text'].split(), ex['pos'][1:-1]): lex[t].add(pos[p])
        assert all(len(v) <= 1 for v in lex.values())


def test_defaults_take_language_defaults(cmd, tmp_path):
    out = tmp_path / 'd'
    r = run(cmd, '--n_seqs', 30, '--out', out)
    assert r.returncode == 0, r.stderr
    assert load_corpus(out).language.hparams == get_language('dyck').hparams


@pytest.mark.parametrize('args,msg', [
    (['--lang', 'dyk'], "unknown language 'dyk' (did you mean 'dyck'?): choose one of dyck, expr, english"),
    (['--lang', 'expr', '--n_brackets', 2], "expr has no hyperparameter 'n_brackets'"),
    (['--lang', 'dyck', '--n_brackets', 9], "n_brackets must be 1 to 4"),
    (['--val_frac', 1.5], "val_frac must be in [0, 1)"),
])
def test_errors_are_one_line(cmd, tmp_path, args, msg):
    out = tmp_path / 'never'
    r = run(cmd, *args, '--n_seqs', 20, '--out', out)
    assert r.returncode != 0
    err = r.stderr.strip()
    assert err.startswith('saenb_data: error:') and msg in err and len(err.splitlines()) == 1, err
    assert 'Traceback' not in r.stderr
    assert not out.exists()


def test_no_overwrite_without_flag(cmd, tmp_path):
    out = tmp_path / 'c'
    assert run(cmd, '--n_seqs', 40, '--seed', 0, '--out', out).returncode == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob('*') if p.is_file()}
    r = run(cmd, '--lang', 'expr', '--n_seqs', 40, '--out', out)
    assert r.returncode != 0 and '--overwrite' in r.stderr and 'Traceback' not in r.stderr
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob('*') if p.is_file()}
    assert after == before
    assert load_corpus(out).language.name == 'dyck'
    r = run(cmd, '--lang', 'expr', '--n_seqs', 40, '--out', out, '--overwrite')
    assert r.returncode == 0, r.stderr
    assert load_corpus(out).language.name == 'expr'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['.c.lock', 'c']   # no temporary directories left behind, only c's lock


def test_unrelated_files_are_not_overwritten(cmd, tmp_path):
    out = tmp_path / 'notes'
    out.mkdir(); (out / 'keep.txt').write_text('precious')
    r = run(cmd, '--n_seqs', 20, '--out', out)
    assert r.returncode != 0 and (out / 'keep.txt').read_text() == 'precious'


def test_same_seed_same_corpus(cmd, tmp_path):
    outs = [tmp_path / n for n in ('a', 'b', 'c')]
    for out, seed in zip(outs, (7, 7, 8)):
        assert run(cmd, '--lang', 'expr', '--n_seqs', 50, '--seed', seed, '--out', out).returncode == 0
    a, b, c = map(load_corpus, outs)
    for split in ('train', 'validation'):
        assert a[split].to_dict() == b[split].to_dict()
    assert a.train['text'][:] != c.train['text'][:]
