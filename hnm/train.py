"""The training loop of the cross-encoder, by hand: mined rows in, a re-ranker checkpoint out, exactly resumable.

    summary = train(Path("mined.jsonl"), Path("runs/r1"), start="all-MiniLM-L6-v2", cfg=TrainConfig())

Data. Each mined row (miner.py) gives examples (query, positive, n negatives): every positive with every group of
n consecutive negatives. A share `eval_fraction` of the rows (whole queries, chosen by the seed) is held out.
Rows without a positive or without a negative are skipped and reported with their file and line.

A step takes `batch_size` examples per micro-batch, `grad_accum` micro-batches, on each of the W processes: G =
batch_size x grad_accum x W examples. The order is a permutation per epoch from np.random.default_rng([seed,
epoch]); step s of an epoch takes its examples s*G .. s*G + G - 1 (an incomplete last step is dropped), micro-batch
a of process r the slice starting at (a*W + r) * batch_size. So the order is known from (seed, step) alone, and W
processes with batch b see the same examples per step as one with batch W*b (each rank reads its own shard).

The loop: the loss of losses.py on the scores (batch, 1 + n) (with `residual`, on the scores plus `residual` x the
teacher's: the model learns what the teacher misses), plus `distill` x MarginMSE against the rows' own ensemble
scores (the teacher, scaled by `teacher_scale`) when asked; AdamW (Loshchilov & Hutter 2019) with no weight decay
on biases and LayerNorm; a linear warm-up then linear decay of the learning rate (`linear_schedule`); gradients
clipped to a total norm; optional bfloat16 autocast; DistributedDataParallel under torchrun (gloo on CPU, nccl on
GPU), gradients averaged, no all-reduce inside accumulation. At the end of each epoch (and every `eval_every`
steps if set) the held-out rows' positives and negatives are re-ranked and MRR@10 / nDCG@10 computed (metrics.py);
the best model so far is kept in OUT/best. The held-out query ids go to OUT/tuning_queries.json: they are the
tuning split on which twostage.py later picks the interpolation weight.

Files under OUT: log.jsonl (per step: loss, lr, grad norm, pairs/s; per evaluation its metrics), last/ (the latest
checkpoint: the model files plus optimizer.safetensors, rng.safetensors and state.json), best/. A checkpoint is
written to a temporary folder and swapped in, so a kill leaves the previous one whole (as `last` or, killed between
the two renames of the swap, as `last.old`, which resume takes). `resume=True` restores the
model, AdamW's moments, the step (hence schedule and data order) and each process's torch random state (stored as
uint8 tensors in safetensors; no pickle anywhere) and continues with the same losses an uninterrupted run gives.
A non-finite loss or gradient norm stops the run before the optimiser step, naming the step, the micro-batch and
the rows in it; the last checkpoint stays as it was. A checkpoint is written only when every weight is finite (a
huge learning rate can make them infinite while the loss is still finite), so the one named is good.

Not here: the model (reranker.py), the losses (losses.py), first-stage retrieval and test-set evaluation (twostage.py).
"""

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes
from torch.nn.parallel import DistributedDataParallel

from hnm.config import TRAIN_FIELDS_BEFORE, TrainConfig
from hnm.data import atomic_write, read_jsonl
from hnm.distributed import Processes
from hnm.errors import HnmError, InputError
from hnm.embed import resolve_precision
from hnm.feed import Inline, Prefetch, TokenStore, bucket_order
from hnm.losses import listnet, loss_function, margin_mse
from hnm.metrics import evaluate
from hnm.progress import Progress
from hnm.reranker import CrossEncoder
from hnm.tokenize import Batch
from hnm.weights import read_safetensors, sha256_of

BUCKET_WINDOW = 64  # steps whose examples are sorted by length together by the "bucketed" feed
# the rows' fields holding each teacher's scores of the positives and the negatives
TEACHER_FIELDS = {"ensemble": ("positive_scores", "negative_scores"),
                  "first_stage": ("positive_first_stage_scores", "negative_first_stage_scores")}




@dataclass(frozen=True)
class Example:
    query: str
    positive: str
    negatives: Tuple[str, ...]
    line: int  # of its row in the rows file, to name it in errors
    teacher: Optional[Tuple[float, ...]] = None  # the mined rows' scores of the positive and the negatives
    grades: Optional[Tuple[float, ...]] = None  # the positive's judgment and the negatives' 0, for a graded loss


# ------------------------------------------------------------------------------------------------------ data


def read_rows(path: Path, negatives: int, teacher: bool = False,
              fields: Tuple[str, str] = TEACHER_FIELDS["ensemble"]) -> Tuple[List[dict], List[str]]:
    """Mined rows -> (usable rows, each with its "line"; one message per skipped row, "FILE:LINE: why").

    With `teacher`, a row also needs a score for every positive and negative in `fields` (random negatives have
    none in the ensemble's).
    A malformed row (a missing field, a list of the wrong type or length) raises InputError naming its line.
    """
    rows, skipped = [], []
    for line, row in read_jsonl(path, required=("query_id", "query")):
        for field in ("positive_ids", "positives", "negative_ids", "negatives"):
            value = row.get(field)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InputError(f"{path}:{line}: field {field!r} must be a list of strings (a row of hnm mine)")
        for ids, texts in (("positive_ids", "positives"), ("negative_ids", "negatives")):
            if len(row[ids]) != len(row[texts]):
                raise InputError(f"{path}:{line}: {len(row[ids])} {ids} but {len(row[texts])} {texts}")
        for ids, texts in (("positive_grades", "positives"), ("candidate_ids", "candidates")):  # optional fields
            if ids in row and len(row[ids]) != len(row.get(texts, ())):
                raise InputError(f"{path}:{line}: {len(row.get(ids, ()))} {ids} but {len(row.get(texts, ()))} {texts}")
        if not row["positives"]:
            skipped.append(f"{path}:{line}: query {row['query_id']!r} has no positive")
        elif not row["negatives"]:
            skipped.append(f"{path}:{line}: query {row['query_id']!r} has no negatives")
        elif teacher and not _has_scores(row, fields):
            skipped.append(f"{path}:{line}: query {row['query_id']!r} lacks the scores distillation needs")
        else:
            rows.append({**row, "line": line})
    return rows, skipped


def _has_scores(row: dict, fields: Tuple[str, str]) -> bool:
    return all(isinstance(row.get(f), list) and len(row[f]) == len(row[t]) and
               all(isinstance(v, (int, float)) for v in row[f])
               for f, t in zip(fields, ("positives", "negatives")))


def split_rows(rows: List[dict], fraction: float, seed: int, folds: int = 0,
               fold: int = 0) -> Tuple[List[dict], List[dict]]:
    """(training rows, held-out rows): round(fraction x rows) whole queries, chosen by the seed, in file order; with
    folds k > 1, the queries at positions fold, fold + k, ... of the seed's permutation (k disjoint folds covering
    every row: 5 rows, k 2 -> folds of 3 and 2)."""
    order = np.random.default_rng(seed).permutation(len(rows))
    held = set((order[fold::folds] if folds > 1 else order[:round(fraction * len(rows))]).tolist())
    return ([r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held])


def examples_of(rows: List[dict], negatives: int, teacher: bool = False, graded: bool = False,
                fields: Tuple[str, str] = TEACHER_FIELDS["ensemble"]) -> List[Example]:
    """Every positive of a row with every group of n consecutive negatives (a leftover group smaller than n unused);
    a row with fewer than n negatives (a false-negative guard can leave one short) makes one group of its negatives
    repeated in turn. With `teacher`, each example carries the rows' scores (`fields`) of its positive and negatives;
    with `graded`, the positive's grade (the row's positive_grades, 1 where the row has none) and the negatives' 0.

    A row with positives [p1, p2] and negatives [a, b, c], n = 1 -> (p1, a), (p1, b), (p1, c), (p2, a), ...;
    negatives [a, b], n = 3 -> (p1, (a, b, a)), (p2, (a, b, a)).
    """
    out = []
    for row in rows:
        m = len(row["negatives"])
        groups = ([list(range(j, j + negatives)) for j in range(0, m - negatives + 1, negatives)] if m >= negatives
                  else [[j % m for j in range(negatives)]])
        for i, p in enumerate(row["positives"]):
            for g in groups:
                scores = ((row[fields[0]][i], *(row[fields[1]][j] for j in g)) if teacher else None)
                grades = ((float(row.get("positive_grades", [1] * (i + 1))[i]), *(0.0 for _ in g)) if graded
                          else None)
                out.append(Example(row["query"], p, tuple(row["negatives"][j] for j in g), row["line"], scores,
                                   grades))
    return out


def epoch_order(n_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The seeded order of the examples in `epoch`: the same on every process and after a resume."""
    return np.random.default_rng([seed, epoch]).permutation(n_examples)


def linear_schedule(step: int, warmup_steps: int, total_steps: int) -> float:
    """The learning-rate multiplier at 0-based step `step`: step / warmup_steps while warming up, then a linear
    decay (total - step) / (total - warmup) (transformers' get_linear_schedule_with_warmup, the same numbers).
    warmup 2, total 6 -> 0, 0.5, 1, 0.75, 0.5, 0.25."""
    if step < warmup_steps:
        return step / warmup_steps
    return (total_steps - step) / (total_steps - warmup_steps)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> List[dict]:
    """AdamW groups: weight decay on matrices and embeddings, none on biases and LayerNorm (BERT's recipe)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith(".bias") or ".LayerNorm." in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------------- checkpoints


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace the folder `final` by `tmp`; a crash at any point leaves `final` or `final.old` whole."""
    old = final.with_name(final.name + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _recover(final: Path) -> None:
    """After a crash between the two renames of _swap_in, `final` is gone and `final.old` whole: put it back."""
    old = final.with_name(final.name + ".old")
    if not final.exists() and old.is_dir():
        os.replace(old, final)


def _non_finite(model: torch.nn.Module) -> List[str]:
    """Names of the model's tensors holding a NaN or an infinity."""
    return [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]


def kept_checkpoint(folder: Path) -> Path:
    """The checkpoint a training run keeps for use: its best held-out one, or its last without one."""
    return Path(folder) / ("best" if (Path(folder) / "best").exists() else "last")


def save_checkpoint(folder: Path, model: CrossEncoder, optimizer: torch.optim.Optimizer, rng: List[torch.Tensor],
                    state: dict) -> None:
    """Model files, AdamW's state by parameter name, each process's torch RNG state, and state.json (scalars)."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    names = {id(p): n for n, p in model.named_parameters()}
    tensors = {f"{names[id(p)]}.{k}": v.detach().cpu().contiguous()
               for p, s in optimizer.state.items() for k, v in s.items()}
    with atomic_write(tmp / "optimizer.safetensors", "wb") as f:
        f.write(safetensors_bytes(tensors))
    with atomic_write(tmp / "rng.safetensors", "wb") as f:
        f.write(safetensors_bytes({f"torch.rank{r}": t for r, t in enumerate(rng)}))
    with atomic_write(tmp / "state.json") as f:
        json.dump(state, f, indent=1)
    _swap_in(tmp, folder)


def load_optimizer_state(folder: Path, model: CrossEncoder, optimizer: torch.optim.Optimizer) -> None:
    """Put the moments and step counts that save_checkpoint wrote back into `optimizer`."""
    tensors = read_safetensors(folder / "optimizer.safetensors")
    for name, p in model.named_parameters():
        state = {k: tensors[f"{name}.{k}"] for k in ("step", "exp_avg", "exp_avg_sq") if f"{name}.{k}" in tensors}
        if state:
            optimizer.state[p] = {k: v.to(p.device) for k, v in state.items()}  # fused AdamW: step too


def _rng_state(device: torch.device) -> torch.Tensor:
    """This process's torch random state as one uint8 vector: the CPU generator's, then the GPU's if used."""
    parts = [torch.get_rng_state()] + ([torch.cuda.get_rng_state(device)] if device.type == "cuda" else [])
    return torch.cat(parts)


def _set_rng_state(state: torch.Tensor, device: torch.device) -> None:
    cpu_size = torch.get_rng_state().numel()
    torch.set_rng_state(state[:cpu_size].clone())
    if device.type == "cuda":
        torch.cuda.set_rng_state(state[cpu_size:].clone(), device)


# ---------------------------------------------------------------------------------------------------- the loop


def held_out_metrics(model: CrossEncoder, rows: List[dict], precision: str,
                     candidates: bool = False) -> Dict[str, float]:
    """Re-rank each held-out row's positives and negatives, or with `candidates` the first stage's top k that the
    row carries (firststage.annotate_rows: the list the model will face; a positive outside it counts as missed):
    {"mrr@10", "ndcg@10"} (metrics.py)."""
    queries, docs, keys = [], [], []
    for row in rows:
        ids, texts = ((row["candidate_ids"], row["candidates"]) if candidates else
                      (row["positive_ids"] + row["negative_ids"], row["positives"] + row["negatives"]))
        for doc_id, text in zip(ids, texts):
            queries.append(row["query"])
            docs.append(text)
            keys.append((row["query_id"], doc_id))
    scores = model.score(queries, docs, precision=precision)
    run: Dict[str, Dict[str, float]] = {}
    for (qid, doc_id), s in zip(keys, scores.tolist()):
        run.setdefault(qid, {})[doc_id] = s
    qrels = {row["query_id"]: {d: 1 for d in row["positive_ids"]} for row in rows}
    result = evaluate(run, qrels, ks=(10,), metrics=("mrr", "ndcg"))
    return {"mrr@10": result["mrr@10"], "ndcg@10": result["ndcg@10"]}


def _truncate_log(path: Path, step: int) -> None:
    """Keep the log records of steps up to `step` (those after a checkpoint are done again on resume)."""
    if path.exists():
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line)["step"] <= step]
        with atomic_write(path) as f:
            f.writelines(line + "\n" for line in kept)


def _start_model(start: str, cfg: TrainConfig, quiet: bool) -> CrossEncoder:
    """A checkpoint folder, or an encoder of weights.lock with a new head."""
    if Path(start).is_dir():
        return CrossEncoder.from_checkpoint(Path(start))
    return CrossEncoder.from_encoder(start, head=cfg.head, seed=cfg.seed, quiet=quiet)


def train(rows_path: Path, output: Path, start: str, cfg: TrainConfig = TrainConfig(), resume: bool = False,
          quiet: bool = False, device: Optional[str] = None) -> dict:
    """Train a re-ranker on mined rows from `start` into `output` (see the module docstring) on `device`
    (distributed.py's names; None: the command's choice, else a GPU when there is one); returns a summary: {"steps", "last_loss", "best", "seconds", "pairs_per_s",
    "skipped_rows"}."""
    return _train(Path(rows_path), Path(output), start, cfg, resume, quiet, Processes.start(device))


def _train(rows_path: Path, output: Path, start: str, cfg: TrainConfig, resume: bool, quiet: bool,
           procs: Processes) -> dict:
    main = procs.rank == 0
    examples, eval_rows, skipped = _training_data(rows_path, cfg, main and not quiet)
    per_step = cfg.batch_size * cfg.grad_accum * procs.world  # G, examples per optimiser step
    steps_per_epoch = len(examples) // per_step
    if steps_per_epoch == 0:
        raise HnmError(f"{rows_path}: {len(examples)} training examples, fewer than the {per_step} of one step "
                       f"(batch {cfg.batch_size} x accumulation {cfg.grad_accum} x {procs.world} processes)")
    total = cfg.total_steps(steps_per_epoch)
    warmup_steps = max(1, math.ceil(cfg.warmup * total)) if cfg.warmup > 0 else 0
    data = {"rows_sha256": sha256_of(rows_path), "examples": len(examples), "eval_rows": len(eval_rows)}

    last, best_dir, log_path = output / "last", output / "best", output / "log.jsonl"
    state = {"step": 0, "best": None, "world": procs.world, "config": asdict(cfg), "data": data}
    if resume:
        _recover(last)
        if not (last / "state.json").is_file():
            raise FileNotFoundError(f"{last / 'state.json'}: no checkpoint to resume; run without --resume")
        state = json.loads((last / "state.json").read_text(encoding="utf-8"))
        _check_resumable(state, cfg, data, procs.world, last)
        state["config"] = asdict(cfg)  # stop_after may differ
        model = CrossEncoder.from_checkpoint(last)
    else:
        model = _start_model(start, cfg, quiet)
    if cfg.max_length is not None:
        model.set_max_length(cfg.max_length)
    model.to(procs.device).train()
    # fused: one kernel over all tensors instead of a loop per parameter, 8x faster on CPU for MiniLM, same update
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, fused=True)
    if resume:
        load_optimizer_state(last, model, optimizer)
        _set_rng_state(read_safetensors(last / "rng.safetensors")[f"torch.rank{procs.rank}"], procs.device)
        if main:
            _truncate_log(log_path, state["step"])
    else:
        torch.manual_seed(cfg.seed + procs.rank)  # dropout; each process draws its own masks
        if main:
            output.mkdir(parents=True, exist_ok=True)
            log_path.unlink(missing_ok=True)
            with atomic_write(output / "tuning_queries.json") as f:  # the held-out queries, to tune on later
                json.dump([r["query_id"] for r in eval_rows], f)
    net = DistributedDataParallel(model) if procs.world > 1 else model
    loss_fn = None if cfg.loss in ("margin_mse", "listnet") else loss_function(cfg.loss)
    precision = resolve_precision(cfg.precision, procs.device)
    autocast = torch.autocast(procs.device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")

    def checkpoint(step: int) -> None:
        bad = _non_finite(model)  # the same on every process: DDP keeps the weights equal
        if bad:
            raise HnmError(f"training stopped: after step {step}, {len(bad)} of {len(model.state_dict())} weight "
                           f"tensors are not finite (first {bad[0]}), though the loss was (lower --lr); "
                           + _last_good(last))
        rng = procs.gather_bytes(_rng_state(procs.device))
        if main:
            save_checkpoint(last, model, optimizer, rng, {**state, "step": step})
        procs.barrier()

    start_step, started, pairs_done = state["step"], time.perf_counter(), 0
    stop = min(total, cfg.stop_after) if cfg.stop_after is not None else total
    log = open(log_path, "a", encoding="utf-8") if main else None
    loss_value = float("nan")
    with contextlib.ExitStack() as stack:
        if log:
            stack.enter_context(log)
        bar = stack.enter_context(Progress(stop - start_step, desc="train", quiet=quiet or not main, unit=" steps"))
        feed = _feed(model, examples, cfg, procs, steps_per_epoch, range(start_step, stop))
        stack.callback(feed.close)
        for step in range(start_step, stop):
            t0 = time.perf_counter()
            micro, host_seconds = next(feed)  # this process's micro-batches: [(examples, their Batch)]
            epoch = step // steps_per_epoch
            lr = cfg.lr * linear_schedule(step, warmup_steps, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            losses, bad = [], None
            for a, (batch, tokens) in enumerate(micro):
                last_micro = a == cfg.grad_accum - 1 or procs.world == 1  # DDP all-reduces on the last only
                with (contextlib.nullcontext() if last_micro else net.no_sync()):
                    losses.append(_micro_step(net, model, batch, loss_fn, cfg, autocast, procs.device, tokens))
                if bad is None and not math.isfinite(losses[-1]):
                    bad = (a, batch)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
            # one all-reduce: the mean loss, and whether any process met a non-finite loss or gradient norm
            finite = bad is None and math.isfinite(grad_norm)
            loss_value, any_bad = procs.mean(torch.tensor([sum(losses) / cfg.grad_accum if finite else 0.0,
                                                           0.0 if finite else 1.0], dtype=torch.float64)).tolist()
            if any_bad > 0:
                raise HnmError(_non_finite_message(step, bad, grad_norm, procs.rank, rows_path, last))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - t0
            pairs = per_step * (1 + cfg.negatives)
            pairs_done += pairs
            if main:
                log.write(json.dumps({"step": step + 1, "epoch": epoch, "loss": loss_value, "lr": lr,
                                      "grad_norm": grad_norm, "pairs_per_s": round(pairs / seconds, 3),
                                      "seconds": round(seconds, 4), "host_seconds": round(host_seconds, 4)}) + "\n")
                log.flush()
            done = step + 1
            epoch_end = cfg.eval_each_epoch and done % steps_per_epoch == 0
            if eval_rows and (done == total or epoch_end or (cfg.eval_every and done % cfg.eval_every == 0)):
                state["best"] = _evaluate_and_keep(model, eval_rows, precision, state["best"], done, best_dir, log,
                                                   main, cfg.held_out == "candidates")
                procs.barrier()
            if done % cfg.save_every == 0 or done == stop:
                checkpoint(done)
            bar.update(1)
    seconds = time.perf_counter() - started
    return {"steps": stop, "total_steps": total, "last_loss": loss_value, "best": state["best"], "precision": precision,
            "seconds": seconds, "pairs_per_s": pairs_done / seconds if seconds else 0.0,
            "skipped_rows": skipped, "examples": len(examples), "eval_rows": len(eval_rows)}


def _training_data(rows_path: Path, cfg: TrainConfig, say: bool) -> Tuple[List[Example], List[dict], List[str]]:
    """The rows file -> (training examples, held-out rows, one message per skipped row, said when `say`)."""
    rows, skipped = read_rows(rows_path, cfg.negatives, cfg.teacher, TEACHER_FIELDS[cfg.teacher_scores])
    if say and skipped:
        shown = "\n  ".join(skipped[:10]) + (f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else "")
        print(f"skipped {len(skipped)} rows:\n  {shown}", flush=True)
    train_rows, eval_rows = split_rows(rows, cfg.eval_fraction, cfg.seed, cfg.folds, cfg.fold)
    if cfg.held_out == "candidates" and any("candidate_ids" not in r for r in eval_rows):
        line = next(r["line"] for r in eval_rows if "candidate_ids" not in r)
        raise InputError(f"{rows_path}:{line}: the held-out check re-ranks the first stage's candidates, and this row "
                         f"has none; add them with firststage.annotate_rows, or check on the rows (held_out rows)")
    examples = examples_of(train_rows, cfg.negatives, cfg.teacher, cfg.loss == "listnet",
                           TEACHER_FIELDS[cfg.teacher_scores])
    return examples, eval_rows, skipped


def _pairs(batch: List[Example], negatives: int) -> Tuple[List[str], List[str]]:
    """The (query, document) pairs of examples, each query with its positive then its negatives."""
    return ([e.query for e in batch for _ in range(1 + negatives)],
            [d for e in batch for d in (e.positive, *e.negatives)])


def _feed(model: CrossEncoder, examples: List[Example], cfg: TrainConfig, procs: Processes, steps_per_epoch: int,
          steps: range):
    """Each step's micro-batches for this process, [(examples, Batch)], in step order: made in the loop ("text")
    or ahead on a thread from tokens made once (feed.py). Which examples: step s of an epoch takes its G examples
    s*G .. s*G + G - 1 of the epoch's order, micro-batch a of process r the slice at (a*W + r) * batch_size; the
    "bucketed" feed first regroups the order by length (feed.bucket_order), seeded by (seed, epoch)."""
    per_step = cfg.batch_size * cfg.grad_accum * procs.world
    store = None
    if cfg.feed != "text":
        store = TokenStore(model.tokenizer, (t for e in examples for t in (e.query, e.positive, *e.negatives)))
    lengths = None
    if cfg.feed == "bucketed":  # an example's length: its longest pair
        q, d = _pairs(examples, cfg.negatives)
        lengths = store.pair_lengths(q, d).reshape(len(examples), 1 + cfg.negatives).max(axis=1)
    orders = {}
    pin = procs.device.type == "cuda"

    def make(step: int) -> List[Tuple[List[Example], Batch]]:
        epoch, within = divmod(step, steps_per_epoch)
        if epoch not in orders:
            orders.clear()
            orders[epoch] = epoch_order(len(examples), cfg.seed, epoch)
            if lengths is not None:
                used = orders[epoch][:steps_per_epoch * per_step]
                orders[epoch] = bucket_order(used, lengths, per_step, BUCKET_WINDOW,
                                             np.random.default_rng([cfg.seed, epoch, 1]))
        out = []
        for a in range(cfg.grad_accum):
            first = within * per_step + (a * procs.world + procs.rank) * cfg.batch_size
            batch = [examples[i] for i in orders[epoch][first:first + cfg.batch_size]]
            q, d = _pairs(batch, cfg.negatives)
            out.append((batch, model.tokenize(q, d) if store is None else store.pairs(q, d, pin)))
        return out
    return Inline(make, steps) if store is None else Prefetch(make, steps)


def _micro_step(net: torch.nn.Module, model: CrossEncoder, batch: List[Example], loss_fn, cfg: TrainConfig,
                autocast, device: torch.device, tokens: Optional[Batch] = None) -> float:
    """Forward and backward of one micro-batch (its pairs tokenised here unless `tokens` holds them); returns its
    loss (the gradient is scaled by 1 / grad_accum)."""
    b = tokens if tokens is not None else model.tokenize(*_pairs(batch, cfg.negatives))
    with autocast:
        ids, mask, types = (t.to(device, non_blocking=True) for t in (b.input_ids, b.attention_mask, b.token_type_ids))
        logits = net(ids, mask, types)  # (B(1+n),)
    scores = logits.float().view(len(batch), 1 + cfg.negatives)  # (B, 1 + n)
    teacher = (torch.tensor([e.teacher for e in batch], dtype=torch.float32, device=scores.device) if cfg.teacher
               else None)  # (B, 1 + n)
    ranked = scores + cfg.residual * teacher if cfg.residual > 0 else scores  # what the ranking loss sees
    loss = loss_fn(ranked, cfg.margin) if loss_fn is not None else scores.new_zeros(())
    if cfg.loss == "listnet":
        loss = listnet(ranked, torch.tensor([e.grades for e in batch], device=scores.device))  # grades (B, 1 + n)
    alone = cfg.loss == "margin_mse"
    if alone or cfg.distill > 0:
        loss = loss + (1.0 if alone else cfg.distill) * margin_mse(scores, cfg.teacher_scale * teacher)
    (loss / cfg.grad_accum).backward()
    return float(loss.detach())


def _evaluate_and_keep(model: CrossEncoder, eval_rows: List[dict], precision: str, best: Optional[dict],
                       step: int, best_dir: Path, log, main: bool, candidates: bool = False) -> Optional[dict]:
    """Score the held-out rows on the main process; keep the model in best_dir when MRR@10 improves."""
    if not main:
        return best
    metrics = held_out_metrics(model, eval_rows, precision, candidates)
    improved = (best is None or metrics["mrr@10"] > best["mrr@10"]) and not _non_finite(model)
    if improved:
        tmp = best_dir.with_name(best_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save(tmp)
        _swap_in(tmp, best_dir)
        best = {"step": step, **metrics}
    log.write(json.dumps({"step": step, "eval": metrics, "best": improved}) + "\n")
    log.flush()
    return best


def _check_resumable(state: dict, cfg: TrainConfig, data: dict, world: int, last: Path) -> None:
    """A resumed run must train the same way on the same rows with as many processes, or its losses would differ."""
    stored = {k: v for k, v in state["config"].items() if k != "stop_after"}
    given = {k: v for k, v in asdict(cfg).items() if k != "stop_after"}
    # a field added since the checkpoint was made counts at its default, or at the value runs had before it
    defaults = {**asdict(TrainConfig()), **TRAIN_FIELDS_BEFORE}
    stored = {**defaults, **stored}
    for config in (stored, given):  # "text" and "tokens" feed the same batches: only bucketing changes the run
        config["feed"] = "bucketed" if config.get("feed") == "bucketed" else "text or tokens"
    changed = [f"{k}: {stored.get(k)!r} -> {v!r}" for k, v in given.items() if stored.get(k) != v]
    if changed:
        raise HnmError(f"{last}: the checkpoint was trained with other settings ({'; '.join(changed)}); "
                       f"resume with the same flags")
    if state["data"] != data:
        raise HnmError(f"{last}: the rows file differs from the one the checkpoint was trained on")
    if state["world"] != world:
        raise HnmError(f"{last}: trained with {state['world']} processes, resumed with {world}; use as many")


def _last_good(last: Path) -> str:
    """Names the last checkpoint for an error message, once its weights are checked finite."""
    if not (last / "model.safetensors").is_file():
        return "no checkpoint had been written yet"
    tensors = read_safetensors(last / "model.safetensors")
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        return f"the last checkpoint {last} holds non-finite weights too ({len(bad)} of {len(tensors)} tensors)"
    step = json.loads((last / "state.json").read_text(encoding="utf-8"))["step"]
    return f"the last good checkpoint is {last} (step {step})"


def _non_finite_message(step: int, bad: Optional[Tuple[int, List[Example]]], grad_norm: float, rank: int,
                        rows_path: Path, last: Path) -> str:
    where = _last_good(last)
    if bad is None:
        what = (f"gradient norm {grad_norm} at step {step + 1}" if not math.isfinite(grad_norm)
                else f"non-finite loss on another process at step {step + 1}")
        return f"training stopped: {what}; {where}"
    a, batch = bad
    lines = ", ".join(str(e.line) for e in batch)
    return (f"training stopped: the loss is not finite at step {step + 1}, micro-batch {a} on process {rank} "
            f"(rows at lines {lines} of {rows_path}); {where}")
