"""``helm template`` and ``helm lint`` without a helm binary, through Helm's own Go library
(the helm-python-sdk package: Helm v4's SDK behind a C ABI). Used by the chart tests when no
``helm`` is on PATH, so the chart is rendered and linted in CI on every machine.

Run as ``python tests/helm/helm_sdk.py template|lint ...`` with the helm CLI flags the tests use
(``--namespace``, ``-f``/``--values``, ``--set``, ``--set-json``, ``--set-string``,
``--strict``); it prints what helm prints and exits non-zero where helm would."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import helm_python as helm


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's value coalescing for user values: maps merge key by key, anything else is
    replaced, later sources win (``-f`` files in order, then ``--set`` flags in order)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class _Ordered(argparse.Action):
    """Keeps ``-f`` and the ``--set*`` flags in the order given, as helm applies them."""

    def __call__(self, parser: Any, namespace: Any, value: Any, option: Any = None) -> None:
        namespace.sources.append((self.dest, value))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helm")
    parser.add_argument("command", choices=["template", "lint"])
    parser.add_argument("positional", nargs="+", help="[NAME] CHART")
    parser.add_argument("--namespace", "-n", default="default")
    parser.add_argument("--strict", action="store_true")
    for flag in ("--values", "--set", "--set-json", "--set-string"):
        names = [flag, "-f"] if flag == "--values" else [flag]
        parser.add_argument(*names, dest=flag.lstrip("-"), action=_Ordered)
    parser.set_defaults(sources=[])
    return parser


def user_values(sources: list[tuple[str, str]]) -> dict[str, Any]:
    parse = {
        "values": lambda path: helm.values_from_yaml(Path(path).read_text()),
        "set": helm.parse_set_string,
        "set-json": helm.parse_set_json,
        "set-string": helm.parse_set_string_values,
    }
    values: dict[str, Any] = {}
    for kind, text in sources:
        values = merge(values, parse[kind](text))
    return values


def template(name: str, chart_path: str, namespace: str, values: dict[str, Any]) -> str:
    with helm.Chart.load(chart_path) as chart:
        chart.validate_schema(chart.merge_values(values))
        rendered = chart.render(values, name=name, namespace=namespace, is_install=True)
    documents = [
        f"---\n# Source: {source}\n{text.strip()}\n"
        for source, text in sorted(rendered.items())
        if text.strip() and not source.endswith("NOTES.txt")
    ]
    return "".join(documents)


def lint(chart_path: str, namespace: str, values: dict[str, Any], strict: bool) -> int:
    result = helm.lint(chart_path, values, strict=strict, namespace=namespace)
    worst = 2 if strict else 3  # helm's severities: 1 info, 2 warning, 3 error
    failures = [m for m in result.get("messages", []) if int(m.get("severity", 0)) >= worst]
    for message in result.get("messages", []):
        print(f"[{message.get('severity')}] {message.get('path')}: {message.get('error')}")
    for error in result.get("errors", []):
        print(f"Error: {error}", file=sys.stderr)
    return 1 if failures or result.get("errors") else 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    values = user_values(args.sources)
    try:
        if args.command == "lint":
            return lint(args.positional[-1], args.namespace, values, args.strict)
        name, chart_path = args.positional[0], args.positional[-1]
        sys.stdout.write(template(name, chart_path, args.namespace, values))
        return 0
    except helm.HelmError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
