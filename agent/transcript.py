"""A call's conversation as the background model sees it: what was typed, said and heard.

    typed text, instructions, results --> add()                 one turn each
    the model's text while it is silent --> model_text()        one `text` turn until it ends
    the model's speech: utterance_started(u)                    one `speech` turn per utterance
                        model_text(k, piece) ...                 the piece said at micro-turn k
                        utterance_stopped(s, heard_ms)           cut to what the user heard
                        model_text(k, rest) ...                  the rest of its text, unheard
    a better figure later --> heard(u, heard_ms)                re-cut (the page's report after
                                                                 the stop, OpenAI's truncate)

A model's text at micro-turn k is what that micro-turn's audio says (inference/protocol.py:
Reply.text), so the piece said at micro-turn k of an utterance whose audio started at micro-turn u
plays from (k - u) * 200 ms into it; it counts as heard when the first half of its audio was
played. When the audio stops (a barge-in) before the model's text stream ends the utterance, the
text that still comes (until `end_of_utterance`, at most MAX_TRAILING_MICROTURNS) is the rest of
that utterance, never played: it is cut too. A turn that lost text to the cut is marked
`truncated` (as OpenAI's `conversation.item.truncate` cuts an item's transcript to what was
played), and every later context package carries it that way.

Bounded: at most `max_turns` turns (the oldest go first), MAX_PIECES pieces per speech turn (a
longer utterance continues in a new turn) and MAX_SEGMENTS speech turns per utterance that can
still be cut (older ones, many minutes old or many turns back, stay as they are).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from agent.types import Turn, clean_text

MICROTURN_MS = 200  # inference.protocol.MICROTURN_MS (the agent package does not import inference)
DEFAULT_MAX_TURNS = 200
MAX_PIECES = 300  # pieces of one speech turn: a minute of speech
MAX_SEGMENTS = (
    16  # speech turns of one utterance that can still be cut (older ones stay as they are)
)
MAX_TEXT_TURN_CHARS = 4000  # the model's silent text merges into one turn up to this
MAX_TRAILING_MICROTURNS = 150  # text after the audio stopped still ends its utterance for 30 s


@dataclass
class TranscriptTurn:
    microturn: int
    role: str  # user | model | agent
    kind: str  # text | speech | event
    text: str
    truncated: bool = False  # cut to what the user heard

    def to_turn(self) -> Turn:
        return Turn.coerce(self)


@dataclass
class _Segment:
    """One speech turn of an utterance and the pieces of its text."""

    turn: TranscriptTurn
    pieces: list[tuple[int, str]] = field(default_factory=list)  # (micro-turn, text)


@dataclass
class _Utterance:
    """One stretch of the model's speech, in one or more turns (a turn of someone else's, or a
    minute of speech, starts the next one), for cutting."""

    start: int  # the micro-turn its audio started at (output_audio.started)
    segments: deque[_Segment] = field(default_factory=lambda: deque(maxlen=MAX_SEGMENTS))
    open: bool = False  # the next piece joins the last segment
    auto_ms: int | None = None  # heard, as the server and the page's reports measure it
    declared_ms: int | None = None  # heard, as the client said (OpenAI's truncate): a ceiling
    stopped_at: int | None = None  # the micro-turn its audio stopped at
    text_ended: bool = False  # the model's text stream ended it (end_of_utterance)

    @property
    def heard_ms(self) -> int | None:
        """None: nothing cut (yet)."""
        known = [ms for ms in (self.auto_ms, self.declared_ms) if ms is not None]
        return min(known) if known else None

    def heard(self) -> tuple[str, bool]:
        """The text of this utterance that was heard, and whether any was cut."""
        text = "".join(turn.text for turn in (s.turn for s in self.segments))
        return text, any(s.turn.truncated for s in self.segments)

    def kept(self, microturn: int) -> bool:
        mid_ms = (microturn - self.start) * MICROTURN_MS + MICROTURN_MS // 2
        return self.heard_ms is None or mid_ms <= self.heard_ms

    def takes_rest(self, microturn: int) -> bool:
        """Text at `microturn`, after the audio stopped, is the unheard rest of this utterance."""
        return (
            self.stopped_at is not None
            and not self.text_ended
            and self.heard_ms is not None
            and bool(self.segments)
            and len(self.segments[-1].pieces) < MAX_PIECES
            and microturn - self.stopped_at <= MAX_TRAILING_MICROTURNS
        )

    def add(self, microturn: int, text: str) -> TranscriptTurn | None:
        """Adds a piece; returns the new turn when it opened one."""
        new = None
        if self.stopped_at is not None:  # the rest, after the audio: joins the last turn
            self.segments[-1].pieces.append((microturn, text))
            self.rebuild()
            return None
        if not self.open or len(self.segments[-1].pieces) >= MAX_PIECES:
            new = TranscriptTurn(microturn, "model", "speech", "")
            self.segments.append(_Segment(new))
            self.open = True
        segment = self.segments[-1]
        segment.pieces.append((microturn, text))
        if self.kept(microturn):
            segment.turn.text += text
        elif text.strip():
            segment.turn.truncated = True
        return new

    def rebuild(self) -> None:
        for segment in self.segments:
            kept = [text for k, text in segment.pieces if self.kept(k)]
            lost = [text for k, text in segment.pieces if not self.kept(k)]
            segment.turn.text = "".join(kept)
            segment.turn.truncated = any(text.strip() for text in lost)


class Transcript:
    def __init__(self, max_turns: int = DEFAULT_MAX_TURNS) -> None:
        self._turns: deque[TranscriptTurn] = deque(maxlen=max_turns)
        self._speaking: _Utterance | None = None  # the utterance being spoken
        self._last: _Utterance | None = None  # the latest utterance (spoken or ended)
        self._open_text: TranscriptTurn | None = None  # the model's silent text turn

    def __iter__(self) -> Iterator[TranscriptTurn]:
        return iter(self._turns)

    def __len__(self) -> int:
        return len(self._turns)

    def turns(self) -> list[Turn]:
        """The conversation as wire turns (for a context package)."""
        return [turn.to_turn() for turn in self._turns]

    def add(self, microturn: int, role: str, kind: str, text: str) -> TranscriptTurn:
        """One turn of its own (typed text, instructions, a background result)."""
        # Clean: one lone surrogate here would make every later context package unencodable.
        turn = TranscriptTurn(microturn, role, kind, clean_text(text))
        self._open_text = None
        self._turns.append(turn)
        if self._speaking is not None:
            self._speaking.open = False  # the model's speech after this goes in a new turn
        return turn

    def model_text(self, microturn: int, text: str, *, end: bool = False) -> str:
        """Text the model emitted at `microturn`: a piece of its speech while an utterance is
        open ("speech"), the unheard rest of one the user cut off ("rest"), else silent text
        merged into one turn until `end`, the end of its utterance ("text")."""
        if not text:
            if end:
                self._open_text = None
                for utterance in (self._speaking, self._last):
                    if utterance is not None:
                        utterance.text_ended = True
            return "text"
        text = clean_text(text)
        utterance, part = self._speaking, "speech"
        if utterance is None and self._last is not None and self._last.takes_rest(microturn):
            utterance, part = self._last, "rest"
        if utterance is not None:
            new = utterance.add(microturn, text)
            if new is not None:
                self._turns.append(new)
            utterance.text_ended = utterance.text_ended or end
            return part
        turn = self._open_text
        if turn is None or turn is not self._last_turn or len(turn.text) >= MAX_TEXT_TURN_CHARS:
            turn = TranscriptTurn(microturn, "model", "text", "")
            self._turns.append(turn)
            self._open_text = turn
        turn.text += text
        if end:
            self._open_text = None
        return "text"

    @property
    def _last_turn(self) -> TranscriptTurn | None:
        return self._turns[-1] if self._turns else None

    def utterance_started(self, microturn: int) -> None:
        """The model's audio started at `microturn` (output_audio.started)."""
        self._open_text = None
        self._speaking = self._last = _Utterance(microturn)

    def utterance_stopped(self, microturn: int, heard_ms: int | None) -> None:
        """The model's audio stopped at `microturn` (finished, or a barge-in flushed the rest);
        the user heard `heard_ms` of it (None: unknown, nothing is cut)."""
        utterance, self._speaking = self._speaking, None
        if utterance is None:
            return
        utterance.stopped_at = microturn
        if heard_ms is not None:
            self._cut(utterance, heard_ms)

    def heard(self, utterance_start: int, heard_ms: int) -> bool:
        """A better figure for the latest utterance (started at `utterance_start`), after it
        stopped: cut it to `heard_ms`. False when that is not the latest utterance."""
        utterance = self._last
        if utterance is None or utterance.start != utterance_start:
            return False
        self._cut(utterance, heard_ms)
        return True

    def truncate(self, utterance_start: int, heard_ms: int) -> bool:
        """The client says the user heard no more than `heard_ms` of the latest utterance (while
        it plays or after): the text beyond is cut, whatever later measurements say. False when
        that is not the latest utterance."""
        utterance = self._last
        if utterance is None or utterance.start != utterance_start:
            return False
        utterance.declared_ms = max(0, heard_ms)
        utterance.rebuild()
        return True

    def utterance_heard(self, utterance_start: int) -> tuple[str, bool] | None:
        """The heard text of the latest utterance and whether it was cut; None when
        `utterance_start` is not the latest."""
        utterance = self._last
        if utterance is None or utterance.start != utterance_start:
            return None
        return utterance.heard()

    @property
    def latest_utterance(self) -> int | None:
        """The micro-turn the latest utterance started at, None before the first."""
        return self._last.start if self._last is not None else None

    @staticmethod
    def _cut(utterance: _Utterance, heard_ms: int) -> None:
        utterance.auto_ms = max(0, heard_ms)
        utterance.rebuild()
