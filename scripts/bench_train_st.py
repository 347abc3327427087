"""Training speed: hnm's loop against sentence-transformers' CrossEncoder training, same model, data and loss family.

Both start from the cached all-MiniLM-L6-v2 (hnm's verified files) with a new one-logit head and train with binary
cross-entropy on (query, document, 0/1) pairs: the same pairs in the same order (hnm's seeded order over the mined
rows: each example is a positive and one negative, 8 examples = 16 pairs a step), batch 16 pairs, maximum length
256, AdamW lr 2e-5 with weight decay 0.01, linear warm-up and decay, gradients clipped to 1.

- hnm: `hnm.train.train` itself (loss "bce"), its per-step pairs/s from log.jsonl;
- sentence-transformers: `CrossEncoder.old_fit` (its DataLoader loop; the newer CrossEncoderTrainer needs
  `accelerate`, which is not installed here), timed between the batches it draws.

hnm sets glibc's malloc to keep large freed blocks (hnm/allocator.py); a third row, "st+malloc", runs the reference
with the same setting (glibc's MALLOC_*_THRESHOLD_ environment variables), to show how much of the difference that is.

Each side runs in its own process (so the peak resident memory, ru_maxrss, is its own); --warmup steps are run and
not timed, then --steps are (bfloat16: --bf16-steps after one, as a CPU without bf16 units emulates it, several
times slower). Sides alternate per precision, to share out the noise of a machine used by others.

    python scripts/bench_train_st.py --rows mined.jsonl --threads 1   # rows from `python -m hnm mine`
Writes scripts/results/bench_train_st.json.
"""

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hnm import allocator  # its ENVIRONMENT gives the reference run the same setting

HERE = Path(__file__).resolve().parent
MODEL = "all-MiniLM-L6-v2"
EXAMPLES_PER_STEP = 8  # each a (positive, negative) pair of pairs: 16 pairs a step


def pairs_in_order(rows_path: Path, n_examples: int, seed: int):
    """The first n examples of hnm's seeded order as (query, document, label) pairs, positive then negative."""
    from hnm.train import epoch_order, examples_of, read_rows
    rows, _ = read_rows(rows_path, 1)
    examples = examples_of(rows, 1)
    order = epoch_order(len(examples), seed, 0)[:n_examples]
    return [(examples[i].query, d, y) for i in order for d, y in ((examples[i].positive, 1.0),
                                                                  (examples[i].negatives[0], 0.0))]


def run_hnm(args) -> dict:
    from hnm.train import TrainConfig, train
    total = args.warmup + args.steps
    cfg = TrainConfig(loss="bce", negatives=1, batch_size=EXAMPLES_PER_STEP, max_steps=total, lr=2e-5,
                      max_length=args.max_length, precision=args.precision, eval_fraction=0.0,
                      save_every=10 * total, seed=args.seed)
    with tempfile.TemporaryDirectory() as out:
        train(args.rows, Path(out), MODEL, cfg, quiet=True)
        log = [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]
    timed = log[args.warmup:]
    pairs = 2 * EXAMPLES_PER_STEP * len(timed)
    seconds = sum(2 * EXAMPLES_PER_STEP / r["pairs_per_s"] for r in timed)
    return {"pairs_per_s": pairs / seconds, "seconds": seconds, "losses": [r["loss"] for r in log]}


def run_st(args) -> dict:
    import torch
    from sentence_transformers import CrossEncoder, InputExample
    from torch.utils.data import DataLoader

    from hnm.weights import fetch
    torch.manual_seed(args.seed)
    total = args.warmup + args.steps
    pairs = pairs_in_order(args.rows, total * EXAMPLES_PER_STEP, args.seed)
    model = CrossEncoder(str(fetch(MODEL)), num_labels=1, max_length=args.max_length, device="cpu")
    data = DataLoader([InputExample(texts=[q, d], label=y) for q, d, y in pairs], batch_size=2 * EXAMPLES_PER_STEP,
                      shuffle=False)
    drawn = []  # the time each batch is drawn: the previous step has just finished
    collate = model.smart_batching_collate

    def timed_collate(batch):
        drawn.append(time.perf_counter())
        return collate(batch)
    model.smart_batching_collate = timed_collate
    model.old_fit(train_dataloader=data, epochs=1, warmup_steps=math.ceil(0.1 * total),
                  optimizer_params={"lr": 2e-5}, weight_decay=0.01, max_grad_norm=1.0,
                  use_amp=args.precision == "bfloat16", show_progress_bar=False)
    end = time.perf_counter()
    seconds = end - drawn[args.warmup]  # from the first timed batch's draw to the end of the last step
    return {"pairs_per_s": 2 * EXAMPLES_PER_STEP * args.steps / seconds, "seconds": seconds}


def child(args) -> None:
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    result = run_hnm(args) if args.side == "hnm" else run_st(args)  # "st" and "st+malloc" differ only in env
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=Path, required=True, help="mined rows (python -m hnm mine)")
    p.add_argument("--steps", type=int, default=20, help="timed float32 steps per side")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--bf16-steps", type=int, default=4,
                   help="timed steps in bfloat16, after one untimed: a CPU without bf16 units emulates it, ~6x slower")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads in both sides (0: torch's default); 1 is faster on a CPU busy with other work")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--precisions", default="float32,bfloat16", help="comma-separated: float32, bfloat16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-same-allocator", action="store_true", help="skip the st+malloc run")
    p.add_argument("--side", choices=("hnm", "st", "st+malloc"), help=argparse.SUPPRESS)  # a child process
    p.add_argument("--precision", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side:
        return child(args)
    import sentence_transformers
    import torch
    import transformers
    results = {}
    for precision in args.precisions.split(","):
        for side in ("hnm", "st") + (() if args.no_same_allocator else ("st+malloc",)):
            steps, warmup = (args.steps, args.warmup) if precision == "float32" else (args.bf16_steps, 1)
            cmd = [sys.executable, __file__, "--side", side, "--precision", precision, "--rows", str(args.rows),
                   "--steps", str(steps), "--warmup", str(warmup), "--max-length", str(args.max_length),
                   "--seed", str(args.seed), "--threads", str(args.threads)]
            env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(allocator.ENVIRONMENT if side == "st+malloc" else {})}
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                sys.exit(f"{side} {precision} failed:\n{done.stderr[-3000:]}")
            results[f"{side}/{precision}"] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{side:9s} {precision:9s} {results[f'{side}/{precision}']['pairs_per_s']:7.2f} pairs/s", flush=True)
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "torch_threads": args.threads or torch.get_num_threads(),
               "load_average_at_end": os.getloadavg()}
    rows = []
    print(f"\n{machine['platform']}, {machine['cpus']} CPUs, {machine['torch_threads']} torch threads, torch "
          f"{torch.__version__}, batch 16 pairs, max length {args.max_length}; float32: {args.steps} timed steps "
          f"after {args.warmup}, bfloat16: {args.bf16_steps} after 1")
    print(f"{'precision':10s} {'hnm pairs/s':>12s} {'ST pairs/s':>11s} {'ratio':>6s} {'hnm peak MB':>12s} "
          f"{'ST peak MB':>11s}")
    for precision in args.precisions.split(","):
        h, s = results[f"hnm/{precision}"], results[f"st/{precision}"]
        ratio = h["pairs_per_s"] / s["pairs_per_s"]
        rows.append({"precision": precision, "hnm_pairs_per_s": h["pairs_per_s"], "st_pairs_per_s": s["pairs_per_s"],
                     "ratio": ratio, "hnm_peak_rss_mb": h["peak_rss_mb"], "st_peak_rss_mb": s["peak_rss_mb"]})
        print(f"{precision:10s} {h['pairs_per_s']:12.2f} {s['pairs_per_s']:11.2f} {ratio:6.2f} "
              f"{h['peak_rss_mb']:12.0f} {s['peak_rss_mb']:11.0f}")
        m = results.get(f"st+malloc/{precision}")
        if m:
            rows[-1].update({"st_malloc_pairs_per_s": m["pairs_per_s"], "ratio_same_allocator": h["pairs_per_s"]
                             / m["pairs_per_s"], "st_malloc_peak_rss_mb": m["peak_rss_mb"]})
            print(f"{'  st+malloc (the reference with hnm allocator setting)':45s} {m['pairs_per_s']:.2f} pairs/s: "
                  f"hnm {h['pairs_per_s'] / m['pairs_per_s']:.2f}x, peak {m['peak_rss_mb']:.0f} MB")
    out = {"machine": machine, "settings": {"model": MODEL, "batch_pairs": 2 * EXAMPLES_PER_STEP,
                                            "max_length": args.max_length, "steps": args.steps,
                                            "warmup": args.warmup, "bf16_steps": args.bf16_steps,
                                            "threads": machine["torch_threads"], "loss": "binary cross-entropy",
                                            "rows": str(args.rows)},
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "sentence-transformers": sentence_transformers.__version__},
           "results": rows, "raw": results}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "bench_train_st.json").write_text(json.dumps(out, indent=1))
    print(f"-> {HERE / 'results' / 'bench_train_st.json'}")


if __name__ == "__main__":
    main()
