"""config.load(): a good file loads; every problem is named by file and dotted key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest

from mailstandby.config import Config, ConfigError, load, split_listen

GOOD = """\
[node]
hostname = "standby.corp.test"
data_dir = "state"

[smtp]
listen = ["127.0.0.1:0", "[::1]:2525"]
max_message_size = 65536
max_recipients = 5

[tls]
cert = "tls/cert.pem"
key = "/etc/mailstandby/key.pem"

[directory]
domains = ["corp.test"]

[[directory.users]]
address = "alice@corp.test"
aliases = ["a.l@corp.test"]

[[directory.users]]
address = "bob@corp.test"

[primary]
host = "10.0.0.5"
port = 2525
protocol = "lmtp"
"""


def write(tmp_path: Path, text: str, name: str = "mailstandby.toml") -> Path:
    path = tmp_path / name
    path.write_text(dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(path)
    err = e.value
    assert err.path == path
    # the message a user reads: one line per problem, each naming the file
    lines = str(err).splitlines()
    assert lines == [f"{path}: {p}" for p in err.problems]
    return err.problems


def test_good_file_loads(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, GOOD))
    assert isinstance(cfg, Config)
    assert cfg.node.hostname == "standby.corp.test"
    assert cfg.smtp.max_message_size == 65536
    assert cfg.smtp.max_recipients == 5
    assert cfg.smtp.max_line_length == 2048  # default kept
    assert [split_listen(x) for x in cfg.smtp.listen] == [("127.0.0.1", 0), ("::1", 2525)]
    assert [(u.address, u.aliases) for u in cfg.directory.users] == [
        ("alice@corp.test", ["a.l@corp.test"]),
        ("bob@corp.test", []),
    ]
    assert (cfg.primary.host, cfg.primary.port, cfg.primary.protocol) == ("10.0.0.5", 2525, "lmtp")
    assert cfg.source == tmp_path / "mailstandby.toml"


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, ""))
    assert cfg.smtp.listen == ["127.0.0.1:2525"]
    assert cfg.smtp.max_recipients == 100


def test_models_are_frozen(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, GOOD))
    with pytest.raises(Exception, match="frozen"):
        cfg.smtp.max_recipients = 7  # type: ignore[misc]


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory must not matter
    cfg = load(write(conf_dir, GOOD))
    assert cfg.node.data_dir == conf_dir.resolve() / "state"
    assert cfg.tls.cert == conf_dir.resolve() / "tls/cert.pem"
    assert cfg.tls.key == Path("/etc/mailstandby/key.pem")  # absolute stays


def test_relative_config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, '[node]\ndata_dir = "d"\n[directory]\ncsv = "users.csv"\n')
    monkeypatch.chdir(tmp_path)
    cfg = load(Path("mailstandby.toml"))
    assert cfg.node.data_dir == tmp_path.resolve() / "d"
    assert cfg.directory.csv == tmp_path.resolve() / "users.csv"


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[smtp]\nbogus = 1\n", "smtp.bogus", "unknown key"),
        ("[smpt]\nlisten = []\n", "smpt", "unknown key"),
        ('[smtp]\nmax_recipients = "many"\n', "smtp.max_recipients", "integer"),
        ("[smtp]\nmax_recipients = 0\n", "smtp.max_recipients", "greater than or equal to 1"),
        ("[smtp]\nmax_line_length = 100\n", "smtp.max_line_length", "512"),
        ("[smtp]\ncommand_timeout = -1\n", "smtp.command_timeout", "greater than 0"),
        ('[smtp]\nlisten = "127.0.0.1:25"\n', "smtp.listen", "list"),
        ('[smtp]\nlisten = ["nohost"]\n', "smtp.listen[0]", "HOST:PORT"),
        ('[smtp]\nlisten = ["127.0.0.1:99999"]\n', "smtp.listen[0]", "HOST:PORT"),
        ('[smtp]\nlisten = ["mail.example.test:25"]\n', "smtp.listen[0]", "IP address"),
        ("[tls]\npassword = 'x'\n", "tls.password", "unknown key"),
        ('[[directory.users]]\naddress = "nobody"\n', "directory.users[0].address", "not an address"),
        (
            '[[directory.users]]\naddress = "a@corp.test"\n[[directory.users]]\naddress = "b@corp.test"\n'
            'aliases = ["ok@corp.test", "bad alias@corp.test"]\n',
            "directory.users[1].aliases",
            "not an address",
        ),
        ('[[directory.users]]\naddress = "a@corp.test"\nname = "A"\n', "directory.users[0].name", "unknown key"),
        ('[primary]\nprotocol = "uucp"\n', "primary.protocol", "smtp"),
        ("[primary]\nport = 0\n", "primary.port", "greater than or equal to 1"),
        ('[node]\nlog_level = "LOUD"\n', "node.log_level", "TRACE"),
    ],
)
def test_one_problem_names_the_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    found = problems(write(tmp_path, text))
    assert len(found) == 1, found
    name, _, message = found[0].partition(": ")
    assert name == key
    assert fragment in message


def test_source_is_not_settable_from_the_file(tmp_path: Path) -> None:
    # `source` records where the config came from; a file must not override it
    path = write(tmp_path, "source = '/etc/other.toml'\n")
    assert problems(path) == ["source: unknown key"]
    assert load(write(tmp_path, "")).source == path


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [smtp]
        max_recipients = "many"
        listen = ["nohost"]
        bogus = 1

        [[directory.users]]
        address = "alice@corp.test"

        [[directory.users]]
        address = "nobody"
        """,
    )
    found = problems(path)
    keys = sorted(p.partition(": ")[0] for p in found)
    assert keys == ["directory.users[1].address", "smtp.bogus", "smtp.listen[0]", "smtp.max_recipients"]


def test_two_bad_keys_in_one_section(tmp_path: Path) -> None:
    found = problems(write(tmp_path, "[smtp]\nmax_recipients = 'x'\nmax_errors = 'y'\n"))
    assert sorted(p.partition(": ")[0] for p in found) == ["smtp.max_errors", "smtp.max_recipients"]


def test_toml_syntax_error(tmp_path: Path) -> None:
    found = problems(write(tmp_path, "[smtp\nlisten = \n"))
    assert len(found) == 1 and found[0].startswith("TOML syntax")


def test_missing_file(tmp_path: Path) -> None:
    found = problems(tmp_path / "absent.toml")
    assert found == ["cannot read: No such file or directory"]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[node]\nhostname = "caf\xe9"\n')
    assert problems(path) == ["not UTF-8 text"]


@pytest.mark.parametrize("nesting", ["[" * 3000 + "]" * 3000, "{a=" * 3000 + "1" + "}" * 3000])
def test_deeply_nested_toml_is_a_syntax_problem_not_a_crash(tmp_path: Path, nesting: str) -> None:
    """Found by fuzz/config_loader: tomllib's RecursionError escaped load(), so check-config printed a traceback."""
    found = problems(write(tmp_path, f"x = {nesting}\n"))
    assert len(found) == 1 and found[0].startswith("TOML syntax")


def test_a_lone_cr_is_not_a_newline(tmp_path: Path) -> None:
    """Found by fuzz/config_loader: read_text() turned CR into LF, so a file TOML refuses loaded (newline: LF, CRLF)."""
    path = tmp_path / "cr.toml"
    path.write_bytes(b'[node]\rhostname = "standby.corp.test"\r\n')
    found = problems(path)
    assert len(found) == 1 and found[0].startswith("TOML syntax")
    path.write_bytes(b'[node]\r\nhostname = "standby.corp.test"\r\n')
    assert load(path).node.hostname == "standby.corp.test"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('"127.0.0.1:0" = 1\n', '"127.0.0.1:0": unknown key'),
        ('[smtp]\n"a\\nb" = 1\n', 'smtp."a\\nb": unknown key'),
        ('[smtp."x y"]\nz = 1\n', 'smtp."x y": unknown key'),
    ],
)
def test_a_key_that_is_not_bare_is_quoted_in_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    """Found by fuzz/config_loader: a quoted key with ": " or a newline made the report ambiguous or multi-line."""
    assert problems(write(tmp_path, text)) == [problem]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[smtp]\nlisten = ["127.0.0.1:\u00b2"]\n', "smtp.listen[0]"),  # isdigit(), but int() refuses it
        ('[smtp]\nlisten = ["127.0.0.1:\u0663\u0663"]\n', "smtp.listen[0]"),  # Arabic-Indic 33: int() takes it
        ('[outbound]\nresolver = "127.0.0.1:\u0665\u0663"\n', "outbound.resolver"),
    ],
)
def test_ports_are_ascii_digits(tmp_path: Path, text: str, key: str) -> None:
    """Found by fuzz/config_loader: str.isdigit() let non-ASCII digits through the HOST:PORT check."""
    found = problems(write(tmp_path, text))
    assert len(found) == 1 and found[0].startswith(f"{key}: ") and "HOST:PORT" in found[0], found


# -- the CLI ---------------------------------------------------------------------


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailstandby", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_bad_file_exits_2_and_lists_every_problem(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [smtp]
        max_recipients = "many"
        bogus = 1
        [[directory.users]]
        address = "nobody"
        """,
        name="bad.toml",
    )
    result = run_cli("check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2, result
    lines = [line.strip() for line in result.stderr.splitlines() if line.startswith("  ")]
    assert sorted(lines) == sorted(
        [
            f"{path}: smtp.max_recipients: Input should be a valid integer,"
            " unable to parse string as an integer (got 'many')",
            f"{path}: smtp.bogus: unknown key",
            f"{path}: directory.users[0].address: 'nobody' is not an address (local@domain)",
        ]
    )
    assert "3 problem" in result.stderr
    assert result.stdout == ""


def test_check_config_good_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    result = run_cli("check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{path}: ok"
    assert not (tmp_path / "state").exists()  # checking touches nothing


def test_check_config_duplicate_directory_address(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [[directory.users]]
        address = "alice@corp.test"
        aliases = ["shared@corp.test"]
        [[directory.users]]
        address = "bob@corp.test"
        aliases = ["shared@corp.test"]
        """,
    )
    result = run_cli("check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "shared@corp.test" in result.stderr and "directory" in result.stderr


@pytest.mark.parametrize("url", ["mysql://db.corp.test/mail", "postgresql://", "postgresql://db /x", "db.corp.test"])
def test_check_config_names_store_url_and_the_file_on_a_bad_url(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, GOOD + f'\n[store]\nurl = "{url}"\n', name="bad.toml")
    result = run_cli("check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2, result
    assert f"{path}: store.url: must be empty (SQLite) or a postgresql:// URL\n" in result.stderr
    assert "(got" not in result.stderr  # a URL may carry a password: never repeated


def test_check_config_accepts_a_multi_host_postgresql_url(tmp_path: Path) -> None:
    url = "postgresql://msb@db1.corp.test:5432,db2.corp.test:5432/mailstandby?target_session_attrs=read-write"
    path = write(tmp_path, GOOD + f'\n[store]\nurl = "{url}"\n')
    result = run_cli("check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", [("queue",), ("sync", "status")])
def test_an_unreachable_store_url_is_exit_2_naming_the_key(tmp_path: Path, command: tuple[str, ...]) -> None:
    url = "postgresql://msb:secret-pw@127.0.0.1:1/mailstandby?connect_timeout=2"
    path = write(tmp_path, GOOD + f'\n[store]\nurl = "{url}"\n')
    result = run_cli(*command, "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2, result
    assert f"{path}: store.url: cannot open the store: cannot connect" in result.stderr
    assert "secret-pw" not in result.stderr and "Traceback" not in result.stderr
