"""The set-up files agree: one list of pins, and CI runs the README's test command."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [
        *project["dependencies"],
        *project["optional-dependencies"]["book"],
        *project["optional-dependencies"]["peers"],
        *project["optional-dependencies"]["dev"],
    ]
    pins = {}
    for req in reqs:
        name = re.split(r"[=<>\[ ]", req, maxsplit=1)[0]
        if name != "robseg_lib":
            pins[name.lower()] = req.replace(" ", "")
    return pins


def test_environment_yml_has_the_same_pins_as_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_pins = {re.split(r"[=<>]", r, maxsplit=1)[0].lower(): r for r in pip_list if not r.startswith("-e")}
    assert env_pins == _pyproject_pins()


def test_torch_pins_are_exact():
    pins = _pyproject_pins()
    assert pins["torch"] == "torch==2.14.1"
    assert pins["torchvision"] == "torchvision==0.29.1"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme
    assert "make book" in readme
    assert re.search(r"^make test$", ci, re.M)
