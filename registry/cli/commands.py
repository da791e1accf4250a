"""The registry's commands: register, versions, show, download, update, alias, history, models.

Each is a thin layer over :class:`registry.client.RegistryClient`; ``registry`` groups them
for the ``shelf`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from registry.cli import output
from registry.cli.context import connection_of, progress_of
from registry.cli.durations import parse_duration
from registry.cli.output import human_size, print_json, short_time, table
from registry.cli.profile_commands import profile
from registry.client.mlflow import MlflowSource
from registry.client.registry import RegistryClient
from registry.errors import InvalidInput
from registry.heap import keep_freed_memory
from registry.names import Reference
from registry.profiles import parse_profile


def client_of(ctx: click.Context) -> RegistryClient:
    return RegistryClient(connection_of(ctx))


def parse_tags(values: tuple[str, ...]) -> dict[str, str]:
    tags = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"invalid tag {item!r}: expected key=value")
        tags[key] = value
    return tags


def parse_window(text: str | None) -> tuple[str | None, str | None]:
    """``2026-01-01..2026-06-30`` (dates or ISO datetimes; either side may be empty)."""
    if text is None:
        return None, None
    start, sep, end = text.partition("..")
    if not sep:
        raise InvalidInput(f"invalid data window {text!r}: expected START..END")
    return (start or None), (end or None)


def _version_rows(items: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            v["version"],
            v["status"],
            ",".join(v["aliases"]),
            human_size(v["total_size"]),
            v["file_count"],
            short_time(v["created_at"]),
            v["created_by"],
            " ".join(f"{k}={val}" for k, val in v["tags"].items()),
        ]
        for v in items
    ]


@click.command()
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--source", "source_uri", help="Where the model came from (e.g. git+https://…@commit)"
)
@click.option("--git-commit", help="Commit of the training code (taken from --source's @ref too)")
@click.option("--run-id", help="Training run id (experiment tracker, CI job …)")
@click.option("--data-window", help="Training-data window START..END (dates or ISO datetimes)")
@click.option("--serving-url", help="Where a model server for this version answers")
@click.option("--description", default="", help="Free-form description")
@click.option("--tag", "tags", multiple=True, help="key=value; repeatable")
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(exists=True, path_type=Path),
    help="Reference profile JSON (docs/champion-watch.md; built by `shelf profile build`)",
)
@click.option("--json", "as_json", is_flag=True, help="Print the new version as JSON")
@click.pass_context
def register(
    ctx: click.Context,
    name: str,
    path: Path,
    source_uri: str | None,
    git_commit: str | None,
    run_id: str | None,
    data_window: str | None,
    serving_url: str | None,
    description: str,
    tags: tuple[str, ...],
    profile_path: Path | None,
    as_json: bool,
) -> None:
    """Register PATH (a file or a directory) as the next version of model NAME."""
    import json

    keep_freed_memory()

    profile = None
    if profile_path is not None:
        try:
            profile = parse_profile(json.loads(profile_path.read_text()))
        except ValueError as exc:
            raise InvalidInput(f"{profile_path}: not valid JSON ({exc})") from None
    version = client_of(ctx).register(
        name,
        path,
        description=description,
        tags=parse_tags(tags),
        source_uri=source_uri,
        git_commit=git_commit,
        run_id=run_id,
        data_window=parse_window(data_window),
        serving_url=serving_url,
        reference_profile=profile,
        progress=progress_of(ctx) and not as_json,
    )
    sent = version.pop("uploaded_bytes")
    if as_json:
        print_json(version)
        return
    total = version["total_size"]
    output.console.print(
        f"registered [bold]{name}@{version['version']}[/bold]: {version['file_count']} file(s), "
        f"{human_size(total)} ({human_size(sent)} uploaded, "
        f"{human_size(total - sent)} already stored)"
    )


@click.command()
@click.argument("name")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--page-token", help="From the previous page's next_page_token")
@click.option("--tag", "tags", multiple=True, help="Only versions with key=value; repeatable")
@click.option("--status", type=click.Choice(["ready", "archived"]))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def versions(
    ctx: click.Context,
    name: str,
    limit: int,
    page_token: str | None,
    tags: tuple[str, ...],
    status: str | None,
    as_json: bool,
) -> None:
    """List the versions of NAME, newest first."""
    page = client_of(ctx).versions(
        name, limit=limit, page_token=page_token, tags=parse_tags(tags), status=status
    )
    if as_json:
        print_json(page)
        return
    table(
        ["version", "status", "aliases", "size", "files", "created", "by", "tags"],
        _version_rows(page["items"]),
        title=f"{name}: {page['total']} version(s)",
    )
    if page["next_page_token"]:
        output.console.print(f"more: --page-token {page['next_page_token']}")


@click.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show a version: NAME@3, NAME@champion or NAME (latest)."""
    version = client_of(ctx).version(ref)
    if as_json:
        print_json(version)
        return
    window = ""
    if version["data_window_start"] or version["data_window_end"]:
        start, end = version["data_window_start"], version["data_window_end"]
        window = f"{short_time(start)} .. {short_time(end)}"
    fields = [
        ("version", f"{version['model']}@{version['version']}"),
        ("status", version["status"]),
        ("aliases", ", ".join(version["aliases"]) or "-"),
        ("created", f"{short_time(version['created_at'])} by {version['created_by']}"),
        ("source", version["source_uri"] or "-"),
        ("git commit", version["git_commit"] or "-"),
        ("run id", version["run_id"] or "-"),
        ("data window", window or "-"),
        ("serving url", version["serving_url"] or "-"),
        ("tags", " ".join(f"{k}={v}" for k, v in version["tags"].items()) or "-"),
        ("description", version["description"] or "-"),
        ("manifest", f"sha256:{version['manifest_digest']}"),
        ("size", f"{human_size(version['total_size'])} in {version['file_count']} file(s)"),
    ]
    for key, value in fields:
        output.console.print(f"[bold]{key:>12}[/bold]  {value}", highlight=False)
    table(
        ["path", "size", "sha256"],
        [[f["path"], human_size(f["size"]), f["digest"]] for f in version["files"] or []],
    )


@click.command()
@click.argument("ref")
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory to write the version's files into",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON")
@click.pass_context
def download(ctx: click.Context, ref: str, out_dir: Path, as_json: bool) -> None:
    """Download a version bit-exact; every file's size and sha256 are verified."""
    keep_freed_memory()
    parsed = Reference.parse(ref)
    client = client_of(ctx)
    version = client.version(ref)
    written = client.download(
        f"{parsed.model}@{version['version']}", out_dir, progress_of(ctx) and not as_json
    )
    if as_json:
        print_json(
            {
                "model": parsed.model,
                "version": version["version"],
                "files": [str(p) for p in written],
            }
        )
        return
    output.console.print(
        f"downloaded {parsed.model}@{version['version']}: {len(written)} file(s), "
        f"{human_size(version['total_size'])} into {out_dir} (sha256 verified)"
    )


@click.command()
@click.argument("ref")
@click.option("--description")
@click.option("--status", type=click.Choice(["ready", "archived"]))
@click.option("--tag", "tags", multiple=True, help="key=value to set; repeatable")
@click.option("--untag", "untags", multiple=True, help="Tag key to remove; repeatable")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def update(
    ctx: click.Context,
    ref: str,
    description: str | None,
    status: str | None,
    tags: tuple[str, ...],
    untags: tuple[str, ...],
    as_json: bool,
) -> None:
    """Change a version's tags, description or status (nothing else ever changes)."""
    version = client_of(ctx).update(
        ref,
        description=description,
        status=status,
        tags=parse_tags(tags),
        remove_tags=untags,
    )
    if as_json:
        print_json(version)
    else:
        output.console.print(f"updated {version['model']}@{version['version']}")


@click.group()
def alias() -> None:
    """Move, list and delete aliases such as champion."""


@alias.command("set")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version", type=int)
@click.option("--reason", default="", help="Recorded in the audit trail")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def alias_set(
    ctx: click.Context, name: str, alias_name: str, version: int, reason: str, as_json: bool
) -> None:
    """Point ALIAS of model NAME at VERSION."""
    result = client_of(ctx).set_alias(name, alias_name, version, reason)
    if as_json:
        print_json(result)
    else:
        output.console.print(f"{name}@{alias_name} -> {version}")


@alias.command("list")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def alias_list(ctx: click.Context, name: str, as_json: bool) -> None:
    rows = client_of(ctx).aliases(name)
    if as_json:
        print_json(rows)
        return
    table(
        ["alias", "version", "updated", "by"],
        [[a["alias"], a["version"], short_time(a["updated_at"]), a["updated_by"]] for a in rows],
    )


@alias.command("delete")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.pass_context
def alias_delete(ctx: click.Context, name: str, alias_name: str) -> None:
    client_of(ctx).delete_alias(name, alias_name)
    output.console.print(f"deleted {name}@{alias_name}")


def describe_event(event: dict[str, Any]) -> str:
    payload = event["payload"]
    kind = event["kind"]
    if kind == "version.registered":
        return f"version {payload.get('version')} ({payload.get('files')} file(s))"
    if kind == "alias.set":
        before = payload.get("previous_version")
        move = f"{before} -> {payload.get('version')}" if before else f"-> {payload.get('version')}"
        reason = f" ({payload['reason']})" if payload.get("reason") else ""
        return f"{payload.get('alias')} {move}{reason}"
    if kind == "alias.deleted":
        return f"{payload.get('alias')} (was {payload.get('previous_version')})"
    if kind == "version.updated":
        changed = ", ".join(k for k in payload if k != "version")
        return f"version {payload.get('version')}: {changed}"
    details = {k: v for k, v in payload.items() if not isinstance(v, dict | list)}
    return " ".join(f"{k}={v}" for k, v in details.items())


@click.command()
@click.argument("name")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--page-token")
@click.option("--kind", "kinds", multiple=True, help="Only events of this kind; repeatable")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def history(
    ctx: click.Context,
    name: str,
    limit: int,
    page_token: str | None,
    kinds: tuple[str, ...],
    as_json: bool,
) -> None:
    """The audit trail of NAME: registrations, alias moves, rollouts; who and when."""
    page = client_of(ctx).history(name, limit=limit, page_token=page_token, kinds=kinds)
    if as_json:
        print_json(page)
        return
    table(
        ["id", "when", "who", "event", "details"],
        [
            [e["id"], short_time(e["at"]), e["actor"], e["kind"], describe_event(e)]
            for e in page["items"]
        ],
        title=f"{name}: history",
    )
    if page["next_page_token"]:
        output.console.print(f"more: --page-token {page['next_page_token']}")


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """List registered models."""
    page = client_of(ctx).models()
    if as_json:
        print_json(page)
        return
    table(
        ["model", "latest", "aliases", "created"],
        [
            [
                m["name"],
                m["latest_version"],
                " ".join(f"{a}={v}" for a, v in m["aliases"].items()),
                short_time(m["created_at"]),
            ]
            for m in page["items"]
        ],
    )


@click.group("import")
def import_group() -> None:
    """Register versions from other registries (MLflow)."""


@import_group.command("mlflow")
@click.argument("model_uri")
@click.option("--name", help="Shelf model to register into [default: the MLflow model's name]")
@click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    required=True,
    help="MLflow tracking server URL [MLFLOW_TRACKING_URI]",
)
@click.option("--mlflow-token", envvar="MLFLOW_TRACKING_TOKEN", help="[MLFLOW_TRACKING_TOKEN]")
@click.option(
    "--mlflow-username", envvar="MLFLOW_TRACKING_USERNAME", help="[MLFLOW_TRACKING_USERNAME]"
)
@click.option(
    "--mlflow-password", envvar="MLFLOW_TRACKING_PASSWORD", help="[MLFLOW_TRACKING_PASSWORD]"
)
@click.option("--serving-url", help="Where a model server for this version answers")
@click.option("--json", "as_json", is_flag=True, help="Print the new version as JSON")
@click.pass_context
def import_mlflow(
    ctx: click.Context,
    model_uri: str,
    name: str | None,
    tracking_uri: str,
    mlflow_token: str | None,
    mlflow_username: str | None,
    mlflow_password: str | None,
    serving_url: str | None,
    as_json: bool,
) -> None:
    """Register MODEL_URI (models:/NAME/VERSION or models:/NAME@ALIAS) from MLflow: its
    artifacts and its lineage (run id, source, parameters and metrics as tags)."""
    keep_freed_memory()
    source = MlflowSource(tracking_uri, mlflow_token, mlflow_username, mlflow_password)
    try:
        version = client_of(ctx).import_mlflow(
            model_uri,
            source,
            name=name,
            serving_url=serving_url,
            progress=progress_of(ctx) and not as_json,
        )
    finally:
        source.close()
    sent = version.pop("uploaded_bytes")
    if as_json:
        print_json(version)
        return
    output.console.print(
        f"imported {model_uri} as [bold]{version['model']}@{version['version']}[/bold]: "
        f"{version['file_count']} file(s), {human_size(version['total_size'])} "
        f"({human_size(sent)} uploaded), run {version['run_id'] or '-'}"
    )


@click.command("gc")
@click.option("--apply", is_flag=True, help="Remove; without it, only print (dry run)")
@click.option(
    "--grace",
    help="Keep anything younger than this: 3600, 30m, 12h, 7d [default: SHELF_GC_GRACE_S, 24h]",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def gc(ctx: click.Context, apply: bool, grace: str | None, as_json: bool) -> None:
    """Free blobs no version references and leftovers of unfinished uploads (admin).

    Dry run by default: prints what would be freed. Blobs and uploads younger than the grace
    period are kept, so it is safe while clients upload and register."""
    grace_s = parse_duration(grace) if grace is not None else None
    report = client_of(ctx).collect_garbage(apply=apply, grace_s=grace_s)
    if as_json:
        print_json(report)
        return
    rows = [
        ["blob", i["name"], human_size(i["size"]), short_time(i["modified_at"])]
        for i in report["blobs"]
    ]
    rows += [
        ["upload", i["name"], human_size(i["size"]), short_time(i["modified_at"])]
        for i in report["uploads"]
    ]
    if rows:
        table(["kind", "name", "size", "written"], rows)
    total = report["blob_bytes"] + report["upload_bytes"]
    verb = "freed" if report["applied"] else "would free"
    summary = (
        f"{verb} {human_size(total)}: {len(report['blobs'])} unreferenced blobs, "
        f"{len(report['uploads'])} upload leftovers (older than {report['grace_s']:g} s)"
    )
    output.console.print(summary, highlight=False)
    if not report["applied"] and rows:
        output.console.print("dry run: run again with --apply to remove them", highlight=False)


registry = click.Group(
    "registry",
    commands=[
        register,
        versions,
        show,
        download,
        update,
        alias,
        history,
        models,
        import_group,
        gc,
        profile,
    ],
    help="The registry's commands.",
)
