"""BERT and MPNet encoders in plain PyTorch, with the upstream checkpoints' own tensor names.

References:
- BERT: Devlin et al., 2019, arXiv 1810.04805; Hugging Face transformers `models/bert/modeling_bert.py`.
- MPNet: Song et al., 2020, arXiv 2004.09297; transformers `models/mpnet/modeling_mpnet.py` (relative position
  buckets from T5, Raffel et al., 2020, arXiv 1910.10683, section 2.1).

Both are post-LayerNorm transformer encoders: embeddings -> N x [self-attention, add & norm, feed-forward with exact
GELU, add & norm]. They differ in three places, each marked below: MPNet has no token-type embeddings, numbers its
positions from padding_idx + 1, and adds a learned bias per (relative-distance bucket, head) to the attention scores.

Module attribute names equal the checkpoint's tensor names, so `state_dict()` keys equal the safetensors keys and
loading is a strict key-for-key copy (weights.load_safetensors_strict). The checkpoints also carry
`embeddings.position_ids` and `pooler.dense.*`; the first is kept as a persistent buffer, the second as the pooler
that a sequence-classification head may use.

Not here: pooling (pooling.py), tokenisation (tokenize.py), masked-LM heads, cross-attention, key/value caches.

Shapes: B batch, T tokens, H hidden size, nh heads, hs = H / nh head size, I intermediate (feed-forward) size.
"""

import json
import math
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from hnm.allocator import keep_freed_memory
from hnm.data import read_json
from hnm.errors import InputError


@dataclass(frozen=True)
class EncoderConfig:
    """The fields of an upstream config.json that the encoder uses; every other key there is ignored."""
    model_type: str  # "bert" or "mpnet"
    vocab_size: int
    hidden_size: int  # H
    num_hidden_layers: int
    num_attention_heads: int  # nh
    intermediate_size: int  # I
    max_position_embeddings: int
    layer_norm_eps: float
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    type_vocab_size: int = 2  # BERT only
    pad_token_id: int = 0  # MPNet numbers positions from pad_token_id + 1
    relative_attention_num_buckets: int = 32  # MPNet only
    hidden_act: str = "gelu"  # only the exact (erf) GELU is implemented

    @classmethod
    def from_json(cls, path: Path) -> "EncoderConfig":
        raw = read_json(path)
        if not isinstance(raw, dict):
            raise InputError(f"{path}: expected a JSON object, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.name not in raw and f.default is MISSING]
        if missing:
            raise InputError(f"{path}: lacks {', '.join(missing)}")
        cfg = cls(**{k: v for k, v in raw.items() if k in known})
        if cfg.model_type not in ("bert", "mpnet"):
            raise InputError(f"{path}: model_type {cfg.model_type!r} is not bert or mpnet")
        if cfg.hidden_act != "gelu":
            raise InputError(f"{path}: hidden_act {cfg.hidden_act!r}; only 'gelu' (exact) is implemented")
        return cfg


# ------------------------------------------------------------------------------------------------ shared parts


class Intermediate(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # exact GELU, x * Phi(x), as upstream's "gelu"


class Output(nn.Module):
    """dense -> dropout -> add the residual -> LayerNorm (post-norm), used after attention and after the FFN."""

    def __init__(self, cfg: EncoderConfig, d_in: int):
        super().__init__()
        self.dense = nn.Linear(d_in, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, nh: int, mask: Optional[torch.Tensor],
              dropout: float) -> torch.Tensor:
    """Multi-head scaled dot-product attention. q, k, v: (B, T, H); mask: additive, broadcastable to (B, nh, T, T),
    or None when every key may be attended."""
    B, T, H = q.shape
    q, k, v = (x.view(B, T, nh, H // nh).transpose(1, 2) for x in (q, k, v))  # (B, nh, T, hs)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)  # (B, nh, T, hs)
    return y.transpose(1, 2).reshape(B, T, H)  # (B, T, H)


class Pooler(nn.Module):
    """tanh(dense(h_CLS)): the upstream pooler, kept because the checkpoints carry it."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # (B, H)


def padding_bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, T) 1/0 mask -> (B, 1, 1, T) additive bias: 0 where a key may be attended, the dtype's minimum where not."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


# ------------------------------------------------------------------------------------------------------- BERT


class BertEmbeddings(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        self.register_buffer("position_ids", torch.arange(cfg.max_position_embeddings)[None, :])  # (1, P)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.shape[1]
        x = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
             + self.position_embeddings(self.position_ids[:, :T]))  # (B, T, H)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.nh = cfg.num_attention_heads
        self.p = cfg.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        return attention(self.query(x), self.key(x), self.value(x), self.nh, mask, self.p if self.training else 0.0)


class BertAttention(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = Output(cfg, cfg.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class BertLayer(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = Output(cfg, cfg.intermediate_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class LayerStack(nn.Module):
    def __init__(self, cfg: EncoderConfig, layer: type):
        super().__init__()
        self.layer = nn.ModuleList(layer(cfg) for _ in range(cfg.num_hidden_layers))


class BertModel(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = LayerStack(cfg, BertLayer)
        self.pooler = Pooler(cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, T) token ids and mask -> (B, T, H) last hidden states."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        # no mask at all when nothing is padded: attention then takes its fused path, 7 to 15% faster on CPU
        mask = None if bool(attention_mask.all()) else padding_bias(attention_mask, x.dtype)  # (B, 1, 1, T)
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return x


# ------------------------------------------------------------------------------------------------------ MPNet


class MPNetEmbeddings(nn.Module):
    """Word and position embeddings; no token types (difference 1), positions from pad + 1 (difference 2)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.padding_idx = cfg.pad_token_id
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size,
                                                padding_idx=cfg.pad_token_id)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        # Carried by the checkpoint but not used: positions depend on where the padding is (RoBERTa's rule).
        self.register_buffer("position_ids", torch.arange(cfg.max_position_embeddings)[None, :])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # Real tokens get positions pad+1, pad+2, ...; padding tokens get position pad (its embedding row).
        real = (input_ids != self.padding_idx).long()  # (B, T)
        positions = torch.cumsum(real, dim=1) * real + self.padding_idx  # (B, T)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)  # (B, T, H)
        return self.dropout(self.LayerNorm(x))


class MPNetSelfAttention(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.q = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.k = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.v = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.o = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.nh = cfg.num_attention_heads
        self.p = cfg.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.o(attention(self.q(x), self.k(x), self.v(x), self.nh, mask, self.p if self.training else 0.0))


class MPNetAttention(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.attn = MPNetSelfAttention(cfg)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.attn(x, mask)) + x)


class MPNetLayer(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.attention = MPNetAttention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = Output(cfg, cfg.intermediate_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


def relative_position_bucket(relative: torch.Tensor, num_buckets: int = 32, max_distance: int = 128) -> torch.Tensor:
    """Map key-minus-query distances to buckets: half the buckets per direction; within each half, distances below
    a quarter of num_buckets get a bucket each and longer ones share log-spaced buckets up to max_distance.

    With 32 buckets: distance 0 -> 0, -1 (key one before the query) -> 1, +1 -> 17, +7 -> 23, +8..+11 -> 24,
    +128 and beyond -> 31.
    """
    half = num_buckets // 2
    n = -relative
    bucket = (n < 0).long() * half  # keys after the query use the upper half
    n = n.abs()
    exact = half // 2
    # log-spaced buckets for |distance| in [exact, max_distance); clamp(min=1) only keeps log() finite where unused
    log_bucket = exact + (torch.log(n.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                          * (half - exact)).long()
    log_bucket = torch.clamp(log_bucket, max=half - 1)
    return bucket + torch.where(n < exact, n, log_bucket)


class MPNetEncoder(LayerStack):
    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg, MPNetLayer)
        self.relative_attention_bias = nn.Embedding(cfg.relative_attention_num_buckets, cfg.num_attention_heads)
        self.num_buckets = cfg.relative_attention_num_buckets

    def position_bias(self, T: int) -> torch.Tensor:
        """(1, nh, T, T) learned bias per head for each (query, key) pair's distance bucket (difference 3)."""
        pos = torch.arange(T, device=self.relative_attention_bias.weight.device)
        buckets = relative_position_bucket(pos[None, :] - pos[:, None], self.num_buckets)  # (T, T)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)[None]  # (1, nh, T, T)


class MPNetModel(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = MPNetEmbeddings(cfg)
        self.encoder = MPNetEncoder(cfg)
        self.pooler = Pooler(cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, T) token ids and mask -> (B, T, H) last hidden states; token_type_ids are ignored (no such embedding)."""
        x = self.embeddings(input_ids)
        T = input_ids.shape[1]
        mask = padding_bias(attention_mask, x.dtype) + self.encoder.position_bias(T).to(x.dtype)  # (B, nh, T, T)
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return x


def build_encoder(cfg: EncoderConfig) -> nn.Module:
    """A randomly initialised encoder of the configured kind (load weights with weights.load_safetensors_strict).
    The process's allocator is set first to keep large freed blocks for reuse (allocator.py: on CPU, encoding 1.1x
    and training 1.3x faster)."""
    keep_freed_memory()
    return {"bert": BertModel, "mpnet": MPNetModel}[cfg.model_type](cfg)
