"""Command-line flags generated from the config models, and the one error format of every command.

pydantic-settings' CLI source (``CliSettingsSource``) adds one argparse option per field of a
config model to a command's parser (``--hid-dim``: the field with dashes; its description and
default in ``--help``), and reads back the values the user gave. ``flat_model`` builds the model
the flags come from when a command's config nests another (PretrainConfig's ``model``: the
original scripts' flags are flat, ``--hid-dim`` not ``--model.hid-dim``): a copy of the real
models' fields, never retyped. Values keep the original scripts' forms: a YAML scalar (``3e-4``,
``true``, ``null``), a list as ``a,b``, and a bool flag alone meaning true (``--resume``).

Every parse error, argparse's own included, is one line ``vimpac CMD: error: ...`` naming the
flag, exit 2 (``ArgumentParser.error`` raises ``UsageError``, ``vimpac_cli.main`` prints it).
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Mapping, Sequence
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, create_model
from pydantic.fields import FieldInfo
from pydantic_settings import CliSettingsSource

from vimpac_core.errors import ConfigError


class UsageError(ConfigError):
    """A command line that does not parse; ``prog`` is the command (``vimpac pretrain``)."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class ArgumentParser(argparse.ArgumentParser):
    """argparse with our error format: no usage block, one line, raised as UsageError (exit 2 in
    ``vimpac_cli.main``). Flags are never abbreviated (``--hid`` is not ``--hid-dim``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(self.prog, message)


def unknown_flag(parser: argparse.ArgumentParser, extra: Sequence[str]) -> UsageError:
    """The error for arguments ``parser`` does not know: the first flag, with a did-you-mean."""
    flags = [token for token in extra if token.startswith("-")]
    if not flags:
        return UsageError(parser.prog, f"unexpected argument {extra[0]!r}")
    flag = flags[0].partition("=")[0]
    known = [o for a in parser._actions for o in a.option_strings
             if o.startswith("--") and (a.help != argparse.SUPPRESS or flag.startswith("--stage2"))]
    close = difflib.get_close_matches(flag, known, n=3)
    return UsageError(parser.prog, f"{flag}: no such flag" + (f" (did you mean {', '.join(close)}?)" if close else "")
                      + f"; see {parser.prog} --help")


def _copy_field(info: FieldInfo) -> FieldInfo:
    """The field's description and default (for --help); its checks stay with the real model."""
    if info.is_required():
        return Field(description=info.description)
    return Field(info.get_default(call_default_factory=True), description=info.description)


def flat_model(name: str, *models: type[BaseModel], exclude: Sequence[str] = ()) -> type[BaseModel]:
    """One model holding the fields of ``models`` (the first model naming a field wins), less
    ``exclude``: the flat flags of a config whose nested model's fields are flags of their own."""
    fields: dict[str, Any] = {}
    for model in models:
        for field, info in model.model_fields.items():
            if field not in exclude and field not in fields:
                fields[field] = (info.annotation, _copy_field(info))
    return create_model(name, **fields)


def _is_bool(annotation: Any) -> bool:
    return annotation is bool or bool in get_args(annotation)


def _fixed_tuple(annotation: Any) -> bool:
    return get_origin(annotation) is tuple and Ellipsis not in get_args(annotation)


def _choices(annotation: Any) -> list[str] | None:
    """The values of a Literal of strings (``null`` too when optional): argparse checks them."""
    members = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    literals = [m for m in members if get_origin(m) is Literal]
    if len(literals) != 1 or not all(isinstance(v, str) for v in get_args(literals[0])):
        return None
    return [*get_args(literals[0]), *(["null"] if type(None) in members else [])]


def scalar(raw: Any) -> Any:
    """A flag's text as the original scripts read it: YAML (``true``, ``null``), numbers with an
    exponent too (YAML 1.1 reads ``3e-4`` as a string)."""
    if not isinstance(raw, str):
        return raw
    value = yaml.safe_load(raw) if raw.strip() else raw
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


class ConfigFlags:
    """The flags of one config model on one parser (pydantic-settings adds them).

    Args:
        parser: the command's parser, or an argument group of it (then give ``prog``).
        model: the config model (or a ``flat_model`` of several).
        prefix: flags are ``--PREFIX.field`` (``stage2``); also accepted as ``--PREFIX-field``.
        aliases: kebab field name -> other flag names (the original scripts' names).
        hidden: leave the flags out of --help (``--stage2.*``: the same fields again).
        required_note: replaces "(required)" in the help of fields without a default.
        enforce_required: argparse itself requires the fields without a default.
    """

    def __init__(self, parser: argparse.ArgumentParser, model: type[BaseModel], *, prefix: str = "",
                 aliases: Mapping[str, str | list[str]] | None = None, hidden: bool = False,
                 required_note: str | None = None, enforce_required: bool = False, prog: str | None = None) -> None:
        self.model = model
        shortcuts = {name: [alias] if isinstance(alias, str) else list(alias) for name, alias in (aliases or {}).items()}
        if prefix:  # --stage2.eps: also --stage2-eps, --stage2.epsilon, --stage2-epsilon
            shortcuts = {f"{prefix}.{kebab}": [f"{prefix}{sep}{name}" for name in [kebab, *shortcuts.get(kebab, [])]
                                               for sep in ".-"][1:]
                         for kebab in (name.replace("_", "-") for name in model.model_fields)}
        self._spread: set[str] = set()
        before = len(parser._actions)
        self.source = CliSettingsSource(model, root_parser=parser, cli_kebab_case=True, cli_prefix=prefix,
                                        cli_shortcuts=shortcuts, cli_enforce_required=enforce_required,
                                        cli_prog_name=prog or parser.prog)
        self.actions = parser._actions[before:]
        for action in self.actions:
            field = model.model_fields.get(action.dest.removeprefix(f"{prefix}.") if prefix else action.dest)
            if field is not None and _is_bool(field.annotation):
                action.nargs, action.const = "?", "true"  # --resume alone means true
            elif field is not None and (choices := _choices(field.annotation)):
                action.choices = choices
            elif field is not None and _fixed_tuple(field.annotation):
                action.nargs, action.metavar = "+", "VALUE"  # --channels 16 32 32 as well as 16,32,32
                self._spread.add(action.dest)
            if not isinstance(parser, argparse.ArgumentParser) and isinstance(action.help, str):
                action.help = action.help.replace("%", "%%")  # pydantic-settings escapes on parsers only
            if hidden:
                action.help = argparse.SUPPRESS
            elif required_note and isinstance(action.help, str):
                action.help = action.help.replace("(required)", required_note)

    def values(self, namespace: argparse.Namespace) -> dict[str, Any]:
        """{field: value} of the flags the user gave (nested fields as nested dicts)."""
        parsed = dict(vars(namespace))
        for dest in self._spread & set(parsed):  # [['16', '32', '32']] (one flag, nargs +) -> ['16', '32', '32']
            parsed[dest] = [v for group in parsed[dest] for v in group]
        given = self.source(parsed_args=parsed)()
        out: dict[str, Any] = {}
        for key, value in given.items():
            field = self.model.model_fields.get(key)
            if isinstance(value, list):  # --views null: None, not [None]
                out[key] = None if value == [None] else [v for v in value if v != ""]
            elif isinstance(value, dict) or (field is not None and _is_text(field.annotation)):
                out[key] = value  # a nested model's fields or a mapping (its model coerces), a text as given
            else:
                out[key] = scalar(value)
        return out


def _is_text(annotation: Any) -> bool:
    """str, str | None or a Literal of strings: the flag's text is the value (``--cpu 8`` is '8')."""
    members = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    members = [m for m in members if m is not type(None)]
    return bool(members) and all(m is str or _choices(m) for m in members)
