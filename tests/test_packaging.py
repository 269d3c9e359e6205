"""The package imports only what pyproject.toml declares (or the standard library); an optional extra's library
only inside a ``try`` that catches ImportError (the feature says what to install instead of failing to import)."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def imports(package: Path) -> dict[str, bool]:
    """Top-level module -> whether every import of it sits in a ``try`` that handles ImportError."""
    guarded: dict[str, bool] = {}

    def visit(node: ast.AST, in_try: bool) -> None:
        if isinstance(node, ast.Try):
            catches = any(
                h.type is None or any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError")
                                      for n in ast.walk(h.type))
                for h in node.handlers
            )  # fmt: skip
            for child in node.body:
                visit(child, in_try or catches)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, in_try)
            return
        mods = []
        if isinstance(node, ast.Import):
            mods = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods = [node.module.split(".")[0]]
        for m in mods:
            guarded[m] = guarded.get(m, True) and in_try
        for child in ast.iter_child_nodes(node):
            visit(child, in_try)

    for path in package.rglob("*.py"):
        visit(ast.parse(path.read_text(), str(path)), False)
    return guarded


def names(reqs: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def test_every_third_party_import_is_a_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = names(project["dependencies"])
    optional = names([r for group in project["optional-dependencies"].values() for r in group])
    dists = packages_distributions()
    found = imports(ROOT / "raytrain")
    third_party = sorted(set(found) - set(sys.stdlib_module_names) - {"raytrain"})
    assert {"ray", "torch", "numpy", "mlflow"} <= set(third_party), "the scan missed imports"
    wrong = {}
    for mod in third_party:
        dist = {d.lower().replace("_", "-") for d in dists.get(mod, [mod])}
        if dist & required:
            continue
        if dist & optional and found[mod]:
            continue
        wrong[mod] = "optional extra imported without an ImportError guard" if dist & optional else "undeclared"
    assert not wrong, f"pyproject.toml does not cover these imports: {wrong}"


def private_uses(package: Path) -> list[str]:
    """Every import of, or attribute read from, another package's private parts (a dotted name with a component that
    starts with one underscore: ``ray.train.v2._internal``, ``tqdm_ray._manager``), as 'file:line name'."""
    found = []
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            dotted = []
            if isinstance(node, ast.Import):
                dotted = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                dotted = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                dotted = [f"{node.value.id}.{node.attr}"]
            for name in dotted:
                if name.split(".")[0] == "raytrain" or not any(p.startswith("_") and not p.startswith("__")
                                                              for p in name.split(".")[1:]):  # fmt: skip
                    continue
                if isinstance(node, ast.Attribute) and node.value.id in ("self", "cls"):
                    continue
                found.append(f"{path.relative_to(package.parent)}:{node.lineno} {name}")
                break  # one entry per import or attribute
    return found


def test_only_public_apis_of_other_packages(tmp_path):
    bad = tmp_path / "pkg"
    bad.mkdir()
    (bad / "m.py").write_text("from ray.train.v2._internal.execution import context\nfrom ray.experimental import "
                              "tqdm_ray\nm = tqdm_ray._manager\nimport ray._private.utils\n")  # fmt: skip
    assert len(private_uses(bad)) == 3, "the scan must catch imports and attribute reads of private parts"
    assert private_uses(ROOT / "raytrain") == []


def test_the_methods_do_not_import_the_run_config_at_run_time():
    """The arrow points one way: raytrain.config reads the methods' configs, never the reverse (a fresh interpreter,
    so no other test's imports count)."""
    import subprocess

    code = ("import sys, raytrain.methods, raytrain.methods.denoiser.method, raytrain.methods.lir.method, "
            "raytrain.methods.senm.method; "
            "print(sorted(m for m in sys.modules if m.startswith('raytrain.config')))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_the_data_path_ray_data_processes_unpickle_does_not_import_torch():
    """Ray's dataset manager, split coordinators and crop tasks import the module of the crop functions they run
    (data/pipeline.py and what it imports); without torch, scipy and scikit-image at import time each such process
    starts ~1.5 CPU-s cheaper (measured: 27.8 -> 22.5 CPU-s of Ray processes for a tiny two-worker run)."""
    import subprocess

    code = ("import sys, raytrain.data.pipeline, raytrain.data.collection, raytrain.data.degrade; "
            "print(sorted(m for m in ('torch', 'scipy', 'skimage') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_the_data_layer_has_no_import_circle():
    """raytrain/data's modules import one another in one direction (every import counted, module-level or inside a
    function): decode <- prepared <- stored <- images <- collection <- pipeline, so the next reader or store is one
    file, not a knot."""
    folder = ROOT / "raytrain" / "data"
    mods = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    deps = {}
    for m in mods:
        found = set()
        for node in ast.walk(ast.parse((folder / f"{m}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            found |= {n.split(".")[2] for n in names if n.startswith("raytrain.data.") and n.split(".")[2] in mods}
        deps[m] = found - {m}
    seen, done = [], set()

    def visit(m: str) -> None:
        if m in done:
            return
        assert m not in seen, f"import circle: {' -> '.join([*seen[seen.index(m) :], m])}"
        seen.append(m)
        for d in sorted(deps[m]):
            visit(d)
        seen.pop()
        done.add(m)

    for m in sorted(mods):
        visit(m)
    assert "stored" not in deps["decode"] | deps["prepared"] and "images" not in deps["stored"]
