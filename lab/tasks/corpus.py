"""Open text: what users say, from a real English corpus available offline.

Source: the example sentences of WordNet 3.0 (Debian's `wordnet-base`, /usr/share/wordnet;
Princeton's WordNet 3.0 licence: use, copy, modify and distribute for any purpose, with its
copyright notice). About 30,000 distinct everyday sentences and phrases with their own
punctuation ("he took a deep breath and dived into the pool", "Can I give you my keys while I go
in the pool?"), kept when 4-16 words of plain letters and punctuation.

Splits, by a hash of the sentence (stable whatever else changes): `train` (90 %) is the only
one a training family draws; `dev` (10 %) is held out for the lab's own open evaluation. The live
evaluation's frozen sentences (lab/live/episodes.py, OPEN_SENTENCES) are in neither (a test
checks it).

What a user says in a turn (`turn_parts`): one or two sentences, cut into the parts they are said
in, with a pause after each part but the last: at its commas, and now and then at a hesitation
("the, um, ...") or a restart ("I was, I was going to ..."), fillers at a part's start. A part
before a pause ends with a comma (continuation intonation) or a filler; the last keeps the
sentence's own end (".", "?", "!").
"""

from __future__ import annotations

import re
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

WORDNET = Path("/usr/share/wordnet")
SPLITS = ("train", "dev")
DEV_SHARE = 10  # percent of sentences held out of training
MIN_WORDS, MAX_WORDS = 4, 16
FILLERS = ("um", "uh", "you know", "I mean", "well", "so", "like", "okay so", "hmm")
_PLAIN = re.compile(r"[A-Za-z][A-Za-z ,.?!';-]*")


def _clean(s: str) -> str | None:
    s = " ".join(s.replace(";", ",").split())
    if not _PLAIN.fullmatch(s) or "--" in s or ",," in s:
        return None
    words = s.rstrip(".?!").split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    if s[-1] not in ".?!":
        s += "."
    return s


def split_of(sentence: str) -> str:
    return "dev" if zlib.crc32(sentence.lower().encode()) % 100 < DEV_SHARE else "train"


@lru_cache(maxsize=1)
def _all() -> dict[str, tuple[str, ...]]:
    if not (WORDNET / "data.noun").exists():
        raise FileNotFoundError(
            f"WordNet's example sentences are read from {WORDNET}: install Debian's wordnet-base "
            "(make system-deps does)"
        )
    found: set[str] = set()
    for pos in ("noun", "verb", "adj", "adv"):
        with (WORDNET / f"data.{pos}").open(encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):  # the licence header
                    continue
                _, _, gloss = line.partition("|")
                for quoted in re.findall(r'"([^"]+)"', gloss):
                    s = _clean(quoted.strip())
                    if s is not None:
                        found.add(s)
    out: dict[str, list[str]] = {k: [] for k in SPLITS}
    for s in sorted(found):
        out[split_of(s)].append(s)
    return {k: tuple(v) for k, v in out.items()}


def sentences(split: str = "train") -> tuple[str, ...]:
    return _all()[split]


def sentence(rng: np.random.Generator, split: str = "train") -> str:
    pool = sentences(split)
    return pool[int(rng.integers(len(pool)))]


def _cut(sentence: str) -> list[str]:
    """A sentence at its commas: the parts a speaker pauses between."""
    return [p.strip() for p in sentence.split(",") if p.strip()]


def turn_parts(rng: np.random.Generator, split: str = "train") -> list[str]:
    """What the user says in one turn, as the parts between its pauses. Every part but the last
    ends with "," (or a filler and ","), the last with the sentence's end punctuation."""
    texts = [sentence(rng, split)]
    if rng.random() < 0.3:
        texts.append(sentence(rng, split))
    parts: list[str] = []
    for t, text in enumerate(texts):
        end = text[-1]
        chunks = _cut(text.rstrip(".?!"))
        if t < len(texts) - 1:
            end = ","  # a sentence the turn goes on after: said as continuing
        for j, chunk in enumerate(chunks):
            words = chunk.split()
            if len(words) >= 4 and rng.random() < 0.25:  # a hesitation inside the clause
                k = int(rng.integers(1, len(words) - 1))
                filler = str(rng.choice(FILLERS[:2]))
                parts.append(" ".join(words[:k]) + f", {filler},")
                words = words[k:]
                if rng.random() < 0.3:  # a restart: the words before the pause again
                    words = [*chunk.split()[max(0, k - 2) : k], *words]
            text_j = " ".join(words)
            if rng.random() < 0.12:
                text_j = f"{rng.choice(FILLERS)} {text_j}"
            parts.append(text_j + ("," if j < len(chunks) - 1 else end))
    return parts


def chat_line(rng: np.random.Generator, split: str = "train") -> str:
    """One sentence said in one breath (distractor talk, babble)."""
    return sentence(rng, split)


# ---- how a turn's parts are said ------------------------------------------------------------------
def part_text(part: str, last: bool) -> str:
    """A turn's part as said: its own end punctuation if it brings one, else a comma before a
    pause (continuation intonation) and a period at the end (falling)."""
    return part if part[-1] in ",.?!" else part + ("." if last else ",")


def in_one_breath(parts: list[str] | tuple[str, ...]) -> str:
    """A turn's parts said without pauses (a barge-in), ending as a sentence."""
    said = " ".join(parts)
    return said if said[-1] in ".?!" else said.rstrip(",") + "."


def continuing(parts: list[str]) -> list[str]:
    """Every part but the last said as going on (its end punctuation a comma)."""
    return [p.rstrip(",.?!") + "," for p in parts[:-1]] + parts[-1:]
