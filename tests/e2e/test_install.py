"""Installing the wheel into the Airflow users already run changes nothing they have.

Each line of ``devtools.lines`` as a managed image has it (Airflow and its providers as PyPI held
them on the line's date, installed first), then the wheel resolved as of the same date: ``pip
freeze`` must be the same but for the provider itself, whose floors must therefore be met by what
the oldest image ships.
"""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devtools.lines import LINES, REQUIRED_PROVIDERS, ROOT, Line, freeze, install_image, line, readme_row, uv, versions
from devtools.stack import airflow_major

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(airflow_major() < 3, reason="builds its own venvs for every line"),
]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([uv(), "build", "-q", "--wheel", "--out-dir", str(out), str(ROOT)], check=True)
    (built,) = out.glob("airflow_provider_finout-*.whl")
    return built


def install_and_compare(the_line: Line, wheel: Path, folder: Path) -> tuple[list[str], list[str], str]:
    venv = folder / the_line.name
    install_image(the_line, venv)
    python = venv / "bin" / "python"
    before = freeze(python)
    subprocess.run([uv(), "pip", "install", "-q", "-p", str(python), *the_line.resolve_args(), str(wheel)], check=True)
    shown = subprocess.run(
        [uv(), "pip", "show", "-p", str(python), "airflow-provider-finout"], capture_output=True, text=True, check=True
    ).stdout
    return before, freeze(python), shown


@pytest.mark.timeout(900)
def test_the_wheel_installs_into_every_line_without_changing_a_package(wheel: Path, tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=len(LINES)) as pool:
        results = dict(zip(LINES, pool.map(lambda ln: install_and_compare(ln, wheel, tmp_path), LINES), strict=True))
    for the_line, (before, after, shown) in results.items():
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        assert (added, removed) == ([], []), f"Airflow {the_line.airflow} as of {the_line.as_of}: {added=} {removed=}"
        assert "Name: airflow-provider-finout" in shown
        assert any(row.startswith("apache-airflow-providers-amazon==") for row in before)


def test_the_floors_are_what_the_oldest_line_ships() -> None:
    """pyproject's provider floors equal the versions of the oldest line's image (2.11.0's date)."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    floors = dict(re.findall(r'"(apache-airflow-providers-[a-z-]+)>=([0-9.]+)"', pyproject))
    oldest = min((ln for ln in LINES if ln.as_of), key=lambda ln: str(ln.as_of))
    assert oldest is line("2.11.0")
    shipped = versions(oldest.venv / "bin" / "python")
    for name in REQUIRED_PROVIDERS:
        assert floors[name] == shipped[name], (name, floors[name], shipped[name])
    assert '"apache-airflow>=2.11"' in pyproject


def test_readme_compatibility_table_is_what_each_line_holds() -> None:
    readme = (ROOT / "README.md").read_text()
    for the_line in LINES:
        row = readme_row(the_line, versions(the_line.venv / "bin" / "python"))
        assert row in readme, row
