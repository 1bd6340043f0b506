"""The provider as Airflow sees it: entry point, schema, connection form."""

from __future__ import annotations

import json
import logging
from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytestmark = pytest.mark.af2


def test_entry_point_and_schema() -> None:
    import airflow
    import jsonschema

    (point,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("finout_provider")]
    info = point.load()()
    assert info["package-name"] == "airflow-provider-finout"
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                __import__(module)


def test_airflow_registers_the_connection_type_and_its_form_fields() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-finout" in manager.providers
    assert manager.hooks["prometheus"].hook_class_name == "finout_provider.hooks.prometheus.PrometheusHook"
    widgets = manager.connection_form_widgets
    for name in ("path_prefix", "bearer_token", "x_scope_orgid", "ca_bundle", "sigv4", "region_name"):
        assert f"extra__prometheus__{name}" in widgets, sorted(k for k in widgets if "prometheus" in k)
    assert widgets["extra__prometheus__bearer_token"].is_sensitive


def test_airflow_registers_the_extra_link() -> None:
    from airflow.providers_manager import ProvidersManager

    assert "finout_provider.links.S3ExportLink" in ProvidersManager().extra_links_class_names


def test_the_form_lists_every_extra_the_hook_reads() -> None:
    import re

    from finout_provider.get_provider_info import CONN_FIELDS
    from finout_provider.hooks.prometheus import PrometheusHook

    package = Path(__file__).resolve().parents[2] / "finout_provider"
    source = "".join((package / "prometheus" / name).read_text() for name in ("connection.py", "client.py"))
    read = set(re.findall(r'extras?(?:\.get\(|\[)"([a-z_]+)"', source))
    assert read and read <= set(CONN_FIELDS), sorted(read - set(CONN_FIELDS))
    behaviour = PrometheusHook.get_ui_field_behaviour()
    assert behaviour["placeholders"]["port"] == "9090" and "hidden_fields" in behaviour


def test_airflow_example_dag_discovery_finds_the_provider_without_an_error(caplog: pytest.LogCaptureFixture) -> None:
    """Airflow 3.3 derives a module from the distribution's name (``airflow_provider_finout``) and
    logs an error on every DAG parse (with ``load_examples``) when it cannot import it."""
    manager = pytest.importorskip("airflow.dag_processing.bundles.manager")
    discover = getattr(manager, "_add_provider_example_dags_to_bundle", None)
    if discover is None:
        pytest.skip("this Airflow does not look for providers' example DAGs")
    bundles: list[object] = []
    with caplog.at_level(logging.DEBUG):
        discover(bundles)
    assert "airflow_provider_finout" not in caplog.text and "finout" not in str(bundles)
