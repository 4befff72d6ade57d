"""A small strict loader from plain dicts (parsed YAML/JSON) into frozen dataclasses.

Each field may carry constraints in its metadata (see :func:`spec`). Loading fails on the first
problem with one sentence that names the key (dotted path), what was found and what is valid:
unknown keys (with a close match), missing keys, wrong types, values outside their range and
values outside a closed set of choices.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import MISSING, Field, field
from typing import Any, Literal, TypeVar, get_args, get_origin

T = TypeVar("T")


class SchemaError(ValueError):
    """A value does not match the schema; ``key`` is the dotted path of the offending entry."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def spec(
    help: str,
    *,
    default: Any = MISSING,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    pattern: str | None = None,
    choices: tuple[str, ...] | None = None,
    max_items: int | None = None,
    loaded: bool = True,
) -> Any:
    """Declare a dataclass field with its help text and constraints.

    Args:
        help: one line shown in error messages and docs (include the unit).
        default: default value; without one the key is required.
        gt: value must be strictly greater than this.
        ge: value must be greater than or equal to this.
        le: value must be less than or equal to this.
        pattern: a string value must match this regular expression (whole string).
        choices: an open string field restricted to these values (closed sets use ``Literal``).
        max_items: a list field holds at most this many items (each item meets the other constraints).
        loaded: False for fields computed by the loader rather than read from the file.
    """
    meta = {
        "help": help,
        "gt": gt,
        "ge": ge,
        "le": le,
        "pattern": pattern,
        "choices": choices,
        "max_items": max_items,
        "loaded": loaded,
    }
    if default is MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if dataclasses.is_dataclass(tp) or get_origin(tp) is dict:
        return "a mapping"
    if get_origin(tp) is list:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if _is_union(tp):
        return " or ".join(_type_name(a) for a in get_args(tp))
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, str(tp))


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (typing.Union, types.UnionType)


def _convert(tp: Any, value: Any, key: str, f: Field[Any] | None) -> Any:
    """Convert ``value`` to type ``tp`` or raise SchemaError."""
    if _is_union(tp):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, key, f)
            except SchemaError as e:
                errors.append(e)
        # a single non-null option gives the more precise message (e.g. a range error)
        non_null = [o for o in options if o is not type(None)]
        if len(non_null) == 1 and errors:
            raise errors[0]
        msg = f"'{key}' must be {_type_name(tp)}, got {_describe(value)}"
        raise SchemaError(key, msg)
    if get_origin(tp) is Literal:
        allowed = get_args(tp)
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        msg = f"'{key}' is {_describe(value)}{hint}, which is not one of: {', '.join(str(a) for a in allowed)}"
        raise SchemaError(key, msg)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            msg = f"'{key}' must be a mapping of keys to values, got {_describe(value)}"
            raise SchemaError(key, msg)
        return load_dataclass(tp, value, prefix=f"{key}.")  # type: ignore[arg-type]
    if tp is Any:
        return value
    if get_origin(tp) is dict:  # a free-form mapping (provenance): only its type is checked
        if not isinstance(value, dict):
            msg = f"'{key}' must be a mapping of keys to values, got {_describe(value)}"
            raise SchemaError(key, msg)
        return value
    if get_origin(tp) is list:
        if not isinstance(value, list):
            msg = f"'{key}' must be {_type_name(tp)}, got {_describe(value)}"
            raise SchemaError(key, msg)
        limit = f.metadata.get("max_items") if f is not None else None
        if limit is not None and len(value) > limit:
            msg = f"'{key}' holds {len(value)} items, more than the {limit} allowed"
            raise SchemaError(key, msg)
        (item,) = get_args(tp)
        return [_convert(item, v, f"{key}[{i}]", f) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            msg = f"'{key}' must be true or false, got {_describe(value)}"
            raise SchemaError(key, msg)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            msg = f"'{key}' must be an integer, got {_describe(value)}"
            raise SchemaError(key, msg)
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            msg = f"'{key}' must be a number, got {_describe(value)}"
            raise SchemaError(key, msg)
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            msg = f"'{key}' must be a finite number, got {value}"
            raise SchemaError(key, msg)
    elif tp is str:
        if not isinstance(value, str):
            msg = f"'{key}' must be a string, got {_describe(value)}"
            raise SchemaError(key, msg)
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported schema type {tp!r} for {key}")
    if f is not None:
        _check_constraints(value, key, f)
    return value


def _check_constraints(value: Any, key: str, f: Field[Any]) -> None:
    meta = f.metadata
    unit = f" ({meta['help']})" if meta.get("help") else ""
    if meta.get("gt") is not None and not value > meta["gt"]:
        msg = f"'{key}' must be greater than {meta['gt']}{unit}, got {value}"
        raise SchemaError(key, msg)
    if meta.get("ge") is not None and not value >= meta["ge"]:
        msg = f"'{key}' must be at least {meta['ge']}{unit}, got {value}"
        raise SchemaError(key, msg)
    if meta.get("le") is not None and not value <= meta["le"]:
        msg = f"'{key}' must be at most {meta['le']}{unit}, got {value}"
        raise SchemaError(key, msg)
    if meta.get("pattern") is not None and not re.fullmatch(meta["pattern"], value):
        msg = f"'{key}' is {value!r}, which does not match the required form {meta['pattern']}"
        raise SchemaError(key, msg)
    if meta.get("choices") is not None and value not in meta["choices"]:
        close = difflib.get_close_matches(value, meta["choices"], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        msg = f"'{key}' is {value!r}{hint}, which is not one of: {', '.join(meta['choices'])}"
        raise SchemaError(key, msg)


def loaded_fields(cls: type) -> list[Field[Any]]:
    """The fields of ``cls`` that are read from a file (not computed by the loader)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("loaded", True)]


def load_dataclass(cls: type[T], data: dict[str, Any], *, prefix: str = "") -> T:
    """Build ``cls`` from ``data``, strictly.

    Args:
        cls: a dataclass whose fields use :func:`spec`.
        data: parsed mapping.
        prefix: dotted path of ``data`` inside the whole document, for messages.

    Raises:
        SchemaError: the first problem found, as one sentence.
    """
    hints = typing.get_type_hints(cls)
    fields = loaded_fields(cls)
    names = [f.name for f in fields]
    for key in data:
        if key not in names:
            where = f"'{prefix[:-1]}'" if prefix else "the top level"
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            msg = f"unknown key '{prefix}{key}'{hint}; valid keys at {where} are: {', '.join(names)}"
            raise SchemaError(f"{prefix}{key}", msg)
    values: dict[str, Any] = {}
    for f in fields:
        key = f"{prefix}{f.name}"
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                expected = _type_name(hints[f.name])
                msg = f"missing required key '{key}' ({f.metadata.get('help', '')}; expected {expected})"
                raise SchemaError(key, msg)
            continue
        values[f.name] = _convert(hints[f.name], data[f.name], key, f)
    return cls(**values)


def dump_dataclass(obj: Any) -> dict[str, Any]:
    """The loaded fields of a (nested) dataclass as plain data, in declaration order."""
    out: dict[str, Any] = {}
    for f in loaded_fields(type(obj)):
        value = getattr(obj, f.name)
        out[f.name] = dump_dataclass(value) if dataclasses.is_dataclass(value) else value
    return out


def check_depth(value: Any, limit: int = 32) -> None:
    """Refuse data nested deeper than ``limit`` mappings/lists (iteratively: a hostile file cannot overflow the stack).

    Raises:
        SchemaError: naming the depth limit.
    """
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    msg = f"the data is nested more than {limit} levels deep, deeper than any valid file"
                    raise SchemaError("", msg)
                stack.append((child, depth + 1))


# YAML 1.1 (PyYAML) reads 1.0e308 and 1e3 as strings (its float needs a signed exponent); YAML 1.2 and every
# JSON reader take them as numbers, which is what a person writing a profile means.
_YAML_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


def load_yaml(text: str) -> Any:
    """Parse YAML safely and strictly: no tags beyond the safe ones, a duplicated key is an error (PyYAML would keep
    the last value silently), numbers with an unsigned exponent are numbers, and nesting is limited.

    Raises:
        yaml.YAMLError: a syntax error or a duplicated key (with its line).
        SchemaError: nested too deeply.
    """
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicated key {key!r} (a key may appear once per mapping)", key_node.start_mark
                )
            seen[key] = True
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    StrictLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML_FLOAT, list("-+0123456789."))
    try:
        data = yaml.load(text, Loader=StrictLoader)  # a SafeLoader subclass
    except RecursionError as e:
        raise SchemaError("", "the data is nested too deeply to be a valid file") from e
    check_depth(data)
    return data
