"""Packaging: conf/ sits at the top of the repository and ships inside the package as prunelab/conf; the app
composes its configs from a plain wheel install and from an editable install, run from any directory."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from appkit import FAST, cli, summary

REPO = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_for_the_wheel():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for top in ("prunelab", "hydra_plugins")
               for p in (REPO / top).rglob("__init__.py")}
    assert on_disk | {"prunelab.conf"} == set(project["packages"])
    assert not (REPO / "hydra_plugins" / "__init__.py").exists()  # Hydra's plugin namespace package: no __init__
    assert project["package-dir"] == {"prunelab.conf": "conf"}
    assert not (REPO / "prunelab" / "conf").exists()  # one copy of the configs: conf/ at the top


@pytest.mark.slow
def test_editable_install_composes_from_another_directory(tmp_path):
    """The dev install (pip install -e .) maps prunelab.conf onto the checkout's conf/."""
    probe = subprocess.run([sys.executable, "-c", "import prunelab.conf as c; print(c.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, check=True)
    assert Path(probe.stdout.strip()).resolve() == (REPO / "conf" / "__init__.py").resolve()
    proc = cli(["--cfg", "job", "criterion=snip_momentum", "distribution=uniform", "schedule=at_init"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "criterion_type: snip_momentum" in proc.stdout and "name: uniform" in proc.stdout
    listing = subprocess.run([sys.executable, "-m", "prunelab", "list", "criteria"], cwd=tmp_path,
                             capture_output=True, text=True)
    assert listing.returncode == 0 and "snip_momentum" in listing.stdout and "criterion=" in listing.stdout


@pytest.mark.slow
def test_plain_wheel_install_finds_its_configs_from_any_directory(tmp_path):
    """`pip install .` (not editable) ships conf/ inside the package; run from a directory with no checkout."""
    source = tmp_path / "source"  # a clean copy: no build/ left in the checkout, no stale files in the wheel
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                                 "outputs", "multirun", "experiments"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(source)], check=True, capture_output=True, timeout=300)
    target = tmp_path / "site"
    wheel = next(wheels.glob("prunelab-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = subprocess.run([sys.executable, "-c", "import prunelab.conf as c; print(c.__file__)"], cwd=elsewhere,
                           env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert probe.stdout.strip().startswith(str(target)), probe  # the installed copy, not the checkout
    for yaml in ("config.yaml", "criterion/snip_momentum.yaml", "distribution/uniform.yaml", "schedule/at_init.yaml"):
        assert (target / "prunelab" / "conf" / yaml).exists(), yaml
    proc = cli(["logger=none", *FAST, f"hydra.run.dir={elsewhere / 'run'}"], cwd=elsewhere, PYTHONPATH=str(target))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert summary(elsewhere / "run")["status"] == "finished"
