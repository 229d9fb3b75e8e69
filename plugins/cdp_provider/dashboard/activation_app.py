"""The Activation view: a FastAPI app the Airflow API server mounts (``activation_plugin``).

``GET /`` renders every section; query parameters page and filter them: ``q`` (audience id or name),
``evaluation`` (batch / streaming), ``page`` (audiences), ``dest`` (a destination), ``dpage`` (destination
runs), ``dataset`` (ingestion). The lake is ``CDP_LAKE`` (see :mod:`cdp.settings`) as the API server sees it.
``GET /quality-docs/{path}`` serves the files of the lake's Great Expectations Data Docs site
(:mod:`cdp.quality_docs`), read-only: nothing outside the site's folder, nothing under a dot name.

Airflow does not authenticate a plugin's FastAPI app (a mounted app inherits none of the API's dependencies),
so the app asks for the caller itself: the JWT of Airflow's auth manager, from the ``Authorization: Bearer``
header or the ``_token`` cookie the UI keeps, and the auth manager's permission to see the website
(:data:`VIEW_ACCESS`). Without a token the answer is 401; with one the auth manager refuses, 403.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from functools import cache
from typing import TYPE_CHECKING

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import requires_access_view
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse

if TYPE_CHECKING:
    from cdp.monitoring.dashboard_data import DashboardData

log = logging.getLogger(__name__)

URL_PREFIX = "/cdp/activation"
AUDIENCES_PER_PAGE = 50
RUNS_PER_PAGE = 50
INGESTION_DAYS = 14
DESTINATION_DAYS = 30  # destination runs of the last 30 days, paged
# Who may see the view: a user the auth manager lets see Airflow's website (every route of the app).
VIEW_ACCESS = requires_access_view(AccessView.WEBSITE)
QUALITY_DOCS_PATH = "quality-docs"
# GX's Data Docs pages run scripts they load from public CDNs. Served from the Airflow API server's origin, such a
# script must not act as the signed-in user: no fetch or XHR (connect-src falls back to 'none'), no frames, no form
# posts; only the Airflow UI may frame the pages.
DOCS_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline' https:; "
                               "style-src 'self' 'unsafe-inline' https:; font-src 'self' data: https:; "
                               "img-src 'self' data: https:; frame-ancestors 'self'; base-uri 'none'; "
                               "form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@cache
def data_for(lake_root: str) -> DashboardData:
    """One reader (and its per-version cache) per lake for the life of the server process."""
    # Imported here: the plugin module is loaded by every Airflow process, deltalake is needed only by the view.
    from cdp.monitoring.dashboard_data import DashboardData

    return DashboardData(lake_root)


def lake_root() -> str:
    """The lake the view reads: ``CDP_LAKE`` as in :class:`cdp.settings.Settings`."""
    from cdp.settings import Settings

    return Settings.from_env(dict(os.environ)).lake


def render(data: DashboardData, q: str = "", evaluation: str = "", page: int = 1, dest: str = "", dpage: int = 1,
           dataset: str = "", ui_base: str = "") -> str:
    """The whole Activation page for these filters (what ``GET /`` answers)."""
    from cdp.quality_docs import docs_folder, site_file
    from cdp_provider.dashboard import activation_html as html

    params: dict[str, object] = {"q": q, "evaluation": evaluation, "page": page if page > 1 else "", "dest": dest,
                                 "dpage": dpage if dpage > 1 else "", "dataset": dataset}
    audiences = data.audiences(page, AUDIENCES_PER_PAGE, q, evaluation)
    latest = data.latest_batch_date()
    since = latest - dt.timedelta(days=INGESTION_DAYS - 1) if latest else None
    last_run = data.latest_destination_run()
    runs_since = last_run - dt.timedelta(days=DESTINATION_DAYS - 1) if last_run else None
    sections = [
        html.audiences_section(audiences, params),
        html.destinations_section(data.destination_runs(dpage, RUNS_PER_PAGE, dest, runs_since),
                                  data.destination_names(), params, ui_base),
        html.ingestion_section(data.ingestion_days(since, dataset), data.quarantine_reasons(since, dataset)),
        html.identity_section(data.identity_runs()),
        html.quality_section(data.quality_checks(),
                             f"{QUALITY_DOCS_PATH}/" if site_file(docs_folder(data.lake.root), "") else None),
    ]
    return html.page("Activation", sections, dt.datetime.now(dt.UTC))


def create_app() -> FastAPI:
    """The FastAPI app of the view."""
    app = FastAPI(title="CDP Activation", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(VIEW_ACCESS)])

    @app.get("/", response_class=HTMLResponse)
    def activation(q: str = Query("", max_length=200), evaluation: str = Query("", pattern="^(|batch|streaming)$"),
                   page: int = Query(1, ge=1), dest: str = Query("", max_length=200), dpage: int = Query(1, ge=1),
                   dataset: str = Query("", max_length=200)) -> HTMLResponse:
        started = time.monotonic()
        body = render(data_for(lake_root()), q, evaluation, page, dest, dpage, dataset)
        log.info("activation view rendered in %.0f ms", (time.monotonic() - started) * 1000)
        return HTMLResponse(body)

    @app.get(f"/{QUALITY_DOCS_PATH}/{{path:path}}")
    def quality_docs(path: str) -> FileResponse:
        """A file of the lake's GX Data Docs site (the index page for an empty path); 404 for anything else."""
        from cdp.quality_docs import docs_folder, site_file

        file = site_file(docs_folder(lake_root()), path)
        if file is None:
            raise HTTPException(status_code=404, detail="Not Found")
        return FileResponse(file, headers=DOCS_HEADERS)

    return app


app = create_app()
