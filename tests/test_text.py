"Toy GPTs on text: saenb_data --text with each tokenizer, its labels and errors, and saenb_pipeline --tiny --text."
import json, subprocess
from pathlib import Path

import pandas as pd
import pytest

from saenb.data import load_corpus, text_pieces
from saenb.grammars import get_language, char_labels, token_labels, sign_text, CHAR_CLASSES, UNK
from conftest import console, run, assert_fails


def prose(n:int=400, seed:int=1) -> str:
    "Lines of English-like text the test writes itself: sentences of saenb's English grammar, capitalised."
    return '\n'.join(' '.join(s).capitalize().replace(' .', '.') for s in get_language('english').sample(n, seed)) + '\n'


@pytest.fixture(scope='module')
def text_file(tmp_path_factory):
    f = tmp_path_factory.mktemp('text')/'prose.txt'
    f.write_text(prose())
    return f


def small_bpe(text:str, path:Path) -> Path:
    "A Hugging Face tokenizer directory, as save_pretrained leaves one (tokenizer.json), trained on `text`."
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
    t = Tokenizer(models.BPE()); t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator([text], trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path.mkdir(parents=True, exist_ok=True); t.save(str(path/'tokenizer.json'))
    return path


def stream(corpus, column:str) -> list:
    "A column of every sequence, train then validation, without <bos>/<eos>: the text's stream, in order."
    return [v for s in ('train', 'validation') for r in corpus[s][column] for v in r[1:-1]]


def test_char_corpus_from_the_command_line(text_file, tmp_path):
    text = text_file.read_text()
    r = subprocess.run(console('saenb_data') + ['--text', str(text_file), '--seq_len', '62', '--out',
                                                str(tmp_path/'c')], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'text corpus (tokenizer=char' in r.stdout and 'char_class: letter' in r.stdout
    c = load_corpus(tmp_path/'c')
    n = len(text) // 62
    assert (len(c.train), len(c.validation)) == (n - round(n * 0.1), round(n * 0.1))
    tokens = [t for s in ('train', 'validation') for r in c[s]['text'] for t in r.split()]
    assert sign_text(tokens) == text[:n * 62]   # the validation split is the end of the text
    ref = char_labels(text[:n * 62])   # every label as computed on the whole text
    for name in ('char_class', 'word_position', 'word_length', 'line_position'):
        assert stream(c, name) == ref[name].tolist(), name
    assert c.concepts['char_class'].values == CHAR_CLASSES and c.language.has_grammar is False
    assert all(r[0] == c.tokenizer.bos_id and r[-1] == c.tokenizer.eos_id for r in c.train['input_ids'])


def test_word_and_hugging_face_tokenizers(text_file, tmp_path):
    text = text_file.read_text()
    r = run('saenb_data', '--text', text_file, '--tokenizer', 'word', '--seq_len', 16, '--max_vocab', 40,
            '--out', tmp_path/'w', '--quiet')
    assert r.returncode == 0, r.stderr
    w = load_corpus(tmp_path/'w')
    assert w.tokenizer.vocab_size == 3 + 40 and UNK in w.tokenizer.vocab and w.language.tokenizer == 'word'
    pieces = text_pieces(text, 'word')[:len(stream(w, 'token_class'))]
    ref = token_labels(pieces)   # from the words themselves, also where a word became <unk>
    assert all(stream(w, k) == ref[k].tolist() for k in ('token_class', 'starts_word', 'word_position'))
    hf = small_bpe(text, tmp_path/'bpe')
    r = run('saenb_data', '--text', text_file, '--tokenizer', hf, '--seq_len', 32, '--out', tmp_path/'h', '--quiet')
    assert r.returncode == 0, r.stderr
    h = load_corpus(tmp_path/'h')
    assert h.language.tokenizer == 'hf:bpe' and list(h.concepts) == list(w.concepts)
    tokens = [t for s in ('train', 'validation') for r in h[s]['text'] for t in r.split()]
    assert text.startswith(sign_text(tokens)) and len(tokens) < len(text) / 2   # sub-words, losslessly
    assert sum(stream(h, 'starts_word')) < len(tokens)   # some tokens continue a word
    assert 'word_position' in h.concepts and max(stream(h, 'word_position')) >= 1


@pytest.mark.parametrize('args,msg', [
    (['--text', '{d}/none.txt'], 'no text file or directory at'),
    (['--text', '{d}/latin1.txt'], 'is not UTF-8 text (byte 1'),
    (['--text', '{d}/prose.txt', '--lang', 'dyck'], 'takes no --lang'),
    (['--text', '{d}/prose.txt', '--n_seqs', '50'], '--n_seqs and --seed do not apply to --text'),
    (['--text', '{d}/prose.txt', '--tokenizer', 'bpe'], "unknown tokenizer 'bpe'"),
    (['--text', '{d}/prose.txt', '--tokenizer', '{d}'], 'no Hugging Face tokenizer at'),
    (['--text', '{d}/prose.txt', '--seq_len', '100000'], 'fewer than two sequences of seq_len=100000'),
    (['--lang', 'dyck', '--tokenizer', 'word'], '--tokenizer, --seq_len and --max_vocab apply to --text only'),
])
def test_text_errors(tmp_path, args, msg):
    (tmp_path/'prose.txt').write_text(prose(20)); (tmp_path/'latin1.txt').write_bytes(b'a\xe9b')   # é in Latin-1
    out = tmp_path/'never'
    r = run('saenb_data', *[a.format(d=tmp_path) for a in args], '--out', out)
    assert_fails(r, 'saenb_data', msg)
    assert not out.exists()


def test_tiny_pipeline_on_text(text_file, tmp_path):
    "The whole chain on a text: corpus, GPT, cache, SAEs, evaluation with the character concepts, browsers."
    out = tmp_path/'run'
    # TopK at both hooks: a circuit across the layer
    (tmp_path/'topk.yaml').write_text('sweep: {saes: {arch: [topk]}, arch_specific: {topk: {k: 4}}}\n')
    args = ['--tiny', '--text', str(text_file), '--out', str(out), '--config', str(tmp_path/'topk.yaml')]
    r = subprocess.run(console('saenb_pipeline') + args + ['--quiet'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'grammatical' not in r.stdout.split('\n')[0] and str(out/'index.html') in r.stdout
    assert not (out/'grammaticality.json').exists() and load_corpus(out/'data').language.name == 'text'
    table = pd.read_csv(out/'summary.csv')
    assert sorted(table.arch) == ['topk', 'topk'] and table.grammatical.isna().all()
    for c in ('char_class_covered', 'char_class_median_auroc', 'word_length_median_auroc', 'fvu', 'loss_recovered'):
        assert table[c].notna().all(), c
    assert (table.char_class_median_auroc > 0.6).all()   # even a 30-step GPT separates letters from spaces
    for i in table.id:
        assert (out/'saes'/'runs'/i/'site'/'browser.html').exists()
        assert 'char_class' in (out/'saes'/'runs'/i/'eval'/'report.html').read_text()
    v = json.loads((out/'circuits'/'topk_k4'/'validation.json').read_text())   # a circuit, with no grammar to judge
    assert (out/'circuits'/'topk_k4'/'circuit.html').exists() and not any(v['judgement'].values())
    r2 = subprocess.run(console('saenb_pipeline') + args, capture_output=True, text=True)
    assert r2.returncode == 0 and r2.stderr.count('already complete') == 8, r2.stderr[-2000:]


def test_preset_gpt_on_a_text_corpus(text_file, tmp_path):
    "The circuits work's shakespeare_64x4 preset on a character corpus; its generations are text, with no grammar."
    from saenb.model import load_gpt_config
    assert run('saenb_data', '--text', text_file, '--seq_len', 30, '--out', tmp_path/'c', '--quiet').returncode == 0
    r = run('saenb_train_gpt', '--data', tmp_path/'c', '--out', tmp_path/'m', '--preset', 'shakespeare_64x4',
            '--steps', 4, '--n_ctx', 32, '--batch_size', 8, '--eval_every', 2)
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = load_gpt_config(tmp_path/'m')
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_mlp, cfg.n_ctx) == (4, 64, 4, 256, 32)
    assert len(pd.read_csv(tmp_path/'m'/'metrics.csv')) == 4 and 'trained 4 steps' in r.stdout
    assert_fails(run('saenb_train_gpt', '--data', tmp_path/'c', '--out', tmp_path/'x', '--preset', 'shakespeare'),
                 'saenb_train_gpt', "unknown GPT preset 'shakespeare'")
    r = run('saenb_generate', '--model', tmp_path/'m', '--n', 3, '--out', tmp_path/'g.jsonl')   # no grammar: just text
    assert r.returncode == 0 and 'grammatical' not in r.stdout, r.stderr[-2000:]
    gens = pd.read_json(tmp_path/'g.jsonl', lines=True)
    assert len(gens) == 3 and not any(c in ''.join(gens.text) for c in '␣⏎') and list(gens) == ['text', 'n_tokens',
                                                                                              'ended_with_eos']
