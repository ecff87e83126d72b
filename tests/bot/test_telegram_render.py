"""Pure parts of the Telegram front end: rendering, splitting, update mapping, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from telegram import Bot, Update
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TimedOut

from agents.replies import Button, Option, Reply
from bot.telegram import delivery_error
from bot.telegram_render import (
    GENERAL_TOPIC,
    MESSAGE_LIMIT,
    action_thread,
    addressed_elsewhere,
    inbound_id,
    keyboard,
    message_ref,
    message_thread,
    parse_ref,
    refusal,
    render,
    reply_target,
    split_text,
    to_inbound,
    utf16_len,
)
from config import ConfigError, TelegramSettings, load_settings

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
BOT = Bot("123:abc")


def test_short_text_is_one_piece() -> None:
    assert split_text("hello\nworld") == ["hello\nworld"]


def test_split_on_line_boundaries_within_the_limit() -> None:
    lines = [f"{i:03d} " + "y" * 40 for i in range(300)]
    pieces = split_text("\n".join(lines), limit=1000)
    assert all(utf16_len(p) <= 1000 for p in pieces)
    assert "\n".join(pieces) == "\n".join(lines)
    assert all(p.split("\n")[0].startswith(tuple("0123456789")) for p in pieces)


def test_an_overlong_line_is_cut_and_astral_characters_count_twice() -> None:
    text = "😀" * 3000  # 6000 UTF-16 units
    pieces = split_text(text)
    assert [utf16_len(p) for p in pieces] == [4096, 6000 - 4096]
    assert "".join(pieces) == text


def test_whitespace_only_pieces_are_dropped() -> None:
    assert split_text("a\n   \nb", limit=1) == ["a", "b"]


def test_render_escapes_and_marks() -> None:
    assert render(Reply(text="1 < 2 & <b>x</b>")) == ["1 &lt; 2 &amp; &lt;b&gt;x&lt;/b&gt;"]
    assert render(Reply(text="bad", tone="error")) == ["⚠️ bad"]
    assert render(Reply(text="Card <1>\nbody"), headline=True) == ["<b>Card &lt;1&gt;</b>\nbody"]
    long = render(Reply(text="x" * (MESSAGE_LIMIT + 1)))
    assert [len(p) for p in long] == [MESSAGE_LIMIT, 1]


def test_keyboard_carries_the_opaque_data() -> None:
    assert keyboard(()) is None
    markup = keyboard((Button(label="Approve", data="b:abc"), Button(label="Reject", data="b:d")))
    assert markup is not None
    assert [[b.callback_data for b in row] for row in markup.inline_keyboard] == [["b:abc", "b:d"]]


def test_ids_and_refs_round_trip() -> None:
    assert inbound_id(10) == "10"
    assert reply_target(inbound_id(10, 77)) == 77
    assert reply_target(inbound_id(10)) is None
    assert reply_target(None) is None
    assert reply_target("console-1") is None
    assert parse_ref(message_ref(-100123, 5)) == (-100123, 5)
    assert parse_ref("17") is None


def test_commands_for_other_bots_are_not_ours() -> None:
    assert addressed_elsewhere("/help@other_bot", "soloops_bot")
    assert not addressed_elsewhere("/help@SoloOps_Bot x", "soloops_bot")
    assert not addressed_elsewhere("/help", "soloops_bot")
    assert not addressed_elsewhere("hello@there", "soloops_bot")


def _update(data: dict[str, Any]) -> Update:
    update = Update.de_json(data, BOT)
    assert update is not None
    return update


USER = {"id": 5, "is_bot": False, "first_name": "Ada", "last_name": "L", "username": "ada"}


def test_a_message_maps_to_inbound() -> None:
    message = {
        "message_id": 9,
        "date": 1,
        "chat": {"id": -100, "type": "supergroup", "is_forum": True},
        "from": USER,
        "text": "/status",
        "message_thread_id": 3,
        "is_topic_message": True,
    }
    inbound = to_inbound(_update({"update_id": 41, "message": message}), "soloops_bot", NOW)
    assert inbound is not None
    assert (inbound.platform, inbound.message_id, inbound.chat_id) == ("telegram", "41:9", "-100")
    assert (inbound.user_id, inbound.thread_id, inbound.text) == ("5", "3", "/status")
    assert inbound.user_name == "Ada L (@ada)"
    assert inbound.callback_data is None


def test_a_button_press_maps_to_inbound() -> None:
    query = {
        "id": "q1",
        "from": USER,
        "chat_instance": "c",
        "data": "b:token",
        "message": {"message_id": 2, "date": 1, "chat": {"id": 5, "type": "private"}, "text": "x"},
    }
    inbound = to_inbound(_update({"update_id": 42, "callback_query": query}), None, NOW)
    assert inbound is not None
    assert (inbound.message_id, inbound.chat_id, inbound.callback_data) == ("42", "5", "b:token")


def test_updates_that_are_not_for_us_map_to_none() -> None:
    edited = {"message_id": 1, "date": 1, "chat": {"id": 5, "type": "private"}, "text": "x"}
    assert to_inbound(_update({"update_id": 1, "edited_message": edited}), None, NOW) is None
    from_bot = {**edited, "from": {"id": 6, "is_bot": True, "first_name": "b"}}
    assert to_inbound(_update({"update_id": 2, "message": from_bot}), None, NOW) is None
    other = {**edited, "from": USER, "text": "/help@other_bot"}
    assert to_inbound(_update({"update_id": 3, "message": other}), "soloops_bot", NOW) is None


def test_refusal_teaches_the_first_user_their_id() -> None:
    assert "SOLOOPS_TELEGRAM__OPERATORS=[77]" in refusal("77", operators_configured=False)
    assert "77" not in refusal("77", operators_configured=True)


@pytest.mark.parametrize(
    ("exc", "permanent", "retry_after"),
    [
        (RetryAfter(3), False, 3.0),
        (BadRequest("Chat not found"), True, None),
        (Forbidden("bot was blocked by the user"), True, None),
        (ChatMigrated(-1001), True, None),
        (TimedOut(), False, None),
        (NetworkError("Bad Gateway"), False, None),
    ],
)
def test_bot_api_errors_map_to_delivery_errors(
    exc: Exception, permanent: bool, retry_after: float | None
) -> None:
    mapped = delivery_error(exc)  # type: ignore[arg-type]
    assert (mapped.permanent, mapped.retry_after) == (permanent, retry_after)


def test_operators_come_from_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLOOPS_TELEGRAM__TOKEN", "1:abc")
    monkeypatch.setenv("SOLOOPS_TELEGRAM__OPERATORS", "[12345, 678]")
    telegram = load_settings().telegram
    assert telegram.operators == [12345, 678]
    assert telegram.configured
    assert "1:abc" in load_settings().secret_values()
    monkeypatch.setenv("SOLOOPS_TELEGRAM__OPERATORS", "12345")
    assert load_settings().telegram.operators == [12345]
    monkeypatch.setenv("SOLOOPS_TELEGRAM__OPERATORS", "ada")
    with pytest.raises(ConfigError, match=r"SOLOOPS_TELEGRAM__OPERATORS='\[12345\]'"):
        load_settings()


def test_webhook_mode_needs_a_secret_and_a_url() -> None:
    with pytest.raises(ValueError, match="SOLOOPS_TELEGRAM__WEBHOOK_SECRET"):
        TelegramSettings.model_validate({"token": "1:a", "mode": "webhook"})
    with pytest.raises(ValueError, match="SOLOOPS_TELEGRAM__WEBHOOK_URL"):
        TelegramSettings.model_validate(
            {"token": "1:a", "mode": "webhook", "webhook_secret": "abc"}
        )
    with pytest.raises(ValueError, match="1-256 characters"):
        TelegramSettings.model_validate({"webhook_secret": "has spaces"})
    with pytest.raises(ValueError, match="http"):
        TelegramSettings.model_validate({"base_url": "api.telegram.org/bot"})
    assert not TelegramSettings().configured


def test_options_are_numbered_so_the_operator_can_answer_with_a_number() -> None:
    reply = Reply(
        text="Which one?",
        options=(Option(label="Recall", command="/recall acme <billing>"),),
    )
    [text] = render(reply)
    assert "Which one?\n  1. Recall: /recall acme &lt;billing&gt;" in text
    assert text.endswith("Send the number of your choice.")


def _in_chat(chat: dict[str, Any], **extra: Any) -> dict[str, Any]:
    message = {"message_id": 12, "date": 1, "chat": chat, "from": USER, "text": "hi", **extra}
    return {"update_id": 50, "message": message}


def test_the_topic_a_message_is_in() -> None:
    forum = {"id": -100, "type": "supergroup", "is_forum": True}
    group = {"id": -200, "type": "supergroup"}
    cases = [
        (_in_chat(forum, message_thread_id=4, is_topic_message=True), "4"),
        (_in_chat(forum), str(GENERAL_TOPIC)),  # General: no topic id, the forum says it
        # A reply in General names the replied-to message as its thread: no topic.
        (_in_chat(forum, message_thread_id=9), str(GENERAL_TOPIC)),
        (_in_chat(group, message_thread_id=9), None),  # a plain group's reply thread
        (_in_chat({"id": 5, "type": "private"}), None),
    ]
    for data, thread in cases:
        inbound = to_inbound(_update(data), "soloops_bot", NOW)
        assert inbound is not None and inbound.thread_id == thread, data


def test_sends_to_general_omit_its_thread_id_and_chat_actions_keep_it() -> None:
    assert message_thread(str(GENERAL_TOPIC)) is None
    assert action_thread(str(GENERAL_TOPIC)) == GENERAL_TOPIC
    assert (message_thread("7"), action_thread("7")) == (7, 7)
    assert (message_thread(None), action_thread(None)) == (None, None)
