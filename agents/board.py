"""The operator's board: what ``/today`` says, with the pending cards themselves.

A dashboard (Slack's App Home tab) shows the same read as ``/today``
(:func:`agents.digest_compose.compose_today` over :class:`~agents.digest_port.DigestSource`),
except that the decisions are the pending cards with their real buttons (the desk's
own :meth:`~agents.approvals.ApprovalDesk.card`, so a press there is a press on the
card), plus when the last digest went out.

:meth:`BoardReader.edit_form` answers what an edit form needs: the current editable
text of a pending action card, or why that card cannot be edited (the same reasons
``/edit`` gives).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from agents.approvals import ApprovalDesk
from agents.digest_compose import Digest, compose_today
from agents.digest_port import DigestSource, end_of_day
from agents.replies import Reply
from memory.actions import ActionRepo, ActionRow
from memory.approvals import ApprovalRow, ApprovalState
from memory.clock import Clock
from memory.events import EventLog
from memory.store import Store

MAX_CARDS = 20  # a Home view holds 100 blocks; each card takes about four
DIGEST_LOOKBACK = timedelta(hours=36)  # a daily digest, with room for a late one


@dataclass(frozen=True, slots=True)
class LastDigest:
    """When the last digest went out, and what it spoke of."""

    at: datetime
    all_clear: bool
    sections: tuple[str, ...]
    late: bool = False


@dataclass(frozen=True, slots=True)
class Board:
    """One read of what needs the operator: ``today`` without the decisions (those are
    ``cards``), the cards (oldest first, at most :data:`MAX_CARDS`), how many more wait,
    and the last digest."""

    now: datetime
    timezone: str
    today: Digest
    cards: tuple[Reply, ...] = ()
    more_cards: int = 0
    last_digest: LastDigest | None = None


@dataclass(frozen=True, slots=True)
class EditForm:
    """A pending action card's editable text, for an edit form."""

    code: str
    param: str
    text: str
    summary: str


def edit_problem(
    row: ApprovalRow | None, action: ActionRow | None, code: str, now: datetime
) -> str | None:
    """Why the card ``code`` cannot be edited now (as ``/edit`` says it), or None."""
    if row is None:
        return f"No card has the code {code!r}. /pending lists them."
    if row.state is not ApprovalState.PENDING:
        return f"{row.code}: It is already {row.state.value}; only a waiting card can be edited."
    if row.expires_at <= now:
        return f"{row.code}: It has expired; only a waiting card can be edited."
    if row.purpose != "action" or action is None or action.editable is None:
        return f"{row.code}: This card has no text to edit: approve or reject it as it is."
    return None


class BoardReader:
    """Reads the board and edit forms (read only: nothing here changes a card)."""

    def __init__(
        self,
        store: Store,
        events: EventLog,
        desk: ApprovalDesk,
        source: DigestSource,
        clock: Clock,
    ) -> None:
        self._store = store
        self._events = events
        self._desk = desk
        self._source = source
        self._clock = clock

    async def read(self) -> Board:
        """The board now: one facts read, the cards with their buttons, the last digest."""
        now = self._clock.now()
        facts = await self._source.facts(now, end_of_day(now, self._source.timezone))
        # The decisions become the cards themselves; a dead letter with no card left
        # stays a line of text, as in /today.
        rest = replace(
            facts,
            pending_approvals=(),
            dead_letters=tuple(d for d in facts.dead_letters if d.card is None),
        )
        today = compose_today(rest)
        wanted = [card.approval_id for card in compose_today(facts).cards]
        cards: list[Reply] = []
        if wanted:
            shown = wanted[:MAX_CARDS]
            # One short transaction: the button tokens and each action's editability.
            async with self._store.write() as tx:
                for approval_id in shown:
                    found = await self._desk.repo.get(approval_id)
                    if found is not None and found.state is ApprovalState.PENDING:
                        cards.append(await self._desk.card(tx, found))
        return Board(
            now=now,
            timezone=self._source.timezone,
            today=today,
            cards=tuple(cards),
            more_cards=max(0, len(wanted) - MAX_CARDS),
            last_digest=await self._last_digest(now),
        )

    async def _last_digest(self, now: datetime) -> LastDigest | None:
        # Events have no index on kind: look back a bounded window (on the ts index).
        found = await self._events.query(
            since=now - DIGEST_LOOKBACK, kind="digest.sent", newest_first=True, limit=1
        )
        if not found:
            return None
        event = found[0]
        return LastDigest(
            at=event.ts,
            all_clear=bool(event.payload.get("all_clear")),
            sections=tuple(str(s) for s in event.payload.get("sections", ())),
            late=bool(event.payload.get("late")),
        )

    async def edit_form(self, code: str) -> EditForm | str:
        """The editable text of the pending card ``code``, or why it has none."""
        code = code.strip().upper()
        async with self._store.write() as tx:
            row = await self._desk.repo.by_code(tx, code)
            action = None
            if row is not None:
                action = await ActionRepo(self._store).waiting_for_approval(tx, row.task_id)
        problem = edit_problem(row, action, code, self._clock.now())
        if problem is not None:
            return problem
        assert row is not None and action is not None and action.editable is not None
        return EditForm(
            code=row.code,
            param=action.editable,
            text=str(action.params.get(action.editable, "")),
            summary=row.summary,
        )
