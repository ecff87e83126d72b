"""Errors of the agents layer.

AgentsError (root)
├── AgentError            an agent could not do the work; the message is meant for the operator
│   └── Refusal           the request cannot be done as asked (an operator's mistake, a
│                         policy's no): said as is, recorded as ``task.refused``, not a failure
├── InvalidTransition     a state change the state tables (agents/states.py) do not allow
└── ConfigurationError    features or agents wired wrongly (two claim one kind or command...)
"""

from __future__ import annotations


class AgentsError(Exception):
    """Root of every error the agents layer raises."""


class AgentError(AgentsError):
    """An agent could not do what was asked; ``str(error)`` is shown to the operator."""


class Refusal(AgentError):
    """The operator asked for something that cannot be done as asked (a missing note id,
    a bad policy change, a policy that denies): a clear reply, not an agent failure."""


class InvalidTransition(AgentsError):
    """A task, action or approval may not move from one state to another."""


class ConfigurationError(AgentsError):
    """The features or agents were wired together wrongly; soloops refuses to start."""
