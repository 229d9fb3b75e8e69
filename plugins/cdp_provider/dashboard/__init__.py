"""The Activation view of the Airflow UI: an Airflow plugin (``activation_plugin``) that mounts a FastAPI app
(``activation_app``) rendering the lake's aggregates (``activation_html``)."""
