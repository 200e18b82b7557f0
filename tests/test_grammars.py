"Property tests of the formal languages: generation, checker and parser agree, corruptions are caught."
import random
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from saenb.grammars import get_language, PCFG, PCFGLanguage

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

dyck_langs = st.builds(lambda k, d, L: get_language('dyck', n_brackets=k, max_depth=d, max_len=L),
                       st.integers(1, 4), st.integers(1, 6), st.sampled_from([2, 4, 8, 12, 20]))
expr_langs = st.builds(lambda nd, no, b, md: get_language('expr', n_digits=nd, n_ops=no, bracket=b, max_depth=md),
                       st.integers(1, 10), st.integers(1, 5), st.booleans(), st.integers(1, 4))
english = get_language('english', max_len=16)

@SETTINGS
@given(dyck_langs, st.integers(0, 2**16))
def test_dyck_generated_sequences_are_grammatical(lang, seed):
    cols = lang.generate(20, seed)
    for i, toks in enumerate(cols['tokens']):
        assert lang.is_grammatical(toks) and lang.pcfg.accepts(toks)
        assert lang.min_len <= len(toks) <= lang.max_len and max(cols['depth'][i]) <= lang.max_depth
        assert {k: cols[k][i] for k in lang.concepts} == lang.labels(toks)

@SETTINGS
@given(expr_langs, st.integers(0, 2**16))
def test_expr_generated_sequences_are_grammatical(lang, seed):
    cols = lang.generate(10, seed)
    for i, toks in enumerate(cols['tokens']):
        assert lang.is_grammatical(toks) and lang.pcfg.accepts(toks)
        assert {k: cols[k][i] for k in lang.concepts} == lang.labels(toks)
        assert isinstance(lang.evaluate(toks), int)

@SETTINGS
@given(st.integers(0, 2**16))
def test_english_generated_sentences_are_grammatical(seed):
    cols = english.generate(5, seed)
    for i, toks in enumerate(cols['tokens']):
        assert english.is_grammatical(toks) and len(toks) <= 16
        assert all(len(cols[k][i]) == len(toks) for k in english.concepts)

@SETTINGS
@given(st.one_of(dyck_langs, expr_langs), st.data())
def test_checker_agrees_with_parser_on_random_strings(lang, data):
    toks = data.draw(st.lists(st.sampled_from(lang.vocab), max_size=9))
    assert lang.is_grammatical(toks) == lang.pcfg.accepts(toks)

def _corruptions(toks, vocab, rng):
    "Every single-token deletion, and a few substitutions and insertions."
    out = [toks[:i] + toks[i+1:] for i in range(len(toks))]
    for _ in range(5):
        i = rng.randrange(len(toks)); v = rng.choice([t for t in vocab if t != toks[i]] or vocab)
        out.append(toks[:i] + [v] + toks[i+1:])
        j = rng.randrange(len(toks) + 1); out.append(toks[:j] + [rng.choice(vocab)] + toks[j:])
    return out

@SETTINGS
@given(st.one_of(dyck_langs, expr_langs), st.integers(0, 2**16))
def test_checker_agrees_with_parser_on_corruptions(lang, seed):
    rng = random.Random(seed)
    for toks in lang.sample(3, seed):
        for bad in _corruptions(toks, lang.vocab, rng):
            assert lang.is_grammatical(bad) == lang.pcfg.accepts(bad), bad

@SETTINGS
@given(dyck_langs, st.integers(0, 2**16))
def test_dyck_single_token_corruptions_are_caught(lang, seed):
    "Any substitution, deletion or insertion of one bracket unbalances a Dyck string."
    rng = random.Random(seed)
    for toks in lang.sample(3, seed):
        for bad in _corruptions(toks, lang.vocab, rng):
            if len(lang.vocab) > 1 or len(bad) != len(toks): assert not lang.is_grammatical(bad), bad

@SETTINGS
@given(expr_langs, st.integers(0, 2**16))
def test_expr_single_token_corruptions_are_caught(lang, seed):
    "Deleting or inserting a token breaks the count invariants; a digit swapped for an operator too."
    rng = random.Random(seed)
    for toks in lang.sample(3, seed):
        for i in range(len(toks)):
            assert not lang.is_grammatical(toks[:i] + toks[i+1:])
            assert not lang.is_grammatical(toks[:i] + [rng.choice(lang.vocab)] + toks[i:])
            if toks[i] in lang.digits: assert not lang.is_grammatical(toks[:i] + [rng.choice(lang.ops)] + toks[i+1:])

@SETTINGS
@given(st.integers(0, 2**16))
def test_english_corruptions_are_caught(seed):
    "A sentence without its final '.', with a determiner before '.', or with a word from outside the vocabulary is rejected."
    rng = random.Random(seed)
    for toks in english.sample(3, seed):
        assert not english.is_grammatical(toks[:-1])
        assert not english.is_grammatical(toks[:-1] + [rng.choice(['the', 'a', 'every'])] + toks[-1:])
        i = rng.randrange(len(toks))
        assert not english.is_grammatical(toks[:i] + ['zebra'] + toks[i+1:])

def test_user_grammar_gets_sampling_parsing_labels():
    lang = PCFGLanguage(PCFG.from_string("S -> 'a' S 'b' [0.4] | 'c'"), name='anbn')
    cols = lang.generate(30, seed=0)
    for toks in cols['tokens']:
        n = toks.index('c')
        assert toks == ['a'] * n + ['c'] + ['b'] * n and lang.is_grammatical(toks)
    assert not lang.is_grammatical(['a', 'c'])
    assert lang.labels(['a', 'c', 'b'])['depth'] == [1, 2, 1]

@pytest.mark.parametrize('name,kw,msg', [('dyck', dict(n_brackets=0), 'n_brackets must be'), ('expr', dict(n_digits=11), 'n_digits must be'),
                                         ('english', dict(max_depth=2), 'max_depth must be'), ('dyck', dict(n_ops=2), 'no hyperparameter')])
def test_bad_hyperparameters_name_the_valid_values(name, kw, msg):
    with pytest.raises(ValueError, match=msg): get_language(name, **kw)

def test_menon2025_presets_make_corpora(tmp_path):
    "saenb_data --grammar takes a preset's name (issue 18): Menon et al.'s Dyck-2 becomes a labelled corpus."
    from conftest import run
    r = run('saenb_data', '--grammar', 'menon2025_dyck', '--n_seqs', '300', '--out', tmp_path/'d')
    assert r.returncode == 0, r.stderr
    from saenb.data import load_corpus
    c = load_corpus(tmp_path/'d')
    lang = c.language
    assert lang.name == 'menon2025_dyck' and max(len(ids) for ids in c.train['input_ids']) <= 112   # <bos>, <eos>
    bad = run('saenb_data', '--grammar', 'menon2025_dyk', '--n_seqs', '10', '--out', tmp_path/'e')
    assert bad.returncode == 2 and "did you mean 'menon2025_dyck'" in bad.stderr and not (tmp_path/'e').exists()
