"""The package's shape, as docs/architecture.md draws it: folders by concern, short functions and
classes, pure modules that import nothing of Airflow (so the CLI stays fast)."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import ROOT

PACKAGE = ROOT / "finout_provider"
# What imports nothing of Airflow: the CLI and the fleet page build on these.
PURE = (
    "catalogue", "target", "state", "failures", "connections", "config.keys", "config.clusters", "config.yamltext",
    "config.exporter_env", "config.cronjob", "plan.windows", "plan.planner", "s3.layout", "s3.store", "s3.folder",
    "checks.preflight", "checks.completeness", "checks.coverage", "checks.status", "prometheus.connection",
    "prometheus.client", "prometheus.answer", "prometheus.errors", "prometheus.split",
)  # fmt: skip


def sizes(kind: type[ast.AST]) -> dict[str, int]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, kind):
                found[f"{path.relative_to(ROOT)}:{node.lineno}"] = node.end_lineno - node.lineno + 1  # type: ignore[attr-defined]
    return found


def test_functions_and_classes_read_at_once() -> None:
    functions = sizes(ast.FunctionDef) | sizes(ast.AsyncFunctionDef)
    assert {where: n for where, n in functions.items() if n > 50} == {}
    assert {where: n for where, n in sizes(ast.ClassDef).items() if n > 250} == {}


def test_few_modules_at_the_top_and_formatting_left_to_the_formatter() -> None:
    assert len(list(PACKAGE.glob("*.py"))) <= 12, sorted(p.name for p in PACKAGE.glob("*.py"))
    skips = sum(path.read_text().count("# fmt: skip") for path in PACKAGE.rglob("*.py"))
    assert skips <= 10, skips


def test_pure_modules_import_nothing_of_airflow() -> None:
    modules = ", ".join(f"finout_provider.{name}" for name in PURE)
    code = f"import sys, {modules}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]", out
    assert all((PACKAGE / (name.replace(".", "/") + ".py")).exists() for name in PURE)
