"""What the library's pydantic configs share: a bad value is a ConfigError whose one line names the
config, the field and the value given (``invalid <kind> config: <field>: <what is wrong> (got <value>)``)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from vimpac_core.errors import ConfigError

NESTED = "invalid "  # how a CheckedConfig's message starts (see below)


def describe_validation_error(err: ValidationError, kind: str) -> str:
    """One line naming every bad field of ``err``: ``invalid <kind> config: <field>: <msg> (got <input>)``."""
    lines = []
    for e in err.errors():
        msg = str(e["msg"]).removeprefix("Value error, ")
        field = ".".join(str(p) for p in e["loc"] if p != "model")
        if e["type"] == "value_error" and msg.startswith(NESTED) and " config: " in msg:  # a CheckedConfig inside
            inner = msg.split(" config: ", 1)[1]
            lines.append(f"{field}.{inner}" if field else inner)
        elif e["type"] == "value_error":  # a validator's message names its fields itself
            lines.append(msg)
        else:
            lines.append(f"{field}: {msg} (got {e.get('input')!r})")
    return f"{NESTED}{kind} config: " + "; ".join(lines)


class CheckedConfig(BaseModel):
    """A pydantic config whose construction raises ConfigError (a ValueError) instead of pydantic's
    ValidationError, worded by `describe_validation_error`."""

    KIND: ClassVar[str] = "a"

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise ConfigError(describe_validation_error(err, self.KIND)) from None
