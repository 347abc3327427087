"""Training losses of a cross-encoder over a query's positive and its negatives, each a named function.

Every loss takes `scores` of shape (B, 1 + n): row b holds the re-ranker's logits for example b's query paired with
its positive (column 0) and with its n negatives (columns 1..n). Each returns the mean over the batch, a 0-d tensor.

    scores = torch.tensor([[2.0, 0.5], [0.0, 1.0]])     # two triplets: s(q,p), s(q,n)
    triplet_margin(scores, margin=1.0)                  # mean(max(0, 1 - 2 + 0.5), max(0, 1 - 0 + 1)) = 1.0

Distillation has its own signature, as it needs the teacher's scores of the same pairs: `margin_mse(scores,
teacher)`, the teacher being the ensemble whose similarities the mined rows carry (positive_scores,
negative_scores), or the first stage whose fused scores firststage.annotate_rows adds. So has the graded listwise
loss, which needs each document's judgment: `listnet(scores, grades)`, grades (B, 1 + n), the negatives' 0.

Not here: LambdaLoss and other metric-driven listwise losses, other distillation losses (KL over the list, RankNet on teacher pairs), in-batch negatives (a cross-encoder scores each pair on its own, so other queries' documents cost a forward each).
"""

from typing import Callable, Dict

import torch
import torch.nn.functional as F


def triplet_margin(scores: torch.Tensor, margin: float) -> torch.Tensor:
    """mean over examples b and negatives j of max(0, margin - s(q_b, p_b) + s(q_b, n_bj)).

    The triplet loss on scores that the paper (arXiv 2411.02404) trains its re-ranker with: the hinge of Weinberger &
    Saul 2009 and Schroff et al. 2015 (FaceNet), put on relevance scores instead of distances. A negative costs
    nothing once the positive outscores it by `margin`. With n > 1 every (positive, negative) pair is a triplet.
    """
    positive, negatives = scores[:, :1], scores[:, 1:]  # (B, 1), (B, n)
    return F.relu(margin - positive + negatives).mean()


def binary_cross_entropy(scores: torch.Tensor, margin: float) -> torch.Tensor:
    """mean over all B(1 + n) pairs of -[y log sigmoid(s) + (1 - y) log(1 - sigmoid(s))], y = 1 for the positive.

    Pointwise relevance classification, as monoBERT (Nogueira & Cho 2019, arXiv 1901.04085) trains; each pair is
    judged on its own, so the positive and its negatives need not share a query batch. `margin` is not used.
    """
    targets = torch.zeros_like(scores)
    targets[:, 0] = 1.0
    return F.binary_cross_entropy_with_logits(scores, targets)


def softmax_cross_entropy(scores: torch.Tensor, margin: float) -> torch.Tensor:
    """mean over examples b of -log( exp(s(q_b, p_b)) / sum over the 1 + n documents d of exp(s(q_b, d)) ).

    Listwise: the positive must win a softmax over itself and the query's n negatives, the localised contrastive
    estimation of Gao, Dai & Callan 2021 (arXiv 2101.08751). `margin` is not used.
    """
    target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)  # (B,) the positive's column
    return F.cross_entropy(scores, target)


def margin_mse(scores: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """mean over examples b and negatives j of ((s(q,p) - s(q,n_j)) - (t(q,p) - t(q,n_j)))^2.

    MarginMSE (Hofstaetter et al. 2020, arXiv 2010.02666): the student matches the teacher's margin between the
    positive and each negative, not its scores, so teacher and student may live on different scales up to a shift;
    the scale is matched by multiplying the teacher's scores beforehand (train.py's teacher_scale).
    scores [[2, 0]], teacher [[1, 0]] -> (2 - 1)^2 = 1.
    """
    student = scores[:, :1] - scores[:, 1:]  # (B, n)
    target = teacher[:, :1] - teacher[:, 1:]  # (B, n)
    return F.mse_loss(student, target)


def listnet(scores: torch.Tensor, grades: torch.Tensor) -> torch.Tensor:
    """mean over examples b of -sum over the 1 + n documents d of softmax(grades_b)_d x log softmax(scores_b)_d.

    ListNet's top-one cross-entropy (Cao et al. 2007, "Learning to rank: from pairwise approach to listwise
    approach", ICML): the model's softmax over the list is pulled towards the softmax of the judgments, so a
    positive judged 4 (a complete answer, on Cranfield's scale) must stand further above the negatives (grade 0)
    than one judged 1; with every positive graded alike it is the softmax loss against a soft target.
    scores [[0, 0]], grades [[1, 0]] -> target [e / (e + 1), 1 / (e + 1)], loss ln 2 = 0.6931;
    scores [[1, 0]], grades [[0, 0]] -> target [0.5, 0.5], loss 0.5 (ln(1 + e) - 1) + 0.5 ln(1 + e) = 0.8133.
    """
    target = F.softmax(grades.float(), dim=1)  # (B, 1 + n)
    return -(target * F.log_softmax(scores, dim=1)).sum(dim=1).mean()


LOSSES: Dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "triplet": triplet_margin,
    "bce": binary_cross_entropy,
    "softmax": softmax_cross_entropy,
}


def loss_function(name: str) -> Callable[[torch.Tensor, float], torch.Tensor]:
    """The hard-label loss called `name`: one of triplet (the paper's), bce, softmax."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]
