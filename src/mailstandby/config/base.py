"""What every settings section shares: the frozen, closed `Section` base, sizes, and the
validators of listen addresses and networks."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

KiB = 1024
MiB = 1024 * KiB


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes "²" (int() refuses it) and "٣" (int() reads 3)."""
    return text.isascii() and text.isdigit()


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not _digits(port) or not 0 <= int(port) <= 65535:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:2525 (port 0 picks a free port)")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if host != "localhost":
            raise ValueError("HOST must be an IP address or localhost") from None
    return value


Listen = Annotated[str, AfterValidator(_check_listen)]


def _networks(values: list[str]) -> list[str]:
    for v in values:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            raise ValueError(f"{v!r} is not an address or network (e.g. 10.0.0.5, 10.0.0.0/24, ::1)") from None
    return values


def split_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)
