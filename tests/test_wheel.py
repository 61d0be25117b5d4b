"""A wheel of the checkout carries the presets, and the installed copy runs a search from
any folder (not the checkout's editable copy).

Builds without build isolation (so no network): the environment needs setuptools and,
for setuptools < 70.1, wheel -- both are in the ``test`` extra.  The checkout's build
inputs are copied first, so setuptools' build/ and egg-info land in a temporary folder.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
BUILD_INPUTS = ("pyproject.toml", "setup.cfg", "README.md", "MANIFEST.in", "LICENSE")
PRESETS = REPO / "evo_nos" / "fitness" / "presets"


def run(cmd, *, cwd, env=None, timeout=120) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, (f"{' '.join(map(str, cmd))} exited {done.returncode}:\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, site folder, a clean environment for it, a folder outside the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        if (REPO / name).is_file():
            shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "evo_nos", src / "evo_nos",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", tmp / "dist", src], cwd=tmp, timeout=300)
    wheels = sorted((tmp / "dist").glob("evo_nos-*.whl"))
    assert len(wheels) == 1, wheels
    site = tmp / "site"
    run([*pip, "install", "--no-deps", "--no-index", "--target", site, wheels[0]], cwd=tmp)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PYTHONPATH=str(site), PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1",
               MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}", MPLBACKEND="Agg")
    return wheels[0], site, env, elsewhere, tmp


def test_the_wheel_carries_every_preset(installed):
    wheel, site, *_ = installed
    shipped = sorted(p.relative_to(REPO).as_posix() for p in PRESETS.rglob("*.toml"))
    assert {"evo_nos/fitness/presets/smoke.toml", "evo_nos/fitness/presets/cpu.toml",
            "evo_nos/fitness/presets/nos.toml"} <= set(shipped)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert set(shipped) <= names, f"missing from the wheel: {set(shipped) - names}"
    assert all((site / rel).is_file() for rel in shipped)


def test_the_installed_copy_is_the_one_imported(installed):
    _, site, env, elsewhere, _ = installed
    done = run([sys.executable, "-c",
                "import evo_nos, evo_nos.fitness.tasks as t; "
                "print(evo_nos.__file__); print(t.presets_dir()); print(' '.join(t.presets()))"],
               cwd=elsewhere, env=env)
    module_file, presets_dir, names = done.stdout.strip().splitlines()[-3:]
    assert Path(module_file).resolve().is_relative_to(site.resolve()), \
        f"imported {module_file}, not the copy in {site}"
    assert Path(presets_dir).resolve().is_relative_to(site.resolve())
    assert {"smoke", "cpu", "nos"} <= set(names.split())


def test_the_installed_copy_runs_a_search_from_another_folder(installed):
    _, site, env, elsewhere, tmp = installed
    out = tmp / "out"
    done = run([sys.executable, "-m", "evo_nos.run", "--strategy", "random", "--preset", "smoke",
                "--budget", "2", "--quiet", "--out", out], cwd=elsewhere, env=env, timeout=300)
    assert "random search finished" in done.stdout, done.stdout + done.stderr
    assert any(out.rglob("*")), f"nothing written under {out}"
    assert (tmp / "mlflow.db").is_file()
