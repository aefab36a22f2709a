"""The train stage's resumable work folder, outside the DVC output that DVC deletes before a run.

``<cache_root>/<key>/`` (the stage uses ``.cache/train/<variant>/<key>/``) holds the prepared
dataset (its tokenisation, error-token masks and reference log-probs are cached there by
`datasets`, computed by the main process and read by every rank) and ``checkpoints/``. The key
is a hash of everything that decides the trained weights: the training config, the number of
processes and the distributed type, the student folder's files, the pairs file and the training
code. A re-run with the same key resumes from the newest complete checkpoint; anything changed
starts a fresh folder. The folder is deleted when training finishes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from iterpref.config.paths import PACKAGE

# The code whose behaviour the cached masks and checkpoints depend on.
CODE = [*sorted((PACKAGE / "training").glob("*.py")), PACKAGE / "pairs" / "diff.py"]
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _hash_files(h, root: Path, files: list[Path]) -> None:
    for path in files:
        h.update(str(path.relative_to(root)).encode() + b"\0")
        with open(path, "rb") as fh:
            h.update(hashlib.file_digest(fh, "sha256").digest())


def run_key(config: dict, model_path: str | os.PathLike, pairs_path: str | os.PathLike) -> str:
    """A 16-hex-digit key of ``config`` (a JSON-able dict: train config, world size, distributed
    type), the content of every file under ``model_path``, the pairs file and the training code."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    model_path = Path(model_path)
    _hash_files(h, model_path, sorted(p for p in model_path.rglob("*") if p.is_file()))
    pairs_path = Path(pairs_path)
    _hash_files(h, pairs_path.parent, [pairs_path])
    _hash_files(h, PACKAGE, CODE)
    return h.hexdigest()[:16]


def is_complete(checkpoint: Path, world_size: int) -> bool:
    """Whether a checkpoint folder was written to the end: the Trainer writes its state file after
    the weights and optimizer, and every rank writes its own RNG state."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    rng = ["rng_state.pth"] if world_size <= 1 else [f"rng_state_{i}.pth" for i in range(world_size)]
    match = _CHECKPOINT.match(checkpoint.name)
    return bool(match) and state.get("global_step") == int(match.group(1)) and all((checkpoint / f).is_file() for f in rng)


def last_checkpoint(checkpoints: str | os.PathLike, world_size: int) -> Path | None:
    """The newest complete ``checkpoint-N`` folder under ``checkpoints`` (one a kill cut short is
    skipped), or None."""
    folder = Path(checkpoints)
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    for _, path in sorted(found, reverse=True):
        if is_complete(path, world_size):
            return path
    return None
