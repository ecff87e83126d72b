"""Errors of the agents layer.

AgentsError (root)
├── AgentError            an agent refuses or fails with a message meant for the operator
├── InvalidTransition     a task state change the state machine does not allow
└── ConfigurationError    agents wired wrongly (two agents claim one intent kind, ...)
"""

from __future__ import annotations


class AgentsError(Exception):
    """Root of every error the agents layer raises."""


class AgentError(AgentsError):
    """An agent could not do what was asked; ``str(error)`` is shown to the operator."""


class InvalidTransition(AgentsError):
    """A task may not move from one state to another."""


class ConfigurationError(AgentsError):
    """The agents were wired together wrongly."""
