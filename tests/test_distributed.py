"""torchrun on the CPU (gloo): two processes write the bytes one process writes (mine, embed), a rank killed with
SIGKILL stops the run with its rank named and a rerun completes with the same bytes, and two "nodes" on one machine
(c10d rendezvous on localhost) do the same. A tiny encoder added to a lock by its hashes keeps it to seconds."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import require_model
from hnm.data import write_jsonl
from hnm.distributed import Processes, resolve_device
from test_experiment import tiny_cranfield, tiny_model

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def test_devices_resolve_by_name():
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert resolve_device("auto", 0) == resolve_device("cuda", 0) == torch.device("cuda:0")
    else:
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="is not one of"):
        resolve_device("gpu")


def test_one_process_shares_nothing_and_gathers_its_own_bytes():
    procs = Processes(0, 1, torch.device("cpu"))
    assert list(procs.share(5)) == [0, 1, 2, 3, 4]
    assert list(procs.in_order(3, lambda i: bytes([i]))) == [(0, b"\x00"), (1, b"\x01"), (2, b"\x02")]
    assert Processes(1, 3, torch.device("cpu")).share(8) == range(1, 8, 3)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A lock with the tiny encoder, the tiny Cranfield cut, and the environment every command runs in."""
    root = tmp_path_factory.mktemp("dist")
    lock = tiny_model(root / "weights", require_model("all-MiniLM-L6-v2") / "tokenizer.json")
    data = tiny_cranfield(root / "cran")
    return root, lock, data


def _env(lock: Path, home: Path) -> dict:
    """HNM_HOME with the tiny model's files copied in and an empty embedding cache."""
    if not (home / "models" / "tiny").exists():
        shutil.copytree(lock.parent / "models" / "tiny", home / "models" / "tiny")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMP_NUM_THREADS")}
    return {**env, "HNM_LOCK": str(lock), "HNM_HOME": str(home), "HNM_DIST_TIMEOUT": "60"}


def _one(env: dict) -> dict:
    """The one-process run's environment: two threads, so that each of its two encoding streams has one, as each
    torchrun rank has (a batch computed on another number of threads may round differently)."""
    return {**env, "OMP_NUM_THREADS": "2"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args, env, cwd, timeout=240) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _mine(out: str, data: Path) -> list:
    return ["-m", "hnm", "mine", "--data", str(data), "--split", "train", "--models", "tiny", "--output", out,
            "--chunk-size", "2", "--n-clusters", "4", "--relative-ceiling", "0.999", "--device", "cpu", "--quiet"]


def test_two_processes_mine_and_embed_the_bytes_one_writes(setup, tmp_path):
    root, lock, data = setup
    _run([sys.executable, *_mine("one.jsonl", data)], _one(_env(lock, tmp_path / "home1")), tmp_path)
    two = _env(lock, tmp_path / "home2")  # its own empty cache: the two ranks embed here
    _run([*TORCHRUN, "--nproc_per_node", "2", "--master-port", str(_port()), *_mine("two.jsonl", data)], two,
         tmp_path)
    for name in ("", ".review.jsonl"):
        one, other = (tmp_path / f"one.jsonl{name}").read_bytes(), (tmp_path / f"two.jsonl{name}").read_bytes()
        assert one == other and len(one) > 0, name
    rows = [json.loads(line) for line in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and sum(len(r["negative_ids"]) for r in rows) > 24  # 6 chunks of 2: both mined
    shards = list((tmp_path / "home2" / "embeddings").glob("*/shard-*.npz"))
    assert len(shards) >= 4  # documents and queries, each rank its own shard of each

    corpus = str(data / "corpus.jsonl")
    _run([sys.executable, "-m", "hnm", "embed", "--model", "tiny", "--input", corpus, "--output", "one.npy",
          "--batch-size", "8", "--no-cache", "--device", "cpu", "--quiet"], _one(two), tmp_path)
    _run([*TORCHRUN, "--nproc_per_node", "2", "--master-port", str(_port()), "-m", "hnm", "embed", "--model",
          "tiny", "--input", corpus, "--output", "two.npy", "--batch-size", "8", "--no-cache", "--device", "cpu",
          "--quiet"], two, tmp_path)
    assert (tmp_path / "one.npy").read_bytes() == (tmp_path / "two.npy").read_bytes()
    assert np.load(tmp_path / "two.npy").shape[0] == len((data / "corpus.jsonl").read_text().splitlines())


def _texts(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(500)]
    write_jsonl(path, [{"_id": str(i), "text": " ".join(rng.choice(words, rng.integers(5, 60)))} for i in range(n)])


def _rank_pid(parent: int, rank: int):
    """The pid of the torchrun worker of `rank` under the agent `parent`, or None while it has not started."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[1]) == parent and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


def test_a_rank_killed_mid_run_is_named_and_a_rerun_writes_the_same_bytes(setup, tmp_path):
    root, lock, _ = setup
    _texts(tmp_path / "texts.jsonl", 3500)  # four blocks of 1,024 texts
    embed = ["-m", "hnm", "embed", "--model", "tiny", "--input", "texts.jsonl", "--batch-size", "16",
             "--device", "cpu", "--quiet"]
    _run([sys.executable, *embed, "--output", "whole.npy"], _one(_env(lock, tmp_path / "home1")), tmp_path)

    env = _env(lock, tmp_path / "home2")
    cache = tmp_path / "home2" / "embeddings"
    agent = subprocess.Popen([*TORCHRUN, "--nproc_per_node", "2", "--master-port", str(_port()), *embed,
                              "--output", "two.npy"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not len(list(cache.glob("*/shard-*.npz"))) >= 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # the first block is on disk: the run is under way
    victim = _rank_pid(agent.pid, 1)
    assert victim is not None and agent.poll() is None, "the run ended before a rank could be killed"
    os.kill(victim, signal.SIGKILL)
    output, _ = agent.communicate(timeout=120)  # the other rank is stopped, not left waiting
    assert agent.returncode != 0
    assert "rank" in output and "1" in output and ("SIGKILL" in output or "Signal 9" in output), output[-2000:]
    assert not (tmp_path / "two.npy").exists()  # nothing half-written
    assert all(not p.name.endswith(".tmp") for p in cache.rglob("*"))
    kept = len(list(cache.glob("*/shard-*.npz")))

    _run([*TORCHRUN, "--nproc_per_node", "2", "--master-port", str(_port()), *embed, "--output", "two.npy"], env,
         tmp_path)
    assert (tmp_path / "two.npy").read_bytes() == (tmp_path / "whole.npy").read_bytes()
    assert kept >= 2 and len(list(cache.glob("*/shard-*.npz"))) > kept  # resumed: the first blocks were reused


def test_two_nodes_on_one_machine_write_the_bytes_one_process_writes(setup, tmp_path):
    root, lock, data = setup
    env = _env(lock, tmp_path / "home")
    _run([sys.executable, *_mine("one.jsonl", data)], _one(env), tmp_path)
    port, agents = _port(), []
    for node in range(2):
        _env(lock, tmp_path / f"node{node}")  # each node its own cache, as machines without a shared disk
        agents.append(subprocess.Popen(
            [*TORCHRUN, "--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d", "--rdzv-id", "hnm-test",
             "--rdzv-endpoint", f"127.0.0.1:{port}", *_mine("nodes.jsonl", data)],
            env={**env, "HNM_HOME": str(tmp_path / f"node{node}")}, cwd=tmp_path, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    for agent in agents:
        output, _ = agent.communicate(timeout=240)
        assert agent.returncode == 0, output[-3000:]
    assert (tmp_path / "nodes.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()


def test_the_experiment_runs_under_torchrun_and_rank_0_writes_its_report(setup, tmp_path):
    root, lock, data = setup
    n_docs = len((data / "corpus.jsonl").read_text().splitlines())
    config = {"arms": [{"name": "first-stage", "mine": None},
                       {"name": "ensemble+", "mine": {"strategy": "ensemble", "random_share": 0.25}}],
              "budget": {"name": "tiny", "models": "tiny", "start": "tiny", "epochs": 1, "batch_size": 2,
                         "max_length": 48, "top_k": 5, "test_queries": None, "train_queries": 8,
                         "corpus_docs": n_docs - 5, "negatives": 4, "precision": "float32", "max_steps": 2},
              "resamples": 100}
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    _run([*TORCHRUN, "--nproc_per_node", "2", "--master-port", str(_port()), "-m", "hnm", "experiment", "--data",
          str(data), "--config", "cfg.json", "--out", "exp", "--device", "cpu", "--quiet"],
         _env(lock, tmp_path / "home"), tmp_path)
    results = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert {"first-stage", "ensemble+", "ensemble+, pure"} <= set(results["seeds_mean"])
    done = json.loads((tmp_path / "exp" / "models" / "ensemble+-s0" / "done.json").read_text())
    assert done["steps"] == 2 and (tmp_path / "exp" / "report.md").is_file()
    assert not list((tmp_path / "exp").rglob("*.tmp"))
