"""The dependency floors in pyproject.toml are the versions `make test-min` tests on."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pins(path: Path) -> dict[str, str]:
    """name → version of a pip constraints file of ``name==version`` lines."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_name(name)] = version.strip()
    return pins


def test_every_dependency_has_a_floor_and_it_is_the_tested_minimum():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for requirement in deps:
        found = re.search(r">=\s*([\w.]+)", requirement)
        assert found, f"pyproject.toml: {requirement!r} has no floor (>=)"
        floors[_name(requirement)] = found.group(1)
    pins = _pins(ROOT / ".ci" / "min-versions.txt")
    assert floors == pins, "pyproject.toml's floors and .ci/min-versions.txt (what `make test-min` tests) differ"


def test_the_lock_pins_every_requirement_at_a_version_it_allows():
    """`make demo` / `make test` install .ci/lock.txt's versions (pip constraints): each
    requirement of pyproject.toml, core and every extra, is pinned there within its range."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins(ROOT / ".ci" / "lock.txt")
    wanted = [*project["dependencies"], *(r for reqs in project["optional-dependencies"].values() for r in reqs)]
    problems = []
    for text in wanted:
        req = Requirement(text)
        if req.name == "visiontl":  # dev names the other extras
            continue
        pinned = pins.get(_name(req.name))
        if pinned is None or not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{text}: the lock has {pinned or 'no pin'}")
    assert not problems, "pyproject.toml and .ci/lock.txt disagree (make lock): " + "; ".join(problems)
