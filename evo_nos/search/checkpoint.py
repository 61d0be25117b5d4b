"""Checkpoint files and RNG states: what a search needs to resume exactly where it stopped.

A checkpoint file is a header line and a pickle::

    EVO_NOS CHECKPOINT 2 <sha256 of the pickle> <its length>\n<pickle>

written atomically (a temporary file, then ``os.replace``).  The one it replaces is
kept beside it as ``checkpoint.prev.pkl``, so a checkpoint damaged after it was written
(a truncated copy, a flipped bit) still leaves the search one batch back.  Loading
checks the header, the format version, the length and the checksum before unpickling,
and the keys a resume needs after; any failure is a :class:`CheckpointError` whose
one-line message says what to do.  Files of format 1 (a bare pickle, before checksums)
are still read.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from evo_nos.core.files import write_atomic

CHECKPOINT_FILE = "checkpoint.pkl"
PREVIOUS_FILE = "checkpoint.prev.pkl"      # the checkpoint before the last one
SUMMARY_FILE = "run.json"
LOCK_FILE = "lock"                         # held by the process running the search
CHECKPOINT_VERSION = 2
_MAGIC = b"EVO_NOS CHECKPOINT"
_LEGACY_VERSION = 1                        # a bare pickle, no header
# what a resume reads from every checkpoint
REQUIRED_KEYS = ("version", "status", "strategy", "strategy_state", "backend_state",
                 "hall_of_fame", "rng", "budget", "batch_size", "trainings", "counts",
                 "history", "run_id", "config")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why and what to do."""


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global RNGs (the backend may use them)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_states() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def new_search_dir(parent: str | Path, name: str) -> Path:
    """A new empty folder ``parent/name`` (``name-2``, ``name-3``, ... if that is taken),
    made atomically, so two searches started in the same second never share one."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = parent / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent} has 10,000 folders named {name}*: choose another --out")


def frame(payload: bytes) -> bytes:
    """The bytes of a checkpoint file holding the pickle ``payload``."""
    digest = hashlib.sha256(payload).hexdigest()
    return b"%s %d %s %d\n" % (_MAGIC, CHECKPOINT_VERSION, digest.encode(), len(payload)) \
        + payload


def write_checkpoint(directory: str | Path, payload: bytes) -> Path:
    """Save the pickle ``payload`` as ``directory``'s checkpoint, keeping the one it
    replaces as :data:`PREVIOUS_FILE`; returns the checkpoint's path."""
    directory = Path(directory)
    path = directory / CHECKPOINT_FILE
    if path.is_file():
        os.replace(path, directory / PREVIOUS_FILE)
    return write_atomic(path, frame(payload))


def read_checkpoint(path: str | Path) -> dict:
    """The state in one checkpoint file, checked; :class:`CheckpointError` if unusable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror or err}") from None
    if data.startswith(_MAGIC):
        header, newline, payload = data.partition(b"\n")
        fields = header[len(_MAGIC):].split()
        if not newline or len(fields) != 3 or not fields[0].isdigit():
            raise CheckpointError(f"{path} is damaged (its header is unreadable)")
        if int(fields[0]) != CHECKPOINT_VERSION:
            raise CheckpointError(f"{path} has checkpoint format {int(fields[0])}; this "
                                  f"evo_nos reads {CHECKPOINT_VERSION} (and "
                                  f"{_LEGACY_VERSION}): resume it with the evo_nos that "
                                  "wrote it")
        if not fields[2].isdigit() or int(fields[2]) != len(payload):
            raise CheckpointError(f"{path} is damaged (truncated or padded: "
                                  f"{len(payload)} bytes where the header says "
                                  f"{fields[2].decode(errors='replace')})")
        if hashlib.sha256(payload).hexdigest().encode() != fields[1]:
            raise CheckpointError(f"{path} is damaged (its checksum does not match)")
        state = _unpickle(path, payload)
    else:                               # format 1: a bare pickle, nothing to check it by
        state = _unpickle(path, data)
        if isinstance(state, dict) and state.get("version") == _LEGACY_VERSION:
            state["version"] = CHECKPOINT_VERSION
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not an evo_nos checkpoint")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a complete evo_nos checkpoint (no "
                              f"{', '.join(missing)})")
    return state


def _unpickle(path: Path, payload: bytes):
    try:
        return pickle.loads(payload)
    except Exception as err:            # pickle raises anything from garbage
        raise CheckpointError(f"{path} is damaged ({type(err).__name__}: {err})") from None


def load_checkpoint(path: str | Path) -> dict:
    """The state saved by a search: ``path`` is a checkpoint directory or file.

    In a directory whose checkpoint is missing (a crash between keeping the previous one
    and writing the new one) the previous one is the latest state and is loaded; a
    damaged checkpoint is refused, naming the previous one if that one is good."""
    path = Path(path)
    directory, path = (path, path / CHECKPOINT_FILE) if path.is_dir() else (path.parent, path)
    previous = directory / PREVIOUS_FILE
    if not path.is_file():
        if path.name == CHECKPOINT_FILE and previous.is_file():
            return read_checkpoint(previous)
        raise FileNotFoundError(f"no checkpoint at {path}: was the search started with "
                                "this checkpoint directory?")
    try:
        return read_checkpoint(path)
    except CheckpointError as err:
        if path.name != CHECKPOINT_FILE or not previous.is_file():
            raise
        try:
            older = read_checkpoint(previous)
        except CheckpointError:
            raise CheckpointError(f"{err}, and so is {previous}: this search cannot be "
                                  "resumed; start it again") from None
        raise CheckpointError(
            f"{err}; the checkpoint before it ({older['trainings']} trainings done) is "
            f"good: to go on from there, run  mv {previous} {path}  and resume again") \
            from None
