"""Synthetic memories and queries for the benchmark, and their cached embeddings.

Texts are made from templates over names, topics and numbers, so they read like an
operator's notes ("Acme prefers invoices on the 1st") and embed like real text: HNSW
recall measured on them means something (random vectors would not).
Embeddings are computed once with the real model and cached in ``bench/.cache``, so
later runs measure the store, not the encoder.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np

CACHE = Path(__file__).with_name(".cache")

_WHO = (
    "Acme Ltd Globex Initech Umbrella Hooli Stark Wayne Wonka Tyrell Cyberdyne Soylent Vandelay"
    " Dunder Oceanic Pied Piper Massive Dynamic Gringotts Monarch Aperture Blue Sun Virtucon"
    " Nakatomi Prestige Sterling Cooper Bluth Ollivander Zorg Duff Krusty Genco Olivia Marcus"
    " Priya Tom Lena Jonas Aiko Mateo Sofia Omar Chen Farah Nils Rosa Ivan Keiko Dario"
).split()
_TOPIC = (
    "invoices billing payment terms the renewal the contract the logo redesign onboarding"
    " the newsletter a discount the API integration support hours the roadmap shipping"
    " the workshop the retainer late fees the proposal the demo a refund hosting costs"
    " the launch date a referral the tax form the quarterly report a testimonial"
).split(" ")
_TEMPLATES = (
    "{who} prefers {topic} to be handled by email",
    "{who} asked about {topic} again on {day}",
    "Call with {who}: they want {topic} sorted before {month}",
    "{who} said {topic} is blocked until the {n}th",
    "Remind {who} about {topic} next {day}",
    "{who} is unhappy with {topic}; offer {n}% off",
    "{who} agreed to {topic} at {n}00 EUR per month",
    "Follow up with {who} on {topic} in {n} days",
    "{who} wants {topic} discussed at the {month} review",
    "Note: {who} pays {topic} late, usually by {n} days",
    "{who} recommended us to a friend after {topic}",
    "Send {who} the draft for {topic} by {day}",
)
_DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_MONTHS = (
    "January February March April May June July August September October November December"
).split()


def _topic(rng: random.Random) -> str:
    return rng.choice([t for t in _TOPIC if t])


def texts(n: int, seed: int = 7) -> list[str]:
    """``n`` note-like texts, the same for the same seed."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        template = rng.choice(_TEMPLATES)
        text = template.format(
            who=rng.choice(_WHO),
            topic=_topic(rng),
            day=rng.choice(_DAYS),
            month=rng.choice(_MONTHS),
            n=rng.randint(1, 30),
        )
        out.append(f"{text} (ref {i})")
    return out


def queries(n: int, seed: int = 11) -> list[str]:
    """``n`` questions an operator might ask."""
    rng = random.Random(seed)
    forms = (
        "what did {who} say about {topic}?",
        "when does {who} want {topic}?",
        "{who} {topic}",
        "who complained about {topic}?",
        "anything pending with {who}?",
    )
    return [rng.choice(forms).format(who=rng.choice(_WHO), topic=_topic(rng)) for _ in range(n)]


def embedded(name: str, items: list[str], encode: object | None = None) -> np.ndarray:
    """Embeddings of ``items``, read from the cache or computed once and cached."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"{name}-{len(items)}.npy"
    if path.exists():
        cached: np.ndarray = np.load(path)
        return cached
    from memory.embedder import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(batch_size=128)
    embedder.load()
    started = time.perf_counter()
    parts = []
    step = 4096
    for i in range(0, len(items), step):
        parts.append(embedder.embed(items[i : i + step]))
        done = min(i + step, len(items))
        rate = done / (time.perf_counter() - started)
        print(f"  embedding {name}: {done}/{len(items)} ({rate:.0f}/s)", flush=True)
    vectors = np.concatenate(parts).astype(np.float32)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors
