"""The [milter] section: defaults, modes, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstandby.config import ConfigError, MilterSettings, load


def test_defaults_keep_the_milter_off_and_journal_only() -> None:
    s = MilterSettings()
    assert s.listen == [] and s.mode == "journal" and s.journal and not s.redirect
    assert s.hands_off_macros == ["{quarantine}"]
    both = MilterSettings(mode="both")
    assert both.journal and both.redirect


def test_bad_values_are_reported_with_their_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[milter]\nlisten = ["nowhere"]\nmode = "tee"\ntimeout = 0\nmax_message_size = -1\nextra = 1\n')
    with pytest.raises(ConfigError) as e:
        load(path)
    keys = sorted(p.split(":")[0] for p in e.value.problems)
    assert keys == [
        "milter.extra",
        "milter.listen[0]",
        "milter.max_message_size",
        "milter.mode",
        "milter.timeout",
    ]
