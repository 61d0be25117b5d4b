"""The import rules (tests/import_layers.py): the real package is clean, and the checker
does catch each kind of offence in small synthetic packages."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import import_layers

LAYERS = ("core", "optim", "cli")


def make_package(root: Path, files: dict, name: str = "pkg") -> Path:
    """A package ``root/name`` with the given files (path -> source); every folder gets
    an ``__init__.py`` unless one is given."""
    package = root / name
    for rel, text in files.items():
        path = package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for folder in [package, *[p for p in package.rglob("*") if p.is_dir()]]:
        init = folder / "__init__.py"
        if not init.exists():
            init.write_text("")
    return package


def offences(package: Path, kind: str, layers=LAYERS) -> list:
    report = import_layers.check(package, layers)
    return [o for o in report.offences if o.split(": ", 2)[1] == kind]


CLEAN = {
    "__init__.py": "from pkg.core.a import helper\nfrom pkg.cli import main\n",
    "core/a.py": "def helper():\n    return 1\n\n__all__ = ['helper']\n",
    "core/b.py": "from . import a\nfrom .a import helper, __all__\n\n"
                 "def f():\n    import pkg.core.a\n    return pkg.core.a.helper()\n",
    "optim/x.py": "from pkg.core import a\nfrom ..core.b import f\n",
    "cli/main.py": "import pkg.optim.x\nfrom pkg.core.a import helper\n",
    "run.py": "from pkg.cli.main import helper\n",        # a top-level shim: cli
}


# -- the real package -----------------------------------------------------------------------
def test_the_package_is_clean():
    report = import_layers.check()
    assert report.clean, "\n".join(report.offences)
    assert len(report.modules) > 40 and len(report.imports) > 100
    assert report.modules["evo_nos"] == import_layers.API
    assert report.modules["evo_nos.run"] == "cli"          # the shims count as cli
    assert report.modules["evo_nos.core.rules"] == "core"


def test_the_script_exits_0_with_a_summary():
    script = Path(import_layers.__file__)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and "modules" in lines[0] and "imports" in lines[0] and \
        "9 layers" in lines[0]


# -- synthetic packages ---------------------------------------------------------------------
def test_a_clean_synthetic_package_passes(tmp_path, capsys):
    package = make_package(tmp_path, CLEAN)
    report = import_layers.check(package, LAYERS)
    assert report.clean, report.offences
    assert len(report.modules) == 9
    assert import_layers.main([str(package), "--layers", ",".join(LAYERS)]) == 0
    assert "import layers clean" in capsys.readouterr().out


def test_a_cycle_hidden_in_a_function_is_reported(tmp_path, capsys):
    package = make_package(tmp_path, {
        **CLEAN,
        "core/a.py": "from pkg.core.b import g\n\ndef helper():\n    return g()\n",
        "core/b.py": "def g():\n    return 2\n\n\ndef late():\n"
                     "    from pkg.core.a import helper   # the hidden half\n"
                     "    return helper()\n",
    })
    found = offences(package, "cycle")
    assert len(found) == 1, found
    text = found[0]
    assert "pkg.core.a -> pkg.core.b -> pkg.core.a" in text or \
        "pkg.core.b -> pkg.core.a -> pkg.core.b" in text
    assert "pkg/core/a.py:1: pkg.core.a imports pkg.core.b" in text
    assert "pkg/core/b.py:6: pkg.core.b imports pkg.core.a" in text
    assert import_layers.main([str(package), "--layers", ",".join(LAYERS)]) == 1
    assert "pkg/core/b.py:6" in capsys.readouterr().out


def test_a_cycle_through_a_package_init_and_a_relative_import(tmp_path):
    package = make_package(tmp_path, {
        **CLEAN,
        "optim/__init__.py": "from .x import thing\n",
        "optim/x.py": "def thing():\n    from . import helpers\n    return helpers\n",
        "optim/helpers.py": "from pkg.optim import thing\n",   # the package's name
    })
    found = offences(package, "cycle")
    assert len(found) == 1, found
    assert "pkg.optim, pkg.optim.helpers, pkg.optim.x" in found[0]
    assert "pkg/optim/helpers.py:1: pkg.optim.helpers imports pkg.optim" in found[0]


def test_the_implicit_parent_init_is_no_cycle(tmp_path):
    # pkg/core/__init__ imports pkg.core.a; a importing pkg.core.b runs pkg/core/__init__
    # first, but that is not an edge: only explicit imports count.
    package = make_package(tmp_path, {
        **CLEAN,
        "core/__init__.py": "from pkg.core.a import helper\n",
        "core/a.py": "import pkg.core.c\n\ndef helper():\n    return 1\n",
        "core/c.py": "X = 1\n",
    })
    assert import_layers.check(package, LAYERS).clean


@pytest.mark.parametrize("rel, source, line, target", [
    ("core/up.py", "X = 1\nfrom pkg.optim.x import f\n", 2, "pkg.optim.x (optim, layer 1)"),
    ("core/up.py", "def f():\n    from ..cli import main\n", 2, "pkg.cli.main (cli, layer 2)"),
    ("optim/up.py", "import pkg.run\n", 1, "pkg.run (cli, layer 2)"),          # a shim
    ("cli/up.py", "from pkg import helper\n", 1, "pkg (api, layer 3)"),        # the API
    ("core/up.py", "import importlib\nm = importlib.import_module('pkg.cli.main')\n", 2,
     "pkg.cli.main (cli, layer 2)"),
])
def test_an_upward_import_is_reported(tmp_path, rel, source, line, target):
    package = make_package(tmp_path, {**CLEAN, rel: source})
    found = offences(package, "upward")
    assert len(found) == 1, found
    assert found[0].startswith(f"pkg/{rel}:{line}: upward: ")
    assert found[0].endswith(f"imports {target}")


def test_a_private_name_from_another_module_is_reported(tmp_path):
    package = make_package(tmp_path, {
        **CLEAN,
        "core/a.py": "def helper():\n    return _inner()\n\n\ndef _inner():\n    return 1\n",
        "optim/x.py": "from pkg.core.a import helper, _inner\n\n\ndef f():\n"
                      "    from ..core.a import _inner as again\n    return again\n",
        "core/_impl.py": "X = 1\n",
        "core/b.py": "from . import _impl\n",                  # its own package: fine
        "cli/main.py": "from pkg.core import _impl\n",         # another package: not
    })
    found = offences(package, "private")
    assert sorted(found) == [
        "pkg/cli/main.py:1: private: pkg.cli.main imports the private module pkg.core._impl",
        "pkg/optim/x.py:1: private: pkg.optim.x imports _inner from pkg.core.a",
        "pkg/optim/x.py:5: private: pkg.optim.x imports _inner from pkg.core.a",
    ]


def test_a_module_in_no_layer_and_bad_arguments(tmp_path, capsys):
    package = make_package(tmp_path, {**CLEAN, "extras/z.py": "X = 1\n"})
    found = offences(package, "layer")
    assert found and all("in no layer" in o for o in found)
    assert import_layers.main([str(tmp_path / "nothing")]) == 2
    assert "not a package" in capsys.readouterr().err
