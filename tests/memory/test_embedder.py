"""The sentence-transformers embedder: offline, lazy, normalized, shared across loops."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from memory.embedder import DEFAULT_MODEL_ID, SentenceTransformerEmbedder, embed
from memory.errors import EmbedderUnavailable


def test_nothing_loads_until_asked() -> None:
    embedder = SentenceTransformerEmbedder()
    assert not embedder.is_ready and embedder.model_id == DEFAULT_MODEL_ID
    with pytest.raises(EmbedderUnavailable, match="not loaded"):
        embedder.embed(["x"])
    with pytest.raises(EmbedderUnavailable, match="not loaded"):
        _ = embedder.dim


@pytest.mark.slow
async def test_vectors_are_normalized_float32_and_offline(
    embedder: SentenceTransformerEmbedder,
) -> None:
    vectors = await embed(embedder, ["Acme pays on the 1st", "Acme is billed monthly", "a cat"])
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert vectors.dtype == np.float32 and vectors.shape == (3, embedder.dim) == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert embedder.embed([]).shape == (0, 384)


@pytest.mark.slow
def test_ready_works_from_any_event_loop(embedder: SentenceTransformerEmbedder) -> None:
    for _ in range(2):  # a fresh loop each time, as each test gets
        asyncio.run(embedder.ready())
    assert embedder.is_ready


@pytest.mark.slow
async def test_a_model_that_cannot_load_says_so(tmp_path: Path) -> None:
    broken = SentenceTransformerEmbedder(str(tmp_path / "missing"))
    with pytest.raises(EmbedderUnavailable, match="could not be loaded"):
        await broken.ready()
    assert broken.failed is not None
