"""What an installed package (not a source checkout) carries: the wheel holds the recipes, and the demo finds
its recipes inside the installed package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "src" / "tinyvideo" / "recipes"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built offline from a copy of the project, so the build leaves nothing in the checkout."""
    work = tmp_path_factory.mktemp("build")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, work / name)
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*pip, "--wheel-dir", str(work / "dist"), str(work)], check=True, cwd=work)
    return next((work / "dist").glob("tinyvideo-*.whl"))


def test_the_wheel_holds_every_recipe(wheel):
    shipped = {f"tinyvideo/recipes/{path.relative_to(RECIPES).as_posix()}" for path in RECIPES.rglob("*.yaml")}
    assert shipped and shipped <= set(zipfile.ZipFile(wheel).namelist())


def test_the_demo_finds_its_recipes_in_the_installed_package(wheel, tmp_path):
    target = tmp_path / "site-packages"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target)]
    subprocess.run([*pip, str(wheel)], check=True)
    code = (
        "import json, tinyvideo\n"
        "from tinyvideo.demo.plan import RECIPES, STAGES\n"
        "print(json.dumps({'package': tinyvideo.__file__, 'recipes': str(RECIPES),"
        " 'missing': [s.name for s in STAGES if not (RECIPES / f'{s.name}.yaml').is_file()]}))"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}  # the installed copy, not this checkout's src/
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    found = json.loads(run.stdout)
    assert Path(found["package"]).is_relative_to(target) and Path(found["recipes"]).is_relative_to(target)
    assert found["missing"] == []
