"""HTTP routes of playbooks: start runs, list and show them, and alerts that start them."""

# No `from __future__ import annotations`: FastAPI must resolve the dependency objects.

from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from orchestrator.api.guard import Guards, Scope, located_device
from orchestrator.api.responses import errors
from orchestrator.audit.log import digest
from orchestrator.fleet.selector import resolve
from orchestrator.plane import ControlPlane
from orchestrator.playbooks.runs import RunRecord, RunStore
from orchestrator.playbooks.start import Started, parse_started, start_run
from orchestrator.playbooks.triggers import Alert, find_registered, matching, registered_playbooks
from orchestrator.policies.model import PERM_ALERT, PERM_VIEW
from orchestrator.policies.pipeline import Request
from tasks.errors import LiveResponseError, NotFoundError, UsageError


class StartBody(BaseModel):
    #: The playbook's YAML text (what `lr playbook run FILE` sends) ...
    playbook: str | None = Field(default=None, max_length=256 * 1024)
    #: ... or the name of a registered playbook.
    name: str | None = Field(default=None, max_length=64)
    device_id: str | None = Field(default=None, max_length=64)
    #: A selector: device ids and `tag:NAME` terms, comma separated (one run per device).
    devices: str | None = Field(default=None, max_length=8192)
    inputs: dict[str, Any] = Field(default_factory=dict)


def shown(run: RunRecord) -> dict[str, Any]:
    """A run as the API answers it (its signed order stays inside)."""
    return run.model_dump(mode="json", exclude={"order"})


def at_run(req: Request) -> None:
    """The route is about the run in its path, so about that run's device."""
    run_id = req.target.rstrip("/").rsplit("/", 1)[-1]
    req.device_id = RunStore(req.plane.client, req.plane.keys).get(run_id).device_id
    req.details["run"] = run_id
    located_device(req)


def add_playbook_routes(app: FastAPI, plane: ControlPlane, guards: Guards) -> None:
    """Register /playbooks, /playbooks/runs[/{run_id}] and /alerts on `app`."""
    store = RunStore(plane.client, plane.keys)
    acting = guards.requires(None, audited=False)

    @app.get("/playbooks")
    def list_playbooks(req: Annotated[Request, Depends(guards.requires(PERM_VIEW))]
                       ) -> list[dict[str, Any]]:
        """The registered playbooks (those alerts may start), invalid ones with their error."""
        out = []
        for item in registered_playbooks(plane.settings.playbook_path()):
            pb = item.started.playbook if item.started else None
            out.append({"file": item.path.name, "name": pb.name if pb else None,
                        "description": pb.description if pb else None,
                        "sha256": item.started.sha256 if item.started else None,
                        "rules": sorted({r for t in pb.triggers for r in (t.rules() or ["*"])})
                        if pb else [], "error": item.error})
        return out

    @app.post("/playbooks/runs", status_code=202, responses=errors(404))
    def start(body: StartBody, req: Annotated[Request, Depends(acting)]) -> dict[str, Any]:
        """The start pipeline on each device (session.open and every command's permission
        there); each run then executes on an orchestrator worker."""
        started = _playbook_of(body)
        if (body.device_id is None) == (body.devices is None):
            raise UsageError("name one device (device_id) or a selector (devices)")
        devices = ([body.device_id] if body.device_id is not None
                   else [d.id for d in resolve(plane.devices, body.devices or "")])
        user = req.need_user()
        return {"runs": [shown(start_run(plane, user, started, d, body.inputs))
                         for d in devices]}

    @app.get("/playbooks/runs")
    def list_runs(req: Annotated[Request, Depends(guards.requires(PERM_VIEW))]
                  ) -> list[dict[str, Any]]:
        """Only runs on devices the user may view, newest first."""
        return [shown(r) for r in Scope(req).only(store.list(), lambda r: r.device_id)]

    @app.get("/playbooks/runs/{run_id}")
    def get_run(run_id: str,
                req: Annotated[Request, Depends(guards.requires(PERM_VIEW, at_run))]
                ) -> dict[str, Any]:
        return shown(store.get(run_id))

    @app.post("/alerts", responses={202: {"description": "At least one playbook started"}})
    def alert(body: Alert, req: Annotated[Request, Depends(guards.requires(
            PERM_ALERT, audited=False))]) -> JSONResponse:
        """An alert from a SIEM/EDR (a service account with alert.submit): every registered
        playbook whose trigger matches starts on the alert's device, as that account."""
        user = req.need_user()
        matches = matching(registered_playbooks(plane.settings.playbook_path()), body)
        plane.audit.append(user.name, "alert.received", body.device, "allowed",
                           device=body.device, rule=body.rule, alert_id=body.id,
                           source=body.source, playbooks=[s.playbook.name for s, _ in matches],
                           indicators_sha256=digest(body.model_dump_json(include={"indicators"})))
        runs, refused = [], []
        for started, inputs in matches:
            try:
                runs.append(shown(start_run(plane, user, started, body.device, inputs,
                                            rule=body.rule)))
            except LiveResponseError as exc:  # audited by the start pipeline
                refused.append({"playbook": started.playbook.name, "error": exc.to_dict()})
        return JSONResponse({"rule": body.rule, "device": body.device, "runs": runs,
                             "refused": refused}, status_code=202 if runs else 200)

    def _playbook_of(body: StartBody) -> Started:
        if (body.playbook is None) == (body.name is None):
            raise UsageError("send the playbook's text (playbook) or a registered name (name)")
        if body.playbook is not None:
            return parse_started(body.playbook)
        found = find_registered(plane.settings.playbook_path(), body.name or "")
        if found is None:
            raise NotFoundError(f"no registered playbook {body.name!r}",
                                hint="list them with `lr playbook list`")
        return found
