"""Bad input to every command ends with one line naming the problem and the fix, exit status 2, and nothing written or
changed; two writers of one output are refused; the cases of issue 16, each pinned. Shared helpers: tests/conftest.py."""
import shutil
import pytest
from conftest import run, snapshot, assert_fails, tiny_run

def test_the_tiny_run_builds(tiny_run):
    "The fixture the other robustness tests start from: every stage of the tiny run wrote its output."
    for k in ('data', 'model', 'acts', 'sae_topk'): assert tiny_run[k].is_dir(), k
    assert (tiny_run['model']/'provenance.json').exists() and (tiny_run['sae_topk']/'provenance.json').exists()
