"""Registry operations over HTTP: register and download versions, read them, move aliases.

Results are the API's JSON documents (see the OpenAPI schema at ``/docs``) as dicts."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

from registry.client.http import Connection
from registry.client.mlflow import MlflowSource
from registry.client.transfer import collect, download_version, upload_files
from registry.errors import InvalidInput
from registry.names import Reference, check_alias, check_model_name

_GIT_REF = re.compile(r"@([0-9a-f]{7,40})$")

Moment = str | date | datetime | None


def _iso(value: Moment) -> str | None:
    return value.isoformat() if isinstance(value, date | datetime) else value


class RegistryClient:
    """The registry half of :class:`shelf.Client`; usable on its own over a
    :class:`~registry.client.Connection`."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def register(
        self,
        name: str,
        path: str | Path,
        *,
        description: str = "",
        tags: dict[str, str] | None = None,
        source_uri: str | None = None,
        git_commit: str | None = None,
        run_id: str | None = None,
        data_window: tuple[Moment, Moment] = (None, None),
        serving_url: str | None = None,
        reference_profile: dict[str, Any] | None = None,
        progress: bool = False,
    ) -> dict[str, Any]:
        """Registers the file or folder at ``path`` as the next version of ``name``, uploading
        only the files the registry does not hold yet. ``git_commit`` defaults to an
        ``@<sha>`` at the end of ``source_uri``. The result also says how many bytes were
        sent (``uploaded_bytes``)."""
        check_model_name(name)
        if git_commit is None and source_uri and (match := _GIT_REF.search(source_uri)):
            git_commit = match.group(1)
        files, sent = upload_files(self.connection, collect(Path(path)), progress)
        body = {
            "files": [{"path": f.path, "size": f.size, "digest": f.digest} for f in files],
            "description": description,
            "tags": tags or {},
            "source_uri": source_uri,
            "git_commit": git_commit,
            "run_id": run_id,
            "data_window_start": _iso(data_window[0]),
            "data_window_end": _iso(data_window[1]),
            "serving_url": serving_url,
            "reference_profile": reference_profile,
        }
        version: dict[str, Any] = self.connection.post(f"/v1/models/{name}/versions", body)
        return {**version, "uploaded_bytes": sent}

    def import_mlflow(
        self,
        model_uri: str,
        source: MlflowSource,
        *,
        name: str | None = None,
        serving_url: str | None = None,
        progress: bool = False,
    ) -> dict[str, Any]:
        """Registers the MLflow model version ``model_uri`` (``models:/NAME/VERSION`` or
        ``models:/NAME@ALIAS``) as the next version of ``name`` (default: the MLflow name):
        its artifacts, content-addressed as usual, and its lineage (run id, source, git commit,
        ``param.*`` and ``metric.*`` tags)."""
        found = source.model_version(model_uri)
        target = name or found.name
        try:
            check_model_name(target)
        except InvalidInput:
            raise InvalidInput(
                f"MLflow model name {target!r} is not a valid Shelf model name: pass --name"
            ) from None
        with source.downloaded(found) as folder:
            return self.register(
                target,
                folder,
                description=found.description or f"imported from MLflow {model_uri}",
                tags=found.tags(source.tracking_uri),
                source_uri=found.source,
                git_commit=found.git_commit,
                run_id=found.run_id,
                serving_url=serving_url,
                progress=progress,
            )

    def version(self, ref: str) -> dict[str, Any]:
        """One version with its files: ``NAME@3``, ``NAME@champion`` or ``NAME`` (latest)."""
        parsed = Reference.parse(ref)
        result: dict[str, Any] = self.connection.get(
            f"/v1/models/{parsed.model}/versions/{parsed.selector}"
        )
        return result

    def versions(
        self,
        name: str,
        *,
        limit: int = 20,
        page_token: str | None = None,
        tags: dict[str, str] | None = None,
        status: str | None = None,
    ) -> dict[str, Any]:
        """One page of versions, newest first: ``items``, ``total``, ``next_page_token``."""
        check_model_name(name)
        params: dict[str, Any] = {
            "limit": limit,
            "tag": [f"{k}={v}" for k, v in (tags or {}).items()],
        }
        if page_token:
            params["page_token"] = page_token
        if status:
            params["status"] = status
        page: dict[str, Any] = self.connection.get(f"/v1/models/{name}/versions", params=params)
        return page

    def download(self, ref: str, out_dir: str | Path, progress: bool = False) -> list[Path]:
        """Writes a version's files under ``out_dir``, each verified (size and sha256) before
        it is renamed into place; returns the paths written."""
        version = self.version(ref)
        return download_version(
            self.connection,
            version["model"],
            version["version"],
            version["files"],
            Path(out_dir),
            progress,
        )

    def update(
        self,
        ref: str,
        *,
        description: str | None = None,
        status: str | None = None,
        tags: dict[str, str] | None = None,
        remove_tags: tuple[str, ...] | list[str] = (),
    ) -> dict[str, Any]:
        """Changes what may change on a version: tags, description, status."""
        current = self.version(ref)
        body: dict[str, Any] = {"remove_tags": list(remove_tags)}
        if description is not None:
            body["description"] = description
        if status is not None:
            body["status"] = status
        if tags:
            body["tags"] = tags
        result: dict[str, Any] = self.connection.patch(
            f"/v1/models/{current['model']}/versions/{current['version']}", body
        )
        return result

    def set_alias(self, name: str, alias: str, version: int, reason: str = "") -> dict[str, Any]:
        check_model_name(name)
        check_alias(alias)
        result: dict[str, Any] = self.connection.put(
            f"/v1/models/{name}/aliases/{alias}", {"version": version, "reason": reason}
        )
        return result

    def aliases(self, name: str) -> list[dict[str, Any]]:
        check_model_name(name)
        result: list[dict[str, Any]] = self.connection.get(f"/v1/models/{name}/aliases")
        return result

    def delete_alias(self, name: str, alias: str) -> None:
        check_model_name(name)
        check_alias(alias)
        self.connection.delete(f"/v1/models/{name}/aliases/{alias}")

    def history(
        self,
        name: str,
        *,
        limit: int = 50,
        page_token: str | None = None,
        kinds: tuple[str, ...] | list[str] = (),
    ) -> dict[str, Any]:
        """One page of the model's audit trail, newest first."""
        check_model_name(name)
        params: dict[str, Any] = {"limit": limit, "kind": list(kinds)}
        if page_token:
            params["page_token"] = page_token
        page: dict[str, Any] = self.connection.get(f"/v1/models/{name}/events", params=params)
        return page

    def models(self, limit: int = 500) -> dict[str, Any]:
        page: dict[str, Any] = self.connection.get("/v1/models", params={"limit": limit})
        return page

    def collect_garbage(self, apply: bool = False, grace_s: float | None = None) -> dict[str, Any]:
        """Unreferenced blobs and upload leftovers older than the grace period (admin); removed
        only with ``apply``."""
        body: dict[str, Any] = {"apply": apply}
        if grace_s is not None:
            body["grace_s"] = grace_s
        report: dict[str, Any] = self.connection.post("/v1/admin/gc", body)
        return report
