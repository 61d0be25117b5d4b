"""Checkpoint files and RNG states: what a search needs to resume exactly where it stopped.

A checkpoint is one pickle, written atomically (a temporary file, then ``os.replace``),
so an interruption at any point leaves the previous complete checkpoint in place.
"""
from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import torch

CHECKPOINT_FILE = "checkpoint.pkl"
SUMMARY_FILE = "run.json"
CHECKPOINT_VERSION = 1


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


def load_checkpoint(path: str | Path) -> dict:
    """The state saved by a search: ``path`` is a checkpoint directory or file."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: was the search started with "
                                "this checkpoint directory?")
    with open(path, "rb") as fh:
        state = pickle.load(fh)
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path} has checkpoint version {state.get('version')}, "
                         f"this evo_nos reads version {CHECKPOINT_VERSION}")
    return state
