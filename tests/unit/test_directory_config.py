"""[directory.ldap], [directory.devices], [directory.merge]: loading, checks naming the key, and the CLI around them."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from mailstandby.__main__ import main
from mailstandby.config import ConfigError, load

LDAP = """\
[node]
data_dir = "data"
[directory]
domains = ["corp.test"]
refresh_interval = 600
[[directory.users]]
address = "alice@corp.test"
[directory.ldap]
url = "ldaps://dc1.corp.test"
bind_dn = "cn=svc,dc=corp,dc=test"
password_file = "secrets/ldap.pw"
ca_file = "ca.pem"
base_dn = "ou=people,dc=corp,dc=test"
preset = "active-directory"
attributes = { mobile = "telephoneNumber" }
[directory.devices]
files = ["mdm/devices.csv", "/srv/pagers.json"]
[directory.merge]
display_name = "devices"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailstandby.toml"
    path.write_text(dedent(text))
    return path


def test_directory_sections_load_and_paths_resolve(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, LDAP))
    d = cfg.directory
    assert d.refresh_interval == 600 and d.ldap.preset == "active-directory" and d.merge.display_name == "devices"
    assert d.ldap.password_file == tmp_path.resolve() / "secrets/ldap.pw"
    assert d.ldap.ca_file == tmp_path.resolve() / "ca.pem"
    assert d.devices.files == [tmp_path.resolve() / "mdm/devices.csv", Path("/srv/pagers.json")]
    assert d.ldap.attributes == {"mobile": "telephoneNumber"}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("ldaps://dc1.corp.test", "https://dc1"), "directory.ldap.url: must be ldap://HOST[:PORT] or ldaps://"),
        (('password_file = "secrets/ldap.pw"', ""), "directory.ldap: bind_dn needs password_file or password_env"),
        (('base_dn = "ou=people,dc=corp,dc=test"', ""), "directory.ldap: base_dn is required with url"),
        (('preset = "active-directory"', 'preset = "exchange"'), "directory.ldap.preset: Input should be"),
        (('display_name = "devices"', 'display_name = "both"'), "directory.merge.display_name: Input should be"),
        (("refresh_interval = 600", "refresh_interval = -1"), "directory.refresh_interval: Input should be greater"),
        (("[directory.merge]", "[directory.merge]\nphone = 'ldap'"), "directory.merge.phone: unknown key"),
    ],
)
def test_problems_name_the_key(tmp_path: Path, change: tuple[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, LDAP.replace(*change)))
    assert any(p.startswith(problem) for p in e.value.problems), e.value.problems


def test_check_config_rejects_an_unknown_mapping_field_or_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, LDAP.replace('mobile = "telephoneNumber"', 'phone = "telephoneNumber"'))
    assert main(["check-config", "-c", str(path)]) == 2
    assert "directory.ldap.attributes: unknown field(s) phone" in capsys.readouterr().err
    path = write(
        tmp_path,
        LDAP.replace("[directory.merge]", "[directory.merge]\n").replace(
            'files = ["mdm/devices.csv", "/srv/pagers.json"]', 'files = []\ncolumns = { owner = "UPN" }'
        ),
    )
    assert main(["check-config", "-c", str(path)]) == 2
    assert "directory.devices.columns: unknown column(s) owner" in capsys.readouterr().err


DEVICES_ONLY = """\
[node]
data_dir = "data"
[directory]
domains = ["corp.test"]
[[directory.users]]
address = "alice@corp.test"
[directory.devices]
files = ["devices.csv"]
"""


def test_directory_command_import_show_and_a_failed_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, DEVICES_ONLY)
    (tmp_path / "devices.csv").write_text("user,device_id,platform,phone\nalice@corp.test,D1,iOS,+15550100\n")
    assert main(["directory", "-c", str(path), "import"]) == 0
    out = capsys.readouterr().out
    assert "+ alice@corp.test" in out and "applied as directory generation 1" in out

    assert main(["directory", "-c", str(path), "show", "alice@corp.test"]) == 0
    assert "device:       D1 platform=ios phone=+15550100" in capsys.readouterr().out

    (tmp_path / "devices.csv").write_text("user,device_id,platform,phone\nalice@corp.test,D1,iOS,ring\n")
    assert main(["directory", "-c", str(path), "import"]) == 1
    err = capsys.readouterr().err
    assert "the previous directory stays in force" in err and "devices.csv: row 2: phone number 'ring'" in err
    assert main(["directory", "-c", str(path), "show"]) == 0
    shown = capsys.readouterr().out
    assert "generation 1" in shown and "alice@corp.test  aliases=0 devices=1 keys=0" in shown


def test_directory_import_with_no_source_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[node]\ndata_dir = "data"\n[directory]\ndomains = ["corp.test"]\n')
    assert main(["directory", "-c", str(path), "import", "--dry-run"]) == 2
    assert "nothing to import" in capsys.readouterr().err


def test_bind_password_from_a_file_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailstandby.config import LDAPSettings
    from mailstandby.directory.ldap import bind_password
    from mailstandby.directory.static import DirectoryError

    common = {"url": "ldap://dc1", "bind_dn": "cn=svc", "base_dn": "dc=corp"}
    (tmp_path / "pw").write_text("from-file\n")
    assert bind_password(LDAPSettings(**common, password_file=tmp_path / "pw")) == "from-file"
    monkeypatch.setenv("LDAP_PW", "from-env")
    assert bind_password(LDAPSettings(**common, password_env="LDAP_PW")) == "from-env"
    monkeypatch.delenv("LDAP_PW")
    with pytest.raises(DirectoryError, match=r"password_env: \$LDAP_PW is not set"):
        bind_password(LDAPSettings(**common, password_env="LDAP_PW"))
    with pytest.raises(DirectoryError, match=r"password_file .*/missing: No such file"):
        bind_password(LDAPSettings(**common, password_file=tmp_path / "missing"))
    assert bind_password(LDAPSettings(url="ldap://dc1", base_dn="dc=corp")) is None  # anonymous
