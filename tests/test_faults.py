"""Faults a user or an operator meets: every one ends in one line naming the file and exit status 2 (or succeeds),
a bug keeps its traceback, outputs are checked before the work and locked against a second writer, a full disk
names its file and leaves the old output, broken checkpoints and empty inputs are named."""

import argparse
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, require_model
from hnm import data as hnm_data
from hnm.__main__ import _run, main
from hnm.data import atomic_write, check_output, load_beir, one_writer
from hnm.embed import load_embeddings, save_embeddings
from hnm.encoder import EncoderConfig
from hnm.errors import HnmError, InputError
from hnm.reranker import CrossEncoder

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def beir(folder: Path, corpus=("d1", "d2", "d3"), queries=("q1",), judged=(("q1", "d1"),)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "text": f"text of {d}"}) + "\n"
                                                 for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": f"query {q}"}) + "\n"
                                                  for q in queries))
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                                + "".join(f"{q}\t{d}\t1\n" for q, d in judged))
    return folder


def cli(capsys, *argv):
    """main(argv) in this process: (exit status, stderr)."""
    status = main(list(argv))
    return status, capsys.readouterr().err


# ------------------------------------------------------------------------------------------ one error path


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(capsys):
    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "out/vec.npy")

    def bad_input(args):
        raise InputError("data/corpus.jsonl:3: not valid JSON")

    def bug(args):
        return None + 1
    for func, line in ((full, "hnm embed: error: out/vec.npy: No space left on device"),
                       (bad_input, "hnm embed: error: data/corpus.jsonl:3: not valid JSON")):
        assert _run(argparse.Namespace(verb="embed", func=func)) == 2
        assert capsys.readouterr().err == line + "\n"
    with pytest.raises(TypeError):
        _run(argparse.Namespace(verb="embed", func=bug))


def test_outputs_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    (tmp_path / "afolder").mkdir()
    missing = str(tmp_path / "no-such-data")  # read only after the output check: its error never shows
    cases = [
        (["mine", "--data", missing, "--output", "afolder"], "afolder: is a folder; give the name of a file"),
        (["mine", "--data", missing, "--output", "afile/m.jsonl"], "afile/m.jsonl: afile is a file, not a folder"),
        (["bm25", "--data", missing, "--output", "afolder", "--quiet"], "afolder: is a folder"),
        (["evaluate", "--data", missing, "--output-dir", "afile", "--first-stage", "bm25"],
         "afile: is a file, not a folder"),
        (["train", "--rows", missing, "--output", "afile"], "afile: is a file, not a folder"),
        (["ingest", missing, "-o", "afolder", "--chunk", "none"], "afolder: is a folder"),
    ]
    for argv, message in cases:
        status, err = cli(capsys, *argv)
        assert status == 2 and err.startswith(f"hnm {argv[0]}: error: {message}"), (argv, err)
        assert err.count("\n") == 1


def test_check_output_makes_missing_parents_and_refuses_blocked_paths(tmp_path):
    assert check_output(tmp_path / "a" / "b" / "out.jsonl") == tmp_path / "a" / "b" / "out.jsonl"
    assert (tmp_path / "a" / "b").is_dir() and not (tmp_path / "a" / "b" / "out.jsonl").exists()
    check_output(tmp_path / "runs" / "r1", "folder")
    assert (tmp_path / "runs" / "r1").is_dir()
    (tmp_path / "f").write_text("")
    for path, kind in ((tmp_path / "f", "folder"), (tmp_path / "f" / "x", "file"), (tmp_path / "a", "file")):
        with pytest.raises(HnmError, match=str(path)):
            check_output(path, kind)


def test_empty_corpus_and_queries_are_named(tmp_path):
    with pytest.raises(InputError, match=r"corpus.jsonl: no documents"):
        load_beir(beir(tmp_path / "a", corpus=()), "train")
    with pytest.raises(InputError, match=r"queries.jsonl: no queries"):
        load_beir(beir(tmp_path / "b", queries=()), "train")
    with pytest.raises(InputError, match=r"train.tsv: no judgment names a query"):
        load_beir(beir(tmp_path / "c", judged=(("q9", "d1"),)), "train")


def test_mine_without_a_query_to_mine_leaves_no_output(tmp_path):
    from hnm.miner import run
    from hnm.negatives import MineConfig
    corpus = {"d1": {"title": "", "text": "one"}, "d2": {"title": "", "text": "two"}}
    with pytest.raises(HnmError, match="none of the 1 judged queries has a positive"):
        run(corpus, {"q1": "q"}, {"q1": {"d9": 1}}, MineConfig(strategy="random"), tmp_path / "m.jsonl", quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_experiment_out_cut_short_or_of_another_configuration(tmp_path):
    from hnm.experiment import ExperimentConfig, _same_config
    (tmp_path / "config.json").write_text('{"budget": {"na')
    with pytest.raises(InputError, match=r"config.json: not valid JSON .* cut short"):
        _same_config(tmp_path, ExperimentConfig())
    (tmp_path / "config.json").write_text('{"budget": {}}')
    with pytest.raises(HnmError, match="another configuration"):
        _same_config(tmp_path, ExperimentConfig())


# ------------------------------------------------------------------------------------------ broken checkpoints


@pytest.fixture
def checkpoint(tmp_path):
    golden = json.loads((REPO / "tests" / "fixtures" / "train_golden.json").read_text())
    tokenizer = require_model("all-MiniLM-L6-v2") / "tokenizer.json"
    CrossEncoder.random(EncoderConfig(**golden["encoder"]), tokenizer, max_length=32, seed=0).save(tmp_path / "c")
    return tmp_path / "c"


@pytest.mark.parametrize("name, damage, message", [
    ("model.safetensors", lambda p: p.write_bytes(os.urandom(5000)), "not a readable safetensors file"),
    ("model.safetensors", lambda p: os.truncate(p, 3000), "not a readable safetensors file"),
    ("config.json", lambda p: p.write_text(p.read_text().replace('"bert"', '"gpt2"')), "model_type 'gpt2'"),
    ("config.json", lambda p: os.truncate(p, 50), "not valid JSON"),
    ("tokenizer.json", lambda p: os.truncate(p, 1000), "not a tokenizer the tokenizers library can read"),
    ("tokenizer.json", lambda p: p.write_text(""), "not a tokenizer the tokenizers library can read"),
])
def test_a_broken_checkpoint_names_its_file(checkpoint, name, damage, message):
    damage(checkpoint / name)
    with pytest.raises(HnmError) as e:
        CrossEncoder.from_checkpoint(checkpoint)
    assert str(e.value).startswith(f"{checkpoint / name}: ") and message in str(e.value)


# ------------------------------------------------------------------------------------------ full disk


def test_atomic_write_on_a_full_disk_names_the_file_and_keeps_the_old(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(OSError) as e:
        with atomic_write(path) as f:
            f.write("new")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


def test_a_short_write_of_numpy_on_a_full_disk_is_named_as_such(tmp_path, monkeypatch):
    monkeypatch.setattr(hnm_data, "_free_bytes", lambda folder: 0)
    with pytest.raises(OSError) as e:
        with atomic_write(tmp_path / "v.npy", "wb"):
            raise OSError("7680 requested and 4064 written")  # as numpy's tofile says it
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "v.npy")
    assert "7680 requested" in e.value.strerror


def test_embed_pair_full_disk_keeps_the_old_pair_and_a_reader_refuses_a_mix(tmp_path, monkeypatch):
    path = tmp_path / "v.npy"
    save_embeddings(path, ["a", "b", "c"], np.ones((3, 4), dtype=np.float32))
    real_save = np.save

    def full(f, array, **kw):
        real_save(f, array[:1], **kw)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(np, "save", full)
    with pytest.raises(OSError) as e:
        save_embeddings(path, ["x", "y"], np.zeros((2, 4), dtype=np.float32))
    assert e.value.filename == str(path)
    monkeypatch.setattr(np, "save", real_save)
    ids, vectors = load_embeddings(path)
    assert ids == ["a", "b", "c"] and vectors.shape == (3, 4) and vectors.min() == 1
    assert sorted(os.listdir(tmp_path)) == ["v.ids.txt", "v.npy"]
    path.with_suffix(".ids.txt").write_text("a\nb\n")
    with pytest.raises(InputError, match="3 rows of vectors but 2 ids"):
        load_embeddings(path)
    path.with_suffix(".ids.txt").unlink()  # a crash between the two renames leaves this
    with pytest.raises(InputError, match="row ids .* are missing"):
        load_embeddings(path)


# ------------------------------------------------------------------------------------------ one writer


HOLD = """
import sys, time
from hnm.data import one_writer
with one_writer(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(60)
"""


def holder(path: Path, kind: str = "file") -> subprocess.Popen:
    """A second process holding the lock of `path` (sys.argv of `python -c` is ['-c', PATH, KIND])."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path), kind], stdout=subprocess.PIPE, text=True, env=ENV)
    assert p.stdout.readline() == "held\n"
    return p


def test_a_second_writer_is_refused_at_once_naming_the_first(tmp_path, capsys):
    data = beir(tmp_path / "data")
    first = holder(tmp_path / "m.jsonl")
    try:
        t0 = time.monotonic()
        status, err = cli(capsys, "mine", "--data", str(data), "--strategy", "random", "--output",
                          str(tmp_path / "m.jsonl"), "--quiet")
        assert time.monotonic() - t0 < 10
        assert status == 2 and f"m.jsonl: another process is writing it (pid {first.pid}: hnm " in err
        assert not (tmp_path / "m.jsonl").exists()
        with pytest.raises(HnmError, match=f"pid {first.pid}"):
            with one_writer(tmp_path / "m.jsonl"):
                pass
    finally:
        first.kill()
        first.wait()
    # the kernel dropped the dead holder's lock: the same command now runs
    status, err = cli(capsys, "mine", "--data", str(data), "--strategy", "random", "--num-negatives", "1",
                      "--output", str(tmp_path / "m.jsonl"), "--quiet")
    assert status == 0, err
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 1
    assert not (tmp_path / "m.jsonl.lock").exists()  # removed on a clean exit


def test_a_folder_output_is_locked_inside_it(tmp_path):
    first = holder(tmp_path / "run", "folder")
    try:
        assert (tmp_path / "run" / ".lock").is_file()
        with pytest.raises(HnmError, match="another process is writing it"):
            with one_writer(tmp_path / "run", "folder"):
                pass
        with one_writer(tmp_path / "other", "folder"):  # another output is free
            pass
    finally:
        first.kill()
        first.wait()
