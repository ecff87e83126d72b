"""What Slack sends, as pydantic edge models, and its mapping to :class:`Inbound`.

Three entry points become the same ``Inbound`` (platform ``slack``, chat = channel):

- ``/ops remember x`` -> text ``/remember x``; a per-feature slash command (``/invoice
  Acme ...``, see :mod:`bot.manifest`) -> the same text typed (``/invoice Acme ...``).
  The id is ``cmd:<trigger_id>``, unique per invocation. Slack shows no one the
  command itself, so its replies go into a thread the bot opens with an echo of the
  command: the thread is :data:`OPENS_THREAD` until the sender has posted that echo
  (see :mod:`bot.slack_sender`).
- a direct message -> its text; the id is the Events API ``event_id``, so a retried
  event is recorded once. Replies stay in the DM, in the message's thread if it had one.
- a mention in a channel -> its text without ``<@BOT>``; replies go into the thread of
  the mentioning message (its ``thread_ts``, or its own ``ts`` to start one).
- an audio file shared in a DM or with a mention (a Slack voice clip, ``subtype:
  file_share``) -> the same, carrying an :class:`~agents.voice_port.AudioRef` (file id,
  ``url_private_download``, mimetype, name): the gateway makes it a ``voice`` task.

In a DM or a mention, a first word that names a command is read as that command
(``remember x`` is ``/remember x``): Slack's client claims anything typed with a
leading slash for its own slash commands.

A button click -> ``callback_data`` = the button's value; the id is the click's
``action_ts`` on that message. A click on the App Home tab (no channel: the
container is the view) is the same press, answered in the operator's DM with the app
(chat = their user id); its id is ``click:home:<view id>:<action_ts>``.

An edit modal's submission (``view_submission``) -> ``/edit CODE new text`` in the
card's conversation (from the modal's ``private_metadata``); the id is the
submission's ``trigger_id``, unique per submission.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from agents.voice_port import AudioRef
from bot.inbound import Inbound
from bot.slack_blocks import ACTION_PREFIX

PLATFORM = "slack"
OPENS_THREAD = "+thread"  # the slash command's reply thread is not made yet
CALLBACK_MAX = 256  # Inbound.callback_data's limit; longer values are not our tokens

OPS = "/ops"
_ANY_LEADING_MENTION = re.compile(r"^\s*<@[A-Z0-9]+(?:\|[^>]*)?>[\s:,]*")


class _Edge(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SlashCommand(_Edge):
    """The form body of a slash command."""

    command: str
    text: str = ""
    user_id: str = Field(min_length=1)
    user_name: str | None = None
    channel_id: str = Field(min_length=1)
    trigger_id: str = Field(min_length=1)
    response_url: str | None = None


class SharedFile(_Edge):
    """One entry of a message's ``files`` (only what a voice note needs)."""

    id: str = Field(min_length=1, max_length=512)
    mimetype: str | None = None
    name: str | None = None
    subtype: str | None = None  # "slack_audio" for a voice clip recorded in Slack
    url_private_download: str | None = Field(default=None, max_length=2048)
    url_private: str | None = Field(default=None, max_length=2048)
    duration_ms: int | None = Field(default=None, ge=0)


class MessageEvent(_Edge):
    """The ``event`` of a ``message`` or ``app_mention`` callback."""

    type: str
    channel: str = Field(min_length=1)
    ts: str = Field(min_length=1)
    user: str | None = None
    text: str = ""
    channel_type: str | None = None
    thread_ts: str | None = None
    subtype: str | None = None
    bot_id: str | None = None
    files: list[SharedFile] = Field(default_factory=list)


class EventCallback(_Edge):
    """An Events API ``event_callback`` envelope."""

    event_id: str = Field(min_length=1)
    event: MessageEvent


class _Id(_Edge):
    id: str = Field(min_length=1)


class _User(_Id):
    username: str | None = None
    name: str | None = None


class _Message(_Edge):
    ts: str
    thread_ts: str | None = None


class _Container(_Edge):
    type: str | None = None
    message_ts: str | None = None
    thread_ts: str | None = None
    channel_id: str | None = None
    view_id: str | None = None


class _InputValue(_Edge):
    type: str | None = None
    value: str | None = None


class _ViewState(_Edge):
    values: dict[str, dict[str, _InputValue]] = Field(default_factory=dict)


class _View(_Edge):
    id: str = Field(min_length=1)
    type: str | None = None
    callback_id: str | None = None
    private_metadata: str = ""
    state: _ViewState = _ViewState()


class _Action(_Edge):
    action_id: str
    action_ts: str = ""
    value: str | None = None


class BlockActions(_Edge):
    """The ``payload`` of a ``block_actions`` interaction."""

    type: str
    user: _User
    channel: _Id | None = None
    message: _Message | None = None
    container: _Container = _Container()
    actions: list[_Action] = Field(min_length=1)
    response_url: str | None = None
    trigger_id: str | None = None
    view: _View | None = None  # set for a click on the App Home tab (or in a modal)

    @property
    def on_home(self) -> bool:
        """Whether the click came from the App Home tab."""
        return self.channel is None and self.view is not None and self.view.type == "home"


class ViewSubmission(_Edge):
    """The ``payload`` of a ``view_submission`` (a modal's submit)."""

    type: str
    user: _User
    view: _View
    trigger_id: str = Field(min_length=1)

    def value(self, block_id: str, action_id: str) -> str | None:
        """The submitted value of one input."""
        found = self.view.state.values.get(block_id, {}).get(action_id)
        return None if found is None else found.value


def strip_mention(text: str, bot_user_id: str | None) -> str:
    """Remove mentions of the bot (any leading mention when the bot's id is not known)."""
    if bot_user_id:
        text = re.sub(rf"\s*<@{re.escape(bot_user_id)}(?:\|[^>]*)?>[:,]?\s*", " ", text)
    else:
        text = _ANY_LEADING_MENTION.sub("", text, count=1)
    return text.strip()


def as_command(text: str, *, always: bool, names: frozenset[str] = frozenset()) -> str:
    """Read ``text`` as a soloops command: ``remember x`` -> ``/remember x``.

    With ``always`` (the ``/ops`` text) every text is a command and an empty one asks
    for help; otherwise only a text whose first word is one of ``names`` (the
    registry's commands) is.
    """
    text = text.strip()
    if not text:
        return "/help" if always else text
    if text.startswith("/"):
        return text
    first = text.split(maxsplit=1)[0].lower()
    return f"/{text}" if always or first in names else text


def slash_text(command: SlashCommand) -> str:
    """What a slash command says: ``/ops x`` is ``/x``; ``/invoice x`` is ``/invoice x``."""
    if command.command == OPS:
        return as_command(command.text, always=True)
    return f"{command.command} {command.text.strip()}".strip()


def command_inbound(command: SlashCommand, now: datetime) -> Inbound:
    """A slash command invocation as an inbound message."""
    return Inbound(
        platform=PLATFORM,
        message_id=f"cmd:{command.trigger_id}"[:128],
        chat_id=command.channel_id,
        user_id=command.user_id,
        user_name=command.user_name,
        thread_id=OPENS_THREAD,
        text=slash_text(command),
        received_at=now,
    )


def event_inbound(
    callback: EventCallback,
    bot_user_id: str | None,
    now: datetime,
    names: frozenset[str] = frozenset(),
) -> Inbound | None:
    """A DM or a mention as an inbound message; None for what soloops does not answer.

    Skipped: edits, joins and other subtypes, bots (soloops's own replies included),
    channel messages that do not mention it, and mentions inside DMs (the DM's own
    ``message`` event carries them). A file share is taken only when it holds audio
    (a voice note); other shared files are skipped as before.
    """
    event = callback.event
    if event.bot_id is not None or not event.user or event.user == bot_user_id:
        return None
    audio = audio_ref(event.files)
    if event.subtype is not None and not (event.subtype == "file_share" and audio is not None):
        return None
    if event.type == "message":
        if event.channel_type != "im":
            return None
        thread = event.thread_ts
        text = as_command(strip_mention(event.text, bot_user_id), always=False, names=names)
    elif event.type == "app_mention":
        if event.channel.startswith("D"):
            return None
        thread = event.thread_ts or event.ts
        text = as_command(strip_mention(event.text, bot_user_id), always=False, names=names)
    else:
        return None
    return Inbound(
        platform=PLATFORM,
        message_id=callback.event_id[:128],
        chat_id=event.channel,
        user_id=event.user,
        thread_id=thread,
        text=text,
        received_at=now,
        audio=audio,
    )


def is_audio(file: SharedFile) -> bool:
    """Whether a shared file is audio soloops can transcribe (a voice clip or a file)."""
    mime = (file.mimetype or "").lower()
    return mime.startswith("audio/") or file.subtype == "slack_audio"


def audio_ref(files: list[SharedFile]) -> AudioRef | None:
    """The first audio file of a message as a voice note's reference; None without one."""
    for file in files:
        if not is_audio(file):
            continue
        mime = (file.mimetype or "audio/webm")[:128]
        default = "voice." + (mime.split("/", 1)[1].split(";")[0] or "webm")
        return AudioRef(
            platform=PLATFORM,
            file_id=file.id,
            url=file.url_private_download or file.url_private,
            filename=(file.name or default)[:256] or default,
            mime=mime,
            duration_s=file.duration_ms // 1000 if file.duration_ms is not None else None,
            kind="voice" if file.subtype == "slack_audio" else "audio",
        )
    return None


def action_inbound(payload: BlockActions, now: datetime) -> Inbound | None:
    """A click on one of soloops's buttons as an inbound press; None for other actions."""
    action = payload.actions[0]
    if not action.action_id.startswith(ACTION_PREFIX):
        return None
    if payload.on_home:
        assert payload.view is not None  # on_home says so
        click = action.action_ts or now.isoformat()
        return Inbound(
            platform=PLATFORM,
            message_id=f"click:home:{payload.view.id}:{click}"[:128],
            chat_id=payload.user.id,
            user_id=payload.user.id,
            user_name=(payload.user.username or payload.user.name or None),
            callback_data=(action.value or "")[:CALLBACK_MAX] or "-",
            received_at=now,
        )
    if payload.channel is None:
        return None
    message_ts = payload.message.ts if payload.message else payload.container.message_ts
    thread = (payload.message.thread_ts if payload.message else None) or payload.container.thread_ts
    click = action.action_ts or now.isoformat()
    return Inbound(
        platform=PLATFORM,
        message_id=f"click:{payload.channel.id}:{message_ts}:{click}"[:128],
        chat_id=payload.channel.id,
        user_id=payload.user.id,
        user_name=(payload.user.username or payload.user.name or None),
        thread_id=thread,
        callback_data=(action.value or "")[:CALLBACK_MAX] or "-",
        received_at=now,
    )


def edit_inbound(
    submission: ViewSubmission, code: str, chat: str, thread: str | None, text: str, now: datetime
) -> Inbound:
    """An edit modal's submission as the message it stands for: ``/edit CODE text``."""
    return Inbound(
        platform=PLATFORM,
        message_id=f"edit:{submission.trigger_id}"[:128],
        chat_id=chat,
        user_id=submission.user.id,
        user_name=(submission.user.username or submission.user.name or None),
        thread_id=thread,
        text=f"/edit {code} {text.strip()}",
        received_at=now,
    )


def _json_object(text: str, what: str) -> tuple[dict[str, object] | None, str | None]:
    try:
        value = json.loads(text)
    except ValueError:
        return None, f"{what} is not JSON"
    if not isinstance(value, dict):
        return None, f"{what} is a JSON {type(value).__name__}, not an object"
    return value, None


def body_problem(body: str, content_type: str | None) -> str | None:
    """Why a signed request body is not one soloops (or bolt) can read; None if it is.

    Parses as slack-bolt does (JSON when the type says so or the body starts with
    ``{``; else a form, whose ``payload`` field holds JSON) and checks the parts bolt
    reaches into without looking: the envelope and its ``event`` are objects, and an
    interaction's ``actions`` is a list of objects.
    """
    if not body:
        return None
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "application/json" or body.startswith("{"):
        data, problem = _json_object(body, "the body")
    else:
        fields = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
        if "payload" not in fields:
            return None  # a slash command's form: the listener checks its fields
        data, problem = _json_object(fields["payload"], "the payload field")
    if data is None:
        return problem
    if "event" in data and not isinstance(data["event"], dict):
        return "the event is not an object"
    if data.get("type") == "block_actions":
        actions = data.get("actions")
        if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
            return "the interaction has no list of actions"
    return None
