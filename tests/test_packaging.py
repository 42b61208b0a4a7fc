"""The dependency floors in pyproject.toml are the versions `make test-min` tests on."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_dependency_has_a_floor_and_it_is_the_tested_minimum():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for requirement in deps:
        found = re.search(r">=\s*([\w.]+)", requirement)
        assert found, f"pyproject.toml: {requirement!r} has no floor (>=)"
        floors[_name(requirement)] = found.group(1)
    pins = {}
    for line in (ROOT / ".ci" / "min-versions.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_name(name)] = version.strip()
    assert floors == pins, "pyproject.toml's floors and .ci/min-versions.txt (what `make test-min` tests) differ"
