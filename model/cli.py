"""Command-line options derived from dataclasses: each option is written once, as a field.

``add_dataclass_options(parser, Config)`` adds one ``--flag`` per field of ``Config`` (and of
the dataclasses nested in it): the type and default come from the field, ``choices`` from a
``Literal[...]`` annotation, and the help text from the comment that ends the field's line::

    @dataclass(frozen=True)
    class TrainConfig:
        steps: int = 70_000  # optimiser steps          →  --steps STEPS   optimiser steps (default: 70000)

``build_dataclass(Config, namespace)`` turns the parsed namespace back into ``Config``, so
the dataclass's own validation (``__post_init__``) judges the values.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import textwrap
import tokenize
import types
import typing
from functools import cache
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")


@cache
def field_comments(cls: type) -> dict[str, str]:
    """``{field name: the comment on its line}`` read from the class's source (empty if unavailable)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    line_name: dict[int, str] = {}
    tokens = tokenize.generate_tokens(io.StringIO(textwrap.dedent(source)).readline)
    previous: tokenize.TokenInfo | None = None
    for token in tokens:
        # a field is NAME at the start of a logical line followed by ':' (an annotation)
        if token.type == tokenize.OP and token.string == ":" and previous is not None and previous.type == tokenize.NAME and previous.string in names:
            if previous.start[1] == _indent_of(previous.line):
                line_name[previous.start[0]] = previous.string
        elif token.type == tokenize.COMMENT and token.start[0] in line_name:
            comments[line_name[token.start[0]]] = token.string.lstrip("#").strip()
        previous = token
    return comments


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def _option(field: dataclasses.Field[Any], annotation: Any, help_text: str) -> dict[str, Any]:
    """argparse keyword arguments for one field."""
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc,operator]
    annotation, optional = _unwrap_optional(annotation)
    kwargs: dict[str, Any] = {"default": default}
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        kwargs.update(choices=choices, type=type(choices[0]), metavar="{" + ",".join(map(str, choices)) + "}")
    elif annotation is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif isinstance(annotation, type):
        kwargs.update(type=annotation, metavar=field.name.upper())
    else:
        raise TypeError(f"{field.name}: cannot derive a command-line option from {annotation!r}")
    if optional:
        kwargs["type"] = _none_or(kwargs.pop("type"))
    shown = "none" if default is None else default
    help_text = help_text.replace("%", "%%")  # argparse formats help with %
    if default is None and "default:" in help_text:
        kwargs["help"] = help_text  # the comment already says what None means
    else:
        kwargs["help"] = f"{help_text} (default: {shown})" if help_text else f"(default: {shown})"
    return kwargs


def _none_or(convert: Any) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "") else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def add_dataclass_options(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    title: str,
    prefix: str = "",
    rename: dict[str, str] | None = None,
    skip: frozenset[str] = frozenset(),
) -> None:
    """Add a ``--flag`` for every field of ``cls``, in a help group ``title``; nested dataclasses get their own group.

    Option destinations are dotted paths (``net.hidden``). ``rename`` maps a dotted path to a
    flag name (without ``--``) where the bare field name would be unclear or collide;
    ``skip`` lists dotted paths to leave out (they keep their defaults).
    """
    rename = rename or {}
    hints = get_type_hints(cls)
    comments = field_comments(cls)
    group = parser.add_argument_group(title)
    nested: list[tuple[str, type]] = []
    for field in dataclasses.fields(cls):
        path = prefix + field.name
        if path in skip:
            continue
        annotation = hints[field.name]
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            nested.append((field.name, annotation))
            continue
        flag = "--" + rename[path] if path in rename else flag_name(field.name)
        kwargs = _option(field, annotation, comments.get(field.name, ""))
        if "choices" not in kwargs and "metavar" in kwargs:
            kwargs["metavar"] = flag[2:].replace("-", "_").upper()
        group.add_argument(flag, dest=path, **kwargs)
    for name, inner in nested:
        inner_title = f"{title}: {comments[name]}" if name in comments else f"{title}: {name}"
        add_dataclass_options(parser, inner, title=inner_title, prefix=prefix + name + ".", rename=rename, skip=skip)


def build_dataclass(cls: type[T], namespace: argparse.Namespace, *, prefix: str = "") -> T:
    """The inverse of ``add_dataclass_options``: ``cls`` built from the parsed options."""
    values = vars(namespace)
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        path = prefix + field.name
        annotation = hints[field.name]
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            kwargs[field.name] = build_dataclass(annotation, namespace, prefix=path + ".")
        elif path in values:
            kwargs[field.name] = values[path]
    return cls(**kwargs)
