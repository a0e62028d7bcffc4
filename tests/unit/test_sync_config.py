"""The [sync] section and the `mailstandby sync` commands' answers when the sync cannot start."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mailstandby.__main__ import main
from mailstandby.config import ConfigError, load

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.database import create


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailstandby.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_sync_section_loads_with_relative_paths(tmp_path: Path) -> None:
    cfg = load(
        write(
            tmp_path,
            '[sync]\nimap_host = "imap.corp.test"\nmaster_user = "admin"\npassword_file = "secrets/master"\n'
            'tls_ca_file = "ca.pem"\nlogin = "sasl-authzid"\nfolder_map = { Sent = "Sent Items", Junk = "" }\n',
        )
    )
    assert cfg.sync.password_file == tmp_path.resolve() / "secrets" / "master"
    assert cfg.sync.tls_ca_file == tmp_path.resolve() / "ca.pem"
    assert cfg.sync.folder_map == {"Sent": "Sent Items", "Junk": ""}
    assert (cfg.sync.imap_port, cfg.sync.imap_tls, cfg.sync.tls_verify) == (993, "implicit", True)
    assert cfg.sync.restore_deleted is False and cfg.sync.max_attempts == 5


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[sync]\nlogin = "guess"\n', "sync.login"),
        ("[sync]\nconcurrency = 0\n", "sync.concurrency"),
        ("[sync]\nfolder_map = { Sent = 3 }\n", "sync.folder_map.Sent"),
        ('[sync]\nimap_tls = "ssl"\n', "sync.imap_tls"),
        ("[sync]\npassword = 'x'\n", "sync.password"),
    ],
)
def test_bad_sync_keys_are_named(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, text))
    assert [p.partition(": ")[0] for p in e.value.problems] == [key]


def store(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    create(tmp_path / "data")


def test_sync_run_without_credentials_says_which_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store(tmp_path)
    config = write(tmp_path, '[node]\ndata_dir = "data"\n[sync]\nimap_host = "127.0.0.1"\nmaster_user = "admin"\n')
    assert main(["sync", "run", "-c", str(config)]) == 2
    assert "sync.master_user and sync.password_file must be set" in capsys.readouterr().err


def test_sync_run_with_unreadable_password_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store(tmp_path)
    config = write(
        tmp_path,
        '[node]\ndata_dir = "data"\n[sync]\nimap_host = "127.0.0.1"\nmaster_user = "admin"\npassword_file = "nope"\n',
    )
    assert main(["sync", "run", "-c", str(config)]) == 2
    assert f"sync.password_file: cannot read {tmp_path.resolve() / 'nope'}" in capsys.readouterr().err


def test_sync_status_of_a_fresh_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store(tmp_path)
    config = write(tmp_path, '[node]\ndata_dir = "data"\n')
    assert main(["sync", "status", "--json", "-c", str(config)]) == 0
    assert '"total": {\n    "total": 0' in capsys.readouterr().out


def test_sync_without_imap_or_fallback_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store(tmp_path)
    config = write(tmp_path, '[node]\ndata_dir = "data"\n[sync]\nsmtp_fallback = false\n')
    assert main(["sync", "run", "-c", str(config)]) == 2
    assert "nowhere to sync to" in capsys.readouterr().err
