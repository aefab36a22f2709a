"""Read W&B offline runs (``wandb/offline-run-*/run-*.wandb``) back without the W&B service.

A ``.wandb`` file is a 7-byte header (``:W&B``, magic 0xBEE1, version 0) followed by LevelDB-log
records in 32 KiB blocks, each payload one serialised ``wandb.proto.wandb_internal_pb2.Record``.
wandb 0.31 ships the protobuf classes but no reader, so this is one: `read_run` collects a run's
identity, config, history and summary, which is what `wandb sync` would upload.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

HEADER = b":W&B\xe1\xbe\x00"
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What one offline run holds.

    Attributes:
        path: the run's folder (``wandb/offline-run-DATE-ID``).
        run_id: W&B's run id.
        project: the project it syncs to.
        group: the run group (an experiment).
        name: the display name (a variant, variant-benchmark or variant-probe).
        job_type: ``train``, ``eval`` or ``probe``.
        config: the run's config, every update applied, values decoded from JSON.
        history: the logged rows, in order (keys joined with ``/``).
        summary: the final summary (keys joined with ``/``).
        finished: the run's exit record is written (W&B's writer flushes the file a moment
            after ``run.finish()`` returns; the process's exit waits for it).
    """

    path: Path
    run_id: str = ""
    project: str = ""
    group: str = ""
    name: str = ""
    job_type: str = ""
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    finished: bool = False


def records(path: str | Path):
    """The protobuf records of a ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if not data.startswith(HEADER):
        raise ValueError(f"{path}: not a W&B run file (header {data[:7]!r}, expected {HEADER!r})")
    pos, pending = len(HEADER), b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a record header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        payload = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == FIRST:
            pending = payload
            continue
        if kind == MIDDLE:
            pending += payload
            continue
        if kind == LAST:
            payload, pending = pending + payload, b""
        elif kind != FULL:
            raise ValueError(f"{path}: byte {pos - 7 - length}: record type {kind} is not a LevelDB log type")
        record = pb.Record()
        record.ParseFromString(payload)
        yield record


def _key(item) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_run(run_dir: str | Path, wait_s: float = 0.0) -> OfflineRun:
    """Everything an offline run folder's ``.wandb`` file holds about the run; waits up to
    ``wait_s`` seconds for a run still being written to finish."""
    deadline = time.monotonic() + wait_s
    while True:
        run = _read_once(Path(run_dir))
        if run.finished or time.monotonic() >= deadline:
            return run
        time.sleep(0.2)


def _read_once(run_dir: Path) -> OfflineRun:
    files = sorted(run_dir.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no run-*.wandb file")
    run = OfflineRun(path=run_dir)
    for rec in records(files[0]):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run.run_id, run.project, run.group = r.run_id, r.project, r.run_group
            run.name, run.job_type = r.display_name, r.job_type
            run.config.update({_key(u): json.loads(u.value_json) for u in r.config.update})
        elif kind == "config":
            run.config.update({_key(u): json.loads(u.value_json) for u in rec.config.update})
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            run.summary.update({_key(u): json.loads(u.value_json) for u in rec.summary.update})
        elif kind == "exit":
            run.finished = True
    run.config.pop("_wandb", None)
    return run


def offline_runs(wandb_dir: str | Path = "wandb", wait_s: float = 0.0) -> list[OfflineRun]:
    """Every offline run under ``wandb_dir``, oldest first (`read_run` for ``wait_s``)."""
    return [read_run(p, wait_s) for p in sorted(Path(wandb_dir).glob("offline-run-*")) if p.is_dir()]


def table(run: OfflineRun, key: str) -> dict:
    """A table the run logged under ``key``: ``{"columns": [...], "data": [[...], ...]}``."""
    path = run.summary.get(f"{key}/path")
    if not path:
        raise KeyError(f"{run.path}: no table logged as {key!r}")
    return json.loads((run.path / "files" / path).read_text())
