"""Reference profiles: built from held-out predictions (JSONL or CSV), validated at
registration, refused with a clear message when unreadable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry.errors import InvalidInput
from registry.profiles import build_profile, parse_profile, read_rows
from shelf.cli import main


def _rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i in range(100):
        predicted = "fraud" if i % 4 == 0 else "ok"
        label = predicted if i % 10 else ("ok" if predicted == "fraud" else "fraud")
        rows.append(
            {
                "predicted": predicted,
                "confidence": 0.55 + 0.4 * (i % 5) / 4,
                "label": label,
                "latency_ms": 10 + i % 7,
                "inputs": {"amount": float(i), "age": 30 + i % 3},
            }
        )
    return rows


def test_profile_from_jsonl_has_shares_accuracy_and_input_summaries(tmp_path: Path) -> None:
    source = tmp_path / "heldout.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in _rows()) + "\n")
    profile = build_profile(read_rows(source))
    assert profile["samples"] == 100
    assert profile["class_frequencies"] == {"fraud": 0.25, "ok": 0.75}
    assert profile["accuracy"] == pytest.approx(0.9)
    assert profile["labels"] == 100
    assert sum(profile["confidence_histogram"]) == pytest.approx(1.0)
    assert profile["inputs"]["amount"]["mean"] == pytest.approx(49.5)
    assert profile["inputs"]["amount"]["std"] == pytest.approx(29.011, rel=1e-3)
    assert 0.01 <= profile["latency_p50_s"] <= 0.017


def test_profile_from_csv_matches_jsonl(tmp_path: Path) -> None:
    rows = _rows()
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows))
    csv_file = tmp_path / "a.csv"
    lines = ["predicted,confidence,label,latency_ms,input.amount,input.age"]
    for r in rows:
        inputs = r["inputs"]
        assert isinstance(inputs, dict)
        lines.append(
            f"{r['predicted']},{r['confidence']},{r['label']},{r['latency_ms']},"
            f"{inputs['amount']},{inputs['age']}"
        )
    csv_file.write_text("\n".join(lines) + "\n")
    assert build_profile(read_rows(csv_file)) == build_profile(read_rows(jsonl))


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"samples": 10, "class_frequencies": {"a": 0.5, "b": 0.2}}, "sum to 1"),
        ({"samples": 10, "confidence_histogram": [1.0]}, "20 bins"),
        ({"samples": 10, "accuracy": 1.5}, "accuracy"),
        ({"samples": 10, "colour": "red"}, "colour"),
        ({"class_frequencies": {"a": 1.0}}, "samples"),
    ],
)
def test_unreadable_profiles_are_refused_with_the_reason(
    document: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_profile(document)


def test_bad_rows_name_their_line(tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text(
        '{"predicted": "a", "confidence": 0.5}\n{"predicted": "a", "confidence": 7}\n'
    )
    with pytest.raises(InvalidInput, match=r"bad.jsonl:2: confidence 7.0 is outside"):
        build_profile(read_rows(source))


def test_cli_builds_a_profile_that_register_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "heldout.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in _rows()))
    target = tmp_path / "profile.json"
    assert main(["profile", "build", str(source), "-o", str(target)]) == 0
    document = json.loads(target.read_text())
    assert document["format"] == "shelf.reference_profile/1"
    assert parse_profile(document) == document
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["profile", "build", str(tmp_path / "empty.jsonl")]) != 0
    assert "no rows" in capsys.readouterr().err
