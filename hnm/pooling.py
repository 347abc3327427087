"""Pooling token states into one vector per text, and L2 normalisation.

Each rule is a named function over (B, T, H) hidden states and the (B, T) attention mask, chosen by name through
`pool(name, ...)`; the rules and their use follow sentence-transformers' `Pooling` module (Reimers and Gurevych,
2019, arXiv 1908.10084, section 3):

- `cls`:  the state of the first token ([CLS] or <s>), as BERT's next-sentence head reads it;
- `mean`: the mean of the states of real tokens only (padding excluded), what all-MiniLM-L6-v2 and
  all-mpnet-base-v2 were trained with;
- `max`:  the element-wise maximum over real tokens.

Not here: weighted-mean or last-token pooling, and learned projections after pooling.
Shapes: B batch, T tokens, H hidden size.
"""

import torch
import torch.nn.functional as F


def cls_pooling(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return hidden[:, 0]  # (B, H)


def mean_pooling(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of real-token states over their count; the count is clamped so that an all-padding row gives zeros."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)  # (B, H)


def max_pooling(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Padding positions are set to the dtype's minimum so they never win."""
    masked = hidden.masked_fill(mask.unsqueeze(-1) == 0, torch.finfo(hidden.dtype).min)  # (B, T, H)
    return masked.max(dim=1).values  # (B, H)


POOLINGS = {"cls": cls_pooling, "mean": mean_pooling, "max": max_pooling}


def pool(name: str, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H) states and (B, T) mask -> (B, H) by the rule `name` ('cls', 'mean' or 'max')."""
    if name not in POOLINGS:
        raise ValueError(f"unknown pooling {name!r}; choose one of {', '.join(POOLINGS)}")
    return POOLINGS[name](hidden, mask)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length, so that inner products are cosines; a zero row stays zero."""
    return F.normalize(x, p=2, dim=-1, eps=1e-12)
