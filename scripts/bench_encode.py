"""Encoding speed: hnm against sentence-transformers on the same 2,000 SciFact documents, in one run.

Both sides load the same files (hnm's verified cache), use all-MiniLM-L6-v2 with batch size 32 and maximum length
256, sort by length, and run on the same threads. Each configuration runs in its own child process so that its peak
resident memory is its own; hnm and the reference alternate, and each figure is the best of `--rounds` runs.
The embedding cache is off. hnm sets glibc's malloc to keep large freed blocks (hnm/allocator.py); a third row runs
the reference with the same setting (through glibc's MALLOC_*_THRESHOLD_ environment variables), so the table shows
how much of the difference is the allocator. Prints a table and writes scripts/results/bench_encode.json.

    pip install -e '.[bench]'
    python scripts/bench_encode.py [--docs 2000] [--rounds 2]
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hnm import allocator  # its ENVIRONMENT gives the reference run the same setting

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "scifact" / "corpus.jsonl"
OUT = REPO / "scripts" / "results"
MODEL = "all-MiniLM-L6-v2"
SAME_ALLOCATOR = "sentence-transformers+malloc"  # the reference with hnm's allocator setting


def load_docs(n: int) -> list:
    from hnm.data import document_text, read_corpus
    corpus = read_corpus(DATA)
    return [document_text(corpus[d]) for d in list(corpus)[:n]]


def child(side: str, precision: str, n: int, batch_size: int, vectors_out: str) -> None:
    """Encode in this process and print one JSON line: seconds, docs/s, peak RSS."""
    import torch

    from hnm.weights import fetch, read_lock
    docs = load_docs(n)
    spec = read_lock()[MODEL]
    folder = fetch(MODEL, quiet=True)
    if side == "hnm":
        from hnm.embed import EmbedConfig, Embedder
        model = Embedder(spec, folder, EmbedConfig(batch_size=batch_size, precision=precision, cache=False))
        model.encode(docs[:64], quiet=True)  # warm-up, as for the reference
        t0 = time.perf_counter()
        vectors = model.encode(docs, quiet=True)
    else:
        from sentence_transformers import SentenceTransformer, models
        word = models.Transformer(str(folder), max_seq_length=spec.max_length)
        st = SentenceTransformer(modules=[word, models.Pooling(word.get_embedding_dimension(), "mean"),
                                          models.Normalize()], device="cpu")
        st.encode(docs[:64], batch_size=batch_size)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            vectors = st.encode(docs, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    seconds = time.perf_counter() - t0
    np.save(vectors_out, np.asarray(vectors, dtype=np.float32))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "docs_per_s": n / seconds, "peak_rss_mb": peak_mb,
                      "threads": torch.get_num_threads()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--precisions", default="float32,bfloat16")
    ap.add_argument("--no-same-allocator", action="store_true", help="skip the reference run with hnm's allocator setting")
    ap.add_argument("--child", nargs=2, metavar=("SIDE", "PRECISION"), help=argparse.SUPPRESS)
    ap.add_argument("--vectors", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child, args.docs, args.batch_size, args.vectors)
        return
    tmp = OUT / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    results = {}
    for precision in args.precisions.split(","):
        for rnd in range(args.rounds):
            sides = ["hnm", "sentence-transformers"] + ([] if args.no_same_allocator else [SAME_ALLOCATOR])
            for side in sides if rnd % 2 == 0 else sides[::-1]:
                vec = tmp / f"encode-{side}-{precision}.npy"
                env = {**os.environ, **(allocator.ENVIRONMENT if side == SAME_ALLOCATOR else {})}
                done = subprocess.run([sys.executable, __file__, "--child", side, precision, "--docs", str(args.docs),
                                       "--batch-size", str(args.batch_size), "--vectors", str(vec)],
                                      capture_output=True, text=True, check=True, env=env)
                row = json.loads(done.stdout.strip().splitlines()[-1])
                best = results.setdefault(f"{side} {precision}", row)
                if row["docs_per_s"] > best["docs_per_s"]:
                    results[f"{side} {precision}"] = row
                print(f"  round {rnd + 1} {side:22s} {precision:9s} {row['docs_per_s']:7.1f} docs/s", file=sys.stderr)
        ours = np.load(tmp / f"encode-hnm-{precision}.npy")
        ref = np.load(tmp / f"encode-sentence-transformers-{precision}.npy")
        ref32 = np.load(tmp / "encode-sentence-transformers-float32.npy") if (
            tmp / "encode-sentence-transformers-float32.npy").exists() else ref
        results[f"hnm {precision}"]["max_abs_diff_vs_reference_same_precision"] = float(np.abs(ours - ref).max())
        results[f"hnm {precision}"]["min_cosine_vs_reference_float32"] = float((ours * ref32).sum(1).min())
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}"
    print(f"\nEncoding {args.docs} SciFact documents, {MODEL}, batch {args.batch_size}, max length 256; {machine}")
    print(f"{'system':34s} {'docs/s':>8s} {'peak MB':>8s} {'ratio':>6s}")
    summary = {"machine": machine, "docs": args.docs, "batch_size": args.batch_size, "model": MODEL, "runs": results}
    for precision in args.precisions.split(","):
        ref = results[f"sentence-transformers {precision}"]["docs_per_s"]
        summary[f"ratio_{precision}"] = results[f"hnm {precision}"]["docs_per_s"] / ref
        if f"{SAME_ALLOCATOR} {precision}" in results:
            summary[f"ratio_{precision}_same_allocator"] = (results[f"hnm {precision}"]["docs_per_s"]
                                                            / results[f"{SAME_ALLOCATOR} {precision}"]["docs_per_s"])
        for side in ("hnm", "sentence-transformers", SAME_ALLOCATOR):
            r = results.get(f"{side} {precision}")
            if r:
                print(f"{side + ' ' + precision:34s} {r['docs_per_s']:8.1f} {r['peak_rss_mb']:8.0f} "
                      f"{r['docs_per_s'] / ref:5.2f}x")
        print(f"  hnm {precision}: max |diff| to the reference {results[f'hnm {precision}']['max_abs_diff_vs_reference_same_precision']:.2e}, "
              f"min cosine to reference float32 {results[f'hnm {precision}']['min_cosine_vs_reference_float32']:.6f}")
    (OUT / "bench_encode.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
