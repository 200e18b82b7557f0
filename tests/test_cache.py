"Tests of `saenb.cache`: caching a tiny saenb GPT and a tiny Hugging Face GPT-2, reading stores back, and the `saenb_cache` command."
import json, os, subprocess

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')

import numpy as np
import pytest
import torch
from conftest import console, run, assert_fails, run_torchrun

from saenb.cache import (ActivationStore, ModelActivationSource, cache_activations, capture, load_any_model, resolve_hook,
                         valid_hooks)
from saenb.data import make_corpus, save_corpus
from saenb.model import GPTConfig, build_model, save_model
from saenb.utils import resolve_precision


@pytest.fixture(scope='module')
def corpus():
    return make_corpus('dyck', 80, seed=0, max_len=20)


@pytest.fixture(scope='module')
def gpt(corpus):
    cfg = GPTConfig(n_layers=2, d_model=16, n_heads=2, d_mlp=32, n_ctx=32, d_vocab=corpus.tokenizer.vocab_size)
    return cfg, build_model(cfg).eval()


@pytest.fixture(scope='module')
def cached(tmp_path_factory, corpus, gpt):
    out = tmp_path_factory.mktemp('acts') / 'dyck'
    paths = cache_activations(gpt[1], corpus, 'attn1,blocks.0.hook_resid_post', out, batch_size=8, shard_rows=300, device='cpu',
                              precision='fp32', progress=False)  # compared with fp32 forward passes below
    return out, paths


def n_tokens(split):
    "Rows a split gives: every token but <bos> (<eos> is kept)."
    return sum(len(s) - 1 for s in split['input_ids'])


def test_shapes_manifest_labels(cached, corpus, gpt):
    out, paths = cached
    assert json.loads((out / 'cache.json').read_text())['hooks'] == ['attn1', 'blocks.0.hook_resid_post']
    assert not (out / '.partial').exists()
    for hook, point in [('attn1', 'blocks.1.hook_attn_out'), ('blocks.0.hook_resid_post', 'blocks.0.hook_resid_post')]:
        man = json.loads((paths[hook] / 'manifest.json').read_text())
        assert (man['hook'], man['hook_point'], man['d'], man['dtype']) == (hook, point, 16, 'fp32')
        assert man['rows'] == {'train': n_tokens(corpus.train), 'validation': n_tokens(corpus.validation)}
        assert len(man['shards']['train']) > 1 and sum(man['shards']['train']) == man['rows']['train']
        assert set(man['concepts']) == set(corpus.concepts)
        for split in ('train', 'validation'):
            s = ActivationStore(paths[hook], split)
            x = s[:]
            assert x.shape == (man['rows'][split], 16) and x.dtype == torch.float32
            torch.testing.assert_close(s.stats['mean'], x.mean(0), atol=1e-5, rtol=1e-5)
            assert abs(s.stats['mean_norm'] - x.norm(dim=1).mean().item()) < 1e-4
    # labels align with the tokens, and activations with a fresh forward pass
    s = ActivationStore(paths['attn1'])
    lab = s.labels(np.arange(len(s)))
    ids = np.array(corpus.train['input_ids'], dtype=object)
    for i in [0, 7, len(s) // 2, len(s) - 1]:
        seq, pos = int(lab['seq_id'][i]), int(lab['ctx_position'][i])
        ex = corpus.train[seq]
        assert pos > 0 and lab['token_id'][i] == ex['input_ids'][pos]
        for c in corpus.concepts: assert lab[c][i] == ex[c][pos]
        ref = capture(gpt[1], torch.tensor([ex['input_ids']]), ['attn1'])['attn1'][0, pos]
        torch.testing.assert_close(s[i], ref, atol=1e-5, rtol=1e-5)
    # every (sequence, position) but <bos> exactly once
    pairs = set(zip(lab['seq_id'].tolist(), lab['ctx_position'].tolist()))
    assert len(pairs) == len(s) == len({(i, p) for i, x in enumerate(ids) for p in range(1, len(x))})


def test_bf16_and_random_access(tmp_path, corpus, gpt):
    p = cache_activations(gpt[1], corpus, ['mlp0'], tmp_path / 'c', dtype='bf16', val_tokens=0, n_tokens=100, device='cpu', progress=False)['mlp0']
    s = ActivationStore(p)
    assert (len(s), s.dtype, s.manifest['dtype']) == (100, torch.bfloat16, 'bf16')
    assert 'validation' not in s.manifest['rows']
    x = s[:]
    torch.testing.assert_close(s[torch.tensor([5, 3, 99])], x[[5, 3, 99]])
    torch.testing.assert_close(s[-1], x[99])
    assert s[[[1, 2], [3, 4]]].shape == (2, 2, 16)
    with pytest.raises(IndexError): s[100]


def test_unknown_hook(tmp_path, corpus, gpt):
    with pytest.raises(ValueError, match='Valid hooks for this model: wte, wpe, ln_f, attn0, mlp0') as e:
        cache_activations(gpt[1], corpus, 'wte,mlp5', tmp_path / 'x', progress=False)
    assert '1_residpost' in str(e.value) and 'blocks.0.hook_resid_pre' in str(e.value)
    assert not (tmp_path / 'x').exists()
    assert set(['wte', 'ln_f', '0_mlpin', '1_residmid']) <= set(valid_hooks(gpt[1]))
    assert resolve_hook(gpt[1], '1_mlpin') == 'blocks.1.mlp.hook_in'


class Boom(Exception): pass


def test_interrupt_resume_refuse(tmp_path, corpus, gpt):
    model, out = gpt[1], tmp_path / 'c'
    kw = dict(batch_size=4, shard_rows=40, device='cpu', progress=False)
    calls = {'n': 0}
    def bomb(module, args, output):
        calls['n'] += 1
        if calls['n'] == 9: raise Boom
    h = model.embed.register_forward_hook(bomb) if hasattr(model, 'embed') else None
    assert h is not None
    try:
        with pytest.raises(Boom): cache_activations(model, corpus, 'mlp0,ln_f', out, **kw)
    finally: h.remove()
    # nothing looks complete
    assert not (out / 'cache.json').exists() and not (out / 'mlp0').exists() and (out / '.partial').exists()
    with pytest.raises(ValueError, match='interrupted'): ActivationStore(out / 'mlp0')
    # other settings: refused, naming the fix
    with pytest.raises(FileExistsError, match='resume.*overwrite'): cache_activations(model, corpus, 'mlp0,ln_f', out, dtype='bf16', **kw)
    here = resolve_precision('auto', 'cpu')   # the interrupted run's (default) precision, recorded resolved
    other = 'fp32' if here == 'bf16' else 'bf16'
    with pytest.raises(FileExistsError, match=f"precision '{here}' -> '{other}'"):
        cache_activations(model, corpus, 'mlp0,ln_f', out, precision=other, **kw)
    # same settings: resumes, and gives what an uninterrupted run gives
    state = json.loads((out / '.partial' / 'state.json').read_text())
    assert state['splits']['train']['batches_done'] > 0
    cache_activations(model, corpus, 'mlp0,ln_f', out, **kw)
    ref = cache_activations(model, corpus, 'mlp0,ln_f', tmp_path / 'ref', **kw)
    for hook in ('mlp0', 'ln_f'):
        a, b = ActivationStore(out / hook), ActivationStore(ref[hook])
        torch.testing.assert_close(a[:], b[:])
        assert torch.equal(a.labels(slice(None))['seq_id'], b.labels(slice(None))['seq_id'])
        assert a.manifest['stats']['train']['mean_norm'] == pytest.approx(b.manifest['stats']['train']['mean_norm'])
    # complete: re-running is a no-op, other settings are refused
    cache_activations(model, corpus, 'mlp0,ln_f', out, **kw)
    with pytest.raises(FileExistsError, match='overwrite'): cache_activations(model, corpus, 'mlp0', out, **kw)
    cache_activations(model, corpus, 'mlp0', out, overwrite=True, **kw)
    assert json.loads((out / 'cache.json').read_text())['hooks'] == ['mlp0'] and not (out / 'ln_f').exists()
    assert ActivationStore(out).manifest['hook'] == 'mlp0'  # a cache with one hook opens as its store
    with pytest.raises(ValueError, match="several hooks.*ActivationStore"): ActivationStore(tmp_path / 'ref')


@pytest.fixture(scope='module')
def ids_store(tmp_path_factory):
    "A matrix whose row i is filled with i, saved as .npy."
    p = tmp_path_factory.mktemp('npy') / 'ids.npy'
    np.save(p, np.repeat(np.arange(1003, dtype=np.float32)[:, None], 8, 1))
    return ActivationStore(p)


def ids_of(batches): return torch.cat(list(batches))[:, 0].long().tolist()


def test_batches_cover_reproducible_epochs(ids_store):
    kw = dict(buffer_rows=128, chunk_rows=16)
    e0 = ids_of(ids_store.batches(10, drop_last=False, **kw))
    assert sorted(e0) == list(range(1003)) and e0 != list(range(1003))
    assert e0 == ids_of(ids_store.batches(10, drop_last=False, **kw))
    assert e0 != ids_of(ids_store.batches(10, drop_last=False, seed=1, **kw))
    two = ids_of(ids_store.batches(10, epochs=2, drop_last=False, **kw))
    assert two[:1003] == e0 and two[1003:] != e0 and sorted(two[1003:]) == list(range(1003))
    dropped = list(ids_store.batches(10, **kw))
    assert len(dropped) == 100 and all(b.shape == (10, 8) for b in dropped)
    assert ids_of(ids_store.batches(7, shuffle=False, drop_last=False)) == list(range(1003))


def test_batches_two_ranks(ids_store):
    kw = dict(buffer_rows=128, chunk_rows=16, drop_last=False)
    r = [ids_of(ids_store.batches(10, rank=k, world_size=2, **kw)) for k in (0, 1)]
    assert len(r[0]) == len(r[1]) == 501
    assert not set(r[0]) & set(r[1]) and len(set(r[0]) | set(r[1])) == 1002
    n0 = len(list(ids_store.batches(10, rank=0, world_size=2, buffer_rows=128)))
    n1 = len(list(ids_store.batches(10, rank=1, world_size=2, buffer_rows=128)))
    assert n0 == n1 == 50
    with pytest.raises(ValueError, match='rank'): list(ids_store.batches(10, rank=2, world_size=2))


def test_bounded_buffer(ids_store):
    "Memory is bounded by the buffer: no batch mixes rows from more chunks than a buffer holds."
    b = next(iter(ids_store.batches(64, buffer_rows=64, chunk_rows=16)))
    assert len({i // 16 for i in b[:, 0].long().tolist()}) <= 64 // 16 + 1


def test_abandoned_iterator_stops_its_thread(ids_store):
    import threading, time
    before = set(threading.enumerate())
    it = ids_store.batches(10, buffer_rows=64, chunk_rows=16)
    next(it); next(it)
    started = [t for t in threading.enumerate() if t not in before and type(t).__name__ != 'TMonitor']
    it.close()
    for _ in range(500):
        if not any(t.is_alive() for t in started): break
        time.sleep(0.02)
    assert not any(t.is_alive() for t in started), [(t.name, getattr(t, "_target", None)) for t in started if t.is_alive()]


def test_npy_safetensors(tmp_path):
    from safetensors.torch import save_file
    x = torch.randn(50, 6)
    np.save(tmp_path / 'a.npy', x.numpy())
    save_file({'activations': x, 'other': torch.zeros(2)}, tmp_path / 'a.safetensors')
    save_file({'acts': x.half()}, tmp_path / 'b.safetensors')
    save_file({'x': x, 'y': x.clone()}, tmp_path / 'c.safetensors')
    for p, dt, ref in [('a.npy', torch.float32, x), ('a.safetensors', torch.float32, x), ('b.safetensors', torch.float16, x.half().float())]:
        s = ActivationStore(tmp_path / p)
        assert (len(s), s.d, s.dtype) == (50, 6, dt)
        torch.testing.assert_close(s[:], ref)
        torch.testing.assert_close(torch.cat(list(s.batches(5, shuffle=False))), ref)
        torch.testing.assert_close(s.stats['mean'], ref.mean(0), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="name the activations 'activations'"): ActivationStore(tmp_path / 'c.safetensors')
    np.save(tmp_path / 'bad.npy', np.zeros(5))
    with pytest.raises(ValueError, match=r'\[N, d\]'): ActivationStore(tmp_path / 'bad.npy')
    with pytest.raises(FileNotFoundError, match='saenb_cache'): ActivationStore(tmp_path / 'nothing')


def test_on_the_fly(cached, corpus, gpt):
    _, paths = cached
    store = ActivationStore(paths['attn1'])
    src = ModelActivationSource(gpt[1], corpus, 'attn1', device='cpu', forward_batch=8)
    assert (src.d, len(src)) == (store.d, len(store))
    got = torch.cat(list(src.batches(16, buffer_rows=64, drop_last=False)))
    torch.testing.assert_close(got.sum(0), store[:].sum(0), atol=1e-3, rtol=1e-4)
    a = torch.cat(list(src.batches(16, seed=2, buffer_rows=64)))
    torch.testing.assert_close(a, torch.cat(list(src.batches(16, seed=2, buffer_rows=64))))
    r0 = sum(len(b) for b in src.batches(4, rank=0, world_size=2, drop_last=False))
    r1 = sum(len(b) for b in src.batches(4, rank=1, world_size=2, drop_last=False))
    assert r0 + r1 <= len(src) and r0 + r1 >= len(src) - 20


@pytest.fixture(scope='module')
def hf_gpt2(tmp_path_factory):
    "A tiny GPT-2 with a word-level tokenizer, saved to a local directory, and a local text file."
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    d = tmp_path_factory.mktemp('hf')
    words = "the cat dog sat on a mat ran to house big small and".split()
    vocab = {w: i for i, w in enumerate(['<unk>', '<|endoftext|>'] + words)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token='<unk>'))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    ftk = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token='<unk>', eos_token='<|endoftext|>', bos_token='<|endoftext|>')
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=len(vocab), n_positions=64, bos_token_id=1, eos_token_id=1)
    GPT2LMHeadModel(cfg).save_pretrained(d / 'gpt2')
    ftk.save_pretrained(d / 'gpt2')
    rng = np.random.default_rng(0)
    (d / 'text.txt').write_text("\n".join(" ".join(rng.choice(words, rng.integers(3, 12))) for _ in range(300)) + "\n")
    return d / 'gpt2', d / 'text.txt'


def test_hf_model_and_text(tmp_path, hf_gpt2):
    model_dir, text = hf_gpt2
    model = load_any_model(str(model_dir), device='cpu')
    assert model.cfg.d_model == 32
    paths = cache_activations(model, str(text), 'wpe,1_residpost', tmp_path / 'c', n_tokens=500, n_ctx=16, device='cpu',
                              precision='fp32', progress=False)
    s = ActivationStore(paths['1_residpost'])
    assert (len(s), s.d) == (500, 32)
    assert s.manifest['rows']['validation'] == 50
    lab = s.labels(slice(None))
    assert lab['ctx_position'].max() == 15 and lab['seq_id'].max() == 500 // 16
    assert set(lab) == {'seq_id', 'ctx_position', 'token_id'}
    # the tokens are the file's words, documents separated by <|endoftext|>
    words = text.read_text().split()
    toks = lab['token_id'][:40].tolist()
    decoded = [model.tokenizer.convert_ids_to_tokens(t) for t in toks]
    assert [w for w in decoded if w != '<|endoftext|>'] == words[:len([w for w in decoded if w != '<|endoftext|>'])]
    ids = lab['token_id'][:16][None]
    ref = capture(model, ids, ['1_residpost'])['1_residpost'][0]
    torch.testing.assert_close(s[:16], ref, atol=1e-5, rtol=1e-5)
    # the same text on the fly
    src = ModelActivationSource(model, str(text), '1_residpost', n_ctx=16, n_tokens=160, device='cpu')
    assert (src.d, len(src)) == (32, 160)
    got = torch.cat(list(src.batches(16, shuffle=False)))
    torch.testing.assert_close(got, s[:160], atol=1e-5, rtol=1e-5)


@pytest.fixture(scope='module')
def cli():
    "The `saenb_cache` command."
    return console('saenb_cache')


def run_cli(cli, *args):
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'}
    return subprocess.run([*cli, *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def test_cli(cli, tmp_path, corpus, gpt, hf_gpt2):
    cfg, model = gpt
    save_model(model, cfg, tmp_path / 'model', tokenizer=corpus.tokenizer, language=corpus.language)
    save_corpus(corpus, tmp_path / 'data')
    r = run_cli(cli, '--model', tmp_path / 'model', '--data', tmp_path / 'data', '--hooks', 'mlp1,0_residpre', '--out', tmp_path / 'out',
                '--dtype', 'fp16', '--batch_size', 16, '--device', 'cpu', '--quiet')
    assert r.returncode == 0, r.stderr
    assert 'mlp1 (blocks.1.hook_mlp_out): d=16, fp16' in r.stdout and 'train tokens/s' in r.stdout
    s = ActivationStore(tmp_path / 'out' / 'mlp1')
    assert (len(s), s.dtype) == (n_tokens(corpus.train), torch.float16)
    r = run_cli(cli, '--model', tmp_path / 'model', '--data', tmp_path / 'data', '--hooks', 'mlp7', '--out', tmp_path / 'bad', '--quiet')
    assert r.returncode == 2 and 'Valid hooks for this model' in r.stderr
    model_dir, text = hf_gpt2
    r = run_cli(cli, '--model', model_dir, '--data', text, '--hooks', 'ln_f', '--n_tokens', 200, '--n_ctx', 16, '--out', tmp_path / 'hf', '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    assert len(ActivationStore(tmp_path / 'hf' / 'ln_f')) == 200


def test_cli_precision(tmp_path, corpus, gpt):
    "--precision is said on stderr and recorded resolved in cache.json and the manifest; --autocast is its alias."
    cfg, model = gpt
    save_model(model, cfg, tmp_path / 'model', tokenizer=corpus.tokenizer, language=corpus.language)
    save_corpus(corpus, tmp_path / 'data')
    args = ['--model', tmp_path / 'model', '--data', tmp_path / 'data', '--hooks', 'mlp0', '--n_tokens', 50,
            '--val_tokens', 0, '--device', 'cpu', '--quiet']
    here = resolve_precision('auto', 'cpu')
    for flags, want, line in [((), here, f'saenb_cache: precision {here} (auto: this CPU has '),
                              (('--precision', 'fp32'), 'fp32', 'saenb_cache: precision fp32\n'),
                              (('--autocast', 'bf16'), 'bf16', 'saenb_cache: precision bf16\n')]:
        out = tmp_path / f'c{len(flags)}{want}'
        r = run('saenb_cache', *args, '--out', out, *flags)
        assert r.returncode == 0 and line in r.stderr, r.stderr[-2000:]
        assert json.loads((out / 'cache.json').read_text())['config']['precision'] == want
        assert ActivationStore(out / 'mlp0').manifest['precision'] == want
    done = tmp_path / 'c2bf16'   # the alias and the flag are one setting: the cache is complete already
    assert run('saenb_cache', *args, '--out', done, '--precision', 'bf16').returncode == 0
    assert_fails(run('saenb_cache', *args, '--out', done, '--precision', 'fp32'), 'saenb_cache',
                 "precision 'bf16' -> 'fp32'", '--overwrite')
    assert_fails(run('saenb_cache', *args, '--out', tmp_path / 'x', '--autocast', 'bf16', '--precision', 'fp32'),
                 'saenb_cache', "autocast 'bf16' (the older name of precision) contradicts precision 'fp32'")
    assert_fails(run('saenb_cache', *args, '--out', tmp_path / 'x', '--precision', 'fp16'), 'saenb_cache',
                 'precision fp16 runs on CUDA only')
    assert not (tmp_path / 'x').exists()


def test_rank_from_torch_distributed(tmp_path, ids_store):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f"file://{tmp_path / 'rdv'}", rank=0, world_size=1)
    try:
        assert sorted(ids_of(ids_store.batches(10, drop_last=False, buffer_rows=128))) == list(range(1003))
    finally: dist.destroy_process_group()


def test_torchrun_two_ranks(tmp_path):
    "Under torchrun, each rank reads its rank and world size from torch.distributed and gets its own half of the rows."
    np.save(tmp_path / 'ids.npy', np.repeat(np.arange(1003, dtype=np.float32)[:, None], 4, 1))
    script = tmp_path / 'ranks.py'
    script.write_text(f"""
import json, torch, torch.distributed as dist
from saenb.cache import ActivationStore
dist.init_process_group('gloo')
s = ActivationStore({str(tmp_path / 'ids.npy')!r})
ids = torch.cat(list(s.batches(10, buffer_rows=128, drop_last=False)))[:, 0].long().tolist()
out = [None, None]; dist.all_gather_object(out, ids)
if dist.get_rank() == 0: print(json.dumps(out))
dist.destroy_process_group()
""")
    r = run_torchrun(script, timeout=120)
    assert r.returncode == 0, r.stderr
    a, b = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(a) == len(b) == 501 and not set(a) & set(b) and len(set(a) | set(b)) == 1002
