"""A BERT sentence encoder in plain torch: the bundled all-MiniLM-L6-v2 without the
sentence-transformers and transformers packages.

Why: importing sentence-transformers pulls in transformers' model machinery, scikit-learn,
SciPy, SymPy and Pillow: ~170 MB of resident memory and seconds of import on top of
torch, for a model that is six BERT layers, mean pooling and L2 normalization. Here the
same forward pass is written out over the safetensors weights and the tokenizer runs
from ``tokenizer.json`` (the ``tokenizers`` library), so the vectors are the ones
sentence-transformers makes (tests compare them) at about half the memory.

Only models that are exactly that shape are read here (:func:`plain_bert`): a BERT
checkpoint with sentence-transformers modules Transformer, mean Pooling and Normalize.
Anything else goes through sentence-transformers (:mod:`memory.embedder`).

torch is imported by whoever calls :func:`load` (the loading thread), never at import.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# Texts per forward pass are also capped by padded tokens: attention memory grows with
# batch x length^2, and 64 texts of 256 tokens would want ~200 MB for the scores alone.
# Measured on 64 texts of 256 tokens: peak RSS 381 MB at 2,048 tokens, 471 MB at 4,096,
# for ~15 % more time; short texts (the usual notes) fill a batch either way.
MAX_BATCH_TOKENS = 2048

_MODULES = [
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
]


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def plain_bert(model_dir: Path) -> bool:
    """Whether ``model_dir`` is a BERT model with mean pooling and normalization only."""
    try:
        modules = _read_json(model_dir / "modules.json")
        config = _read_json(model_dir / "config.json")
        pooling = _read_json(model_dir / "1_Pooling" / "config.json")
    except (OSError, ValueError):
        return False
    if [m.get("type") for m in modules] != _MODULES or config.get("model_type") != "bert":
        return False
    modes = {k: v for k, v in pooling.items() if k.startswith("pooling_mode")}
    return (
        modes.get("pooling_mode_mean_tokens") is True
        and sum(bool(v) for v in modes.values()) == 1
        and config.get("hidden_act") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and (model_dir / "model.safetensors").is_file()
        and (model_dir / "tokenizer.json").is_file()
    )


@dataclass(frozen=True, slots=True)
class _Shape:
    hidden: int
    heads: int
    layers: int
    eps: float
    max_tokens: int


class BertEncoder:
    """Six (or N) BERT layers, mean pooling, L2 normalization; inference only, CPU.

    Args:
        model_dir: a directory :func:`plain_bert` accepts.
    """

    def __init__(self, model_dir: Path) -> None:
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        config = _read_json(model_dir / "config.json")
        st_config = _read_json(model_dir / "sentence_bert_config.json")
        max_tokens = min(
            int(st_config.get("max_seq_length") or 512), int(config["max_position_embeddings"])
        )
        self._shape = _Shape(
            hidden=int(config["hidden_size"]),
            heads=int(config["num_attention_heads"]),
            layers=int(config["num_hidden_layers"]),
            eps=float(config.get("layer_norm_eps", 1e-12)),
            max_tokens=max_tokens,
        )
        weights = load_file(str(model_dir / "model.safetensors"), device="cpu")
        self._w: dict[str, torch.Tensor] = {
            k: v for k, v in weights.items() if not k.startswith("pooler.")
        }
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=max_tokens)
        tokenizer.no_padding()
        self._tokenizer = tokenizer

    @property
    def dim(self) -> int:
        """The width of a sentence vector."""
        return self._shape.hidden

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """L2-normalized float32 vectors, one row per text, in the order given."""
        import numpy as np
        import torch

        encodings = self._tokenizer.encode_batch(list(texts))
        ids = [e.ids for e in encodings]
        # Longest first, as sentence-transformers does: little padding per batch.
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = np.zeros((len(ids), self._shape.hidden), dtype=np.float32)
        start = 0
        with torch.inference_mode():
            while start < len(order):
                longest = max(1, len(ids[order[start]]))
                fits = max(1, min(batch_size, MAX_BATCH_TOKENS // longest))
                chunk = order[start : start + fits]
                vectors = self._forward([ids[i] for i in chunk])
                out[chunk] = vectors.numpy()
                start += fits
        return out

    def _forward(self, batch: list[list[int]]) -> Any:
        import torch
        from torch.nn import functional as F

        w, s = self._w, self._shape
        length = max(len(row) for row in batch)
        ids = torch.zeros((len(batch), length), dtype=torch.long)
        mask = torch.zeros((len(batch), length), dtype=torch.bool)
        for i, row in enumerate(batch):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = True
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        head = s.hidden // s.heads
        keep = mask[:, None, None, :]  # padding is never attended to

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(len(batch), length, s.heads, head).transpose(1, 2)

        for n in range(s.layers):
            p = f"encoder.layer.{n}."
            q = split(self._linear(x, p + "attention.self.query"))
            k = split(self._linear(x, p + "attention.self.key"))
            v = split(self._linear(x, p + "attention.self.value"))
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=1 / math.sqrt(head))
            a = a.transpose(1, 2).reshape(len(batch), length, s.hidden)
            x = self._norm(
                self._linear(a, p + "attention.output.dense") + x, p + "attention.output.LayerNorm"
            )
            h = F.gelu(self._linear(x, p + "intermediate.dense"))
            x = self._norm(self._linear(h, p + "output.dense") + x, p + "output.LayerNorm")
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, p=2.0, dim=1)

    def _linear(self, x: Any, name: str) -> Any:
        from torch.nn import functional as F

        return F.linear(x, self._w[name + ".weight"], self._w[name + ".bias"])

    def _norm(self, x: Any, name: str) -> Any:
        from torch.nn import functional as F

        return F.layer_norm(
            x,
            (self._shape.hidden,),
            self._w[name + ".weight"],
            self._w[name + ".bias"],
            self._shape.eps,
        )
