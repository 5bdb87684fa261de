"""Which model a checkpoint directory holds: the class its config.json names, built from it.

    config.json {"class": "package.module:ClassName", ...}  ->  ClassName.from_checkpoint(dir)
    config.json without "class"                             ->  the reference model (checkpoint.py)
    "echo"                                                  ->  the pass-through EchoModel
    None                                                    ->  the shipped `small` checkpoint

The class must implement `inference.protocol.StreamingModel`; it is imported like any module (so
a checkpoint directory is trusted code, as an installed package is), and never unpickled.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from inference.checkpoint import CONFIG_FILE, CheckpointError
from inference.protocol import StreamingModel


def load_model(path: str | Path | None = None) -> StreamingModel:
    """The StreamingModel a checkpoint directory holds: the class its config.json names
    ("class": "module:Class", built with `Class.from_checkpoint(dir)`), else the reference model;
    "echo": the pass-through model; None: the shipped `small`."""
    if path is not None and str(path) == "echo":
        from inference.echo import EchoModel

        return EchoModel()
    from inference.reference import ReferenceModel

    if path is None:
        return ReferenceModel.from_checkpoint(None)
    p = Path(path)
    config = (p if p.is_dir() else p.parent) / CONFIG_FILE
    try:
        doc = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config}: cannot read it ({exc})") from None
    name = doc.get("class") if isinstance(doc, dict) else None
    if name is None:
        return ReferenceModel.from_checkpoint(p)
    module_name, _, attr = str(name).partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise CheckpointError(f"{config}: class {name!r} cannot be imported ({exc})") from None
    model = cls.from_checkpoint(p if p.is_dir() else p.parent)
    if not isinstance(model, StreamingModel):
        raise CheckpointError(f"{name} is not a StreamingModel (inference/protocol.py)")
    return model
