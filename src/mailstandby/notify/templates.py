"""Notification templates: Jinja2 files an administrator may override, rendered per user.

Each notice kind has four templates: `KIND.subject` (one line), `KIND.txt` (plain
text body), `KIND.html` (HTML body, autoescaped) and `KIND.short` (SMS/push
text). `code.short` carries a one-time code, `forward.short` an outage-message
summary; names starting with `_` are partials for `{% include %}`.

Rendering runs in a sandbox with StrictUndefined: a misspelt variable is an
error, never an empty string. `check()` renders every template with a sample
user so that `mailstandby check-config` finds such errors before an outage. At
outage time a failing override falls back to the shipped template (logged).

Templates produce text only; headers are built from these values by
`compose.py` with `email.message`, so a template cannot add a header.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from mailstandby.directory.base import NoticeKind

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).parent / "templates"
PARTS = ("subject", "txt", "html", "short")
EXTRA = ("code.short", "forward.short")


class TemplateError(Exception):
    """A template cannot be rendered; the message names the file (and line where known)."""


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str
    short: str


def names() -> list[str]:
    """Every template file name a notification may use."""
    return [f"{k.value}.{p}" for k in NoticeKind for p in PARTS] + list(EXTRA)


def _environment(loader: jinja2.BaseLoader) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        keep_trailing_newline=False,
        trim_blocks=False,
    )


class Templates:
    """The shipped templates, overridden file by file from `override` when given."""

    def __init__(self, override: Path | None = None) -> None:
        self.override = override
        shipped = jinja2.FileSystemLoader(str(SHIPPED))
        self._shipped = _environment(shipped)
        if override is not None:
            self._env = _environment(jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(override)), shipped]))
        else:
            self._env = self._shipped

    def source_of(self, name: str) -> Path:
        """The file `name` is read from."""
        if self.override is not None and (self.override / name).is_file():
            return self.override / name
        return SHIPPED / name

    def render_one(self, name: str, context: dict[str, Any]) -> str:
        """Render `name`; on an error in an override, log it and use the shipped file."""
        try:
            return _render(self._env, name, context, self.source_of(name))
        except TemplateError as e:
            if self._env is self._shipped:
                raise
            log.error("notification template broken, using the shipped one: %s", e)
            return _render(self._shipped, name, context, SHIPPED / name)

    def render(self, kind: NoticeKind, context: dict[str, Any]) -> Rendered:
        subject = " ".join(self.render_one(f"{kind.value}.subject", context).split())
        return Rendered(
            subject=subject,
            text=self.render_one(f"{kind.value}.txt", context).strip() + "\n",
            html=self.render_one(f"{kind.value}.html", context).strip() + "\n",
            short=" ".join(self.render_one(f"{kind.value}.short", context).split()),
        )

    def check(self, context: dict[str, Any]) -> list[str]:
        """Render every template (and every override file) with `context`; one problem per broken file."""
        problems = []
        wanted = set(names())
        if self.override is not None:
            if not self.override.is_dir():
                return [f"{self.override}: not a directory"]
            wanted |= {p.name for p in self.override.iterdir() if p.is_file() and not p.name.startswith(".")}
        for name in sorted(wanted):
            try:
                _render(self._env, name, context, self.source_of(name))
            except TemplateError as e:
                problems.append(str(e))
        return problems


def _render(env: SandboxedEnvironment, name: str, context: dict[str, Any], path: Path) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as e:
        where = e.filename or str(path)
        raise TemplateError(f"{where}: line {e.lineno}: syntax error: {e.message}") from None
    except jinja2.TemplateNotFound as e:
        raise TemplateError(f"{path}: template not found: {e.name}") from None
    except jinja2.UndefinedError as e:
        raise TemplateError(f"{_where(e, path)}: undefined: {e.message}") from None
    except jinja2.exceptions.SecurityError as e:
        raise TemplateError(f"{path}: not allowed: {e}") from None
    except Exception as e:  # a filter or test failing on the values: still the template's problem
        raise TemplateError(f"{_where(e, path)}: {type(e).__name__}: {e}") from None


def _where(error: BaseException, path: Path) -> str:
    """`file: line N` of the innermost template frame (Jinja maps its frames to template lines)."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename and not f.filename.endswith(".py")]
    if frames:
        return f"{frames[-1].filename}: line {frames[-1].lineno}"
    return str(path)
