"""One process against N under torchrun, for `embed` and `mine`, on this machine: documents per second and the peak
memory of each rank.

    python scripts/bench_scale.py [--data BEIR_FOLDER] [--procs 2] [--models all-MiniLM-L6-v2]
    # prints a table, writes scripts/results/bench_scale.json

Each command runs from an empty embedding cache (a temporary HNM_HOME holding a copy of the models), in float32
on the CPU: `embed` of the corpus with the first model, then `mine --strategy ensemble` with every model (its time
is mostly embedding the corpus and the judged queries). One process runs with torch's default threads (all cores,
two encoding streams), N processes as torchrun starts them (one thread each). The time is the command's own, from
the moment `hnm.__main__.main` is called to its return (interpreter and torch start-up left out; the slowest rank
for N; the fastest of --repeats runs, alternating), documents per second the corpus size over it; memory is each
rank's peak resident set (ru_maxrss). The outputs of the two are compared byte for byte. Run it on an otherwise
idle machine.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def worker(argv) -> None:
    """Under torchrun or alone: run one hnm command, then write this rank's time and peak memory as JSON."""
    from hnm.__main__ import main
    t0 = time.perf_counter()
    rc = main(argv[1:])
    seconds = time.perf_counter() - t0
    rank = os.environ.get("RANK", "0")
    Path(f"{argv[0]}.rank{rank}.json").write_text(json.dumps(
        {"rc": rc, "seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    sys.exit(rc)


def measure(procs: int, command: list, work: Path, home: Path, tag: str) -> dict:
    """Run `command` (hnm's argv) in `procs` processes; -> {"seconds", "peak_mib" per rank}."""
    shutil.rmtree(home / "embeddings", ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMP_NUM_THREADS")}
    env["HNM_HOME"] = str(home)
    stem = str(work / tag)
    launcher = [sys.executable] if procs == 1 else [sys.executable, "-m", "torch.distributed.run",
                                                      "--nproc_per_node", str(procs), "--master-port", "29611"]
    done = subprocess.run([*launcher, __file__, "--worker", stem, *command], env=env, cwd=work,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{tag} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    ranks = [json.loads(Path(f"{stem}.rank{r}.json").read_text()) for r in range(procs)]
    return {"seconds": round(max(r["seconds"] for r in ranks), 2), "peak_mib": [round(r["peak_mib"]) for r in ranks]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    from hnm.data import bundled_cranfield, load_beir, write_jsonl
    from hnm.experiment import machine_line
    from hnm.weights import fetch, model_dir
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="a BEIR folder (default: the bundled Cranfield)")
    p.add_argument("--split", default=None, help="judged split to mine (default train_80 bundled, else train)")
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="runs of each configuration; the fastest is reported")
    p.add_argument("--models", default="all-MiniLM-L6-v2", help="models of `mine` (the first one embeds)")
    p.add_argument("--output", type=Path, default=HERE / "results" / "bench_scale.json")
    args = p.parse_args()
    data = args.data or bundled_cranfield()
    split = args.split or ("train_80" if args.data is None else "train")
    corpus, _, qrels = load_beir(data, split)
    first = args.models.split(",")[0]

    work = Path(tempfile.mkdtemp(prefix="hnm-bench-scale-"))
    home = work / "home"
    for name in args.models.split(","):  # the weights, copied once; the embedding cache emptied before each run
        fetch(name, quiet=True)
        shutil.copytree(model_dir(name), home / "models" / name)
    write_jsonl(work / "corpus.jsonl", [{"_id": d, **doc} for d, doc in corpus.items()])
    commands = {
        "embed": ["embed", "--model", first, "--input", str(work / "corpus.jsonl"), "--device", "cpu", "--quiet"],
        "mine": ["mine", "--data", str(data), "--split", split, "--models", args.models, "--device", "cpu",
                 "--quiet"],
    }
    rows = []
    for verb, argv in commands.items():
        suffix = ".npy" if verb == "embed" else ".jsonl"
        runs = {1: [], args.procs: []}
        for _ in range(args.repeats):  # alternating, so that a drift of the machine hits both alike
            for n in runs:
                runs[n].append(measure(n, [*argv, "--output", f"{verb}-{n}{suffix}"], work, home, f"{verb}-{n}"))
        one, many = ({"seconds": min(r["seconds"] for r in runs[n]), "all_seconds": [r["seconds"] for r in runs[n]],
                      "peak_mib": runs[n][-1]["peak_mib"]} for n in runs)
        same = (work / f"{verb}-1{suffix}").read_bytes() == (work / f"{verb}-{args.procs}{suffix}").read_bytes()
        rows.append({"verb": verb, "documents": len(corpus), "queries": len(qrels) if verb == "mine" else 0,
                     "one": {**one, "docs_per_s": round(len(corpus) / one["seconds"], 1)},
                     "many": {**many, "docs_per_s": round(len(corpus) / many["seconds"], 1)},
                     "speed_ratio": round(one["seconds"] / many["seconds"], 3), "same_bytes": same})
    shutil.rmtree(work)

    lines = [f"| verb | documents | 1 process: s | docs/s | peak MiB | {args.procs} processes: s | docs/s | "
             f"peak MiB per rank | speed-up | same bytes |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['verb']} | {r['documents']:,} | {r['one']['seconds']} | {r['one']['docs_per_s']} | "
                     f"{r['one']['peak_mib'][0]} | {r['many']['seconds']} | {r['many']['docs_per_s']} | "
                     f"{' / '.join(map(str, r['many']['peak_mib']))} | {r['speed_ratio']}x | {r['same_bytes']} |")
    print("\n".join(lines))
    bf16 = sorted({f for f in ("avx512_bf16", "amx_bf16") if f in Path("/proc/cpuinfo").read_text()})
    payload = {"machine": machine_line(), "bf16_flags": bf16, "data": str(data), "split": split,
               "models": args.models, "procs": args.procs, "precision": "float32", "rows": rows}
    args.output.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
