"""Every package visiontl imports is declared in pyproject.toml where its feature lives: a
module-level import in the core dependencies, an import inside a function in the core or
an extra; and every module imports with nothing installed but the core dependencies and
what they pull in (a fresh ``pip install visiontl``), simulated by a fresh interpreter whose
only site-packages holds links to those distributions' files."""
import ast
import importlib.metadata as md
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "visiontl"
# imported, not declared, on purpose: what they serve exists only where they are installed
UNDECLARED = {"IPython": "Results.show inside a running notebook",
              "huggingface_hub": "timm's own weight source, told to stay offline (comes with the timm extra)"}


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project() -> tuple[list[Requirement], dict[str, list[Requirement]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {k: [Requirement(r) for r in v] for k, v in project["optional-dependencies"].items() if k != "dev"}
    return [Requirement(r) for r in project["dependencies"]], extras


def _imports_of_distributions() -> dict[str, set[str]]:
    """Import name → the installed distributions that provide it."""
    return {name: {_canon(d) for d in dists} for name, dists in md.packages_distributions().items()}


def _closure(requirements: list[Requirement]) -> set[str]:
    """The distributions ``requirements`` install, with theirs (markers evaluated, extras followed)."""
    seen: set[str] = set()
    todo = [(r, "") for r in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": extra}):
            continue
        name = _canon(req.name)
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            continue
        for line in requires:
            sub = Requirement(line)
            for wanted in req.extras or {""}:
                todo.append((sub, wanted))
    return {k.split("[", 1)[0] for k in seen}


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """Top-level package names ``path`` imports at module level, and inside functions."""
    tree = ast.parse(path.read_text(), str(path))
    module_level, nested = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                nested |= _names(inner)
    for node in ast.walk(tree):
        module_level |= _names(node)
    return module_level - nested, nested


def _names(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Import):
        return {a.name.split(".")[0] for a in node.names}
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return {node.module.split(".")[0]}
    return set()


def _third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n not in {"visiontl", "__future__"}
            and n not in UNDECLARED}


def test_every_import_is_declared_where_its_feature_lives():
    core, extras = _project()
    provides = _imports_of_distributions()
    declared_core = {_canon(r.name) for r in core}
    declared_any = declared_core | {_canon(r.name) for reqs in extras.values() for r in reqs}
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module_level, nested = _imports(path)
        for names, declared, where in ((module_level, declared_core, "the core dependencies"),
                                       (nested, declared_any, "the core dependencies or an extra")):
            for name in sorted(_third_party(names)):
                if not provides.get(name, set()) & declared:
                    problems.append(f"{path.relative_to(ROOT)} imports {name} "
                                    f"({', '.join(sorted(provides.get(name, {'not installed'})))}), "
                                    f"not in {where}")
    assert not problems, "\n".join(problems)


IMPORT_ALL = r"""
import importlib, json, pkgutil, site, sys
site.addsitedir(sys.argv[1])  # the simulated environment's site-packages (its .pth files too)
sys.path.insert(0, sys.argv[2])  # the package's source
import visiontl
failed = {}
for info in pkgutil.walk_packages(visiontl.__path__, "visiontl."):
    if not info.name.endswith("__main__"):
        try:
            importlib.import_module(info.name)
        except Exception as e:
            failed[info.name] = f"{type(e).__name__}: {e}"
print(json.dumps(failed))
"""


def _import_everything(distributions: set[str], site_dir: Path) -> dict[str, str]:
    """Import every module of visiontl in a fresh interpreter whose only site-packages is
    ``site_dir``: links to the installed files of ``distributions``, nothing else."""
    site_dir.mkdir()
    for name in distributions:
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        base = Path(dist.locate_file(""))
        for top in {f.parts[0] for f in dist.files or [] if not f.parts[0].startswith("..")}:
            link = site_dir / top
            if not link.exists() and (base / top).exists():
                link.symlink_to(base / top)
    out = subprocess.run([sys.executable, "-S", "-c", IMPORT_ALL, str(site_dir), str(ROOT)], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_module_imports_with_only_the_core_dependencies(tmp_path):
    core, _ = _project()
    assert _import_everything(_closure(core), tmp_path / "core") == {}
    # the simulated environment is real: without OpenCV the modules that need it at import time fail
    no_cv2 = _closure(core) - {"opencv-python", "opencv-python-headless"}
    assert "No module named 'cv2'" in _import_everything(no_cv2, tmp_path / "no-cv2")["visiontl.data.transforms"]


def test_each_extra_provides_what_its_features_import():
    core, extras = _project()
    # what each optional feature imports when used, and the extra that must provide it
    features = {"serve": ["gradio", "pandas"], "export": ["onnx", "onnxruntime", "torch_pruning"],
                "explain": ["pytorch_grad_cam"], "timm": ["timm"], "tensorboard": ["tensorboard"],
                "datasets": ["sklearn", "skimage"]}
    provides = _imports_of_distributions()
    for extra, names in features.items():
        closure = _closure(core + extras[extra])
        missing = [n for n in names if not provides.get(n, set()) & closure]
        assert not missing, f"the {extra!r} extra does not install {missing}"
