"""The module name Airflow 3.3 derives from this distribution's name (``airflow-provider-finout``)
when it looks for providers' ``example_dags`` (with ``[core] load_examples``). The provider itself is
:mod:`finout_provider`; this module only lets that lookup find "no example DAGs" instead of logging
an error on every DAG parse."""
