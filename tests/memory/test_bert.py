"""The plain-torch BERT encoder makes the vectors sentence-transformers makes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memory.bert import BertEncoder, plain_bert
from memory.embedder import SentenceTransformerEmbedder, default_model_path

TEXTS = [
    "Acme pays on the 1st",
    "",
    "Ünïcödé straße, 東京, emoji 🙂 and CAPITALS",
    "word " * 400,  # truncated at the model's 256 tokens
    "the invoice for Acme is due on Friday; send a reminder on Thursday",
    "a",
]


def _copy_with_pooling(tmp_path: Path, **pooling: bool) -> Path:
    """The bundled model's files (linked) with another pooling config."""
    source, model = default_model_path(), tmp_path / "model"
    model.mkdir()
    for item in source.iterdir():
        if item.name != "1_Pooling":
            (model / item.name).symlink_to(item)
    (model / "1_Pooling").mkdir()
    config = json.loads((source / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    (model / "1_Pooling" / "config.json").write_text(json.dumps({**config, **pooling}))
    return model


def test_only_plain_bert_with_mean_pooling_is_read_here(tmp_path: Path) -> None:
    assert plain_bert(default_model_path())
    cls = _copy_with_pooling(tmp_path, pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
    assert not plain_bert(cls)
    assert not plain_bert(tmp_path / "missing")


@pytest.mark.slow
def test_vectors_match_sentence_transformers(embedder: SentenceTransformerEmbedder) -> None:
    from sentence_transformers import SentenceTransformer

    ours = BertEncoder(default_model_path())
    # Two texts per pass: the long one and the short ones are padded in separate batches,
    # and the order given comes back.
    got = ours.encode(TEXTS, batch_size=2)
    reference = SentenceTransformer(str(default_model_path()), device="cpu").encode(
        TEXTS, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 384)
    assert np.abs(got - reference).max() < 1e-5
    # Batching does not change a vector: one at a time gives the same rows.
    alone = np.vstack([ours.encode([text]) for text in TEXTS])
    assert np.abs(got - alone).max() < 1e-5


@pytest.mark.slow
async def test_another_pooling_goes_through_sentence_transformers(tmp_path: Path) -> None:
    model = _copy_with_pooling(
        tmp_path, pooling_mode_cls_token=True, pooling_mode_mean_tokens=False
    )
    embedder = SentenceTransformerEmbedder(str(model))
    await embedder.ready()
    cls_vectors = embedder.embed(TEXTS[:2])
    mean_vectors = BertEncoder(default_model_path()).encode(TEXTS[:2])
    assert cls_vectors.shape == mean_vectors.shape
    assert np.abs(cls_vectors - mean_vectors).max() > 1e-3  # really the other pooling


@pytest.mark.slow
def test_the_default_model_loads_without_sentence_transformers(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from memory.embedder import SentenceTransformerEmbedder\n"
        "e = SentenceTransformerEmbedder()\n"
        "e.load()\n"
        "assert e.embed(['x']).shape == (1, 384)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLOOPS_")}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    imported = set(json.loads(done.stdout.strip().replace("'", '"')))
    assert "torch" in imported
    assert not imported & {"sentence_transformers", "transformers", "sklearn", "scipy"}
