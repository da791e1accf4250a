"""The README's main command: `shelf quickstart` tells the whole story and exits 0."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import shelf_command

pytestmark = pytest.mark.e2e


def test_quickstart_rolls_back_the_worse_promotes_the_better_and_sees_it_decay(
    tmp_path: Path,
) -> None:
    home = tmp_path / "quickstart"
    result = subprocess.run(
        [*shelf_command(), "quickstart", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-3:]
    assert last == [
        "rollout 1 (fraud v1 -> v2): rolled_back",
        "rollout 2 (fraud v1 -> v3): promoted",
        "champion fraud v3: decayed",
    ]
    assert "v3's accuracy silently drifts" in result.stdout
    report = home / "report.html"
    assert f"report: {report}" in result.stdout
    html = report.read_text()
    assert html.count("<svg") >= 4 and "rolled_back" in html and "promoted" in html
    assert "champion fraud v3" in html and "accuracy vs reference: detector" in html
