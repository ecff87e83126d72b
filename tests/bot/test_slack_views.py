"""The Slack views as pure functions: the Home tab from a board, the edit modal, and
how Home presses and modal submissions become inbound messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from agents.board import Board, EditForm, LastDigest, edit_problem
from agents.digest_compose import DigestFacts, Failure, Section, compose_today
from agents.replies import Button, Reply
from bot.slack_blocks import ACTION_PREFIX, EDIT_ACTION, render
from bot.slack_inbound import BlockActions, ViewSubmission, action_inbound, edit_inbound
from bot.slack_views import (
    EDIT_BLOCK,
    EDIT_CALLBACK,
    EDIT_INPUT,
    MODAL_TEXT_MAX,
    edit_metadata,
    edit_modal,
    home_view,
    read_metadata,
    stranger_home_view,
    text_problem,
    too_long_to_edit_here,
)
from memory.approvals import ApprovalRow, ApprovalState
from tests.emulators.slack import home_click_payload, view_problem, view_submission_payload

NOW = datetime(2026, 3, 2, 14, 13, tzinfo=UTC)


def card(code: str, *, editable: bool = False, summary: str = "Email jane@acme.com") -> Reply:
    return Reply(
        text=f"Approval needed (followups)\n{summary}\n/approve {code} · /reject {code}",
        buttons=(
            Button(label="Approve", data=f"b:approve-{code}", style="primary"),
            Button(label="Reject", data=f"b:reject-{code}", style="danger"),
        ),
        edit_code=code if editable else None,
    )


def board(cards: tuple[Reply, ...] = (), facts: DigestFacts | None = None, **kw: object) -> Board:
    facts = facts or DigestFacts(now=NOW, timezone="Europe/Berlin")
    return Board(now=NOW, timezone="Europe/Berlin", today=compose_today(facts), cards=cards, **kw)  # type: ignore[arg-type]  # the optional fields by name


def actions(view: dict[str, object]) -> list[dict[str, object]]:
    blocks = view["blocks"]
    assert isinstance(blocks, list)
    return [b for b in blocks if b["type"] == "actions"]


def text_of(view: dict[str, object]) -> str:
    blocks = view["blocks"]
    assert isinstance(blocks, list)
    return "\n".join(
        str(b["text"]["text"]) if "text" in b else str(b.get("elements", [{}])[0].get("text", ""))
        for b in blocks
    )


def test_home_shows_each_card_with_its_own_buttons_and_unique_block_ids() -> None:
    view = home_view(board((card("K7Q2MX", editable=True), card("ABCDEF"))))
    assert view["type"] == "home"
    assert view_problem(view, "home") is None  # what the emulator (and Slack) would refuse
    first, second = actions(view)
    assert first["block_id"] != second["block_id"]
    assert [(e["action_id"], e["value"]) for e in first["elements"]] == [
        (f"{ACTION_PREFIX}0", "b:approve-K7Q2MX"),
        (f"{ACTION_PREFIX}1", "b:reject-K7Q2MX"),
        (EDIT_ACTION, "K7Q2MX"),
    ]
    assert [e["action_id"] for e in second["elements"]] == [
        f"{ACTION_PREFIX}0",
        f"{ACTION_PREFIX}1",
    ]
    text = text_of(view)
    assert "Decide (2)" in text and "Nothing needs you right now" not in text
    assert "15:13 CET" in text  # the operator's time zone


def test_home_lists_due_items_and_open_failures_as_today_does() -> None:
    facts = DigestFacts(
        now=NOW,
        timezone="UTC",
        due=(Section("Reminders due (1)", ("• 16:00 call the bank",)),),
        failures=(
            Failure(NOW - timedelta(hours=1), "action", "webhook rejected", "webhook-rejected"),
        ),
    )
    text = text_of(home_view(board(facts=facts)))
    assert "*Reminders due (1)*\n• 16:00 call the bank" in text
    assert "*Still failing*" in text and "/runbook webhook-rejected" in text
    assert actions(home_view(board(facts=facts))) == []


def test_home_when_nothing_waits_and_with_a_note_and_the_last_digest() -> None:
    last = LastDigest(
        at=NOW - timedelta(hours=6), all_clear=False, sections=("Failures (last 24 h)",)
    )
    view = home_view(board(last_digest=last), note="Approved.")
    text = text_of(view)
    assert "Nothing needs you right now." in text
    assert "Approved." in text.split("Nothing")[0]  # the note is on top
    assert "*Last digest*: Mon 02 Mar 09:13 CET: Failures (last 24 h)" in text
    assert "none in the last day" in text_of(home_view(board()))


def test_home_never_exceeds_slacks_block_limit() -> None:
    many = tuple(card(f"C{n:05d}", summary="x" * 4000) for n in range(40))
    view = home_view(board(many, more_cards=3))
    assert view_problem(view, "home") is None
    assert len(view["blocks"]) <= 100
    sections = [b for b in view["blocks"] if b["type"] == "section"]
    assert all(len(b["text"]["text"]) <= 3000 for b in sections)


def test_stranger_view_has_no_buttons_and_names_no_work() -> None:
    view = stranger_home_view()
    assert actions(view) == [] and "operator" in text_of(view)


def test_message_cards_get_an_edit_button_only_when_editable() -> None:
    _, editable = render(card("K7Q2MX", editable=True))
    _, plain = render(card("K7Q2MX"))
    assert editable[-1]["elements"][-1] == {
        "type": "button",
        "action_id": EDIT_ACTION,
        "text": {"type": "plain_text", "text": "Edit", "emoji": True},
        "value": "K7Q2MX",
    }
    assert [e["action_id"] for e in plain[-1]["elements"]] == [
        "soloops.button.0",
        "soloops.button.1",
    ]
    assert not EDIT_ACTION.startswith(ACTION_PREFIX)  # pressing Edit never decides


def test_edit_modal_holds_the_text_and_carries_the_card_back() -> None:
    form = EditForm(
        code="K7Q2MX", param="text", text="Hi Jane,\nThanks!", summary="Email to Jane\n..."
    )
    modal = edit_modal(form, edit_metadata("K7Q2MX", "C0001", "1700.1"))
    assert view_problem(modal, "modal") is None
    assert modal["callback_id"] == EDIT_CALLBACK
    [field] = [b for b in modal["blocks"] if b["type"] == "input"]
    assert field["block_id"] == EDIT_BLOCK
    assert field["element"] == {
        "type": "plain_text_input",
        "action_id": EDIT_INPUT,
        "multiline": True,
        "initial_value": "Hi Jane,\nThanks!",
        "max_length": MODAL_TEXT_MAX,
    }
    assert read_metadata(modal["private_metadata"]) == ("K7Q2MX", "C0001", "1700.1")
    assert read_metadata(edit_metadata("K7Q2MX", "U1", None)) == ("K7Q2MX", "U1", None)
    assert read_metadata("not json") is None
    assert read_metadata(json.dumps({"code": "", "channel": "C1"})) is None


def test_text_checks_and_a_text_too_long_for_the_form() -> None:
    assert text_problem("") and text_problem("   ") and text_problem(None)
    assert "3,000" in str(text_problem("x" * 3001))
    assert text_problem("Hi\nthere") is None
    long = EditForm(code="K7Q2MX", param="text", text="y" * 3001, summary="s")
    assert "/edit K7Q2MX <new text>" in str(too_long_to_edit_here(long))
    assert too_long_to_edit_here(EditForm("K7Q2MX", "text", "short", "s")) is None


def row(state: ApprovalState = ApprovalState.PENDING, purpose: str = "action") -> ApprovalRow:
    return ApprovalRow(
        id=1, code="K7Q2MX", task_id=1, agent="followups", summary="s", action="{}",
        fingerprint="f", conversation="{}", state=state, created_at=NOW,
        expires_at=NOW + timedelta(hours=1), decided_at=None, decided_by=None,
        card_outbox_id=None, purpose=purpose, labels=("Approve", "Reject"),
    )  # fmt: skip


def test_edit_problem_says_what_slash_edit_says() -> None:
    assert "No card has the code 'ZZZ'" in str(edit_problem(None, None, "ZZZ", NOW))
    decided = edit_problem(row(ApprovalState.APPROVED), None, "K7Q2MX", NOW)
    assert decided == "K7Q2MX: It is already approved; only a waiting card can be edited."
    assert "expired" in str(edit_problem(row(), None, "K7Q2MX", NOW + timedelta(hours=2)))
    assert "no text to edit" in str(edit_problem(row(purpose="budget"), None, "K7Q2MX", NOW))


def test_a_home_press_is_the_same_press_answered_in_the_operators_dm() -> None:
    element = {"action_id": "soloops.button.0", "value": "b:token"}
    payload = BlockActions.model_validate(
        home_click_payload(user="U1", element=element, view_id="VH1")
    )
    assert payload.on_home
    inbound = action_inbound(payload, NOW)
    assert inbound is not None
    assert (inbound.chat_id, inbound.user_id, inbound.callback_data) == ("U1", "U1", "b:token")
    assert inbound.message_id.startswith("click:home:VH1:")


def test_a_submission_is_slash_edit_keyed_by_its_trigger() -> None:
    form = EditForm(code="K7Q2MX", param="text", text="old", summary="s")
    modal = {**edit_modal(form, edit_metadata("K7Q2MX", "C0001", None)), "id": "VM1"}
    submission = ViewSubmission.model_validate(
        view_submission_payload(
            modal, user="U1", values={EDIT_BLOCK: " new\ntext "}, trigger_id="T9"
        )
    )
    assert submission.value(EDIT_BLOCK, EDIT_INPUT) == " new\ntext "
    inbound = edit_inbound(submission, "K7Q2MX", "C0001", None, " new\ntext ", NOW)
    assert inbound.text == "/edit K7Q2MX new\ntext"
    assert (inbound.message_id, inbound.chat_id) == ("edit:T9", "C0001")
