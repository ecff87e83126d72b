"""The bindings port: which conversations are bound to which feature (``/bind``).

The topics feature (:mod:`agents.topics`) holds it. ``place`` says where a conversation's
binding holds: by default its platform, chat and thread; a front end whose threads are
no topics (Slack's reply threads) gives one that binds the whole channel instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from agents.feature import CommandSpec
from agents.intents import Conversation
from memory.bindings import BindingRepo, Place
from memory.clock import Clock


def place_of(conversation: Conversation) -> Place:
    """Where a binding made in ``conversation`` holds: its chat and thread."""
    return Place(conversation.platform, conversation.chat_id, conversation.thread_id)


class TopicBindings:
    """Read and change bindings; knows which features can be bound, and with which command."""

    def __init__(
        self,
        repo: BindingRepo,
        bindable: Mapping[str, CommandSpec],
        features: frozenset[str],
        clock: Clock,
        place: Callable[[Conversation], Place] = place_of,
    ) -> None:
        self._repo = repo
        self._bindable = dict(bindable)
        self._features = features
        self._clock = clock
        self._place = place

    @property
    def bindable(self) -> dict[str, CommandSpec]:
        """The command each bindable feature's bound text stands for, by feature name."""
        return dict(self._bindable)

    @property
    def features(self) -> frozenset[str]:
        """Every registered feature's name (bindable or not)."""
        return self._features

    def place(self, conversation: Conversation) -> Place:
        """Where a binding made in ``conversation`` holds."""
        return self._place(conversation)

    async def bound_command(self, conversation: Conversation) -> str | None:
        """The command plain text in ``conversation`` stands for (``invoice`` in a topic
        bound to invoices), or None: not bound, or bound to a feature no longer bindable."""
        feature = await self.current(conversation)
        spec = self._bindable.get(feature) if feature is not None else None
        return spec.name if spec is not None else None

    async def current(self, conversation: Conversation) -> str | None:
        """The feature ``conversation`` is bound to, or None."""
        found = await self._repo.get(self._place(conversation))
        return found.feature if found else None

    async def bind(self, conversation: Conversation, feature: str, actor: str) -> str | None:
        """Bind ``conversation``'s place to ``feature``; the feature it was bound to before."""
        previous = await self._repo.bind(
            self._place(conversation),
            feature,
            command=self._bindable[feature].name,
            actor=actor,
            now=self._clock.now(),
        )
        return previous.feature if previous else None

    async def unbind(self, conversation: Conversation, actor: str) -> str | None:
        """Remove ``conversation``'s binding; the feature it was bound to (None: none)."""
        removed = await self._repo.unbind(self._place(conversation), actor=actor)
        return removed.feature if removed else None
