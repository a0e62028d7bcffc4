"""docs/config.md, generated from the config models so that it cannot drift."""

from __future__ import annotations

import re

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from mailstandby.config import Config, DeviceEntry, UserEntry

HEADER = """# Configuration reference

mailstandby reads one TOML file (`mailstandby serve -c FILE`; `mailstandby
check-config -c FILE` validates it and names every bad key). Unknown keys are
errors. Relative paths are relative to the config file. This page is generated
from the code by `mailstandby config-doc`; do not edit it by hand.
"""


def _default(field: object) -> str:
    default = getattr(field, "default", PydanticUndefined)
    factory = getattr(field, "default_factory", None)
    if default is PydanticUndefined:
        return "[]" if factory is list else ("required" if factory is None else "")
    if default is None:
        return "unset"
    return f"`{default!s}`" if not isinstance(default, list) else f"`{default}`"


def _type(annotation: object) -> str:
    text = re.sub(r"Annotated\[(\w+), [^\]]*\]", r"\1", str(annotation))
    text = text.replace("typing.", "").replace("pathlib.", "").replace("<class '", "")
    text = re.sub(r"mailstandby\.config\.(?:\w+\.)*", "", text.replace("'>", ""))  # the models' module paths
    return text.replace(" | ", " or ")


def render() -> str:
    out = [HEADER]

    def section(name: str, model: type[BaseModel]) -> None:
        rows, nested = [], []
        for key, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                nested.append((f"{name}.{key}", ann))
                continue
            rows.append(f"| `{key}` | {_type(ann)} | {_default(field)} | {field.description or ''} |")
        if rows:
            out.append(f"\n## [{name}]\n")
            if model.__doc__ and not model.__doc__.startswith(("Usage docs", "!!!")):
                out.append(model.__doc__.strip() + "\n")
            out.append("| key | type | default | meaning |\n|---|---|---|---|")
            out.extend(rows)
        for sub_name, sub in nested:
            section(sub_name, sub)

    for key, field in Config.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            section(key, field.annotation)
    out.append("\n## [[directory.users]]\n")
    out.append("| key | type | default | meaning |\n|---|---|---|---|")
    for key, field in UserEntry.model_fields.items():
        out.append(f"| `{key}` | {_type(field.annotation)} | {_default(field)} | {field.description or ''} |")
    out.append("\n## [[directory.users.devices]]\n")
    out.append("| key | type | default | meaning |\n|---|---|---|---|")
    for key, field in DeviceEntry.model_fields.items():
        out.append(f"| `{key}` | {_type(field.annotation)} | {_default(field)} | {field.description or ''} |")
    return "\n".join(out) + "\n"
