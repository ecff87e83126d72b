"""LangGraph's nearest equivalent of a durable approval step, run in ``.venv-bench``.

A graph whose one node ``interrupt()``s for a yes/no, checkpointed by
``AsyncSqliteSaver`` on a file (WAL, ``synchronous=NORMAL``), then resumed with
``Command(resume=...)``; both calls with ``durability="sync"``. Prints one JSON object:
the CPU seconds (``time.process_time``) of each step and the versions used.

Usage: ``.venv-bench/bin/python bench/langgraph_step.py DB_PATH STEPS``. Imports nothing
of soloops (it runs in its own venv).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from importlib.metadata import version
from typing import Any, TypedDict

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt


class State(TypedDict):
    text: str
    answer: str


def ask(state: State) -> dict[str, Any]:
    answer = interrupt({"confirm": state["text"]})
    return {"answer": str(answer)}


async def main(path: str, steps: int) -> None:
    builder = StateGraph(State)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    async with AsyncSqliteSaver.from_conn_string(path) as saver:
        await saver.setup()
        await saver.conn.execute("PRAGMA journal_mode=WAL")
        await saver.conn.execute("PRAGMA synchronous=NORMAL")
        graph = builder.compile(checkpointer=saver)

        async def step(i: int) -> None:
            config: Any = {"configurable": {"thread_id": f"step-{i}"}}
            first = await graph.ainvoke(
                {"text": f"ship newsletter {i}", "answer": ""}, config, durability="sync"
            )
            if "__interrupt__" not in first:
                raise RuntimeError(f"the graph did not interrupt: {first!r}")
            done = await graph.ainvoke(Command(resume="approve"), config, durability="sync")
            if done.get("answer") != "approve":
                raise RuntimeError(f"the resume did not finish: {done!r}")

        await step(-1)  # warm-up: first compile and statement caches
        samples = []
        for i in range(steps):
            began = time.process_time()
            await step(i)
            samples.append(time.process_time() - began)
        journal = await (await saver.conn.execute("PRAGMA journal_mode")).fetchone()
    print(
        json.dumps(
            {
                "cpu_s": samples,
                "journal_mode": journal[0] if journal else None,
                "versions": {
                    name: version(name)
                    for name in ("langgraph", "langgraph-checkpoint-sqlite", "aiosqlite")
                },
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
