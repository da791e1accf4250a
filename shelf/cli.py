"""The ``shelf`` command: the registry's and the controller's command groups, the process
roles, migrations and the quickstart under one root, and the one place that turns every
failure into a one-line error and an exit code (see registry/cli/exit_codes.py), never a
traceback."""

from __future__ import annotations

import sys

import click
import pydantic

from controller.cli.commands import controller
from registry import __version__
from registry.cli import exit_codes
from registry.cli.commands import registry
from registry.cli.context import CLIContext
from registry.cli.output import err_console
from registry.client.http import Connection, Unreachable
from registry.config import ClientSettings
from registry.errors import ShelfError
from shelf.commands import COMMANDS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shelf")
@click.option(
    "--url", envvar="SHELF_URL", help="Shelf API URL [SHELF_URL, default http://127.0.0.1:8000]"
)
@click.option("--token", envvar="SHELF_TOKEN", help="Bearer token [SHELF_TOKEN]")
@click.option("--no-progress", is_flag=True, help="No progress bars")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None, no_progress: bool) -> None:
    """Shelf: model registry and canary/shadow rollout controller."""
    overrides = {k: v for k, v in {"url": url, "token": token}.items() if v}
    opened: list[Connection] = []

    def connect() -> Connection:
        if not opened:
            opened.append(Connection(ClientSettings().model_copy(update=overrides)))
            ctx.call_on_close(opened[0].close)
        return opened[0]

    ctx.obj = CLIContext(connect=connect, progress=not no_progress and sys.stderr.isatty())


# The controller's commands come after the registry's on purpose: its ``models`` (the
# registry's listing plus each champion's watch status) takes the place of the registry-only one.
for command in (
    *registry.commands.values(),
    *controller.commands.values(),
    *COMMANDS,
):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    try:
        result = cli.main(args=argv, prog_name="shelf", standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        return exit_codes.INTERRUPTED
    except click.exceptions.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except Unreachable as exc:
        err_console.print(f"error: {exc.message}", highlight=False)
        return exit_codes.UNREACHABLE
    except ShelfError as exc:
        err_console.print(f"error: {exc.message}", highlight=False)
        return exit_codes.for_error(exc)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        err_console.print(f"error: invalid setting {where}: {first.get('msg')}", highlight=False)
        return exit_codes.ERROR
    except KeyboardInterrupt:
        return exit_codes.INTERRUPTED
    except OSError as exc:
        err_console.print(
            f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), highlight=False
        )
        return exit_codes.ERROR
    return result if isinstance(result, int) else exit_codes.OK


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
