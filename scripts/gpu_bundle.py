"""Carry a prepared experiment to an offline GPU machine, and run it there.

For a GPU machine that reaches no model hub and takes files in pieces of limited size. Once an experiment's first
stages and minings are done on the CPU (`hnm experiment --prepare`: they are the only stages that need the
ensemble's encoders), the rest needs only the re-ranker's start model. `pack` puts those stages, the BEIR data and
the start model's files in one tar.xz and cuts it into parts of 56 MiB (PART_BYTES) under .dev/, with bundle.json
(the parts and their sha256); on the GPU machine `keep` stores a part, and `run` stores the last, joins them, checks
the sha256, profiles one training step of the budget's shape (`profile`: is the host's tokenising or the device the
bound?), and runs each experiment until a deadline (--minutes), writing its report, results and runs into $OUT (or
/tmp/hnm-bundle/out). A `run` with no part resumes the experiments (they are resumable stage by stage) while the
machine still holds the unpacked bundle; a later run on a fresh machine goes on from what an earlier one finished
once its runs and its models' done.json, alpha.json and tuning_queries.json are copied back into the prepared
folder, since `pack` takes those records too.

    # on the CPU machine
    python -m hnm experiment --data ../shared/data/scifact --budget gpu --arms ensemble+,random,ensemble,bm25,dense \\
        --out /work/cache/experiments/scifact-gpu --prepare
    python scripts/gpu_bundle.py pack --start all-MiniLM-L6-v2 --job scifact ../shared/data/scifact \\
        /work/cache/experiments/scifact-gpu "--budget gpu --arms ensemble+,random,ensemble,bm25,dense"
    # on the GPU machine, in a checkout of hnm with .dev/ copied beside it: each part but the last, then the last;
    # `check` first tries the GPU paths on a tiny model (it needs only .dev/tokenizer.json), so a fault shows early
    python3 scripts/gpu_bundle.py keep .dev/part-1-of-2 && python3 scripts/gpu_bundle.py check
    python3 scripts/gpu_bundle.py run .dev/part-2-of-2 --minutes 9

The checkout itself is about 4 MB without the runs committed under scripts/results/experiment_*/runs (about 57 MB):
where every transfer counts, copy it without them.

The experiment's arguments given to `pack` must be those it was prepared with (budget, splits, arms), or it mines
again, which needs the encoders that are not there; --start must be the budget's start model (all-MiniLM-L6-v2,
91 MB, is two parts; all-mpnet-base-v2, 438 MB, would be eight, which is why the `gpu` budget starts from MiniLM).
`.dev/` is kept out of git (.git/info/exclude).
Not here: the experiment itself (hnm/experiment.py).
"""

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STORE = Path("/tmp/hnm-bundle")  # on the GPU machine: the parts, then the unpacked bundle
PART_BYTES = 56 * 2 ** 20  # a part and the checkout (about 4 MB without the committed runs: see above) under 64 MiB


def pack(args) -> None:
    sys.path.insert(0, str(ROOT))
    from hnm.weights import home
    dest = ROOT / ".dev"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    buf = io.BytesIO()
    jobs = []
    with tarfile.open(fileobj=buf, mode="w:xz", preset=6) as tar:  # xz: mined rows carry their texts, 100 MB raw
        model = home() / "models" / args.start
        for f in sorted(model.iterdir()):
            if not f.name.endswith(".verified"):
                tar.add(f, f"home/models/{args.start}/{f.name}")
        for name, data, out, extra in args.job:
            data, out = Path(data), Path(out)
            if not (out / "stage_times.json").exists():
                sys.exit(f"{out}: not a prepared experiment (run `hnm experiment ... --out {out} --prepare` first)")
            tar.add(data, f"data/{name}")
            for sub in ("mined", "runs"):
                tar.add(out / sub, f"exp/{name}/{sub}")
            for record in ("done.json", "alpha.json", "tuning_queries.json"):  # finished models': the run skips them
                for f in sorted((out / "models").glob(f"*/{record}")):
                    tar.add(f, f"exp/{name}/models/{f.parent.name}/{f.name}")
            tar.add(out / "stage_times.json", f"exp/{name}/stage_times.json")
            jobs.append({"name": name, "args": extra.split()})
    blob = buf.getvalue()
    n = -(-len(blob) // PART_BYTES)
    parts = [f"part-{i + 1}-of-{n}" for i in range(n)]
    for i, part in enumerate(parts):
        (dest / part).write_bytes(blob[i * PART_BYTES:(i + 1) * PART_BYTES])
    manifest = {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob), "parts": parts, "jobs": jobs,
                "start": args.start}
    (dest / "bundle.json").write_text(json.dumps(manifest, indent=1))
    shutil.copy(model / "tokenizer.json", dest / "tokenizer.json")  # for `check`, which needs no weights
    exclude = ROOT / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    if "/.dev/" not in (exclude.read_text() if exclude.exists() else ""):
        with open(exclude, "a") as f:
            f.write("/.dev/\n")
    print(f"{len(blob) / 2 ** 20:.1f} MiB in {n} parts under {dest}: {', '.join(parts)}")


def keep(part: Path) -> None:
    STORE.mkdir(parents=True, exist_ok=True)
    shutil.copy(part, STORE / part.name)
    print(f"kept {part.name} ({part.stat().st_size / 2 ** 20:.1f} MiB); held: {sorted(p.name for p in STORE.glob('part-*'))}")


def unpack(manifest: dict) -> Path:
    target = STORE / "x"
    if (target / "unpacked").exists():
        return target
    missing = [p for p in manifest["parts"] if not (STORE / p).exists()]
    if missing:
        sys.exit(f"parts missing on this machine: {missing} (a machine given back between calls starts bare)")
    blob = b"".join((STORE / p).read_bytes() for p in manifest["parts"])
    if hashlib.sha256(blob).hexdigest() != manifest["sha256"]:
        sys.exit("the joined parts do not match bundle.json's sha256")
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:xz") as tar:
        tar.extractall(target, filter="data")
    (target / "unpacked").write_text("")
    return target


def run(args) -> None:
    if args.part:
        keep(args.part)
        shutil.copy(args.part.parent / "bundle.json", STORE / "bundle.json")
    manifest = json.loads((STORE / "bundle.json").read_text())
    x = unpack(manifest)
    deadline = time.monotonic() + args.minutes * 60
    out = Path(os.environ.get("OUT", STORE / "out"))
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HNM_HOME": str(x / "home"), "PYTHONUNBUFFERED": "1"}
    if manifest.get("start") and not args.no_profile:  # where a step's time goes, before the long jobs (seconds)
        subprocess.run([sys.executable, __file__, "profile", "--start", manifest["start"], "--data",
                        str(x / "data" / manifest["jobs"][0]["name"]), "--device", args.device], cwd=ROOT, env=env)
    for job in manifest["jobs"]:
        left = deadline - time.monotonic()
        if left < 30:
            print(f"{job['name']}: no time left; run again to resume")
            continue
        exp = x / "exp" / job["name"]
        cmd = [sys.executable, "-m", "hnm", "experiment", "--data", str(x / "data" / job["name"]), "--out", str(exp),
               *job["args"], "--device", args.device, "--quiet"]
        print(" ".join(cmd), flush=True)
        t0 = time.monotonic()
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=left, stdout=subprocess.DEVNULL).returncode
        except subprocess.TimeoutExpired:
            rc = "stopped at the deadline (resumable)"
        print(f"{job['name']}: {rc} after {time.monotonic() - t0:.0f} s", flush=True)
        for name in ("report.md", "results.json", "chart.svg"):  # four files a job: $OUT returns 8 at most
            if (exp / name).exists():
                shutil.copy(exp / name, out / f"{job['name']}.{name}")
        with tarfile.open(out / f"{job['name']}.runs.tar.gz", "w:gz") as tar:  # the runs and each model's records
            tar.add(exp / "runs", "runs")
            for f in sorted((exp / "models").glob("*/*.json*")):
                tar.add(f, f"models/{f.parent.name}/{f.name}")


def check(args) -> None:
    """The GPU paths on a tiny random re-ranker (the tests' golden configuration, 2 layers of 32) and the tests' 40
    rows: train in bfloat16 on the GPU with a stop and a resume, then score the same pairs on the GPU and on the CPU
    in float32. Needs only a tokenizer.json; a fault here costs seconds, not the long call."""
    sys.path.insert(0, str(ROOT))
    import tempfile
    from dataclasses import replace
    import numpy as np
    import torch
    from hnm.distributed import Processes
    from hnm.encoder import EncoderConfig
    from hnm.reranker import CrossEncoder
    from hnm.train import TrainConfig, train
    fixtures = ROOT / "tests" / "fixtures"
    golden = json.loads((fixtures / "train_golden.json").read_text())
    device = Processes.start(args.device).device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU"
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {name}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        CrossEncoder.random(EncoderConfig(**golden["encoder"]), args.tokenizer, max_length=golden["max_length"],
                            std=0.2).save(tmp / "start")
        cfg = TrainConfig(**{**golden["train"], "max_steps": 40, "precision": "auto", "stop_after": 20})
        train(fixtures / "train_rows.jsonl", tmp / "run", str(tmp / "start"), cfg, quiet=True)
        summary = train(fixtures / "train_rows.jsonl", tmp / "run", str(tmp / "start"), replace(cfg, stop_after=None),
                        resume=True, quiet=True)
        model = CrossEncoder.from_checkpoint(tmp / "run" / "last")
        rows = [json.loads(line) for line in (fixtures / "train_rows.jsonl").read_text().splitlines()]
        queries = [r["query"] for r in rows for _ in r["negatives"]]
        docs = [d for r in rows for d in r["negatives"]]
        on_gpu = model.score(queries, docs, precision="float32")
        on_cpu = model.to("cpu").score(queries, docs, precision="float32")
    gap = float(np.abs(on_gpu - on_cpu).max())
    print(f"trained 40 steps ({summary['precision']}, resumed at 20): last loss {summary['last_loss']:.4f}; "
          f"{len(docs)} pairs scored, largest GPU-CPU difference {gap:.2e}", flush=True)
    if not np.isfinite(summary["last_loss"]) or gap > 1e-3:
        sys.exit("check failed")


def profile(args) -> None:
    """Where a training step and a re-ranking batch of the `gpu` budget's shape spend their time on this machine:
    tokenising (on the host), the forward and backward pass, the optimiser step, each timed with the device
    synchronised, as the median over --steps steps after two of warm-up. Pairs are the data's first queries with
    their judged documents, cut at --max-length. Says whether the host's tokenising or the device bounds the work."""
    sys.path.insert(0, str(ROOT))
    import statistics
    import torch
    from hnm.data import document_text, load_beir
    from hnm.distributed import Processes
    from hnm.reranker import CrossEncoder
    device = Processes.start(args.device).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    corpus, queries, qrels = load_beir(args.data, "train")
    pairs = [(queries[q], document_text(corpus[d])) for q in sorted(qrels) for d in sorted(qrels[q]) if d in corpus]
    model = CrossEncoder.from_encoder(args.start, quiet=True)
    model.set_max_length(args.max_length)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    times = {"tokenise": [], "to device": [], "forward + backward": [], "optimiser": []}
    for step in range(args.steps + 2):
        batch = [pairs[(step * args.pairs + i) % len(pairs)] for i in range(args.pairs)]
        t = [time.perf_counter()]
        b = model.tokenize([q for q, _ in batch], [d for _, d in batch])
        t.append(time.perf_counter())
        ids, mask, types = (x.to(device) for x in (b.input_ids, b.attention_mask, b.token_type_ids))
        sync()
        t.append(time.perf_counter())
        with autocast:
            logits = model(ids, mask, types)
        logits.float().view(-1, 2).log_softmax(-1)[:, 0].mean().neg().backward()
        sync()
        t.append(time.perf_counter())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        t.append(time.perf_counter())
        if step >= 2:
            for (name, kept), a, z in zip(times.items(), t, t[1:]):
                kept.append(1000 * (z - a))
    model.eval()
    n = min(len(pairs), 1024)
    t0 = time.perf_counter()
    model.tokenize([q for q, _ in pairs[:n]], [d for _, d in pairs[:n]])
    tokenise = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.score([q for q, _ in pairs[:n]], [d for _, d in pairs[:n]], batch_size=128, precision="bfloat16")
    sync()
    scoring = time.perf_counter() - t0
    ms = {name: statistics.median(v) for name, v in times.items()}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU"
    print(f"profile, {args.start} on {where}, {os.cpu_count()} host cores, {args.pairs} pairs a step at "
          f"{args.max_length} tokens (median of {args.steps} steps, ms): "
          + ", ".join(f"{k} {v:.1f}" for k, v in ms.items())
          + f"; {sum(ms.values()):.1f} a step, {args.pairs / sum(ms.values()) * 1000:.0f} pairs/s. Re-ranking {n} "
          f"pairs: {n / scoring:.0f} pairs/s, of which tokenising alone would allow {n / tokenise:.0f}.", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", required=True)
    a = sub.add_parser("pack", help="here: the bundle's parts under .dev/")
    a.add_argument("--start", default="all-MiniLM-L6-v2", help="the re-ranker's start model (from the cache)")
    a.add_argument("--job", nargs=4, action="append", required=True, metavar=("NAME", "DATA", "OUT", "ARGS"),
                   help="an experiment: its name, BEIR folder, prepared --out folder, and its other arguments")
    a = sub.add_parser("keep", help="there: store one part")
    a.add_argument("part", type=Path)
    a = sub.add_parser("run", help="there: store the last part, join, check, and run until the deadline")
    a.add_argument("part", type=Path, nargs="?")
    a.add_argument("--minutes", type=float, default=9.0)
    a.add_argument("--device", default="cuda")
    a.add_argument("--no-profile", action="store_true", help="skip the profile of a step before the jobs")
    a = sub.add_parser("profile", help="there (or here): where a gpu-budget training step spends its time")
    a.add_argument("--start", default="all-MiniLM-L6-v2")
    a.add_argument("--data", type=Path, required=True, help="a BEIR folder whose train split gives the pairs")
    a.add_argument("--pairs", type=int, default=32, help="pairs a step (the gpu budget: 16 triplets, 32 pairs)")
    a.add_argument("--max-length", type=int, default=256)
    a.add_argument("--steps", type=int, default=10)
    a.add_argument("--device", default="cuda")
    a = sub.add_parser("check", help="there: the GPU paths on a tiny model, in seconds (needs only a tokenizer)")
    a.add_argument("--tokenizer", type=Path, default=ROOT / ".dev" / "tokenizer.json")
    a.add_argument("--device", default="cuda")
    args = p.parse_args()
    {"pack": pack, "keep": lambda a: keep(a.part), "run": run, "check": check, "profile": profile}[args.verb](args)


if __name__ == "__main__":
    main()
