"""The words the tasks say and hear, and the heard-word classes of the auxiliary loss.

The user's words (fillers, sentences, cue words and their near misses, numbers) are listed here
so that `word_class` can give each its own class: a hash alone put cue words in one class with
filler words ("blue" with "me", "seven" with "to"), teaching the word head that they sound alike.
"""

from __future__ import annotations

import zlib

NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
).split()


SAY_WORDS = [
    "hello",
    "breathe",
    "stretch",
    "drink water",
    "blink",
    "relax",
    "smile",
    "focus",
    "stand up",
    "look away",
    "tick",
    "ping",
    "wake up",
    "posture",
    "sip",
    "hi",
]


FILLER = (
    "the weather was nice today and we went for a long walk by the river "
    "i think the meeting is at noon but maybe it moved to the afternoon "
    "my sister has a new dog that likes to run in the park every morning "
    "could you remind me what we talked about last week about the project "
    "we need to buy bread milk and some fresh fruit for the weekend"
).split()


SENTENCES = [
    "the weather was nice today and we went for a long walk",
    "i think the meeting is at noon but it may have moved",
    "my sister has a new dog that likes to run in the park",
    "could you tell me what we talked about last week",
    "we need to buy bread and milk for the weekend",
    "the train was late again this morning",
    "i am not sure what to cook for dinner tonight",
    "let me tell you about the trip we took last summer",
    "the book i read last month was really good",
    "we should plan the garden before the spring comes",
    "he said the report would be ready by friday",
    "i was thinking about painting the kitchen blue",
]


# cue word -> near misses: a different sound in one place, never a homophone ("blew")
CUES = {
    "now": ["no", "know", "how", "new"],
    "apple": ["maple", "chapel", "ample"],
    "blue": ["clue", "glue", "blow"],
    "tiger": ["timer", "tiber", "tiny"],
    "seven": ["heaven", "eleven", "sever"],
    "river": ["liver", "driver", "rover"],
    "coffee": ["toffee", "copy", "coughing"],
    "yellow": ["hello", "fellow", "mellow"],
}


RESPONSES = ["go", "yes", "ding", "bingo", "check", "green", "beep", "done"]


WORD_CLASSES = 512  # 0 = none; the vocabulary's words 1..V; any other word hashed into the rest


def _canonical(word: str) -> str:
    """Lower case, no punctuation; a number word as its digits (they sound alike)."""
    w = word.lower().strip(" ,.?!'")
    return str(NUMBER_WORDS.index(w)) if w in NUMBER_WORDS else w


VOCABULARY: tuple[str, ...] = tuple(
    sorted(
        {str(i) for i in range(len(NUMBER_WORDS))}
        | {_canonical(w) for text in (*SAY_WORDS, *SENTENCES, *RESPONSES) for w in text.split()}
        | {_canonical(w) for w in FILLER}
        | {_canonical(w) for cue, near in CUES.items() for w in (cue, *near)}
    )
)
_CLASS = {w: 1 + i for i, w in enumerate(VOCABULARY)}


def word_class(word: str) -> int:
    """A heard word's class for the auxiliary loss: its own for the vocabulary's words (digits
    and number words of one value share one), a stable hash into the remaining classes for any
    other word."""
    w = _canonical(word)
    if w in _CLASS:
        return _CLASS[w]
    rest = WORD_CLASSES - 1 - len(VOCABULARY)
    return 1 + len(VOCABULARY) + zlib.crc32(w.encode()) % rest
