"""The guards `make lint` runs fail the build when broken.

Each case writes a throw-away package into a temporary directory, breaks one rule there and runs
the real tool on it; the real source tree is only read. The last tests check that the
repository's own configuration holds the contracts, limits and strict domains, and that CI runs
them.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVICES = ("catalog", "stock", "order", "fulfillment", "accounting")

# A miniature of the real contracts: a pure domain, independent services, layers in a service.
SHOP_CONTRACTS = """
[importlinter]
root_packages =
    shop
include_external_packages = True

[importlinter:contract:domain-pure]
name = billing: the domain imports only the standard library and itself
type = forbidden
source_modules =
    shop.billing.domain
forbidden_modules =
    asyncpg
    shop.billing.store
    shop.billing.api

[importlinter:contract:services-independent]
name = Services never import each other
type = independence
modules =
    shop.billing
    shop.shipping

[importlinter:contract:billing-layers]
name = billing: entry points -> use cases -> store -> domain
type = layers
containers =
    shop.billing
layers =
    api
    usecases
    store
    domain
"""

CLEAN_SHOP = {
    "shop/__init__.py": "",
    "shop/billing/__init__.py": "",
    "shop/billing/domain.py": "import decimal\n",
    "shop/billing/store.py": "import asyncpg\n\nfrom shop.billing import domain\n",
    "shop/billing/usecases.py": "from shop.billing import store\n",
    "shop/billing/api.py": "from shop.billing import usecases\n",
    "shop/shipping/__init__.py": "",
    "shop/shipping/domain.py": "import datetime\n",
}


def run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def lint_shop(tmp_path: Path, **changed: str) -> subprocess.CompletedProcess[str]:
    """lint-imports on the clean shop with `changed` files (path with / as __) rewritten."""
    files = {
        **CLEAN_SHOP,
        **{name.replace("__", "/") + ".py": text for name, text in changed.items()},
    }
    for name, text in files.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / ".importlinter").write_text(SHOP_CONTRACTS)
    return run(
        [str(BIN / "lint-imports"), ".importlinter", "--no-cache"],
        tmp_path,
        PYTHONPATH=str(tmp_path / "src"),
    )


def test_import_contracts_pass_on_a_clean_package(tmp_path: Path) -> None:
    result = lint_shop(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("changed", "broken"),
    [
        ({"shop__billing__domain": "import asyncpg\n"}, "the domain imports only"),
        ({"shop__billing__domain": "from shop.billing import store\n"}, "the domain imports only"),
        ({"shop__shipping__domain": "from shop.billing import domain\n"}, "never import each"),
        ({"shop__billing__store": "from shop.billing import api\n"}, "entry points"),
    ],
    ids=[
        "domain-imports-a-driver",
        "domain-imports-its-store",
        "service-imports-another",
        "store-imports-the-api",
    ],
)
def test_import_contracts_fail_when_broken(
    tmp_path: Path, changed: dict[str, str], broken: str
) -> None:
    result = lint_shop(tmp_path, **changed)
    assert result.returncode != 0, result.stdout
    assert "0 broken" not in result.stdout
    assert broken in result.stdout.split("Broken contracts")[-1]


def many_arguments(count: int) -> str:
    names = ", ".join(f"a{i}" for i in range(count))
    return f"def f({names}):\n    return ({names},)\n"


def branchy(branches: int) -> str:
    body = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(branches))
    return f"def g(x):\n{body}    return -1\n"


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        (many_arguments(6), None),
        (many_arguments(7), "PLR0913"),
        (branchy(11), None),
        (branchy(12), "C901"),
    ],
    ids=["six-arguments", "seven-arguments", "complexity-12", "complexity-13"],
)
def test_complexity_limits_of_the_real_config(
    tmp_path: Path, source: str, rule: str | None
) -> None:
    module = tmp_path / "module.py"
    module.write_text(source)
    result = run(
        [
            str(BIN / "ruff"),
            "check",
            "--no-cache",
            "--config",
            str(ROOT / "pyproject.toml"),
            "--select",
            "C901,PLR0912,PLR0913,PLR0915",
            str(module),
        ],
        tmp_path,
    )
    if rule is None:
        assert result.returncode == 0, result.stdout
    else:
        assert result.returncode == 1 and rule in result.stdout, result.stdout


@pytest.fixture(scope="module")
def config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_real_import_contracts_are_there(config: dict) -> None:
    contracts = {c["id"]: c for c in config["tool"]["importlinter"]["contracts"]}
    independent = contracts["services-independent"]
    assert independent["type"] == "independence"
    assert sorted(independent["modules"]) == sorted(f"stockflow.{s}" for s in SERVICES)
    libs = contracts["libs-import-no-service"]
    assert set(libs["source_modules"]) == {"stockflow.contracts", "stockflow.runtime"}
    assert {f"stockflow.{s}" for s in SERVICES} | {"stockflow.cli"} <= set(
        libs["forbidden_modules"]
    )
    for service in SERVICES:
        domain = contracts[f"{service}-domain-pure"]
        assert domain["source_modules"] == [f"stockflow.{service}.domain"]
        for driver in ("asyncpg", "fastapi", "faststream", "aiokafka", "stockflow.runtime"):
            assert driver in domain["forbidden_modules"], (service, driver)
        layers = contracts[f"{service}-layers"]
        assert layers["type"] == "layers" and layers["containers"] == [f"stockflow.{service}"]
        assert layers["layers"][-1] == "domain"


def test_the_real_limits_and_strict_domains_are_there(config: dict) -> None:
    lint = config["tool"]["ruff"]["lint"]
    assert {"C901", "PLR0912", "PLR0913", "PLR0915"} <= set(lint["select"])
    assert lint["mccabe"]["max-complexity"] == 12
    assert lint["pylint"] == {"max-args": 6, "max-branches": 15, "max-statements": 50}
    strict = [o for o in config["tool"]["mypy"]["overrides"] if o.get("disallow_untyped_defs")]
    modules = {m for o in strict for m in o["module"]}
    for service in SERVICES:
        assert f"stockflow.{service}.domain" in modules, service


def test_ci_runs_lint_and_tests() -> None:
    lint = (ROOT / "Makefile").read_text().split("\nlint:")[1].split("\n\n")[0]
    for tool in ("ruff check", "ruff format --check", "mypy", "lint-imports"):
        assert tool in lint, tool
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make lint" in ci and "make test" in ci


# Stock and order were restructured so a newcomer can read any of their functions at a glance
# (issue 17); ruff counts statements and arguments, this counts lines, as a reader does.
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 6


def oversized_functions(source: str) -> list[str]:
    """`name: N lines` or `name: N parameters` for each function past the limits."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        lines = (node.end_lineno or node.lineno) - node.lineno + 1
        params = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        names = [p.arg for p in params if p.arg not in ("self", "cls")]
        if lines > MAX_FUNCTION_LINES:
            found.append(f"{node.name}: {lines} lines")
        if len(names) > MAX_PARAMETERS:
            found.append(f"{node.name}: {len(names)} parameters")
    return found


def test_the_size_check_flags_a_long_function_and_a_long_parameter_list() -> None:
    long_body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    source = f"def long():\n{long_body}\n\ndef wide(a, b, c, d, e, f, g):\n    pass\n"
    assert oversized_functions(source) == [
        f"long: {MAX_FUNCTION_LINES + 1} lines",
        "wide: 7 parameters",
    ]


@pytest.mark.parametrize("service", ["stock", "order"])
def test_no_function_of_stock_or_order_is_over_60_lines_or_6_parameters(service: str) -> None:
    src = ROOT / "services" / service / "src"
    found = [
        f"{path.relative_to(ROOT)}: {problem}"
        for path in sorted(src.rglob("*.py"))
        for problem in oversized_functions(path.read_text())
    ]
    assert found == []
