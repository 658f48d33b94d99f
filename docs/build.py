"""Build the API reference and execute the example notebook (.ci/run runs this).

    pip install ".[docs]"
    python docs/build.py [--out DIR]        # default: docs/_build (git-ignored)

1. The API reference, generated from the docstrings by pdoc, into OUT/api:
   every public module of grurec. Any warning pdoc gives (an annotation that
   does not resolve, a broken reference) fails the build.
2. examples/*.ipynb executed top to bottom in a fresh kernel (nbclient); a
   failing cell fails the build. The executed copies go to OUT/examples.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def public_modules() -> list[str]:
    import grurec

    # pdoc walks the submodules grurec.__all__ names by itself; naming them
    # again would be a (fatal) warning.
    names = ["grurec"]
    for m in pkgutil.iter_modules(grurec.__path__):
        if not m.name.startswith("_") and m.name not in grurec.__all__:
            names.append(f"grurec.{m.name}")
    return names


def build_api(out: Path) -> None:
    import pdoc

    mods = public_modules()
    for name in mods:  # imported first: their own import-time warnings are not pdoc's
        importlib.import_module(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pdoc.render.configure(docformat="restructuredtext")
        pdoc.pdoc(*mods, output_directory=out / "api")
    print(f"API reference: {len(mods)} modules -> {out / 'api'}")


def run_notebooks(out: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    (out / "examples").mkdir(parents=True, exist_ok=True)
    books = sorted((ROOT / "examples").glob("*.ipynb"))
    if not books:
        raise SystemExit("no notebook under examples/")
    for path in books:
        t0 = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        nbformat.write(nb, out / "examples" / path.name)
        print(f"executed {path.relative_to(ROOT)} in {time.perf_counter() - t0:.1f} s")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "_build")
    args = p.parse_args(argv)
    build_api(args.out)
    run_notebooks(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
