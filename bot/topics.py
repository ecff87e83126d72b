"""Where a binding (``/bind``) holds on each platform, and the text a bound message stands for.

A Telegram forum topic, a Telegram chat without topics and a console conversation are
bound as they are (chat and thread). A Slack reply thread is no topic: it is opened per
command or mention, so a binding made anywhere in a Slack channel (or DM) holds for the
whole channel.
"""

from __future__ import annotations

from agents.intents import Conversation
from agents.registry import Registry
from agents.topics import bound_text
from memory.bindings import Binding, Place

# Platforms whose threads are replies, not standing topics: bind the channel. By name:
# importing the Slack front end's models here would put them on every start-up's path.
_CHANNEL_WIDE = frozenset({"slack"})


def binding_place(conversation: Conversation) -> Place:
    """Where a binding made in (or read for) ``conversation`` holds."""
    thread = None if conversation.platform in _CHANNEL_WIDE else conversation.thread_id
    return Place(conversation.platform, conversation.chat_id, thread)


def apply_binding(text: str, binding: Binding | None, registry: Registry) -> str | None:
    """What ``text`` is typed as under ``binding``: ``/invoice <text>`` in a topic bound to
    invoices; None when it stays as it is (no binding, a slash command, a feature that is
    no longer registered or bindable)."""
    if binding is None:
        return None
    spec = registry.bindable.get(binding.feature)
    return bound_text(text, spec.name) if spec is not None else None
