"""Actions: the side effects agents propose and the coordinator carries out.

An agent never calls a connector. It returns :class:`Propose` with an
:class:`Action`; the coordinator checks the agent's capabilities and budget, runs
the policy gate, asks for approval when the gate says so, records the action before
calling the connector, and gives the result back to the agent
(:meth:`agents.base.Agent.on_result`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agents.fingerprint import fingerprint
from memory.actions import ActionRow


@dataclass(frozen=True, slots=True)
class Risk:
    """What makes an action risky, as the policy gate reads it."""

    amount: Decimal | None = None
    currency: str | None = None
    new_recipient: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "amount": None if self.amount is None else str(self.amount),
            "currency": self.currency,
            "new_recipient": self.new_recipient,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Risk:
        amount = data.get("amount")
        return cls(
            amount=None if amount is None else Decimal(str(amount)),
            currency=data.get("currency"),
            new_recipient=bool(data.get("new_recipient", False)),
        )


@dataclass(frozen=True, slots=True)
class Action:
    """One side effect: ``connector.operation(params)``.

    ``name`` is what policies call it (``<agent>.<name>``, e.g. ``ops.hook``);
    ``summary`` is what the operator reads on a card (who, what, how much);
    ``compensation`` is the action that undoes this one, if there is one;
    ``editable`` names the one parameter (a string, such as an email's ``text``) the
    operator may replace with ``/edit CODE new text`` before approving.
    """

    name: str
    connector: str
    operation: str
    params: dict[str, Any]
    summary: str
    risk: Risk = field(default_factory=Risk)
    compensation: Action | None = None
    editable: str | None = None

    def __post_init__(self) -> None:
        if self.editable is not None and not isinstance(self.params.get(self.editable), str):
            raise ValueError(f"editable names {self.editable!r}, which is not a text parameter")

    def spec(self) -> dict[str, Any]:
        """The exact content an approval binds (its fingerprint covers all of it)."""
        return {
            "name": self.name,
            "connector": self.connector,
            "operation": self.operation,
            "params": self.params,
            "risk": self.risk.as_json(),
        }

    def fingerprint(self, agent: str) -> str:
        """Any change to the action changes this."""
        return fingerprint(agent, self.spec())

    def as_json(self) -> dict[str, Any]:
        """For storing a compensation."""
        data = self.spec()
        data["summary"] = self.summary
        if self.compensation is not None:
            data["compensation"] = self.compensation.as_json()
        if self.editable is not None:
            data["editable"] = self.editable
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Action:
        comp = data.get("compensation")
        return cls(
            name=data["name"],
            connector=data["connector"],
            operation=data["operation"],
            params=data["params"],
            summary=data["summary"],
            risk=Risk.from_json(data.get("risk", {})),
            compensation=None if comp is None else cls.from_json(comp),
            editable=data.get("editable"),
        )


@dataclass(frozen=True, slots=True)
class Propose:
    """An agent's outcome that asks the coordinator to carry out an action."""

    action: Action
    undo_of: int | None = None


def action_spec(row: ActionRow) -> dict[str, Any]:
    """The approval-bound content of a stored action (what its fingerprint covers)."""
    return {
        "name": row.name,
        "connector": row.connector,
        "operation": row.operation,
        "params": row.params,
        "risk": row.risk,
    }


def compensation_of(row: ActionRow) -> Action | None:
    """The stored compensation of an action, as an Action to propose."""
    return None if row.compensation is None else Action.from_json(row.compensation)
