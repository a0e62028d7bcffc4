"""The configuration reference is generated from the models; keep the committed copy current."""

from __future__ import annotations

from pathlib import Path

from mailstandby.configdoc import render

ROOT = Path(__file__).resolve().parents[2]


def test_config_reference_is_current() -> None:
    committed = (ROOT / "docs" / "config.md").read_text()
    assert committed == render(), "run `mailstandby config-doc > docs/config.md`"


def test_every_setting_is_documented() -> None:
    text = render()
    for line in text.splitlines():
        if line.startswith("| `"):
            assert line.rstrip().rstrip("|").strip().split("|")[-1].strip(), f"undocumented: {line}"
