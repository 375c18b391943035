"""The stock service's process stays free of the scientific stack: replenishment runs in its
own worker (stockflow.stock.replenishment.app)."""

from __future__ import annotations

import json
import subprocess
import sys

SCIENTIFIC = {"numpy", "pandas", "scipy", "statsmodels", "matplotlib"}


def scientific_modules_loaded_by(build: str) -> set[str]:
    """Run `build` in a fresh interpreter; the scientific packages it left in sys.modules."""
    probe = (
        "import json, sys\n"
        "from stockflow.runtime.serve import build_app, load_definition, load_worker\n"
        "from stockflow.runtime.settings import Settings\n"
        f"{build}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1])) & SCIENTIFIC


def test_building_the_stock_service_loads_no_scientific_library() -> None:
    build = (
        'definition = load_definition("stock")\n'
        'app = build_app("stock", Settings(service="stock"))\n'
        "assert definition.routers and app.routes"
    )
    assert scientific_modules_loaded_by(build) == set()


def test_the_replenishment_worker_loads_it() -> None:
    """The probe sees the stack where it is used, so the check above can fail."""
    build = (
        'worker = load_worker("replenishment")\n'
        'app = build_app("replenishment", Settings(service="stock"))\n'
        "assert worker.background and app.routes"
    )
    assert scientific_modules_loaded_by(build) == SCIENTIFIC
