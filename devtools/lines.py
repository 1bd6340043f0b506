"""The Airflow lines the provider is tested on: one table, read by the Makefile, `make test` and the
install test.

A dated line is an environment as a managed Airflow has it: Airflow and the image's providers
resolved with what PyPI held on that date (``uv pip install --exclude-newer``), installed first;
then the provider and today's test tools (moto, pytest...), with the image's packages held at their
versions. The newest lines take today's releases.

    python -m devtools.lines build-dated          # the dated lines' venvs (.venv-NAME) not yet built
    python -m devtools.lines test [PYTEST_ARGS]   # every line's suite, two lines at a time
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parent.parent

# The providers the package requires (README's compatibility table shows their versions).
REQUIRED_PROVIDERS = (
    "apache-airflow-providers-amazon",
    "apache-airflow-providers-common-compat",
    "apache-airflow-providers-cncf-kubernetes",
)
# What a managed image ships besides Airflow (every line has the ones the provider needs).
IMAGE_PROVIDERS = (*REQUIRED_PROVIDERS, "apache-airflow-providers-standard")
# Airflow 3.0 and 3.1 build connection forms with Flask-AppBuilder, which the FAB provider brings
# (managed images have it); from 3.2 the provider's own form description is used.
FORM_PROVIDERS = ("apache-airflow-providers-fab",)

# Airflow 2.11's connection encryption sets an attribute on cryptography's MultiFernet, which
# cryptography 51 (December 2026) made a Rust type: `airflow connections add` then fails with
# "'MultiFernet' object has no attribute 'is_encrypted'". Airflow's constraints file holds an
# older cryptography; an Airflow 2.11 installed today without it needs this (README says so).
AIRFLOW2_HOLDS = ("cryptography<51",)

# The whole suite; the unit and integration tests with one real `airflow dags test`.
FULL: tuple[str, ...] = ()
FLOOR = ("tests/unit", "tests/dag", "tests/integration", "tests/e2e/test_dags_test.py")
README_TEST = "tests/e2e/test_readme.py"


@dataclass(frozen=True)
class Line:
    name: str
    airflow: str
    as_of: str | None  # None: today's releases
    what: str  # what such an environment is
    suites: tuple[str, ...]
    markers: str = ""
    holds: tuple[str, ...] = ()  # what a working install of the line also needs

    @property
    def requirements(self) -> tuple[str, ...]:
        """Airflow and what a working install of it holds, as requirement specifiers."""
        return (f"apache-airflow=={self.airflow}", *self.holds)

    @property
    def venv(self) -> Path:
        return ROOT / f".venv-{self.name}" if self.name != "3" else ROOT / ".venv"

    @property
    def image(self) -> tuple[str, ...]:
        """Airflow and the providers installed before the provider, as a managed image has them."""
        extra = FORM_PROVIDERS if self.airflow.startswith(("3.0", "3.1")) else ()
        return (*self.requirements, *IMAGE_PROVIDERS, *extra)

    def resolve_args(self) -> list[str]:
        return ["--exclude-newer", self.as_of] if self.as_of else []


LINES = (
    Line("3", "3.3.2", None, "newest Airflow 3", FULL),
    Line(
        "af2",
        "2.11.*",
        None,
        "newest Airflow 2.11 with today's providers",
        ("tests",),
        "not e2e or af2",
        AIRFLOW2_HOLDS,
    ),
    Line("2.11.0", "2.11.0", "2025-05-21", "MWAA 2.11", FLOOR),
    Line("3.0.6", "3.0.6", "2025-09-15", "MWAA 3.0.6", (*FLOOR, README_TEST)),
    Line("3.1.5", "3.1.5", "2026-01-15", "Astronomer Runtime 3.1, Cloud Composer 3", FLOOR),
)
DATED = tuple(line for line in LINES if line.as_of)
# `make test` runs two lines at once (2 cores); each stream's lines in turn, longest first.
STREAMS = (("3", "3.1.5"), ("af2", "2.11.0", "3.0.6"))


def line(name: str) -> Line:
    return next(candidate for candidate in LINES if candidate.name == name)


def readme_row(the_line: Line, versions: dict[str, str]) -> str:
    """The line's row of README's compatibility table, from the versions its venv holds."""
    shown = [versions[name] if the_line.as_of else "newest" for name in REQUIRED_PROVIDERS]
    tested = (
        "whole suite"
        if the_line.suites == FULL
        else "unit, the DAG through `dag.test()`, integration, `airflow dags test`"
    )
    if README_TEST in the_line.suites:
        tested += ", README followed literally"
    if the_line.markers:
        tested += ", `airflow dags backfill`, scheduler e2e and the UI in a browser"
    cells = [the_line.airflow.replace(".*", ".x"), the_line.as_of or "today", the_line.what, *shown, tested]
    return "| " + " | ".join(cells) + " |"


def uv() -> str:
    return str(ROOT / ".venv" / "bin" / "uv")


def freeze(python: Path) -> list[str]:
    """``pip freeze`` of an environment, without the editable/local provider itself."""
    out = subprocess.run([uv(), "pip", "freeze", "-p", str(python)], check=True, capture_output=True, text=True).stdout
    return sorted(row for row in out.splitlines() if row and not row.startswith("airflow-provider-finout"))


def versions(python: Path) -> dict[str, str]:
    """Each installed distribution's version, from :func:`freeze`."""
    return dict(row.split("==", 1) for row in freeze(python) if "==" in row)


def install_image(the_line: Line, venv: Path) -> None:
    """A new venv at ``venv`` holding Airflow and the line's providers."""
    subprocess.run([uv(), "venv", "-q", "--clear", "-p", sys.executable, str(venv)], check=True)
    subprocess.run(
        [uv(), "pip", "install", "-q", "-p", str(venv / "bin" / "python"), *the_line.resolve_args(), *the_line.image],
        check=True,
    )


def build(name: str) -> None:
    """The line's test venv: the image, then the provider (editable) and today's test tools, every
    package of the image held at its version."""
    the_line = line(name)
    venv = the_line.venv
    install_image(the_line, venv)
    python = venv / "bin" / "python"
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as pins:
        pins.write("\n".join(freeze(python)) + "\n")
        pins.flush()
        subprocess.run(
            [uv(), "pip", "install", "-q", "-p", str(python), "-c", pins.name, "-e", f"{ROOT}[test,kubernetes]"],
            check=True,
        )
    (venv / ".done").touch()


def run_stream(names: tuple[str, ...], pytest_args: list[str], out: TextIO) -> int:
    """Each line's suite in turn, its output to ``out``; the worst exit code."""
    worst = 0
    for name in names:
        the_line = line(name)
        bin_dir = the_line.venv / "bin"
        args = [str(bin_dir / "pytest"), "-q", "-p", "no:cacheprovider", "--durations=15", *the_line.suites]
        if the_line.markers:
            args += ["-m", the_line.markers]
        out.write(f"== Airflow {the_line.airflow} ({the_line.what}, as of {the_line.as_of or 'today'})\n")
        out.flush()
        started = time.monotonic()
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        rc = subprocess.run(
            [*args, *pytest_args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        ).returncode
        out.write(f"== Airflow {the_line.airflow}: exit {rc} in {time.monotonic() - started:.0f} s\n")
        out.flush()
        worst = max(worst, rc)
    return worst


def test_all(pytest_args: list[str]) -> int:
    """Every line's suite, the streams side by side: the first prints as it goes, the others when
    they end."""
    with tempfile.TemporaryDirectory() as folder:
        logs = [Path(folder) / f"stream-{i}.log" for i in range(1, len(STREAMS))]
        children = [
            subprocess.Popen(
                [sys.executable, "-m", "devtools.lines", "stream", str(log), ",".join(names), *pytest_args]
            )
            for names, log in zip(STREAMS[1:], logs, strict=True)
        ]
        codes = [run_stream(STREAMS[0], pytest_args, sys.stdout)]
        codes += [child.wait() for child in children]
        for log in logs:
            sys.stdout.write(log.read_text())
    print("== lines: " + "; ".join(f"{', '.join(n)}: exit {c}" for n, c in zip(STREAMS, codes, strict=True)))
    return max(codes)


def build_missing() -> None:
    """Build the dated lines' venvs that are missing or older than what defines them, side by side."""
    sources = max(path.stat().st_mtime for path in (ROOT / "pyproject.toml", Path(__file__)))
    stale = [
        the_line.name
        for the_line in DATED
        if not (the_line.venv / ".done").exists() or (the_line.venv / ".done").stat().st_mtime < sources
    ]
    children = [subprocess.Popen([sys.executable, "-m", "devtools.lines", "build", name]) for name in stale]
    if any(child.wait() for child in children):
        raise SystemExit(f"building the venvs of {', '.join(stale)} failed")


def main(argv: list[str]) -> int:
    command, *rest = argv
    if command == "build":
        build(rest[0])
    elif command == "requirements":  # the Makefile's install of a newest line
        print(" ".join(shlex.quote(spec) for spec in line(rest[0]).requirements))
    elif command == "build-dated":
        build_missing()
    elif command == "stream":
        with Path(rest[0]).open("w") as out:
            return run_stream(tuple(rest[1].split(",")), rest[2:], out)
    elif command == "test":
        return test_all(rest)
    else:
        raise SystemExit(
            f"unknown command {command!r}: requirements NAME, build NAME, build-dated, stream LOG NAMES, test"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
