"""A sampled mutation run over a method's files (issue 37): every one-token fault from a fixed set of operators (an
arithmetic or comparison operator flipped, a constant changed, x/y, clean/noisy, real/fake, z_x/z_y swapped...),
a seeded sample of them, each injected alone into a copy of the committed tree and run against that method's fast
tests (``pytest -m "not slow" -x``). Prints each fault caught or SURVIVED (with the test that caught it) and the
score. The working tree is never touched: the copy is a ``git archive`` of HEAD in a temporary folder.

    python tools/mutation_sample.py lir 30      # or: senm 30; --seed N (37 by default)
"""

from __future__ import annotations

import argparse
import pathlib
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SETS = {
    "lir": (["raytrain/methods/lir/method.py"], ["tests/test_lir.py", "tests/test_lir_wiring.py"]),
    "senm": (
        ["raytrain/methods/senm/method.py", "raytrain/methods/senm/nets.py", "raytrain/methods/senm/levels.py"],
        ["tests/test_senm.py", "tests/test_senm_wiring.py"],
    ),
}
OPS = [(r" \+ ", " - "), (r" - ", " + "), (r" \* ", " / "), (r"==", "!="), (r"!=", "=="), (r" < ", " >= "),
       (r" > ", " <= "), (r"<=", "<"), (r">=", ">"), (r"\bTrue\b", "False"), (r"\bFalse\b", "True"),
       (r"\b1\.0\b", "2.0"), (r"\b0\.5\b", "0.25"), (r"\.mean\(", ".sum("), (r"\bmax\(", "min("), (r"\bmin\(", "max("),
       (r"\bnot ", ""), (r"\bz_x\b", "z_y"), (r"\bz_y\b", "z_x"), (r"\bx2y\b", "y2x"), (r"\by2x\b", "x2y"),
       (r'"clean"', '"noisy"'), (r'"noisy"', '"clean"'), (r"\bacts_x\b", "acts_y"), (r"\bacts_n\b", "acts_x"),
       (r"\bqx\b", "qy"), (r"\bqy\b", "qx"), (r"\breal\b", "fake"), (r"\bfake\b", "real"), (r"\bx\b", "y"),
       (r"\by\b", "x")]  # fmt: skip


def code_lines(src: str):
    """(index, code) of each line that is code: not a docstring, comment, import, def, class or decorator line."""
    in_doc = False
    for i, line in enumerate(src.splitlines()):
        s = line.strip()
        if s.count('"""') == 1:
            in_doc = not in_doc
            continue
        if in_doc or not s or s.startswith(("#", '"""', "import ", "from ", "def ", "class ", "@")):
            continue
        yield i, line.split("  #")[0]


def mutants(root: pathlib.Path, files: list[str]):
    for rel in files:
        lines = (root / rel).read_text().splitlines()
        for i, code in code_lines("\n".join(lines)):
            for pat, rep in OPS:
                for m in re.finditer(pat, code):
                    yield rel, i, lines[i], lines[i][: m.start()] + rep + lines[i][m.end() :]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("method", choices=sorted(SETS))
    ap.add_argument("n", type=int)
    ap.add_argument("--seed", type=int, default=37)
    args = ap.parse_args()
    files, tests = SETS[args.method]
    root = pathlib.Path(tempfile.mkdtemp(prefix="mutation-"))
    try:
        subprocess.run(f"git -C {REPO} archive HEAD | tar -x -C {root}", shell=True, check=True)
        every = list(mutants(root, files))
        pool = random.Random(args.seed).sample(every, min(args.n, len(every)))
        print(f"{args.method}: {len(every)} candidate faults, {len(pool)} sampled (seed {args.seed})", flush=True)
        caught = 0
        for rel, i, old, new in pool:
            f = root / rel
            src = f.read_text()
            lines = src.splitlines()
            lines[i] = new
            f.write_text("\n".join(lines) + "\n")
            t0 = time.time()
            try:
                cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x", "-m", "not slow",
                       "--timeout", "120", *tests]  # fmt: skip
                r = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
            finally:
                f.write_text(src)
            out = r.stdout.splitlines()
            bad = [ln.split(" ")[1].split("::")[-1] for ln in out if ln.startswith(("FAILED", "ERROR"))]
            caught += r.returncode != 0
            where = f"{pathlib.Path(rel).parent.name}/{pathlib.Path(rel).name}:{i + 1}"
            print(f"{'caught  ' if r.returncode else 'SURVIVED'} {where}: {old.strip()[:80]!r} -> {new.strip()[:80]!r}"
                  f" {bad[:1]} {time.time() - t0:.0f} s", flush=True)  # fmt: skip
        print(f"{args.method}: caught {caught}/{len(pool)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
