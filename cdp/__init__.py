"""Customer data activation platform: workspace configuration, lake layout and Spark helpers.

The Spark jobs live in :mod:`jobs`, the Airflow DAGs in ``dags/`` and the Airflow operators in
``plugins/cdp_provider``; this package holds what they share.
"""
