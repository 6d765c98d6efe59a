"""The results pages: studies, a study, jobs, deliveries, models. Server-rendered with
Jinja2, plain HTML forms (no JavaScript); the retry buttons are POST forms shown only to a
write token."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from dicom_node.errors import NodeError
from dicom_node.http import page_queries as q
from dicom_node.http.auth import Access, same_origin
from dicom_node.http.sr_text import sr_lines
from dicom_node.http.thumbnails import thumbnail_png
from dicom_node.jobs.model_registry import list_models
from dicom_node.jobs.queue import JobNotFound, JobQueue
from dicom_node.jobs.results_log import list_studies
from dicom_node.output.deliver import DeliveryNotFound, replay_dead
from dicom_node.retraining.runs import list_runs
from dicom_node.settings import NodeSettings

UID = re.compile(r"^[0-9.]{1,64}$")
STUDY_STATES = ("receiving", "stable")
MAX_ROWS = 500


class Pages:
    def __init__(self, settings: NodeSettings, engine: Engine, templates: Jinja2Templates) -> None:
        self.settings = settings
        self.engine = engine
        self.templates = templates
        self.show_ids = settings.http.show_patient_identifiers

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", lambda request: RedirectResponse("/studies", status_code=307)),
            Route("/studies", self.studies),
            Route("/studies/{uid}", self.study),
            Route("/outputs/{uid}.png", self.thumbnail),
            Route("/jobs", self.jobs),
            Route("/jobs/{id:int}/retry", self.retry_job, methods=["POST"]),
            Route("/deliveries", self.deliveries),
            Route("/deliveries/{id:int}/retry", self.retry_delivery, methods=["POST"]),
            Route("/models", self.models),
            Route("/models/{pipeline}/{version}/{name}.png", self.model_plot),
        ]

    def _render(self, request: Request, name: str, **context: Any) -> Response:
        access = getattr(request.state, "access", Access.NONE)
        context.update(can_write=access >= Access.WRITE, show_ids=self.show_ids)
        return self.templates.TemplateResponse(request, name, context)

    async def studies(self, request: Request) -> Response:
        state = request.query_params.get("state") or None
        if state is not None and state not in STUDY_STATES:
            raise HTTPException(400, f"state must be one of {', '.join(STUDY_STATES)}")

        def read() -> tuple[list[dict[str, Any]], dict[str, Any]]:
            rows = list_studies(self.engine, state=state)[:MAX_ROWS]
            return rows, q.jobs_by_study(self.engine)

        rows, jobs = await run_in_threadpool(read)
        if self.show_ids:
            for row in rows:
                row["patient"] = await run_in_threadpool(self._patient, row["study_instance_uid"])
        return self._render(request, "studies.html", studies=rows, jobs=jobs, state=state)

    def _patient(self, study_uid: str) -> tuple[str, str]:
        page = q.study_page(self.engine, study_uid)
        if page is None or not page["first_file"]:
            return "", ""
        return q.patient_identifiers(self.settings.storage_dir / page["first_file"])

    async def study(self, request: Request) -> Response:
        uid = request.path_params["uid"]
        page = await run_in_threadpool(q.study_page, self.engine, uid) if UID.match(uid) else None
        if page is None:
            raise HTTPException(404, "no study with that Study Instance UID")
        page["study_date"] = q.study_date(page["study_date"])
        page["patient"] = ("", "")
        if self.show_ids and page["first_file"]:
            page["patient"] = q.patient_identifiers(self.settings.storage_dir / page["first_file"])
        for series in page["series"]:
            for job in series["jobs"]:
                for output in job["outputs"]:
                    if output["kind"] == "sr":
                        output["lines"] = await run_in_threadpool(self._sr, output["path"])
        return self._render(request, "study.html", study=page)

    def _sr(self, relative: str) -> list[Any]:
        try:
            return sr_lines(self.settings.outputs_dir / relative, self.show_ids)
        except OSError:
            return []

    async def thumbnail(self, request: Request) -> Response:
        uid = request.path_params["uid"]
        relative = (
            await run_in_threadpool(q.output_path, self.engine, uid, "sc")
            if UID.match(uid)
            else None
        )
        path = self.settings.outputs_dir / relative if relative else None
        if path is None or not path.is_file():
            raise HTTPException(404, "no SC image with that SOP Instance UID")
        data = await run_in_threadpool(thumbnail_png, path)
        return Response(data, media_type="image/png", headers={"Cache-Control": "private"})

    async def jobs(self, request: Request) -> Response:
        filters = self._filters(request, q.JOB_STATES)
        rows = await run_in_threadpool(q.filtered_jobs, self.engine, filters)
        return self._render(
            request, "jobs.html", jobs=rows[:MAX_ROWS], filters=filters, states=q.JOB_STATES
        )

    async def deliveries(self, request: Request) -> Response:
        filters = self._filters(request, q.DELIVERY_STATES)
        rows = await run_in_threadpool(q.filtered_deliveries, self.engine, filters)
        return self._render(
            request,
            "deliveries.html",
            deliveries=rows[:MAX_ROWS],
            filters=filters,
            states=q.DELIVERY_STATES,
        )

    def _filters(self, request: Request, states: tuple[str, ...]) -> q.Filters:
        try:
            return q.parse_filters(dict(request.query_params), states)
        except q.BadFilter as exc:
            raise HTTPException(400, str(exc)) from None

    def _writer(self, request: Request) -> None:
        if getattr(request.state, "access", Access.NONE) < Access.WRITE:
            raise HTTPException(403, "this token may read but not retry")
        if not same_origin(request):
            raise HTTPException(403, "the form was not sent from this server's page")

    async def retry_job(self, request: Request) -> Response:
        self._writer(request)
        queue = JobQueue(self.engine, self.settings.queue)
        try:
            await run_in_threadpool(queue.retry, request.path_params["id"])
        except JobNotFound as exc:
            raise HTTPException(404, str(exc)) from None
        except NodeError as exc:
            raise HTTPException(409, str(exc)) from None
        return RedirectResponse(request.headers.get("referer") or "/jobs", status_code=303)

    async def retry_delivery(self, request: Request) -> Response:
        self._writer(request)
        try:
            count = await run_in_threadpool(replay_dead, self.engine, [request.path_params["id"]])
        except DeliveryNotFound as exc:
            raise HTTPException(404, str(exc)) from None
        if count != 1:
            raise HTTPException(409, "only a dead delivery can be sent again")
        return RedirectResponse(request.headers.get("referer") or "/deliveries", status_code=303)

    def _model_folder(self, path: str) -> Path:
        folder = Path(path)
        return folder if folder.is_absolute() else self.settings.model_dir / folder

    async def models(self, request: Request) -> Response:
        def read() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            models = list_models(self.engine)
            for model in models:
                model["plots"] = q.model_plots(self._model_folder(model["path"]))
            return models, list_runs(self.engine)[:MAX_ROWS]

        models, runs = await run_in_threadpool(read)
        return self._render(request, "models.html", models=models, runs=runs)

    async def model_plot(self, request: Request) -> Response:
        params = request.path_params
        models = await run_in_threadpool(list_models, self.engine, params["pipeline"])
        for model in models:
            if model["version"] == params["version"]:
                folder = self._model_folder(model["path"])
                if params["name"] in q.model_plots(folder):
                    data = (folder / f"{params['name']}.png").read_bytes()
                    return Response(data, media_type="image/png")
        raise HTTPException(404, "no such plot")
