"""Notes search with the embedded all-MiniLM-L6-v2 (no download), and that it loads only on use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.backends import make_backend
from agent.backends.notes import NotesIndex, chunk_text
from agent.types import ContextPackage

REPO = Path(__file__).resolve().parents[2]


def write_notes(folder: Path) -> None:
    (folder / "recipes").mkdir()
    (folder / "wifi.md").write_text(
        "# Home network\n\nThe router is in the hallway cupboard.\n\n"
        "Wi-Fi name: BlueHouse. The wireless password is correct-horse-battery.\n"
    )
    (folder / "garden.txt").write_text(
        "Tomatoes need watering every morning in summer, twice a week in spring.\n\n"
        "The roses were pruned in March.\n"
    )
    (folder / "recipes" / "pancakes.md").write_text(
        "Pancakes: 200 g flour, 2 eggs, 300 ml milk, a pinch of salt. Rest the batter 30 min.\n"
    )
    (folder / ".hidden.md").write_text("secret stuff that must not be indexed\n")
    (folder / "image.png").write_bytes(b"\x89PNG")


@pytest.mark.slow
async def test_semantic_search_over_a_notes_folder(tmp_path: Path) -> None:
    write_notes(tmp_path)
    index = NotesIndex(tmp_path)

    hits = await index.search("how do I get on the internet at home", k=2)
    assert hits[0].path == "wifi.md" and "correct-horse-battery" in hits[0].text
    hits = await index.search("when should I water the plants", k=1)
    assert hits[0].path == "garden.txt" and hits[0].line == 1
    assert all(".hidden" not in h.path for h in await index.search("secret stuff", k=5))

    # A changed folder is re-indexed on a later search.
    (tmp_path / "car.md").write_text("The car's tyre pressure is 2.3 bar front and 2.1 rear.\n")
    index._scanned_at = -1e9  # skip the rescan interval
    hits = await index.search("how much air for the tires", k=1)
    assert hits[0].path == "car.md"

    # Through the builtin backend: progress partials, then a final with cards data.
    backend = make_backend("builtin", notes_dir=str(tmp_path))
    package = ContextPackage.new("call-n", "/ask search my notes for a pancake recipe", [], 3)
    events = [e async for e in backend.run(package)]
    assert [e.kind for e in events][-1] == "final"
    assert any(e.kind == "partial" and "Searching" in e.text for e in events)
    final = events[-1]
    assert final.data is not None and final.data["tool"] == "search_notes"
    assert final.data["hits"][0]["path"] == os.path.join("recipes", "pancakes.md")
    assert "flour" in final.text


def test_chunking_keeps_paragraphs_and_lines() -> None:
    text = "first para\nline two\n\n\nsecond para\n\n" + ("A long sentence here. " * 60)
    chunks = chunk_text(text, "n.md", chunk_chars=300)
    assert chunks[0].text.startswith("first para") and chunks[0].line == 1
    assert all(len(c.text) <= 300 for c in chunks)
    assert sum("long sentence" in c.text for c in chunks) >= 4


def test_the_model_is_not_loaded_without_notes() -> None:
    """The worker and builtin backend never import sentence-transformers (or torch) unless a
    notes folder is searched: `microturn agent` starts fast and small."""
    code = (
        "import asyncio, sys\n"
        "import agent.consumer, agent.cli\n"
        "from agent.backends import make_backend\n"
        "from agent.types import ContextPackage\n"
        "b = make_backend('builtin')\n"
        "p = ContextPackage.new('c', 'what is 2+2', [], 0)\n"
        "async def go():\n"
        "    return [e async for e in b.run(p)]\n"
        "assert asyncio.run(go())[-1].text == '2+2 = 4'\n"
        "assert 'sentence_transformers' not in sys.modules\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
