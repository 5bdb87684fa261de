"""The shipped model in the demo page, as a user meets it after `make run`: a typed "say hello
every 3 seconds" is kept on time (the QA harness's looped speech on the mic, its circling square on
the camera). Counting the square's repetitions after that is not asserted yet: the shipped model
counts well in a call of its own but not after another task (docs/model.md). Timing is judged on
the session clock (the `microturn` of each `output_text.delta`), never on wall-clock time, so a
loaded machine only makes the test slower."""

from __future__ import annotations

import itertools
import statistics
from typing import Any

import pytest

from tests.browser.harness import EVENT_TIMEOUT_MS, ServerProcess, type_text, wait_event

pytestmark = pytest.mark.browser

HELLO_PERIOD_MT = 15  # 3 s of 200 ms micro-turns
# Generous: on a loaded 2-core machine the page, the server and the model share the cores.
WAIT_MS = 4 * EVENT_TIMEOUT_MS

SAID_WORDS = """() => {
  // the model's words with the micro-turn each began in: deltas joined in order, split on spaces
  const words = [];
  let cur = null;
  for (const e of window.microturn.events) {
    if (e.type !== 'output_text.delta') continue;
    for (const ch of e.text) {
      if (/\\s/.test(ch)) { if (cur) words.push(cur); cur = null; continue; }
      if (!cur) cur = {mt: e.microturn, text: ''};
      cur.text += ch;
    }
  }
  return words;
}"""


async def wait_words(page: Any, predicate: str) -> list[dict[str, Any]]:
    """Wait until the model's words satisfy the JS `predicate`; return them."""
    handle = await page.wait_for_function(
        f"() => {{ const words = ({SAID_WORDS})(); return ({predicate})(words) ? words : null; }}",
        timeout=WAIT_MS,
    )
    words: list[dict[str, Any]] = await handle.json_value()
    return words


def gaps(mts: list[int]) -> list[int]:
    return [b - a for a, b in itertools.pairwise(mts)]


async def test_the_model_says_hello_every_3_seconds(
    served_shipped: ServerProcess, chromium: Any
) -> None:
    page = await chromium.new_page()
    await page.goto(served_shipped.url)
    await page.click("#start")
    await wait_event(page, "session.created")

    await type_text(page, "say hello every 3 seconds")
    words = await wait_words(
        page, "(ws) => ws.filter((w) => w.text.toLowerCase() === 'hello').length >= 4"
    )
    hellos = [w["mt"] for w in words if w["text"].lower() == "hello"][:4]
    # on time: the gaps are 3 s (+-1 micro-turn); one hiccup in three is tolerated, since a
    # loaded machine can feed the model a stalled micro-turn now and then
    on_time = [g for g in gaps(hellos) if abs(g - HELLO_PERIOD_MT) <= 1]
    assert len(on_time) >= 2, words
    assert abs(statistics.median(gaps(hellos)) - HELLO_PERIOD_MT) <= 1, words

    await page.click("#stop")
