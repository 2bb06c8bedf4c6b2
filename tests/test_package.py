"""What an installed package (not a source checkout) carries: the wheel holds the recipes and the base models,
and the demo finds its recipes and its base model inside the installed package."""

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


def test_the_wheel_holds_every_recipe_and_base_model_file(wheel):
    package = ROOT / "src" / "tinyvideo"
    data = [*RECIPES.rglob("*.yaml"), *(path for path in (package / "base_models").rglob("*") if path.is_file())]
    shipped = {f"tinyvideo/{path.relative_to(package).as_posix()}" for path in data}
    assert any("base_models" in name for name in shipped)
    assert shipped <= set(zipfile.ZipFile(wheel).namelist())


def test_the_demo_finds_its_recipes_and_base_model_in_the_installed_package(wheel, tmp_path):
    target = tmp_path / "site-packages"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target)]
    subprocess.run([*pip, str(wheel)], check=True)
    code = (
        "import json, tinyvideo\n"
        "from tinyvideo.demo.plan import BASE_ABLATION_STAGES, BASE_RECIPES, BASE_STAGES, SCRATCH_RECIPES, STAGES\n"
        "from tinyvideo.train.base_model import DEFAULT, base_model_folder\n"
        "print(json.dumps({'package': tinyvideo.__file__, 'recipes': str(BASE_RECIPES), 'base': str(base_model_folder(DEFAULT)),"
        " 'missing': [str(f / f'{s.name}.yaml') for f, stages in"
        " ((SCRATCH_RECIPES, STAGES), (BASE_RECIPES, BASE_STAGES + BASE_ABLATION_STAGES))"
        " for s in stages if not (f / f'{s.name}.yaml').is_file()]}))"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}  # the installed copy, not this checkout's src/
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    found = json.loads(run.stdout)
    assert all(Path(found[key]).is_relative_to(target) for key in ("package", "recipes", "base"))
    assert found["missing"] == []
