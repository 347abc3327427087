"""The training loop: losses and schedule by hand, the golden run against a transformers reference loop (fixture),
exact resume, DDP and gradient accumulation against one big batch, a NaN stop, bad rows named by line, and a tiny
model that must learn to rank held-out rows."""

import contextlib
import hashlib
import json
import math
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import FIXTURES, REPO, require_model
from hnm.encoder import EncoderConfig
from hnm.errors import HnmError, InputError
from hnm.losses import (binary_cross_entropy, listnet, loss_function, margin_mse, softmax_cross_entropy,
                        triplet_margin)
from hnm.reranker import CrossEncoder
from hnm.train import (TrainConfig, epoch_order, examples_of, held_out_metrics, linear_schedule, parameter_groups,
                       read_rows, split_rows, train)

GOLDEN = json.loads((FIXTURES / "train_golden.json").read_text())
ROWS = FIXTURES / "train_rows.jsonl"
CFG = TrainConfig(**GOLDEN["train"])
STD = 0.2  # the fixture's initialiser spread (make_reranker_fixture.STD)
TIMINGS = ("pairs_per_s", "seconds", "host_seconds")  # the log's fields that differ from run to run


def make_start(folder: Path, dropout: float = 0.1) -> Path:
    """The fixture's tiny random BERT re-ranker (2 layers, hidden 32), saved as a start checkpoint."""
    cfg = EncoderConfig(**{**GOLDEN["encoder"], "hidden_dropout_prob": dropout,
                           "attention_probs_dropout_prob": dropout})
    tokenizer = require_model("all-MiniLM-L6-v2") / "tokenizer.json"
    CrossEncoder.random(cfg, tokenizer, head="pooler", max_length=GOLDEN["max_length"], seed=0, std=STD).save(folder)
    return folder


def log_of(folder: Path) -> list:
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


def losses_of(folder: Path) -> list:
    return [r["loss"] for r in log_of(folder) if "loss" in r]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models run on one thread


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """One uninterrupted 20-step run of the golden configuration: (start checkpoint, output folder)."""
    tmp = tmp_path_factory.mktemp("golden")
    start = make_start(tmp / "start")
    train(ROWS, tmp / "run", str(start), CFG, quiet=True)
    return start, tmp / "run"


# ------------------------------------------------------------------------------------------- by hand


def test_losses_by_hand():
    scores = torch.tensor([[2.0, 0.5], [0.0, 1.0]])  # (B=2, 1 + n=1): positive, negative
    # max(0, 1 - 2 + 0.5) = 0 and max(0, 1 - 0 + 1) = 2 -> mean 1
    assert triplet_margin(scores, margin=1.0).item() == pytest.approx(1.0)
    assert triplet_margin(scores, margin=0.5).item() == pytest.approx(0.75)  # (0 + 1.5) / 2
    sig = torch.sigmoid(scores)
    bce = -(torch.log(sig[:, 0]).sum() + torch.log(1 - sig[:, 1]).sum()) / 4
    assert binary_cross_entropy(scores, 1.0).item() == pytest.approx(bce.item(), rel=1e-6)
    three = torch.tensor([[1.0, 0.0, 0.0]])  # one positive, two negatives: -log(e / (e + 2))
    assert softmax_cross_entropy(three, 1.0).item() == pytest.approx(-math.log(math.e / (math.e + 2)))
    assert triplet_margin(three, 1.0).item() == pytest.approx(0.0)  # both negatives exactly one margin below
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        loss_function("hinge")


def test_schedule_and_parameter_groups():
    assert [linear_schedule(s, 2, 6) for s in range(6)] == [0, 0.5, 1, 0.75, 0.5, 0.25]
    model = CrossEncoder.random(EncoderConfig(**GOLDEN["encoder"]), require_model("all-MiniLM-L6-v2") /
                                "tokenizer.json", max_length=16)
    decay, no_decay = parameter_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(names[id(p)].endswith(".bias") or ".LayerNorm." in names[id(p)] for p in no_decay["params"])
    assert {names[id(p)] for p in decay["params"]} >= {"classifier.weight", "bert.embeddings.word_embeddings.weight"}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_examples_and_data_order():
    rows = [{"query": "q", "positives": ["p1", "p2"], "negatives": ["a", "b", "c"], "line": 7}]
    assert [(e.positive, e.negatives) for e in examples_of(rows, 1)] == [
        ("p1", ("a",)), ("p1", ("b",)), ("p1", ("c",)), ("p2", ("a",)), ("p2", ("b",)), ("p2", ("c",))]
    assert [e.negatives for e in examples_of(rows, 2)] == [("a", "b"), ("a", "b")]  # c is left over
    assert [e.negatives for e in examples_of(rows, 5)] == [("a", "b", "c", "a", "b")] * 2  # too few: repeated
    assert epoch_order(10, 0, 1).tolist() == epoch_order(10, 0, 1).tolist() != epoch_order(10, 0, 2).tolist()


# ------------------------------------------------------------------------------------------ the golden run


def test_golden_run_follows_the_transformers_reference_loop(golden):
    start, run = golden
    # the start model is the one the fixture script trained transformers' BertForSequenceClassification from
    assert hashlib.sha256((start / "model.safetensors").read_bytes()).hexdigest() == GOLDEN["start_sha256"]
    ours, reference = losses_of(run), GOLDEN["reference_losses"]
    assert len(ours) == len(reference) == 20
    assert max(reference) - min(reference) > 0.3  # the losses move, so agreement is not a coincidence
    # dropout is on in both; the masks agree because both draw them in the same order from torch's generator.
    # float32 with other kernels over 20 steps: measured 5e-7 at most.
    assert max(abs(a - b) for a, b in zip(ours, reference)) < 1e-5
    records = log_of(run)
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 21))
    assert all(r["pairs_per_s"] > 0 and r["grad_norm"] > 0 for r in steps)
    assert steps[0]["lr"] == 0.0 and steps[2]["lr"] == pytest.approx(CFG.lr)  # warm-up of 2 steps
    evals = [r for r in records if "eval" in r]
    assert [r["step"] for r in evals] == [10, 20] and evals[0]["best"]
    best = json.loads((run / "last" / "state.json").read_text())["best"]
    assert best["step"] in (10, 20) and (run / "best" / "model.safetensors").is_file()


def test_resume_gives_the_uninterrupted_log(golden, tmp_path):
    start, whole = golden
    cut = replace(CFG, stop_after=7)  # between two checkpoints (every 10): the stop itself checkpoints
    first = train(ROWS, tmp_path, str(start), cut, quiet=True)
    assert first["steps"] == 7 and json.loads((tmp_path / "last" / "state.json").read_text())["step"] == 7
    with (tmp_path / "log.jsonl").open("a") as f:  # a record the killed process wrote after its checkpoint
        f.write(json.dumps({"step": 8, "loss": 99.0}) + "\n")
    train(ROWS, tmp_path, str(start), CFG, resume=True, quiet=True)
    drop_speed = [{k: v for k, v in r.items() if k not in TIMINGS} for r in log_of(tmp_path)]
    expected = [{k: v for k, v in r.items() if k not in TIMINGS} for r in log_of(whole)]
    assert drop_speed == expected  # losses, learning rates, gradient norms, evaluations: bit for bit
    a, b = load_file(str(tmp_path / "last" / "model.safetensors")), load_file(str(whole / "last" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_finds_a_whole_last_old_after_a_crash_between_the_renames(golden, tmp_path):
    start, whole = golden
    train(ROWS, tmp_path, str(start), replace(CFG, stop_after=10), quiet=True)
    os.replace(tmp_path / "last", tmp_path / "last.old")  # what a crash between _swap_in's renames leaves
    train(ROWS, tmp_path, str(start), CFG, resume=True, quiet=True)
    assert not (tmp_path / "last.old").exists()
    assert losses_of(tmp_path) == losses_of(whole)
    a, b = load_file(str(tmp_path / "last" / "model.safetensors")), load_file(str(whole / "last" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_weights_made_infinite_by_a_huge_lr_are_never_checkpointed(golden, tmp_path):
    start, _ = golden
    train(ROWS, tmp_path, str(start), replace(CFG, stop_after=2, save_every=2), quiet=True)
    # a new run from that checkpoint into the same folder: the loss of its step 1 is finite (its weights are), but
    # the update with lr 1e39 overflows float32 to infinity
    huge = replace(CFG, lr=1e39, warmup=0.0, save_every=1)
    with pytest.raises(HnmError, match=r"after step 1, \d+ of \d+ weight tensors are not finite.*the last good "
                                       r"checkpoint is .*last \(step 2\)"):
        train(ROWS, tmp_path, str(tmp_path / "last"), huge, quiet=True)
    tensors = load_file(str(tmp_path / "last" / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in tensors.values())


def test_a_non_finite_last_checkpoint_is_not_called_good(golden, tmp_path):
    from hnm.train import _last_good
    start, _ = golden
    train(ROWS, tmp_path, str(start), replace(CFG, stop_after=1), quiet=True)
    assert _last_good(tmp_path / "last") == f"the last good checkpoint is {tmp_path / 'last'} (step 1)"
    model = CrossEncoder.from_checkpoint(tmp_path / "last")
    with torch.no_grad():
        model.classifier.weight.fill_(float("inf"))
    model.save(tmp_path / "last")  # as a run without the finite check could have left it
    assert "holds non-finite weights too (1 of" in _last_good(tmp_path / "last")


def test_resume_refuses_other_settings_or_data(golden, tmp_path):
    start, _ = golden
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):
        train(ROWS, tmp_path, str(start), CFG, resume=True, quiet=True)
    train(ROWS, tmp_path, str(start), replace(CFG, stop_after=2), quiet=True)
    with pytest.raises(HnmError, match=r"other settings \(lr: 0.001 -> 0.002\)"):
        train(ROWS, tmp_path, str(start), replace(CFG, lr=0.002), resume=True, quiet=True)
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join(ROWS.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(HnmError, match="rows file differs"):
        train(other, tmp_path, str(start), CFG, resume=True, quiet=True)


# ------------------------------------------------------------------------------ several processes, one batch


def test_two_processes_follow_one_process_with_twice_the_batch(tmp_path):
    start = make_start(tmp_path / "start", dropout=0.0)  # each process would draw its own dropout masks
    steps, flags = 6, ["--max-steps", "6", "--lr", "1e-3", "--eval-fraction", "0", "--loss", CFG.loss,
                       "--negatives", str(CFG.negatives), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "hnm", "train", "--rows", str(ROWS), "--model", str(start), "--output",
                           str(tmp_path / "ddp"), "--batch-size", "2", *flags],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("trained 6 of 6 steps") == 1  # one report, from rank 0
    cfg = replace(CFG, max_steps=steps, lr=1e-3, eval_fraction=0.0, max_length=TrainConfig().max_length)  # the CLI's
    train(ROWS, tmp_path / "one", str(start), replace(cfg, batch_size=4), quiet=True)
    train(ROWS, tmp_path / "accum", str(start), replace(cfg, batch_size=2, grad_accum=2), quiet=True)
    one, ddp, accum = (losses_of(tmp_path / n) for n in ("one", "ddp", "accum"))
    assert len(one) == len(ddp) == len(accum) == steps
    # the same examples per step; each process pads only its own half, and the mean and the all-reduce add in
    # another order: float32 rounding only, measured 3.3e-7 for both
    assert max(abs(a - b) for a, b in zip(one, ddp)) < 1e-5
    assert max(abs(a - b) for a, b in zip(one, accum)) < 1e-5
    assert set(load_file(str(tmp_path / "ddp" / "last" / "rng.safetensors"))) == {"torch.rank0", "torch.rank1"}


# -------------------------------------------------------------------------------------------------- bad input


def test_nan_loss_stops_naming_step_and_rows_and_keeps_the_last_good_checkpoint(golden, tmp_path):
    start, _ = golden
    model = CrossEncoder.from_checkpoint(start)
    rows, _ = read_rows(ROWS, 1)
    train_rows, held = split_rows(rows, CFG.eval_fraction, CFG.seed)
    examples = examples_of(train_rows, 1)
    order = epoch_order(len(examples), CFG.seed, 0)
    first_step = {}  # row line -> first (1-based) step whose batch holds one of its examples
    for i, idx in enumerate(order[:CFG.max_steps * CFG.batch_size].tolist()):
        first_step.setdefault(examples[idx].line, i // CFG.batch_size + 1)

    def tokens(text):
        return set(model.tokenizer.encode([text])[0].ids[1:-1])
    elsewhere = {}
    for row in rows:
        for t in set().union(*(tokens(x) for x in [row["query"], *row["positives"], *row["negatives"]])):
            elsewhere.setdefault(t, set()).add(row["line"])
    # a token of one row's query that no other row contains, in a row first trained on at step 5 or later
    line, token = next((r["line"], t) for r in train_rows if first_step.get(r["line"], 0) >= 5
                       for t in sorted(tokens(r["query"])) if elsewhere[t] == {r["line"]})
    with torch.no_grad():
        # finite, so the checkpoints before that step hold finite weights, but the forward pass overflows on it
        model.bert.embeddings.word_embeddings.weight[token] = 3e38
    model.save(tmp_path / "poisoned")
    step = first_step[line]
    with pytest.raises(HnmError) as e:
        train(ROWS, tmp_path / "run", str(tmp_path / "poisoned"), replace(CFG, save_every=2), quiet=True)
    assert f"not finite at step {step}, micro-batch 0 on process 0" in str(e.value)
    assert f"{line}" in str(e.value).split("rows at lines ")[1].split(" of ")[0].split(", ")
    assert "the last good checkpoint is" in str(e.value)
    state = json.loads((tmp_path / "run" / "last" / "state.json").read_text())
    assert state["step"] == (step - 1) // 2 * 2  # the last checkpoint before the bad step, untouched
    assert [r["step"] for r in log_of(tmp_path / "run")][-1] == step - 1


def test_rows_without_positive_or_negatives_are_named_by_line(tmp_path, capsys):
    good = ROWS.read_text().splitlines()
    bad_rows = [json.loads(x) for x in good[:12]]
    bad_rows[1]["positives"], bad_rows[1]["positive_ids"] = [], []
    bad_rows[4]["negatives"], bad_rows[4]["negative_ids"] = [], []
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in bad_rows))
    rows, skipped = read_rows(path, 1)
    assert len(rows) == 10
    assert skipped == [f"{path}:2: query {bad_rows[1]['query_id']!r} has no positive",
                       f"{path}:5: query {bad_rows[4]['query_id']!r} has no negatives"]
    start = make_start(tmp_path / "start")
    summary = train(path, tmp_path / "run", str(start), replace(CFG, max_steps=1, eval_fraction=0.0))
    assert summary["skipped_rows"] == skipped and f"{path}:5:" in capsys.readouterr().out
    assert read_rows(path, 3) == (rows, skipped)  # a row short of 3 negatives is used, its group filled

    bad_rows[7]["negatives"] = "not a list"
    path.write_text("".join(json.dumps(r) + "\n" for r in bad_rows))
    with pytest.raises(InputError, match=r"rows.jsonl:8: field 'negatives' must be a list of strings"):
        read_rows(path, 1)
    path.write_text("".join(json.dumps(r) + "\n" for r in bad_rows[:2]))  # one usable row: 3 examples
    with pytest.raises(HnmError, match="fewer than the 8 of one step"):
        train(path, tmp_path / "run2", str(start), replace(CFG, batch_size=8, eval_fraction=0.0), quiet=True)


def test_config_mistakes_are_clear():
    with pytest.raises(ValueError, match="loss: must be one of softmax, triplet"):
        TrainConfig(loss="mse")
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="float16")
    with pytest.raises(ValueError, match="at least 1"):
        TrainConfig(batch_size=0)
    assert asdict(CFG)["loss"] == "triplet"  # the golden run trains with the paper's loss


# ------------------------------------------------------------------------------ distillation, and learning at all


def test_margin_mse_by_hand_and_teacher_scores_of_examples(tmp_path):
    scores = torch.tensor([[2.0, 0.0, 1.0]])  # student margins 2 and 1
    teacher = torch.tensor([[1.0, 0.0, 1.0]])  # teacher margins 1 and 0
    assert margin_mse(scores, teacher).item() == pytest.approx(1.0)  # ((2 - 1)^2 + (1 - 0)^2) / 2
    row = {"query": "q", "positives": ["p"], "negatives": ["a", "b"], "positive_scores": [0.9],
           "negative_scores": [0.5, 0.4], "line": 3}
    assert [e.teacher for e in examples_of([row], 1, teacher=True)] == [(0.9, 0.5), (0.9, 0.4)]
    rows = [json.loads(x) for x in ROWS.read_text().splitlines()]
    rows[0]["negative_scores"][0] = None  # a random negative has no score: no teacher for that row
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kept, skipped = read_rows(path, 1, teacher=True)
    assert len(kept) == len(rows) - 1 and "lacks the scores distillation needs" in skipped[0]
    assert len(read_rows(path, 1)[0]) == len(rows)  # without distillation the row is used


def test_residual_training_ranks_the_teachers_score_plus_the_models_by_hand():
    """CLEAR's residual: the triplet loss sees s + r x teacher, so a pair the teacher already orders by the margin
    costs nothing and the gradient goes to the pairs it gets wrong."""
    from hnm.tokenize import Batch
    from hnm.train import Example, _micro_step

    class Fixed(torch.nn.Module):  # the model's logits, one per pair: (q1, p) 0, (q1, n) 0, (q2, p) 0, (q2, n) 1
        def __init__(self):
            super().__init__()
            self.logits = torch.nn.Parameter(torch.tensor([0.0, 0.0, 0.0, 1.0]))

        def forward(self, ids, mask, types):
            return self.logits

    batch = [Example("q1", "p", ("n",), 1, teacher=(2.0, 0.0)),  # the teacher orders q1 right by 2
             Example("q2", "p", ("n",), 2, teacher=(0.0, 1.0))]  # and q2 wrong by 1
    tokens = Batch(*(torch.zeros(4, 3, dtype=torch.long) for _ in range(3)))
    for residual, want in ((0.0, (1.0 + 2.0) / 2), (1.0, (0.0 + 3.0) / 2), (0.25, (0.5 + 2.25) / 2)):
        # hinge max(0, 1 - (s_p + r t_p) + (s_n + r t_n)): residual 0 -> 1 and 2; 1 -> 0 and 3; 0.25 -> 0.5 and 2.25
        net, cfg = Fixed(), replace(CFG, residual=residual, teacher_scores="ensemble", distill=0.0)
        got = _micro_step(net, None, batch, loss_function("triplet"), cfg, contextlib.nullcontext(),
                          torch.device("cpu"), tokens)
        assert got == pytest.approx(want)
        if residual == 1.0:  # q1 costs nothing: only q2's pair has a gradient
            assert net.logits.grad.tolist() == pytest.approx([0.0, 0.0, -0.5, 0.5])
    with pytest.raises(ValueError, match="residual"):
        TrainConfig(loss="margin_mse", residual=1.0)


TOPICS = ("volcano", "violin", "glacier", "tennis", "bakery", "satellite", "orchid", "submarine")
FILLER = ("the", "report", "about", "many", "people", "said", "today", "that", "new", "study", "shows", "some")


def topic_rows(n: int, seed: int) -> list:
    """Rows whose positive mentions the query's topic word and whose 3 negatives mention other topics, with filler
    words drawn at random: a ranking a model can only learn by reading both texts."""
    rng = np.random.default_rng(seed)

    def doc(topic):
        words = list(rng.choice(FILLER, 6)) + [topic]
        rng.shuffle(words)
        return " ".join(words)
    rows = []
    for i in range(n):
        t = TOPICS[i % len(TOPICS)]
        others = rng.choice([o for o in TOPICS if o != t], 3, replace=False)
        rows.append({"query_id": f"q{seed}-{i}", "query": f"what is new about the {t}",
                     "positive_ids": [f"p{seed}-{i}"], "positives": [doc(t)],
                     "negative_ids": [f"n{seed}-{i}-{j}" for j in range(3)], "negatives": [doc(o) for o in others]})
    return rows


def test_training_raises_a_held_out_ranking_metric(tmp_path):
    """A tiny model on tiny data: 400 steps must lift held-out MRR@10 from chance (about 0.52 for one positive
    among four) to nearly perfect (measured 1.0). Fails if the loop, the loss or the optimiser does nothing useful."""
    rows = topic_rows(960, seed=1)  # many rows, few passes: the model must learn the rule, not the rows
    held = [{**r, "line": i} for i, r in enumerate(topic_rows(32, seed=2))]  # other documents, same topics
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    start = make_start(tmp_path / "start", dropout=0.0)
    before = held_out_metrics(CrossEncoder.from_checkpoint(start), held, "float32")
    cfg = TrainConfig(loss="softmax", negatives=3, batch_size=8, max_steps=400, lr=2e-3, warmup=0.1,
                      eval_fraction=0.0, save_every=400)  # 15 s on one thread; loss 1.4 -> 0.0
    train(path, tmp_path / "run", str(start), cfg, quiet=True)
    after = held_out_metrics(CrossEncoder.from_checkpoint(tmp_path / "run" / "last"), held, "float32")
    assert before["mrr@10"] < 0.75  # measured 0.54
    assert after["mrr@10"] > 0.95 and after["ndcg@10"] > before["ndcg@10"] + 0.2


def test_min_steps_lengthens_a_short_run_into_more_epochs_and_max_steps_overrides_it(golden, tmp_path):
    start, _ = golden
    one = replace(CFG, max_steps=None, min_steps=0, eval_fraction=0.0, save_every=1000)
    per_epoch = train(ROWS, tmp_path / "one", str(start), one, quiet=True)["steps"]
    floor = 2 * per_epoch + 1  # two whole epochs and one step of a third
    assert train(ROWS, tmp_path / "floor", str(start), replace(one, min_steps=floor), quiet=True)["steps"] == floor
    assert [r["epoch"] for r in log_of(tmp_path / "floor")][-2:] == [1, 2]
    assert train(ROWS, tmp_path / "below", str(start), replace(one, min_steps=per_epoch - 1),
                 quiet=True)["steps"] == per_epoch  # a floor under one epoch changes nothing
    assert train(ROWS, tmp_path / "max", str(start), replace(one, min_steps=floor, max_steps=3),
                 quiet=True)["steps"] == 3


def test_a_checkpoint_made_before_min_steps_resumes_at_the_value_it_was_trained_with(golden, tmp_path):
    start, _ = golden
    train(ROWS, tmp_path, str(start), replace(CFG, stop_after=7), quiet=True)
    path = tmp_path / "last" / "state.json"
    state = json.loads(path.read_text())
    del state["config"]["min_steps"]  # as a checkpoint written before the field was added
    path.write_text(json.dumps(state))
    assert CFG.min_steps == 1000  # today's default
    with pytest.raises(HnmError, match="min_steps: 0 -> 1000"):
        train(ROWS, tmp_path, str(start), CFG, resume=True, quiet=True)
    assert train(ROWS, tmp_path, str(start), replace(CFG, min_steps=0), resume=True, quiet=True)["steps"] == 20


def test_token_feed_gives_the_text_feeds_losses_and_bucketing_runs(golden, tmp_path):
    start, _ = golden
    short = replace(CFG, max_steps=6, eval_fraction=0.0, grad_accum=2)
    logs = {}
    for feed in ("text", "tokens", "bucketed"):
        train(ROWS, tmp_path / feed, str(start), replace(short, feed=feed), quiet=True)
        logs[feed] = [{k: v for k, v in r.items() if k not in TIMINGS} for r in log_of(tmp_path / feed)]
    assert logs["tokens"] == logs["text"]  # the same batches: losses and gradient norms bit for bit
    assert len(logs["bucketed"]) == 6 and all(math.isfinite(r["loss"]) for r in logs["bucketed"])
    assert [r["loss"] for r in logs["bucketed"]] != [r["loss"] for r in logs["text"]]  # other examples share steps
    assert all(r["host_seconds"] >= 0 for r in log_of(tmp_path / "tokens"))


# ------------------------------------------------------------------------------------------ few-label levers


def test_listnet_by_hand():
    # grades [1, 0] -> target [e / (e + 1), 1 / (e + 1)]; equal scores -> log softmax -ln 2 each -> loss ln 2
    assert listnet(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]])).item() == pytest.approx(math.log(2))
    # grades alike -> target [0.5, 0.5]; scores [1, 0] -> 0.5 (ln(1 + e) - 1) + 0.5 ln(1 + e)
    expected = 0.5 * (math.log(1 + math.e) - 1) + 0.5 * math.log(1 + math.e)
    assert listnet(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])).item() == pytest.approx(expected)
    assert expected == pytest.approx(0.8133, abs=1e-4)
    # the loss is least where the scores equal the grades up to a shift: a positive judged 1 one unit above its
    # negatives has a zero gradient, one judged 4 is pushed up (d loss / d s_0 = softmax(s)_0 - target_0 < 0)
    for grade, sign in ((1.0, 0), (4.0, -1)):
        scores = torch.tensor([[1.0, 0.0, 0.0]], requires_grad=True)
        listnet(scores, torch.tensor([[grade, 0.0, 0.0]])).backward()
        push = scores.grad[0, 0].item()
        assert push == pytest.approx(0.0, abs=1e-7) if sign == 0 else push < -0.3


def test_graded_examples_carry_the_positives_grades():
    rows = [{"query": "q", "positives": ["p1", "p2"], "positive_grades": [4, 1], "negatives": ["a", "b"], "line": 1},
            {"query": "r", "positives": ["p3"], "negatives": ["c", "d"], "line": 2}]
    got = [(e.positive, e.grades) for e in examples_of(rows, 2, graded=True)]
    assert got == [("p1", (4.0, 0.0, 0.0)), ("p2", (1.0, 0.0, 0.0)), ("p3", (1.0, 0.0, 0.0))]  # no grades: 1
    assert examples_of(rows, 2)[0].grades is None


def test_k_fold_split_covers_every_row_once():
    rows = [{"query_id": str(i)} for i in range(5)]
    held = [split_rows(rows, 0.1, seed=3, folds=2, fold=f)[1] for f in (0, 1)]
    assert sorted(len(h) for h in held) == [2, 3]
    assert sorted(r["query_id"] for h in held for r in h) == [str(i) for i in range(5)]
    kept, out = split_rows(rows, 0.1, seed=3, folds=2, fold=0)
    assert len(kept) + len(out) == 5 and not {r["query_id"] for r in kept} & {r["query_id"] for r in out}
    for bad in ({"folds": 1}, {"folds": 3, "fold": 3}, {"fold": 1}):
        with pytest.raises(ValueError, match="folds"):
            TrainConfig(**bad)


class LengthScorer:
    """A stand-in re-ranker whose score of a document is its length."""

    def score(self, queries, docs, precision="float32"):
        return torch.tensor([float(len(d)) for d in docs])


def test_held_out_check_on_the_first_stages_candidates():
    row = {"query_id": "q", "query": "q", "positive_ids": ["a", "z"], "positives": ["a", "zzzz"],
           "negative_ids": ["n"], "negatives": ["n"], "candidate_ids": ["b", "a"], "candidates": ["bb", "a"]}
    # its own rows: zzzz (relevant) first, then a and n tied: MRR 1
    assert held_out_metrics(LengthScorer(), [row], "float32")["mrr@10"] == 1.0
    # the candidates: bb (4 letters fewer than zzzz, but z is not among them) first, a second; z never retrieved
    got = held_out_metrics(LengthScorer(), [row], "float32", candidates=True)
    assert got["mrr@10"] == 0.5
    assert got["ndcg@10"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))  # 0.3869


def test_the_levers_train_together(tmp_path):
    """ListNet on graded rows, MarginMSE from the first stage's scores, fold 1 of 3 held out and checked on the
    candidates: a few steps run, the losses are finite, the check reads the candidates."""
    rows = [json.loads(line) for line in ROWS.read_text().splitlines()]
    for i, row in enumerate(rows):
        row["positive_grades"] = [1 + i % 3] * len(row["positives"])
        row["positive_first_stage_scores"] = [2.0] * len(row["positives"])
        row["negative_first_stage_scores"] = [0.5 * j for j in range(len(row["negatives"]))]
        row["candidate_ids"] = row["negative_ids"][:2] + row["positive_ids"][:1]
        row["candidates"] = row["negatives"][:2] + row["positives"][:1]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = replace(CFG, loss="listnet", negatives=2, distill=1.0, teacher_scores="first_stage", teacher_scale=1.0,
                  folds=3, fold=1, held_out="candidates", max_steps=3, eval_every=3, save_every=3)
    summary = train(path, tmp_path / "run", str(make_start(tmp_path / "start")), cfg, quiet=True)
    assert all(math.isfinite(x) for x in losses_of(tmp_path / "run"))
    assert summary["eval_rows"] in (13, 14)  # a third of the 40 rows
    assert summary["best"]["step"] == 3
    without = tmp_path / "bare.jsonl"
    without.write_text("".join(json.dumps({k: v for k, v in r.items() if not k.startswith("candidate")}) + "\n"
                               for r in rows))
    with pytest.raises(InputError, match="candidates"):
        train(without, tmp_path / "bare", str(make_start(tmp_path / "start2")), cfg, quiet=True)
