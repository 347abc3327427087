"""Cross-fitting: alpha and the length of training chosen on every labelled query, for a user with too few of them
to spare a tuning split.

    tuned = cross_fit(Path("mined.jsonl"), Path("runs/cf"), "all-MiniLM-L6-v2", TrainConfig(), first_run,
                      queries, corpus, qrels, stage, folds=5)

Why. With a few dozen judged queries, the tenth that training holds out is 2 to 6 queries, and on so few the choice
of alpha (twostage.choose_alpha_kfold) keeps the first stage alone nearly always, whatever the re-ranker learned;
the kept checkpoint is picked on the same handful. Cross-fitting, as k-fold cross-validation does for model
selection, lets every labelled query serve as a tuning query once, scored by a model that never saw it:

1. k fold models: model f trains on the queries outside fold f (TrainConfig.folds and fold, seeded folds of whole
   queries) and checks itself on fold f at the end of each epoch, keeping its best checkpoint (train.py);
2. each fold's queries re-ranked by its own fold model: a re-ranked run of every labelled query, out of fold. Alpha
   is chosen on it as `hnm tune` chooses it (twostage.alpha_of: in folds, 0 unless the choice carries over);
3. the epochs: the median of the fold models' best epochs (rounded up), so the final model stops where the folds
   stopped improving;
4. the final model trains on every labelled query for that many epochs, nothing held out, and alpha is stored in
   its last checkpoint, for `rerank`, `evaluate` and `search` to read back.

The final model sees a quarter more queries than each fold model (with 5 folds) and its learning rate decays over
its own, shorter run, so the alpha chosen out of fold is, if anything, cautious for it. Cost: k + 1 trainings and the
labelled queries' first-stage lists re-ranked once. Every stage is cached under the output folder (fold<f>/, each
with done.json, out-of-fold.json, final/), so a rerun resumes where it stopped.

Not here: training (train.py), the choice of alpha (twostage.py).
"""

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Dict, List

import numpy as np

from hnm.config import FirstStageConfig, TrainConfig
from hnm.data import Qrels, atomic_write, read_jsonl
from hnm.metrics import Run
from hnm.pages import page_of, page_qrels
from hnm.reranker import CrossEncoder
from hnm.train import kept_checkpoint, train
from hnm.twostage import alpha_of, rerank_pages, store_alpha


def best_epoch(log: Path) -> int:
    """The epoch (counted from 1) of a run's best held-out check, from its log.jsonl; the last epoch when it kept
    none. Log lines: {"step": 5, "epoch": 0, "loss": ...} per step, {"step": 5, "eval": ..., "best": true} per check
    (train.py)."""
    lines = [r for _, r in read_jsonl(log)]
    epoch_of = {r["step"]: r["epoch"] for r in lines if "epoch" in r}
    best = [r["step"] for r in lines if r.get("best")]
    return epoch_of[best[-1] if best else max(epoch_of)] + 1


def final_epochs(best_epochs: List[int]) -> int:
    """The final model's epochs from the fold models' best: their median, rounded up. [2, 2, 3, 5, 2] -> 2,
    [1, 2] -> 2."""
    return int(math.ceil(np.median(best_epochs)))


def cross_fit(rows: Path, out: Path, start: str, cfg: TrainConfig, first: Run, queries: Dict[str, str],
              corpus: Dict[str, dict], qrels: Qrels, stage: FirstStageConfig, folds: int = 5,
              quiet: bool = False, say=print) -> dict:
    """Steps 1 to 4 of the module docstring on the mined `rows` of the labelled queries, whose first-stage lists
    (over rows of the corpus, as FirstStage.run gives them) are `first`. -> {"alpha", "epochs", "fold_best_epochs",
    "steps" (of the k + 1 trainings), "runs" (their folders), "checkpoint", ...alpha_of's keys}; the same dict is written to OUT/cross-fit.json. A training ended early by
    TrainConfig.stop_after returns {"stopped": step, "total_steps", "model": the folder's name}, and a rerun resumes
    it."""
    out = Path(out)
    done = out / "cross-fit.json"
    if done.exists():
        return json.loads(done.read_text())
    fold_epochs, pure, firsts = [], {}, {}
    for f in range(folds):
        folder = out / f"fold{f}"
        if not (folder / "done.json").exists():
            say(f"cross-fitting: fold model {f + 1} of {folds}")
            summary = train(rows, folder, start, replace(cfg, folds=folds, fold=f, eval_fraction=0.0),
                            resume=(folder / "last").exists(), quiet=quiet)
            if summary["steps"] < summary["total_steps"]:  # TrainConfig.stop_after: a rerun goes on from here
                return {"stopped": summary["steps"], "total_steps": summary["total_steps"], "model": folder.name}
            with atomic_write(folder / "done.json") as fh:
                json.dump({"best_epoch": best_epoch(folder / "log.jsonl")}, fh)
        fold_epochs.append(json.loads((folder / "done.json").read_text())["best_epoch"])
        scored = folder / "out-of-fold.json"  # its fold's lists re-ranked: {"first": run, "pure": run}, per page
        if not scored.exists():
            held = [q for q in json.loads((folder / "tuning_queries.json").read_text()) if q in first]
            runs = rerank_pages(CrossEncoder.from_checkpoint(kept_checkpoint(folder)), {q: first[q] for q in held},
                                {q: queries[q] for q in held}, corpus, precision=cfg.precision, quiet=quiet)
            with atomic_write(scored) as fh:
                json.dump(dict(zip(("first", "pure"), runs)), fh)
        runs = json.loads(scored.read_text())
        firsts.update(runs["first"])
        pure.update(runs["pure"])
    tuned = alpha_of(pure, firsts, page_qrels(qrels, page_of(corpus)), stage, folds)
    epochs = final_epochs(fold_epochs)
    final = out / "final"
    if not (final / "done.json").exists():
        say(f"cross-fitting: the final model on all {len(pure)} queries, {epochs} epoch{'s' * (epochs != 1)} (the "
            f"fold models' best: {', '.join(map(str, fold_epochs))}); alpha {tuned['alpha']:g} out of fold")
        summary = train(rows, final, start, replace(cfg, eval_fraction=0.0, folds=0, fold=0, epochs=epochs,
                                                    min_steps=0), resume=(final / "last").exists(), quiet=quiet)
        if summary["steps"] < summary["total_steps"]:
            return {"stopped": summary["steps"], "total_steps": summary["total_steps"], "model": final.name}
        with atomic_write(final / "done.json") as fh:
            json.dump({"epochs": epochs}, fh)
    checkpoint = kept_checkpoint(final)
    about = {k: v for k, v in tuned.items() if k not in ("alpha", "first_stage", "stage")}
    store_alpha(checkpoint, tuned["alpha"], stage, {**about, "cross_fit": folds})
    runs = [out / f"fold{f}" for f in range(folds)] + [final]
    steps = sum(json.loads((r / "last" / "state.json").read_text())["step"] for r in runs)
    result = {**tuned, "cross_fit": folds, "epochs": epochs, "fold_best_epochs": fold_epochs, "steps": steps,
              "runs": [str(r) for r in runs], "checkpoint": str(checkpoint)}
    with atomic_write(done) as fh:
        json.dump(result, fh, indent=1)
    return result
