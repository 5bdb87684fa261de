"""The speech judge: what a listener hears of the model's voice, not what its text stream says.

The text stream can be right while the voice says something else (or mumbles), so every suite
that expects words also transcribes the model's audio with pocketsphinx (an independent en-US
recogniser: its acoustic model, language model and dictionary ship in the PyPI wheel) and scores
what was heard:

- **word error rate** against the text as it is spoken ("14.91 miles" is "fourteen point nine
  one miles"; a number may be read several ways and the closest reading counts);
- **key content**: the part a listener needs: every number of a text (its digits, not its unit),
  else its content words (the W of "say W", the cue response, "call" and "anna");
- the **ceiling**: the same texts in the teacher's own voice through the same streaming vocoder,
  transcribed the same way: what a perfect flow head would be heard to say. pocketsphinx's
  general language model mishears isolated short words ("hello" -> "the lab") even then, so the
  model's numbers are read against it (the issue's target: >= 90 % of the ceiling);
- **done**: the suite's own metrics again, with a phrase counting only if its key content was
  also heard right (beside the text-stream numbers of the same episodes, which stay as they are).

Judged are the model's phrases said with the right text near the right time (within
`JUDGE_TOL` micro-turns: every window a suite's metrics accept) and RepCount's final answer,
episode by episode until `LIMIT_S` seconds of audio per suite, so `make eval` stays cheap.
pocketsphinx is imported only here, lazily: the server never loads it.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from inference.protocol import SAMPLE_RATE_HZ
from lab.eval.metrics.speech import find_phrases, phrase_start
from lab.eval.metrics.timing import _number, pct
from lab.eval.runner import Run, Said
from lab.tasks.episode import Utterance

PEAK = 0.7  # the level pocketsphinx hears at: the model's voice and the teacher's alike
PAD_S = 0.2  # silence around each phrase: the recogniser's start and end of utterance
MARGIN_S = 0.3  # a phrase's audio may run this much longer than the teacher's rendering
SILENT = 1e-4  # a clip whose peak is below this is silence: nothing was heard
JUDGE_TOL = 3  # micro-turns: covers every window the suites' metrics accept (delegation: +3)
LIMIT_S = 30.0  # seconds of the model's audio transcribed per suite
EXAMPLES = 6  # (text, heard) pairs kept in the report per suite

# the suites' metrics that depend on words said: "done" reports them again with words heard
DONE_KEYS = (
    "macro_accuracy",
    "reply_accuracy",
    "success",
    "holding_phrase",
    "result_spoken",
    "off_by_one_accuracy",
    "count_timing_accuracy",
    "hello_timing_accuracy",
    "answer_off_by_one",
)


# ---- hearing ---------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _decoder() -> Any:
    """One decoder per process, its search capped (CMU's knobs for speed: at most 3000 active
    HMMs and 10 word exits a frame). On the model's garbled audio the default search ran ~1-2x
    real time, this ~0.25x; on the teacher's voice through the vocoder it hears the same key
    content (101 phrases the tasks say: 65.3 % both; word accuracy 74.7 % against 76.3 %; 30
    held-out WordNet sentences 72.6 % against 71.7 %). Dropping the flat second pass as well
    halved the time again but lost 8 points of key content on the short phrases."""
    from pocketsphinx import Decoder

    return Decoder(samprate=SAMPLE_RATE_HZ, logfn=os.devnull, maxhmmpf=3000, maxwpf=10)


def transcribe(audio: np.ndarray) -> str:
    """What pocketsphinx hears in 16 kHz float audio (lower case words; "" for silence). The
    level is normalised first (peak `PEAK`), so a quiet voice is judged on its words alone."""
    x = np.asarray(audio, np.float32)
    peak = float(np.abs(x).max()) if len(x) else 0.0
    if peak < SILENT:
        return ""
    pad = np.zeros(int(PAD_S * SAMPLE_RATE_HZ), np.float32)
    x = np.concatenate([pad, x * (PEAK / peak), pad])
    pcm = (np.clip(x, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    d = _decoder()
    d.start_utt()
    d.process_raw(pcm, full_utt=True)
    d.end_utt()
    hyp = d.hyp()
    return "" if hyp is None else str(hyp.hypstr).strip()


# ---- spoken forms ----------------------------------------------------------------------------------
ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
SCALES = ((1_000_000_000, "billion"), (1_000_000, "million"), (1000, "thousand"))
NUMBER_WORDS = {*ONES, *TENS[2:], "hundred", "point", "minus", "negative"}
NUMBER_WORDS |= {name for _, name in SCALES}
# words that sound alike count as one (both sides): a listener hears "to" as "two" after "count"
SAME_SOUND = {"to": "two", "too": "two", "for": "four", "fore": "four", "ate": "eight"}
SAME_SOUND |= {"won": "one", "oh": "zero", "o": "zero"}
# how the tasks' units are said (festival spells "km" out)
UNITS = {
    "km": [["k", "m"], ["kilometers"], ["kilometres"]],
    "kg": [["k", "g"], ["kilograms"], ["kilos"]],
    "lb": [["l", "b"], ["pounds"]],
}
# words a key never rests on: "let me think about that for a moment" is heard by think, moment
STOP = set(
    "a an the at of for to in on is it and that this me let about there i'm you're i you we my".split()
)
NUMBER = re.compile(r"^-?\d+(?:[.:]\d+)?$")
MAX_SPELLINGS = 64


def cardinal(n: int, with_and: bool = False) -> list[str]:
    """An integer in words: 2401 -> two thousand four hundred one ("... hundred and one")."""
    if n < 0:
        return ["minus", *cardinal(-n, with_and)]
    if n < 20:
        return [ONES[n]]
    if n < 100:
        return [TENS[n // 10]] + ([ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        head, rest = [ONES[n // 100], "hundred"], n % 100
        return head + ((["and"] if with_and else []) + cardinal(rest) if rest else [])
    for scale, name in SCALES:
        if n >= scale:
            head, rest = [*cardinal(n // scale, with_and), name], n % scale
            if not rest:
                return head
            joint = ["and"] if with_and and rest < 100 else []
            return head + joint + cardinal(rest, with_and)
    raise AssertionError(n)


def integer_readings(n: int) -> list[list[str]]:
    """The ways an integer is read aloud: plainly, with "and", and 4 digits in pairs as years
    are (festival reads 2401 "twenty four oh one", 1900 "nineteen hundred")."""
    out = [cardinal(n), cardinal(n, True)]
    hi, lo = divmod(abs(n), 100)
    if 1000 <= abs(n) <= 9999 and hi % 10:
        tail = ["hundred"] if lo == 0 else ["zero", ONES[lo]] if lo < 10 else cardinal(lo)
        out.append((["minus"] if n < 0 else []) + cardinal(hi) + tail)
    if n < 0:
        out += [["negative", *r[1:]] for r in out]
    return unique(out)


def number_readings(token: str) -> list[list[str]]:
    """A numeric token's readings: integers, decimals ("0.62": "zero point six two", "point six
    two") and clock times ("14:05": "fourteen oh five", "fourteen five"; "14:00": "fourteen",
    "fourteen hundred")."""
    if ":" in token:
        h, m = (int(p) for p in token.split(":"))
        minutes: list[list[str]]
        if m == 0:
            minutes = [[], ["hundred"], ["o'clock"]]
        elif m < 10:
            minutes = [["zero", ONES[m]], [ONES[m]]]
        else:
            minutes = [cardinal(m)]
        return unique([r + mm for r in integer_readings(h) for mm in minutes])
    if "." in token:
        whole, frac = token.split(".")
        n = int(whole)
        heads = integer_readings(n) if n or whole.startswith("-") else [["zero"], []]
        digits = [ONES[int(c)] for c in frac]
        return unique([[*r, "point", *digits] for r in heads])
    return integer_readings(int(token))


def unique(readings: list[list[str]]) -> list[list[str]]:
    out: list[list[str]] = []
    for r in readings:
        if r not in out:
            out.append(r)
    return out


def _tokens(text: str) -> list[str]:
    """Lower-case tokens, surrounding punctuation off ("14.91." -> "14.91", "uh-huh" -> uh huh)."""
    out = []
    for raw in text.lower().split():
        tok = raw.strip('.,!?;"()')
        if NUMBER.match(tok):
            out.append(tok)
        else:
            out += [w for w in re.sub(r"[^a-z'\-]", " ", tok).replace("-", " ").split() if w]
    return out


def _readings_of(token: str) -> list[list[str]]:
    if NUMBER.match(token):
        return number_readings(token)
    return UNITS.get(token, [[token]])


def same_sound(words: list[str]) -> list[str]:
    """Words that sound alike as one word; "of" between two numbers is the recogniser's "oh"
    ("fourteen of five": 14:05)."""
    out = [SAME_SOUND.get(w, w) for w in words]
    for i in range(1, len(out) - 1):
        if out[i] == "of" and out[i - 1] in NUMBER_WORDS and out[i + 1] in NUMBER_WORDS:
            out[i] = "zero"
    return out


def spellings(text: str) -> list[list[str]]:
    """The ways `text` is said, as word lists (at most `MAX_SPELLINGS`)."""
    per = [_readings_of(t) for t in _tokens(text)]
    out = []
    for combo in itertools.islice(itertools.product(*per), MAX_SPELLINGS):
        out.append(same_sound([w for part in combo for w in part]))
    return unique(out) or [[]]


def heard_words(hyp: str) -> list[str]:
    """A transcript as words, alike sounds as one (the recogniser's fillers dropped)."""
    return same_sound([w for w in _tokens(hyp) if w not in ("sil", "noise")])


def edit_distance(a: list[str], b: list[str]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, words) of a transcript against the reading of
    `ref` closest to it."""
    got = heard_words(hyp)
    best = min(spellings(ref), key=lambda s: (edit_distance(s, got), len(s)))
    return edit_distance(best, got), len(best)


# ---- key content -----------------------------------------------------------------------------------
def key_content(text: str) -> list[list[list[str]]]:
    """What a listener must hear of `text`: one entry per item, each the item's readings. Its
    numbers if it has any (the digits, not the unit), else its content words."""
    toks = _tokens(text)
    numbers = [t for t in toks if NUMBER.match(t)]
    if numbers:
        return [[same_sound(r) for r in number_readings(t)] for t in numbers]
    words = [t for t in toks if t not in STOP] or toks
    return [[same_sound([w])] for w in words]


def _occurs(reading: list[str], got: list[str]) -> bool:
    """`reading` as a whole number in `got`: contiguous, and not part of a longer one ("seven"
    is not heard in "twenty seven")."""
    n = len(reading)
    for i in range(len(got) - n + 1):
        if got[i : i + n] != reading:
            continue
        before = got[i - 1] if i else ""
        after = got[i + n] if i + n < len(got) else ""
        if reading[0] in NUMBER_WORDS and (before in NUMBER_WORDS or after in NUMBER_WORDS):
            continue
        return True
    return False


def key_heard(text: str, hyp: str) -> bool:
    """Was every key item of `text` heard in the transcript `hyp`?"""
    got = heard_words(hyp)
    return all(any(_occurs(r, got) for r in item) for item in key_content(text))


@dataclass(frozen=True)
class Heard:
    """One phrase as a listener heard it."""

    text: str  # what the text stream said (and the voice should have)
    hyp: str  # what pocketsphinx heard
    errors: int
    words: int
    key: bool  # its key content heard right
    seconds: float  # of audio transcribed


def hear(text: str, audio: np.ndarray) -> Heard:
    hyp = transcribe(audio)
    errors, words = word_errors(text, hyp)
    return Heard(text, hyp, errors, words, key_heard(text, hyp), len(audio) / SAMPLE_RATE_HZ)


@lru_cache(maxsize=4096)
def ceiling_of(text: str) -> Heard:
    """The teacher's rendering of `text` through the streaming vocoder, heard the same way."""
    from lab.tasks.room import model_voice_played

    return hear(text, model_voice_played(text))


def summarize(heard: list[Heard]) -> dict[str, Any]:
    """WER, word accuracy and key content of judged phrases, beside the ceiling on the same
    texts and the model's share of it."""

    def rates(hs: list[Heard]) -> dict[str, Any]:
        words = sum(h.words for h in hs)
        wer = sum(h.errors for h in hs) / words if words else 0.0
        return {
            "wer": pct(wer),
            "word_accuracy": pct(1.0 - wer),
            "key_accuracy": pct(float(np.mean([h.key for h in hs]))),
        }

    if not heard:
        return {"utterances": 0}
    own, top = rates(heard), rates([ceiling_of(h.text) for h in heard])
    out: dict[str, Any] = {"utterances": len(heard), **own, "ceiling": top}
    for k in ("word_accuracy", "key_accuracy"):
        out[f"{k}_of_ceiling"] = pct(own[k] / top[k]) if top[k] > 0 else None
    return out


# ---- runs ------------------------------------------------------------------------------------------
# the model's audio of the said utterances [(said, text due)] of one run, in that order
Clips = Callable[[Run, list[tuple[Said, str]]], list[np.ndarray]]


def offline_clips(run: Run, items: list[tuple[Said, str]]) -> list[np.ndarray]:
    """An offline run's audio of each phrase: from where its voice starts, as long as the
    teacher's rendering and `MARGIN_S`, never into the next utterance."""
    from lab.tasks.voice import model_audio

    audio = run.audio()
    starts = sorted(phrase_start(s) for s in run.utterances())
    out = []
    for said, text in items:
        a = phrase_start(said)
        nxt = next((b for b in starts if b > a), len(audio))
        b = min(a + len(model_audio(text)) + int(MARGIN_S * SAMPLE_RATE_HZ), nxt)
        out.append(audio[a:b])
    return out


def due(run: Run) -> list[Utterance]:
    """What the model should say in a run: its episode's phrases and, once the background
    result entered (delegation), its value."""
    out = list(run.ep.say)
    if run.result_typed and "value" in run.ep.info:
        from lab.eval.metrics.requests import entry_mts

        at, text = run.result_typed[0]
        out.append(Utterance(at + entry_mts(text) - 1, str(run.ep.info["value"]), "result"))
    return out


def final_answer(run: Run, said: list[Said]) -> Said | None:
    """The utterance RepCount's metric takes as the final count (eval_repcount's choice; the
    demo's answer is its first choice)."""
    q0 = run.ep.info.get("q0")
    if q0 is not None:
        after = [s for s in said if s.mt >= q0 - 1 and _number(s.text) is not None]
        if after:
            return after[0]
    nums = [s for s in said if _number(s.text) is not None]
    return nums[-1] if nums else None


def to_judge(run: Run) -> list[tuple[Said, str]]:
    """The said utterances a listener's judgement can change a score of: the phrases said with
    the right text near the right time, and a count's final answer (RepCount, the demo: it may
    be off by one and still score)."""
    said = run.utterances()
    picked = {id(s): (s, s.text) for _, s in find_phrases(run, due(run), JUDGE_TOL)}
    if "total" in run.ep.info:
        last = final_answer(run, said)
        if last is not None:
            picked.setdefault(id(last), (last, last.text))
    return sorted(picked.values(), key=lambda p: p[0].mt)


@dataclass
class HeardView(Run):
    """A run as a listener scores it: a said utterance keeps its text only if its key content
    was heard right (others read "?"), so the suites' own metrics count what was done."""

    said: list[Said] = field(default_factory=list)

    def utterances(self) -> list[Said]:
        return list(self.said)


def heard_view(run: Run, heard: dict[int, Heard]) -> HeardView:
    """`heard`: judgements by the said utterance's micro-turn."""
    said = [
        Said(s.mt, s.text if (h := heard.get(s.mt)) and h.key else "?") for s in run.utterances()
    ]
    return HeardView(run.ep, run.outputs, run.delegations, run.result_typed, said)


def judge_runs(
    runs: list[Run], clips: Clips = offline_clips, limit_s: float = LIMIT_S
) -> list[tuple[Run, dict[int, Heard]]]:
    """Runs in order, each with its judged utterances by micro-turn, until `limit_s` seconds of
    audio were transcribed (at least one run)."""
    out: list[tuple[Run, dict[int, Heard]]] = []
    total = 0.0
    for r in runs:
        if out and total >= limit_s:
            break
        items = to_judge(r)
        heard = {}
        for (said, text), clip in zip(items, clips(r, items) if items else [], strict=True):
            heard[said.mt] = hear(text, clip)
            total += heard[said.mt].seconds
        out.append((r, heard))
    return out


def expects_words(runs: list[Run]) -> bool:
    return any(u.mel for r in runs for u in r.ep.say) or any("value" in r.ep.info for r in runs)


def done(
    judged: list[tuple[Run, dict[int, Heard]]], evaluate: Callable[[list[Run]], dict[str, Any]]
) -> dict[str, Any]:
    """The suite's word metrics on the judged episodes, from the text stream alone and with the
    words heard right too."""
    runs = [r for r, _ in judged]
    text = evaluate(runs)
    keys = [k for k in DONE_KEYS if isinstance(text.get(k), int | float)]
    if not keys:
        return {}
    both = evaluate([heard_view(r, h) for r, h in judged])
    if "off_by_one_accuracy" in keys:  # the final count must be heard as said
        ok = []
        for r, h in judged:
            last = final_answer(r, r.utterances())
            heard_ok = last is None or (last.mt in h and h[last.mt].key)
            ok.append(heard_ok and evaluate([r])["off_by_one_accuracy"] == 100.0)
        both["off_by_one_accuracy"] = pct(float(np.mean(ok)))
    return {k: {"text": text[k], "text_and_heard": both.get(k)} for k in keys}


def judge_suite(
    runs: list[Run],
    evaluate: Callable[[list[Run]], dict[str, Any]],
    clips: Clips = offline_clips,
    limit_s: float = LIMIT_S,
) -> tuple[dict[str, Any], list[Heard]]:
    """A suite's heard block (empty if it expects no words) and its judged phrases."""
    if not runs or not expects_words(runs):
        return {}, []
    judged = judge_runs(runs, clips, limit_s)
    heard = [h for _, hs in judged for h in hs.values()]
    block: dict[str, Any] = {"episodes": len(judged), **summarize(heard)}
    block["seconds"] = round(sum(h.seconds for h in heard), 1)
    block["done"] = done(judged, evaluate)
    block["examples"] = [[h.text, h.hyp] for h in heard[:EXAMPLES]]
    return block, heard
