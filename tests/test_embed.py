"""The embedding API: input order, prefixes, the cache (hits, keys, resume after a kill), the verb; pooling."""

import json
import subprocess
import sys
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import REPO, require_model
from hnm.embed import EmbedConfig, Embedder, batch_sizes, stream_plan
from hnm.pooling import l2_normalize, pool
from hnm.weights import model_spec

NAME = "all-MiniLM-L6-v2"
TEXTS = ["a short one", "a somewhat longer sentence about wings and lift", "x", "",
         "the longest text of all, with many more words than any other text in this small list of texts"]


@pytest.fixture(scope="module")
def folder():
    return require_model(NAME)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HNM_HOME", str(tmp_path))
    return tmp_path


def embedder(folder, **kw) -> Embedder:
    return Embedder(model_spec(NAME), folder, EmbedConfig(**kw))


def test_rows_come_back_in_input_order_whatever_the_batching(folder, home):
    e = embedder(folder, cache=False, batch_size=2)
    one_by_one = np.stack([embedder(folder, cache=False, batch_size=1).encode([t], quiet=True)[0] for t in TEXTS])
    assert np.abs(e.encode(TEXTS, quiet=True) - one_by_one).max() < 1e-5
    perm = [3, 0, 4, 2, 1]
    assert np.abs(e.encode([TEXTS[i] for i in perm], quiet=True) - one_by_one[perm]).max() < 1e-5
    assert np.allclose(np.linalg.norm(one_by_one, axis=1), 1.0, atol=1e-6)


def test_streams_run_batches_on_their_own_threads_and_give_the_same_rows(folder, home, monkeypatch):
    texts = [f"{t} {i}" for i in range(3) for t in TEXTS]  # 15 texts, 8 batches of 2
    one = embedder(folder, cache=False, batch_size=2, streams=1).encode(texts, quiet=True)
    two = embedder(folder, cache=False, batch_size=2, streams=2)
    seen = []  # (thread name, torch threads) of each batch
    vectors = two._vectors
    monkeypatch.setattr(two, "_vectors", lambda batch: seen.append(
        (threading.current_thread().name, torch.get_num_threads())) or vectors(batch))
    threads_before = torch.get_num_threads()
    assert np.abs(two.encode(texts, quiet=True) - one).max() < 1e-6
    assert len(seen) == 8 and all(name.startswith("hnm-embed") for name, _ in seen)
    assert {n for _, n in seen} == {stream_plan(2, threads_before)[1]}
    assert torch.get_num_threads() == threads_before  # the caller's setting is left alone


def test_stream_plan_shares_the_threads():
    assert stream_plan(0, 2) == (2, 1) and stream_plan(0, 16) == (2, 8) and stream_plan(0, 1) == (1, 1)
    assert stream_plan(1, 8) == (1, 8) and stream_plan(4, 2) == (2, 1) and stream_plan(3, 12) == (3, 4)
    with pytest.raises(ValueError, match="streams must be 0"):
        stream_plan(-1, 2)


def test_a_bad_number_of_streams_is_refused_before_any_work(folder, tmp_path):
    with pytest.raises(ValueError, match="streams: must be at least 0"):
        embedder(folder, streams=-2)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "d1", "text": "fine"}\n')
    done = run_cli("embed", "--model", NAME, "--input", str(corpus), "--output", str(tmp_path / "v.npy"),
                   "--streams", "-1")
    assert done.returncode == 2 and "hnm embed: error: --streams: must be at least 0, not -1" in done.stderr


def test_batch_sizes_keep_full_batches_and_split_the_tail_over_the_streams():
    assert batch_sizes(100, 32, 1) == [32, 32, 32, 4]  # one stream: plain batching
    assert batch_sizes(100, 32, 2) == [32, 32, 18, 18]
    assert batch_sizes(2000, 32, 2) == [32] * 62 + [8, 8]
    assert batch_sizes(65, 32, 2) == [32, 32, 1] and batch_sizes(3, 32, 2) == [2, 1] and batch_sizes(0, 32, 2) == []
    assert sum(batch_sizes(1001, 16, 3)) == 1001 and max(batch_sizes(1001, 16, 3)) == 16


def test_cache_hit_runs_no_model(folder, home, monkeypatch):
    e = embedder(folder)
    first = e.encode(TEXTS + TEXTS[:2], quiet=True)  # repeated texts are encoded once
    assert len(list(home.glob("embeddings/*/shard-*.npz"))) == 1
    fresh = embedder(folder)
    monkeypatch.setattr(fresh, "_vectors", lambda batch: pytest.fail("the model ran despite a full cache"))
    assert np.array_equal(fresh.encode(TEXTS, quiet=True), first[:5])


def test_cache_key_changes_with_prefix_and_max_length(folder, home):
    base = embedder(folder)
    base.encode(TEXTS, quiet=True)
    prefixed = Embedder(replace(model_spec(NAME), document_prefix="passage: "), folder)
    shorter = Embedder(replace(model_spec(NAME), max_length=8), folder)
    vec_p = prefixed.encode(TEXTS, quiet=True)
    vec_s = shorter.encode(TEXTS, quiet=True)
    folders = {base.cache("document").folder, prefixed.cache("document").folder, shorter.cache("document").folder}
    assert len(folders) == 3
    assert not np.allclose(vec_p, base.encode(TEXTS, quiet=True))
    assert not np.allclose(vec_s[4], base.encode(TEXTS, quiet=True)[4])  # the long text is now cut at 8 tokens
    identity = json.loads((prefixed.cache("document").folder / "identity.json").read_text())
    assert identity["prefix"] == "passage: " and identity["files"]["model.safetensors"].startswith("53aa5117")


def test_query_and_document_prefixes_are_applied(folder, home):
    spec = replace(model_spec(NAME), query_prefix="query: ", document_prefix="passage: ")
    e = Embedder(spec, folder, EmbedConfig(cache=False))
    plain = embedder(folder, cache=False)
    assert np.allclose(e.encode(["wings"], kind="query", quiet=True), plain.encode(["query: wings"], quiet=True))
    assert np.allclose(e.encode(["wings"], kind="document", quiet=True), plain.encode(["passage: wings"], quiet=True))
    with pytest.raises(ValueError, match="kind must be"):
        e.encode(["x"], kind="passage")


def test_killed_run_keeps_finished_shards_and_resumes(folder, home, monkeypatch):
    e = embedder(folder, flush_every=2, batch_size=2, streams=1)  # one batch a block
    real = e._vectors
    calls = {"n": 0}

    def dies_on_third_batch(batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(batch)

    monkeypatch.setattr(e, "_vectors", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        e.encode(TEXTS, quiet=True)
    assert len(list(home.glob("embeddings/*/shard-*.npz"))) == 2  # two finished blocks of two texts
    assert not list(home.glob("embeddings/*/.*.tmp"))
    resumed = embedder(folder, flush_every=2, batch_size=2, streams=1)
    counted = {"texts": 0}
    real2 = resumed._vectors
    monkeypatch.setattr(resumed, "_vectors", lambda b: (counted.__setitem__("texts", counted["texts"] + len(b)),
                                                        real2(b))[1])
    out = resumed.encode(TEXTS, quiet=True)
    assert counted["texts"] == 1  # only the fifth text was left
    assert np.abs(out - embedder(folder, cache=False).encode(TEXTS, quiet=True)).max() < 1e-5


def test_pooling_worked_examples():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, -4.0], [100.0, 100.0]]])  # (1, 3, 2); the third token is padding
    mask = torch.tensor([[1, 1, 0]])
    assert pool("cls", hidden, mask).tolist() == [[1.0, 2.0]]
    assert pool("mean", hidden, mask).tolist() == [[2.0, -1.0]]
    assert pool("max", hidden, mask).tolist() == [[3.0, 2.0]]
    assert torch.allclose(l2_normalize(torch.tensor([[3.0, 4.0], [0.0, 0.0]])), torch.tensor([[0.6, 0.8], [0, 0]]))
    with pytest.raises(ValueError, match="unknown pooling 'sum'"):
        pool("sum", hidden, mask)


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hnm", *args], capture_output=True, text=True, cwd=REPO, env=env)


def test_embed_verb_writes_vectors_and_ids(folder, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "d1", "title": "Lift", "text": "wings make lift"}\n\n{"_id": 2, "text": "drag"}\n')
    out = tmp_path / "vectors.npy"
    done = run_cli("embed", "--model", NAME, "--input", str(corpus), "--output", str(out), "--no-cache", "--quiet")
    assert done.returncode == 0, done.stderr
    vectors = np.load(out, allow_pickle=False)
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert (tmp_path / "vectors.ids.txt").read_text().split() == ["d1", "2"]
    expected = embedder(folder, cache=False).encode(["Lift wings make lift", "drag"], quiet=True)
    assert np.abs(vectors - expected).max() < 1e-5


def test_unreadable_input_line_names_file_and_line(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "d1", "text": "fine"}\n{"_id": "d2", "text": 5}\n')
    done = run_cli("embed", "--model", NAME, "--input", str(corpus), "--output", str(tmp_path / "v.npy"))
    assert done.returncode == 2
    assert f"{corpus}:2: field 'text' is a int, not a string" in done.stderr
    corpus.write_text('{"_id": "d1", "text": "fine"}\n{"_id": "d2", "text": "broken\n')
    assert f"{corpus}:2: not valid JSON" in run_cli("embed", "--model", NAME, "--input", str(corpus),
                                                    "--output", str(tmp_path / "v.npy")).stderr
    assert not (tmp_path / "v.npy").exists()


def test_auto_precision_follows_the_hardware():
    import torch
    from hnm.embed import native_bf16, resolve_precision
    avx512 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
    amx = "flags\t\t: avx2 amx_bf16 amx_tile\n"
    avx2 = "flags\t\t: fpu sse2 avx2 fma\nbugs\t\t: avx512_bf16_is_not_a_flag\n"  # only the flags line counts
    assert native_bf16(cpuinfo=avx512) and native_bf16(cpuinfo=amx) and not native_bf16(cpuinfo=avx2)
    assert resolve_precision("auto", cpuinfo=avx512) == "bfloat16"
    assert resolve_precision("auto", cpuinfo=avx2) == "float32"
    assert resolve_precision("float32", cpuinfo=avx512) == "float32"  # only auto follows the hardware
    assert resolve_precision("auto", torch.device("cpu"), cpuinfo="") == "float32"  # nothing known: float32
