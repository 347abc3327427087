"""Vectors on disk: each precision's round trip against torch's rounding, reads by range and by index, atomic
writes, k-means assignment block by block, and mining over mapped float32 files giving the in-memory output's bytes."""

import numpy as np
import pytest
import torch

from hnm.ensemble import Ensemble, Member, ensemble_file
from hnm.kmeans import KMeansConfig, kmeans
from hnm.miner import run
from hnm.negatives import MineConfig
from hnm.vectorfile import DTYPES, VectorFile, array_blocks, from_bfloat16_bits, to_bfloat16_bits, write_vectors


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_bfloat16_rounds_to_nearest_even_by_hand():
    # 1 + 2^-8 and 1 + 3 * 2^-8 lie halfway between two bfloat16 values: each goes to the even mantissa
    x = np.array([1.0, 1.00390625, 1.01171875, -2.0], dtype=np.float32)
    assert to_bfloat16_bits(x).tolist() == [0x3F80, 0x3F80, 0x3F82, 0xC000]
    assert from_bfloat16_bits(to_bfloat16_bits(x)).tolist() == [1.0, 1.0, 1.015625, -2.0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_and_reads(tmp_path, dtype):
    x = unit_rows(1000, 7, 0)
    f = write_vectors(tmp_path / "v.npy", array_blocks(x, 300), 1000, 7, dtype)
    expected = torch.from_numpy(x).to(getattr(torch, dtype)).float().numpy()  # torch's rounding is the reference
    assert f.shape == (1000, 7) and f.dtype == dtype and len(f) == 1000
    assert np.array_equal(f[:], expected) and np.array_equal(np.asarray(f), expected)
    assert np.array_equal(f[17:401], expected[17:401]) and np.array_equal(f[[5, 2, 999]], expected[[5, 2, 999]])
    assert np.array_equal(VectorFile(tmp_path / "v.npy")[3], expected[3])
    assert [p.name for p in tmp_path.iterdir()] == ["v.npy"]  # no temporary left behind


def test_a_wrong_block_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="6 rows written, 7 announced"):
        write_vectors(tmp_path / "v.npy", [np.zeros((6, 3), np.float32)], 7, 3)
    with pytest.raises(ValueError, match="does not fit"):
        write_vectors(tmp_path / "v.npy", [np.zeros((6, 4), np.float32)], 6, 3)
    with pytest.raises(ValueError, match="not one of"):
        write_vectors(tmp_path / "v.npy", [], 0, 3, "int8")
    assert list(tmp_path.iterdir()) == []


def test_assignment_block_by_block_gives_predicts_labels(tmp_path):
    x = unit_rows(5000, 16, 1)
    result = kmeans(x[:1000], KMeansConfig(k=40, spherical=True, max_iter=5))
    f = write_vectors(tmp_path / "v.npy", array_blocks(x), 5000, 16)
    whole = result.predict(x, block=400)  # 10 rows a product
    assert np.array_equal(result.predict_blocks(f, block=400, read_rows=333), whole)  # read 330 rows at a time
    assert np.array_equal(result.predict_blocks(x, block=400, read_rows=5), whole)  # fewer than one product


def _mine(tmp_path, name, ensemble, n_docs, sources, **cfg):
    corpus = {f"d{i}": {"title": "", "text": f"doc {i}"} for i in range(n_docs)}
    queries = {f"q{i}": f"query {i}" for i in range(len(sources))}
    qrels = {f"q{i}": {f"d{d}": 1} for i, d in enumerate(sources)}
    cfg = MineConfig(models="a,b", num_negatives=4, random_share=0.25, kmeans_sample=1000, **cfg)
    run(corpus, queries, qrels, cfg, tmp_path / name, ensemble=ensemble, quiet=True)
    return (tmp_path / name).read_bytes(), (tmp_path / f"{name}.review.jsonl").read_bytes()


def test_mapped_float32_mines_the_bytes_of_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("HNM_HOME", str(tmp_path / "home"))  # where ensemble_file writes
    docs = [unit_rows(3000, 8, 2), unit_rows(3000, 12, 3)]
    sources = list(range(0, 3000, 60))
    queries = [d[sources] + 0.05 * unit_rows(len(sources), d.shape[1], 4) for d in docs]
    members = [Member("a"), Member("b", 2.0)]
    memory = _mine(tmp_path, "memory.jsonl", Ensemble(members, docs, queries), 3000, sources)
    for dtype in DTYPES:
        files = [write_vectors(tmp_path / f"{m}.{dtype}.npy", array_blocks(d, 700), 3000, d.shape[1], dtype)
                 for m, d in enumerate(docs)]
        mapped = ensemble_file(files, [1.0, 2.0], dtype)
        assert mapped.shape == (3000, 20) and mapped.dtype == dtype
        out = _mine(tmp_path, f"{dtype}.jsonl", Ensemble(members, files, queries, docs=mapped), 3000, sources)
        if dtype == "float32":
            assert out == memory  # the same bits throughout: rows, scores, review file
        else:
            assert out[0].count(b"\n") == memory[0].count(b"\n")  # half precision: the same queries, other digits
    zscore = _mine(tmp_path, "z.jsonl", Ensemble(members, files, queries, "zscore", docs=mapped), 3000, sources,
                   fusion="zscore")
    assert zscore[0].count(b"\n") == len(sources)  # fusions other than mean read the members' files
