"""A feature's use of the language model, within its daily spend budget.

Agents never call a connector for side effects (those are actions, through the policy
gate), but drafting text is a read: it changes nothing outside. This port lets an agent
ask the configured model, checks the agent's spend budget before the call, and records
tokens and cost against the agent after it (also when the answer did not parse), so
``/agents`` and the digest show spend. Without a model configured, :attr:`configured`
is False and features fall back to templates.

Text that came from outside (an email, a web form) goes in as data
(:func:`connectors.llm.outside_text`); what the model returns can only become an
action through the agent's capabilities and the policy gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar, overload

from pydantic import BaseModel

from agents.errors import AgentError
from agents.lifecycle import Lifecycle
from connectors.llm import (
    Completion,
    LanguageModel,
    Message,
    ModelNotConfigured,
    StructuredOutputError,
    Usage,
)
from memory.clock import Clock
from memory.control import SpendRepo
from memory.store import Store

M = TypeVar("M", bound=BaseModel)


class ModelPort:
    """The model, for one agent, counted against its budget."""

    def __init__(
        self,
        model: LanguageModel | None,
        agent: str,
        lifecycle: Lifecycle,
        store: Store,
        clock: Clock,
        model_name: str = "",
    ) -> None:
        self._model = model
        self._agent = agent
        self._lifecycle = lifecycle
        self._store = store
        self._clock = clock
        self._model_name = model_name
        self._spend = SpendRepo(store)

    @property
    def configured(self) -> bool:
        """Whether a model is set up (``SOLOOPS_LLM__BASE_URL`` and ``__MODEL``)."""
        return self._model is not None and self._model.configured

    @overload
    async def complete(
        self, messages: Sequence[Message], *, schema: None = None, idempotency_key: str
    ) -> Completion[None]: ...

    @overload
    async def complete(
        self, messages: Sequence[Message], *, schema: type[M], idempotency_key: str
    ) -> Completion[M]: ...

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: type[M] | None = None,
        idempotency_key: str,
    ) -> Completion[M] | Completion[None]:
        """Ask the model (see :meth:`connectors.llm.LanguageModel.complete`).

        Raises:
            ModelNotConfigured: no model is set up.
            AgentError: the agent's model spend for today is used up.
            TransientError, PermanentError: as the connector says.
        """
        if self._model is None or not self._model.configured:
            raise ModelNotConfigured(
                "no language model is configured: set SOLOOPS_LLM__BASE_URL and"
                " SOLOOPS_LLM__MODEL (any OpenAI-compatible server, e.g. Ollama)"
            )
        use = await self._lifecycle.budget_use(self._agent)
        if use.spend_limit and use.spend >= use.spend_limit:
            raise AgentError(
                f"{self._agent} has used its model budget for today"
                f" ({use.spend:.2f} of {use.spend_limit:.2f}); /agents shows budgets"
            )
        try:
            if schema is None:
                answer: Completion[M] | Completion[None] = await self._model.complete(
                    messages, idempotency_key=idempotency_key
                )
            else:
                answer = await self._model.complete(
                    messages, schema=schema, idempotency_key=idempotency_key
                )
        except StructuredOutputError as exc:
            await self._record(exc.usage, float(exc.cost))
            raise
        await self._record(answer.usage, float(answer.cost))
        return answer

    async def _record(self, usage: Usage, cost: float) -> None:
        async with self._store.write() as tx:
            await self._spend.record(
                tx,
                agent=self._agent,
                model=self._model_name,
                tokens_in=usage.input_tokens,
                tokens_out=usage.output_tokens,
                cost=cost,
                now=self._clock.now(),
            )
