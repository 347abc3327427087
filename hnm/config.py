"""Every configuration of hnm: one frozen dataclass per stage, each field with its help, choices and range.

    cfg = TrainConfig(lr=3e-5)          # checked here: TrainConfig(lr=float("nan")) raises "lr: must be ..."
    setting(7e-5, "peak learning rate", gt=0)   # how a field is declared: its default, its help, its rules

The command line (__main__.py) makes its flags from these fields: a field whose metadata has a help is a flag
`--field-name` (a boolean that defaults to True is `--no-field-name`), of the field's type, with its choices, and
with its range checked by `problem` both when argparse reads the flag and when the dataclass is built (`check`, in
each `__post_init__`), so the Python API and the command line refuse the same values with the same words. A field
without a help is for the Python API only.

The classes live here, not beside the code they configure (STYLE.md's rule 3), for two reasons: `python -m hnm
--help` must not import torch (this module imports neither torch nor NumPy; the modules that run the stages do), and
every flag of every verb is read from one place. The modules that use a configuration import it from here
(`from hnm.train import TrainConfig` still works), and the names of their choices (precisions, strategies, heads,
first stages, ...) are defined here once.

Rules of a field (metadata): `ge`, `gt`, `le`, `lt` bound a number (a float must also be finite: NaN or an infinity
is never a setting); `choices` lists the allowed strings. None, where a field allows it, means "not set" and is
never checked. Rules that tie two fields together stay in the class's `__post_init__`.

Not here: what the settings do (the modules named in each class's comment), and flags that are not settings of a
stage (--data, --output, --quiet, --device: __main__.py).
"""

import json
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional, Tuple

from hnm.html2text import BoilerplateRule

PRECISIONS = ("float32", "bfloat16", "auto")  # of an encoder or a re-ranker; auto: bfloat16 where native (embed.py)
STRATEGIES = ("ensemble", "dense", "bm25", "random")  # of mining (negatives.py)
CLUSTERINGS = ("kmeans", "agglomerative", "gmm", "none")  # of the ensemble strategy; the first is the paper's
LINKAGES = ("ward", "average")  # of agglomerative clustering (agglomerative.py)
FUSIONS = ("mean", "zscore", "rrf")  # of the ensemble's members (ensemble.py)
VECTORS = ("memory", "float32", "float16", "bfloat16")  # where mining's document vectors live (vectorfile.py)
FEEDS = ("text", "tokens", "bucketed")  # how training batches reach the model (feed.py)
SELECTIONS = ("ceiling", "pca")  # mining's step 4 (NV-Retriever's ceiling) or 4' (the authors' 2025 rule, PCA space)
CHUNK_POSITIVES = ("best", "all")  # which chunks of a judged page are positives (miner.py)
REFERENCE_POSITIVES = ("strongest", "median", "weakest")  # the positive a mining ceiling is relative to
FIRST_STAGES = ("bm25", "dense", "ensemble", "hybrid")  # firststage.py
HYBRID_FUSIONS = ("zscore", "rrf")  # of the hybrid first stage
HEADS = ("pooler", "linear", "mean")  # of a new re-ranker (reranker.py)
LOSSES = ("softmax", "triplet", "bce", "margin_mse", "listnet")  # losses.py's LOSSES, MarginMSE alone, graded ListNet
TEACHERS = ("ensemble", "first_stage")  # whose scores MarginMSE distils (train.TEACHER_FIELDS)
HELD_OUT_CHECKS = ("rows", "candidates")  # what training's held-out check re-ranks (train.held_out_metrics)
BM25_VARIANTS = ("robertson", "lucene", "atire", "bm25l", "bm25+")  # bm25.py's VARIANTS
CHUNK_MODES = ("none", "tokens", "sentences")  # chunk.py
ARCHITECTURES = ("bert", "mpnet")  # of the encoders (encoder.py), as weights.lock names them
DEVICES_HELP = "auto (a GPU when torch sees one, one per torchrun rank), cpu, cuda or cuda:N"
MODELS = "all-MiniLM-L6-v2,all-mpnet-base-v2"  # the ensemble's default members


def setting(default: Any, help: Optional[str] = None, *, choices: Optional[Tuple[str, ...]] = None,
            flag: Optional[str] = None, ge: Optional[float] = None, gt: Optional[float] = None,
            le: Optional[float] = None, lt: Optional[float] = None) -> Any:
    """A dataclass field with its flag in the metadata: setting(0.1, "share held out", ge=0, lt=1).
    `flag` names the flag where it is not --field-name."""
    meta = dict(help=help, choices=choices, flag=flag, ge=ge, gt=gt, le=le, lt=lt)
    return field(default=default, metadata={k: v for k, v in meta.items() if v is not None})


def problem(value: Any, meta) -> Optional[str]:
    """What is wrong with `value` under a field's rules, or None: (nan, {}) -> "must be a finite number, not nan";
    (0, {"ge": 1}) -> "must be at least 1, not 0"; (None, anything) -> None."""
    if value is None or isinstance(value, bool):
        return None
    if "choices" in meta and value not in meta["choices"]:
        return f"must be one of {', '.join(meta['choices'])}, not {value!r}"
    if not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, not {value}"
    for rule, fails, words in (("ge", lambda v, b: v < b, "at least"), ("gt", lambda v, b: v <= b, "above"),
                               ("le", lambda v, b: v > b, "at most"), ("lt", lambda v, b: v >= b, "below")):
        if rule in meta and fails(value, meta[rule]):
            return f"must be {words} {meta[rule]:g}, not {value:g}"
    return None


def check(config) -> None:
    """Every field of a dataclass instance against its rules: a ValueError naming the first field that breaks one."""
    for f in fields(config):
        why = problem(getattr(config, f.name), f.metadata)
        if why:
            raise ValueError(f"{f.name}: {why}")


@dataclass(frozen=True)
class Member:
    name: str  # a model of weights.lock, or "bm25"
    weight: float = 1.0


def parse_members(text: str) -> Tuple[Member, ...]:
    """'all-MiniLM-L6-v2,all-mpnet-base-v2:2,bm25:0.5' -> members with weights 1, 2 and 0.5."""
    members = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition(":")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"member {part!r}: the weight after ':' must be a number") from None
        if not 0 < w < math.inf:
            raise ValueError(f"member {part!r}: the weight must be a positive finite number")
        members.append(Member(name, w))
    if not members:
        raise ValueError("the ensemble needs at least one member")
    return tuple(members)


# ------------------------------------------------------------------------------------------------------- encoders


@dataclass(frozen=True)
class EmbedConfig:  # embed.py
    batch_size: int = setting(32, "texts per encoder pass", ge=1)
    precision: str = setting("float32", "encoder precision: bfloat16 autocast (cosine ~0.9999 to float32) is faster "
                                        "only on CPUs with bf16 instructions; auto: bfloat16 where the hardware has "
                                        "it", choices=PRECISIONS)
    cache: bool = setting(True, "read and write the embedding cache")
    flush_every: int = setting(1024, ge=1)  # texts encoded between two cache shards (what a killed run can lose)
    streams: int = setting(0, "batches encoded at once, torch's threads shared among them (0: 2 when it has 2 or "
                              "more)", ge=0)
    device: Optional[str] = None  # distributed.py's names; None: the device the command chose (distributed.current)

    def __post_init__(self):
        check(self)


@dataclass(frozen=True)
class BM25Config:  # bm25.py
    variant: str = setting("lucene", "scoring variant", choices=BM25_VARIANTS)
    k1: float = setting(1.5, "term-frequency saturation", ge=0)
    b: float = setting(0.75, "length normalisation: 0 none, 1 fully by L / Lavg", ge=0, le=1)
    delta: float = setting(0.5, "tf floor of bm25l and bm25+", ge=0)
    stopwords: bool = setting(True, "drop Lucene's stop words")
    stem: bool = setting(True, "Porter (1980) stems")

    def __post_init__(self):
        check(self)


# --------------------------------------------------------------------------------------------------------- mining


@dataclass(frozen=True)
class MineConfig:  # negatives.py, miner.py
    strategy: str = setting("ensemble", "how candidates are found: ensemble (the paper), dense (first model, no "
                                        "clusters), bm25, random", choices=STRATEGIES)
    models: str = setting(MODELS, "ensemble members NAME[:WEIGHT],... ; 'bm25' may join")
    fusion: str = setting("mean", "score fusion of the members (ensemble.py)", choices=FUSIONS)
    n_clusters: Optional[int] = setting(None, "k of the clustering (default round(sqrt(N)): clusters of about "
                                              "sqrt(N) documents)", ge=1)
    n_probe: int = setting(2, "nearest clusters of the query searched, besides its positives' clusters", ge=1)
    skip_top: int = setting(0, "top candidates skipped", ge=0)
    max_rank: int = setting(100, "candidates considered at most (ranks skip_top .. max_rank - 1)", ge=1)
    # the false-negative safeguard: 0 would keep no candidate with a positive score, above 1 it lets candidates
    # score above the positive itself; the Python API switches it off with None (the experiment's plain arms)
    relative_ceiling: Optional[float] = setting(0.95, "keep candidates below this x the reference positive's score",
                                                gt=0, le=1)
    margin: Optional[float] = setting(None, "also keep only candidates this far below the reference positive", ge=0)
    ceiling_from: str = setting("strongest", "the reference among a query's positives' scores",
                                choices=REFERENCE_POSITIVES)
    min_score: Optional[float] = setting(None, "floor: candidates below are not negatives (nor flagged)")
    max_score: Optional[float] = setting(None, "absolute ceiling: candidates above are flagged")
    sampling: str = setting("top", "among eligible candidates: the best-ranked, or uniform", choices=("top", "random"))
    # per query, and the share of them drawn uniformly from the corpus instead: the default recipe's mining, which
    # `hnm train`'s defaults were chosen on (15 a query, a quarter random; README, "Mining" and "SciFact, the
    # default recipe on two cores")
    num_negatives: int = setting(15, "negatives per query", ge=1)
    random_share: float = setting(0.25, "share of negatives drawn at random from the corpus", ge=0, le=1)
    # grade 0 is "judged not relevant": a positive below grade 1 would train on non-relevant documents
    min_grade: int = setting(1, "grade of a positive", ge=1)
    selection: str = setting("ceiling", "how negatives are kept from false negatives: ceiling (NV-Retriever's rule "
                                        "relative to the positive, with --margin, --min-score, --max-score) or pca "
                                        "(the authors' 2025 rule, arXiv 2505.18366: in the PCA space of the "
                                        "ensemble vectors, D is a negative only if d(Q,D) < d(Q,PD) and d(Q,D) < "
                                        "d(PD,D) for every positive PD; the ceiling is only counted)",
                             choices=SELECTIONS)
    pca_variance: float = setting(0.95, "the pca selection: share of the variance its PCA keeps", gt=0, lt=1)
    pca_components: Optional[int] = setting(None, "the pca selection: this many principal components instead", ge=1)
    vectors: str = setting("memory", "document vectors as float32 arrays in memory, or in matrix files of the "
                                     "embedding cache in that precision, memory-mapped and shared by the processes "
                                     "of a machine (float32 gives the same output; float16 and bfloat16 halve the "
                                     "memory)", choices=VECTORS)
    chunk_positives: str = setting("best", "of a judged page cut into chunks (rows with its id as parent_id), the "
                                           "positives: best, the chunk the strategy scores highest for the query "
                                           "(every chunk when it has no scores, as random); all, every chunk. No "
                                           "chunk of a positive page is ever a negative", choices=CHUNK_POSITIVES)
    seed: int = setting(42, "random seed", ge=0)
    chunk_size: int = setting(256, "queries per chunk: bounds memory, and the work a killed run loses", ge=1)
    kmeans_sample: int = setting(100_000, ge=1)  # k-means is fitted on at most this many documents, then all assigned
    kmeans_iter: int = setting(25, ge=1)  # Lloyd iterations at most (faiss trains with 25): clusters need only be topical
    clustering: str = setting("kmeans", "how the ensemble strategy groups documents: kmeans (the paper's), "
                                        "agglomerative (fitted on a sample, see --agglomerative-sample), gmm "
                                        "(diagonal Gaussian mixture), or none (the ensemble's exact top over the "
                                        "whole corpus)", choices=CLUSTERINGS)
    linkage: str = setting("ward", "agglomerative: ward (Euclidean) or average (cosine distance)", choices=LINKAGES)
    agglomerative_sample: int = setting(4096, "agglomerative is fitted on at most this many documents; its float64 "
                                              "distance matrix takes 8 n^2 bytes (4096: 128 MiB)", ge=1)
    gmm_sample: int = setting(100_000, ge=1)  # documents the Gaussian mixture is fitted on (a seeded sample)
    gmm_iter: int = setting(100, ge=1)  # EM iterations at most (scikit-learn's default; tol 1e-3)

    def __post_init__(self):
        check(self)
        if not self.skip_top < self.max_rank:
            raise ValueError(f"need skip_top < max_rank, got {self.skip_top} and {self.max_rank}")
        if self.min_score is not None and self.max_score is not None and not self.min_score < self.max_score:
            raise ValueError(f"need min_score < max_score, got {self.min_score} and {self.max_score}")
        members = parse_members(self.models)  # fails early on a malformed list
        if self.clustering != "kmeans" and self.strategy != "ensemble":
            raise ValueError(f"clustering {self.clustering!r} applies to the ensemble strategy only; strategy "
                             f"{self.strategy!r} finds its candidates without clusters")
        if self.clustering == "none" and (self.fusion != "mean" or any(m.name == "bm25" for m in members)):
            raise ValueError("clustering 'none' ranks the whole corpus by the ensemble vectors' inner product, which "
                             "is the 'mean' fusion of embedding models only: use --fusion mean and no bm25 member")
        if self.selection == "pca" and (self.strategy != "ensemble" or self.fusion != "mean"
                                        or any(m.name == "bm25" for m in members)):
            raise ValueError("selection 'pca' works in the PCA space of the ensemble vectors: use strategy ensemble, "
                             "fusion mean and no bm25 member")


# ----------------------------------------------------------------------------------------------------- retrieval


@dataclass(frozen=True)
class FirstStageConfig:  # firststage.py
    kind: str = setting("hybrid", "first-stage retrieval", choices=FIRST_STAGES, flag="--first-stage")
    top_k: int = setting(100, "documents kept per query", ge=1)
    models: str = setting(MODELS, "NAME[:WEIGHT],... of weights.lock: dense (the first), ensemble, hybrid")
    fusion: str = setting("zscore", "of the hybrid: zscore over the corpus, or rrf over both top-`depth` lists",
                          choices=HYBRID_FUSIONS)
    bm25_weight: float = setting(0.5, "BM25's share in the hybrid first stage", ge=0, le=1)
    depth: int = setting(1000, ge=1)  # of each system's list for rrf
    precision: str = setting("float32", "of the encoders; part of the embedding cache key", choices=PRECISIONS)
    block: int = setting(256, ge=1)  # queries scored at once by the hybrid
    per_page: int = setting(3, ge=1)  # of a chunked corpus: rows kept of each of the top_k pages (pages.py)

    def __post_init__(self):
        check(self)
        parse_members(self.models)  # fails early on a malformed list


@dataclass(frozen=True)
class EvalConfig:  # twostage.py
    first_stage: str = setting("hybrid", "first-stage retrieval: bm25, dense (the first of --models), ensemble (all "
                                         "of them) or hybrid (BM25 and the ensemble by z-scores): the same default and "
                                         "settings in tune, evaluate, rerank, search and fit", choices=FIRST_STAGES)
    top_k: int = setting(100, "documents retrieved (or taken from the run) and re-ranked per query", ge=1)
    models: str = setting(MODELS, "NAME[:WEIGHT],... of weights.lock: the encoders of the dense, ensemble and "
                                  "hybrid first stages")
    fusion: str = setting("zscore", "of the hybrid first stage", choices=HYBRID_FUSIONS)
    bm25_weight: float = setting(0.5, "BM25's share in the hybrid first stage", ge=0, le=1)
    embed_precision: str = setting("float32", "precision of the first stage's encoders", choices=PRECISIONS)
    per_page: int = setting(3, "of a chunked corpus: chunks re-ranked of each page, a page scoring as its best", ge=1)
    batch_size: int = setting(64, "pairs per re-ranker pass", ge=1)
    precision: str = setting("float32", "re-ranker precision", choices=PRECISIONS)
    alpha: Optional[float] = setting(None, "weight of the re-ranker against the first stage, each standardised per "
                                           "query; 1: pure re-ranking (default: the checkpoint's alpha tuned for this "
                                           "first stage, else 0.5); evaluate reports systems with alpha < 1 beside "
                                           "pure", ge=0, le=1)
    resamples: int = setting(10000, "of the paired tests", ge=1)
    seed: int = setting(0, "of the paired tests", ge=0)

    def __post_init__(self):
        check(self)
        self.retrieval()  # checks the first stage's fields

    def retrieval(self) -> FirstStageConfig:
        return FirstStageConfig(kind=self.first_stage, top_k=self.top_k, models=self.models, fusion=self.fusion,
                                bm25_weight=self.bm25_weight, precision=self.embed_precision, per_page=self.per_page)


# ------------------------------------------------------------------------------------------------------- training


# Fields added to TrainConfig after runs were made, at the value those runs had where it is not the default: a stored
# configuration without one is read with it (train.py's resume check, the scripts' comparisons with landed results)
TRAIN_FIELDS_BEFORE = {"min_steps": 0}


# The defaults are the best recipe of scripts/ablate_train.py on SciFact's tuning split (scripts/results/
# ablation_scifact.md, the choice argued in scripts/results/recipe.md): the paper's triplet margin loss, each mined
# negative its own (query, positive, negative) triplet, one epoch over every training query (at least 1,000 steps:
# the few-label levers), 128 tokens, peak lr 7e-5 with 10% warm-up, the CLS pooler head, the best held-out
# checkpoint kept. Softmax over 1 + 1 in the same pairs and steps tied it (the gain is the pairs and steps, not the
# loss); no lever beat the listwise base significantly; the listwise recipe of the two-stage literature (softmax
# over 1 + 7) is `loss="softmax", negatives=7` (`--loss softmax --negatives 7`).
@dataclass(frozen=True)
class TrainConfig:  # train.py
    loss: str = setting("triplet", "training loss: triplet (the paper's, with --negatives 1), softmax (listwise), "
                                   "bce, margin_mse (distils the teacher's scores alone), or listnet (graded: the "
                                   "rows' positive_grades against the negatives' 0)", choices=LOSSES)
    margin: float = setting(1.0, "of the triplet loss", ge=0)
    negatives: int = setting(1, "negatives per example: 1 makes triplets (each mined negative its own example)", ge=1)
    distill: float = setting(0.0, "weight of MarginMSE on the rows' ensemble scores added to the loss; 0: none", ge=0)
    # cosine margins are about 0.1, a cross-encoder's logit margins several units
    teacher_scale: float = setting(20.0, "the ensemble's scores are multiplied by this for MarginMSE", gt=0)
    batch_size: int = setting(4, "examples per micro-batch per process, each 1 + negatives pairs", ge=1)
    grad_accum: int = setting(1, "micro-batches per optimiser step", ge=1)
    epochs: int = setting(1, "passes over the examples", ge=1)
    max_steps: Optional[int] = setting(None, "optimiser steps in all; replaces --epochs and --min-steps", ge=1)
    # few examples make a short epoch: 50 SciFact queries' triplets are 185 steps, still learning at the last; at
    # least 1,000 lifted the re-ranker alone from 0.378 to 0.477 nDCG@10 on the tuning split (p < 0.001), and the
    # pipeline above the first stage (p = 0.03): scripts/results/few_labels_scifact_n50.md. 809 queries make more
    min_steps: int = setting(1000, "at least this many optimiser steps: more epochs (the last one cut short) where "
                                   "--epochs make fewer; 0: --epochs alone", ge=0)
    lr: float = setting(7e-5, "peak learning rate", gt=0)
    weight_decay: float = setting(0.01, "AdamW weight decay, not on biases and LayerNorm", ge=0)
    warmup: float = setting(0.1, "share of steps warming up, then linear decay", ge=0, lt=1)
    # infinity would switch clipping off, a safeguard against one bad batch
    max_grad_norm: float = setting(1.0, "gradient clipping norm", gt=0)
    seed: int = setting(0, "data order, held-out rows, new head, dropout", ge=0)
    precision: str = setting("float32", "bfloat16: autocast; auto: bfloat16 where the hardware has it",
                             choices=PRECISIONS)
    # 256 scored no better in the ablation, at 2.5x the time; None: the start model's. At most the model's position
    # embeddings (checked against the start model by reranker.set_max_length, and by `hnm train` before any work)
    max_length: Optional[int] = setting(128, "tokens per pair", ge=4)
    head: str = setting("pooler", "head of a new model (a started checkpoint keeps its own)", choices=HEADS)
    # 0 is allowed and says what it does: no held-out rows, hence no best checkpoint and no tuning queries for
    # `hnm tune` (which then needs --queries)
    eval_fraction: float = setting(0.1, "share of queries held out for evaluation and tuning; 0: none", ge=0, lt=1)
    eval_every: int = setting(0, "steps between evaluations; 0: at each epoch's end only", ge=0)
    eval_each_epoch: bool = True  # evaluate (and keep the best) at the end of every epoch, and at the end
    save_every: int = setting(100, "steps between checkpoints", ge=1)
    stop_after: Optional[int] = setting(None, "end this invocation after this step, checkpointed; go on later with "
                                              "--resume", ge=1)

    feed: str = setting("tokens", "how batches reach the model: tokens (texts tokenised once, the next batches "
                                  "padded on a thread during the step), text (tokenised in the loop; the same "
                                  "batches and losses), or bucketed (tokens, each step's examples of similar length: "
                                  "less padding, other losses)", choices=FEEDS)

    teacher_scores: str = setting("ensemble", "the teacher of MarginMSE: the mined rows' ensemble cosines, or "
                                              "first_stage, the fused first-stage scores firststage.annotate_rows "
                                              "adds to the rows (the hybrid's z-scores: --teacher-scale about 1)",
                                  choices=TEACHERS)
    folds: int = setting(0, "k > 1: hold out fold --fold of k seeded folds of the queries instead of "
                            "--eval-fraction (k-fold tuning)", ge=0)
    fold: int = setting(0, "the fold held out when --folds is set", ge=0)
    # CLEAR (Gao et al. 2021) trains a model on the residual of BM25's ranking; here the teacher is any of TEACHERS
    residual: float = setting(0.0, "the ranking loss sees the model's score plus this times the teacher's "
                                   "(--teacher-scores) score of each pair, so the model learns what the teacher "
                                   "misses; 0: the model's score alone", ge=0)
    held_out: str = setting("rows", "what the held-out check re-ranks: each held-out row's positives and negatives, "
                                    "or candidates, the first stage's top k that firststage.annotate_rows adds (the "
                                    "list the model will face)", choices=HELD_OUT_CHECKS)

    def __post_init__(self):
        check(self)
        if self.folds == 1 or not self.fold < max(self.folds, 1):
            raise ValueError(f"folds is 0 (none) or at least 2, and fold one of 0 .. folds - 1; got {self.folds} and "
                             f"{self.fold}")
        if self.residual > 0 and self.loss == "margin_mse":
            raise ValueError("residual adds the teacher's scores to a ranking loss; margin_mse fits the teacher itself")

    @property
    def teacher(self) -> bool:
        """Whether the loss needs the mined rows' scores."""
        return self.loss == "margin_mse" or self.distill > 0 or self.residual > 0

    def total_steps(self, steps_per_epoch: int) -> int:
        """The run's optimiser steps: max_steps, else the epochs' steps and at least min_steps."""
        return self.max_steps or max(self.epochs * steps_per_epoch, self.min_steps)


# ------------------------------------------------------------------------------------------------------------ fit


# The recipes fit chooses between (fit.recipes_to_try). default: the SciFact recipe, TrainConfig's defaults. few-label:
# MarginMSE alone on the mined rows' ensemble scores, the one lever of the recipe ablation that beat the default on
# Cranfield's tuning split (nDCG@10 0.4485 against 0.4328, p = 0.019) and the one that lost on SciFact's (-0.0255,
# p = 0.006): scripts/results/recipe.md. auto: both below FEW_LABELS queries to learn from, the better one on the
# tuning split kept; the default above, where SciFact's 809 queries showed it works.
RECIPES = {"default": {}, "few-label": {"loss": "margin_mse"}}
FEW_LABELS = 400


# FitConfig's fields added after folders were fitted, at the values that keep what those folders did: a fit.json
# without one is read with it (fit._same_settings), so that such a folder still resumes
FIT_FIELDS_BEFORE = {"cross_fit": 0}


@dataclass(frozen=True)
class FitConfig:  # fit.py
    split: str = setting("train", "the judgments to learn from: qrels/<split>.tsv")
    test_split: str = setting("test", "qrels/<test-split>.tsv, when the folder has it; else a share of --split's "
                                      "queries is held out for the test")
    test_share: float = setting(0.2, "share of the judged queries held out as the test split when there is no test "
                                     "file", gt=0, lt=1)
    seed: int = setting(0, "of that split", ge=0, flag="--split-seed")
    start: str = setting("all-MiniLM-L6-v2", "the encoder of weights.lock (or a checkpoint folder) the re-ranker "
                                             "starts from", flag="--model")
    recipe: str = setting("auto", f"default (the train flags as given), few-label (the same with MarginMSE on the "
                                  f"ensemble's scores), or auto: below {FEW_LABELS} queries to learn from, both, and "
                                  f"the one better on the tuning split kept", choices=("auto", *RECIPES))
    alpha_folds: int = setting(5, "alpha is chosen on the tuning queries in this many folds, each scored at the "
                                  "alpha the others chose; when that does not beat the first stage, alpha is 0; 1: on "
                                  "all at once", ge=1)
    cross_fit: int = setting(0, "k > 1: no tuning split: alpha and the epochs chosen out of fold on every query to "
                                "learn from, in k folds, then a final model on all of them (k + 1 trainings a "
                                "recipe; for a few dozen queries, where a held-out tenth is too few)", ge=0)
    mine: MineConfig = field(default_factory=MineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    stage: FirstStageConfig = field(default_factory=lambda: FirstStageConfig(top_k=20))  # top_k: re-ranked
    embed: EmbedConfig = field(default_factory=EmbedConfig)

    def __post_init__(self):
        check(self)
        if self.split == self.test_split:
            raise ValueError(f"the split to learn from and the test split are both {self.split!r}")
        if self.cross_fit == 1:
            raise ValueError("cross_fit is 0 (a held-out tuning split) or a number of folds, at least 2")


# ------------------------------------------------------------------------------------------------------ ingesting


@dataclass(frozen=True)
class FetchConfig:  # ingest.py
    connect_timeout: float = setting(10.0, gt=0)  # seconds to open a connection
    read_timeout: float = setting(30.0, "seconds without a byte before an attempt fails; also caps the connect "
                                        "timeout (10)", gt=0, flag="--timeout")
    retries: int = setting(3, "attempts per URL on 5xx, timeouts and connection errors", ge=1)
    backoff: float = setting(1.0, ge=0)  # seconds before the second attempt, doubled before each next one
    max_bytes: int = setting(10_000_000, "larger pages are refused", ge=1)
    max_redirects: int = setting(5, ge=0)
    delay: float = setting(1.0, "seconds between two requests to one host", ge=0)
    user_agent: str = "hnm-ingest/0.1 (retrieval corpus builder; python-requests)"

    def __post_init__(self):
        check(self)


@dataclass(frozen=True)
class ChunkConfig:  # chunk.py
    mode: str = setting("tokens", "token windows, sentences packed up to --max-tokens, or whole documents",
                        choices=CHUNK_MODES, flag="--chunk")
    max_tokens: int = setting(128, "tokens per chunk, special tokens not counted", ge=1)
    stride: Optional[int] = setting(None, "tokens from one window's start to the next (default 3/4 of --max-tokens)",
                                    ge=1)

    def __post_init__(self):
        check(self)
        if self.stride is None:  # a quarter of each window repeats the previous one's end
            object.__setattr__(self, "stride", max(1, self.max_tokens * 3 // 4))
        if not self.stride <= self.max_tokens:
            raise ValueError(f"stride must be between 1 and max_tokens ({self.max_tokens}) so that the windows "
                             f"leave no gap, got {self.stride}")


@dataclass(frozen=True)
class IngestConfig:  # ingest.py
    fetch: FetchConfig = FetchConfig()
    chunk: ChunkConfig = ChunkConfig()
    boilerplate: BoilerplateRule = BoilerplateRule()
    shingle: int = setting(5, ge=1)  # words per shingle for near duplicates
    near_dup_threshold: float = setting(0.9, "Jaccard similarity of 5-word shingle sets from which a page is a near "
                                             "duplicate", gt=0, le=1)
    retry_failed: bool = setting(False, "on a rerun, try the sources that failed again")
    # "Redirecting..." stubs are 50 to 70 characters
    min_chars: int = setting(100, "pages with less text are dropped", ge=0)
    containment: float = setting(0.8, gt=0, le=1)  # share of a page's shingles in another: it is "contained"
    aggregate_pages: int = setting(3, ge=2)  # an aggregate (a print-all page) holds at least this many other pages ...
    aggregate_distinct: float = setting(0.8, gt=0, le=1)  # ... in places that overlap little: merged, they cover
    #                                                       this share of their sum (ingest.aggregates)
    keep_aggregates: bool = setting(False, "keep aggregate pages: pages holding 3 or more other pages one after "
                                           "another (a site's print-all page; pages that only share a template, "
                                           "such as command pages with the same options, are always kept); by "
                                           "default they are dropped and listed")

    def __post_init__(self):
        check(self)


# ----------------------------------------------------------------------------------------------------- experiment


@dataclass(frozen=True)
class Arm:  # experiment.py
    name: str
    mine: Optional[dict]  # MineConfig fields; None: no re-ranker (the first stage alone)
    passages: bool = False  # mine over passages, and judge by the best passage too (the long-document arm)
    seeds: Optional[int] = None  # train only the first this many of the budget's seeds; None: all of them


# (b) to (e) differ only in where candidates come from: no ceiling, no random share; (f) adds both to (e). The arms
# the paper's claim compares, (b), (c), (e) and (f), train every seed of the budget; the others one.
# The order is the order of the work within a seed: the paper's arm and random negatives first, as the first results
# a long run lands on are the ones a reader needs most; a passages arm goes after every seed of the others (work_order).
ARMS = (Arm("first-stage", None),
        Arm("ensemble+", {"strategy": "ensemble", "relative_ceiling": 0.95, "random_share": 0.25}),
        Arm("random", {"strategy": "random", "relative_ceiling": None}),
        Arm("ensemble", {"strategy": "ensemble", "relative_ceiling": None}),
        Arm("bm25", {"strategy": "bm25", "relative_ceiling": None}),
        Arm("dense", {"strategy": "dense", "relative_ceiling": None}, seeds=1),
        Arm("ensemble+ passages", {"strategy": "ensemble", "relative_ceiling": 0.95, "random_share": 0.25}, True,
            seeds=1))

# The paper's open question on clustering: (f) with each other clustering of negatives.py (its k-means is (f) itself,
# the agglomerative one is Ward's), the same recipe and every seed. Outside ARMS, so that the work order of an
# experiment already under way stays as it is: `experiment --clustering-arms` (or a --config) adds them.
CLUSTERING_ARMS = tuple(Arm(f"ensemble+ {c}", {"strategy": "ensemble", "relative_ceiling": 0.95, "random_share": 0.25,
                                                "clustering": c}) for c in CLUSTERINGS[1:])

# The authors' follow-up rule (negatives.py, step 4'): (f)'s ensemble and share of random negatives, the rule over the
# whole corpus in the PCA space (95% of the variance) instead of k-means and the ceiling. (f)'s ceiling stays in the
# configuration, not applied: the mining statistics count how many of the rule's negatives it would have flagged.
# Outside ARMS for the reason CLUSTERING_ARMS are: `experiment --arms 'ensemble+,random,pca rule'` names it.
RULE_ARMS = (Arm("pca rule", {"strategy": "ensemble", "selection": "pca", "clustering": "none",
                              "relative_ceiling": 0.95, "random_share": 0.25}),)


@dataclass(frozen=True)
class Budget:
    """How much of everything. `small` is a smoke run (minutes); `full` the README's tables on a 2-core CPU; `gpu`
    the same comparison with more negatives, epochs and tokens for a machine with a GPU. Another setting is a
    `budget` entry in a --config file."""
    name: str
    models: str  # the ensemble (and, first of them, the dense arm's model); also the hybrid first stage's
    start: str  # the re-ranker's start encoder
    epochs: int  # passes over each arm's training examples
    batch_size: int  # examples per step, each one positive and `negatives` negatives
    max_length: int  # tokens per (query, document) pair
    top_k: int  # first-stage documents re-ranked per test (and tuning) query
    test_queries: Optional[int]  # at most this many test queries (the first ones by id); None: all
    train_queries: Optional[int]  # at most this many training queries; None: all
    seeds: Tuple[int, ...] = (0,)
    lr: float = 7e-5  # peak learning rate
    negatives: int = 7  # mined per query, and per training example (listwise: 1 + 7 documents)
    precision: str = "auto"  # of the encoders and the re-ranker: bfloat16 where the hardware has it (embed.py)
    corpus_docs: Optional[int] = None  # at most this many documents (every judged one kept, see cut_corpus); None: all
    max_steps: Optional[int] = None  # optimiser steps per model, replacing epochs (tests); None: whole epochs


BUDGETS = {
    # a smoke run: MiniLM alone, the corpus cut; its numbers only show that everything runs
    "small": Budget("small", "all-MiniLM-L6-v2", "all-MiniLM-L6-v2", epochs=1, batch_size=4, max_length=128,
                    top_k=20, test_queries=40, train_queries=200, corpus_docs=1500),
    # for a 2-core CPU, the ablation's recipe (scripts/results/recipe.md): the triplet loss over each of a query's 7
    # mined negatives, one epoch, 128 tokens; the top 100 re-ranked. On SciFact, on a 2-core AMD EPYC with
    # AVX512-BF16 in bfloat16: about 1,440 steps, 6.4 to 8.7 minutes of training at 22 to 24 pairs/s, re-ranking at
    # 113 to 130 pairs/s (300 queries x 100 documents: 4 minutes); 13 to 17 minutes a model, about 6 hours for the 23
    # with --clustering-arms
    "full": Budget("full", MODELS, "all-MiniLM-L6-v2", epochs=1, batch_size=4,
                   max_length=128, top_k=100, test_queries=None, train_queries=None, seeds=(0, 1, 2)),
    # for one GPU: the full budget's recipe with what two CPU cores could not afford: 15 mined negatives a query,
    # three epochs (the best held-out epoch kept), 256 tokens (most SciFact abstracts whole, against 128: 298 of its
    # 300 test queries have a relevant document beyond 128), batches of 16. The start stays MiniLM: an offline GPU
    # machine gets its weights in a bundle (gpu_bundle.py), and MiniLM's 91 MB are a fifth of MPNet's 438 MB
    "gpu": Budget("gpu", MODELS, "all-MiniLM-L6-v2", epochs=3, batch_size=16,
                  max_length=256, top_k=100, test_queries=None, train_queries=None, seeds=(0, 1, 2), negatives=15),
}


@dataclass(frozen=True)
class ExperimentConfig:  # experiment.py
    train_split: str = setting("train", "the split mined and trained on")
    test_split: str = setting("test", "the split judged")
    first_stage: str = setting("hybrid", "the first stage whose top k is re-ranked", choices=FIRST_STAGES)
    budget: Budget = BUDGETS["small"]
    arms: Tuple[Arm, ...] = ARMS
    # train.py's; the ablation's best, and the paper's (negatives 1 per example)
    loss: str = setting("triplet", "the re-rankers' loss (triplet: each mined negative its own example)",
                        choices=LOSSES[:3])
    resamples: int = setting(2000, ge=1)  # bootstrap and randomisation test
    # each arm's first-seed model also re-ranks this first stage's top k alone (alpha 1), against that first stage
    # alone: does the re-ranker by itself beat BM25 on BM25's own candidates? None: not
    check: Optional[str] = setting("bm25", choices=FIRST_STAGES)

    def __post_init__(self):
        check(self)

    @classmethod
    def load(cls, path: Path, **overrides) -> "ExperimentConfig":
        """A JSON file {"arms": [{"name", "mine", "passages"}...], "budget": {...} or "small", ...} over the defaults."""
        raw = json.loads(Path(path).read_text())
        if "arms" in raw:
            raw["arms"] = tuple(Arm(**a) for a in raw["arms"])
        if isinstance(raw.get("budget"), str):
            raw["budget"] = BUDGETS[raw["budget"]]
        elif isinstance(raw.get("budget"), dict):
            raw["budget"] = Budget(**{**raw["budget"], "seeds": tuple(raw["budget"].get("seeds", (0,)))})
        return replace(cls(**raw), **overrides)

    def train_config(self, seed: int) -> TrainConfig:
        b = self.budget
        return TrainConfig(loss=self.loss, negatives=1 if self.loss == "triplet" else b.negatives,
                           batch_size=b.batch_size, epochs=b.epochs, max_steps=b.max_steps, max_length=b.max_length,
                           lr=b.lr, seed=seed, min_steps=0,  # the budget's epochs, as the tables were made
                           precision=b.precision, save_every=200)

