"""Registers the Activation view with Airflow 3: the FastAPI app served by the API server under
``/cdp/activation`` and a navigation entry that opens it inside the UI (``/plugin/activation``)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from cdp_provider.dashboard.activation_app import URL_PREFIX, app


class CdpActivationPlugin(AirflowPlugin):
    """The "Activation" entry of the Airflow UI navigation."""

    name = "cdp_activation"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "CDP Activation"}]
    external_views = [{"name": "Activation", "href": f"{URL_PREFIX}/", "url_route": "activation",
                       "destination": "nav"}]
