"""Turn `algorithm.<name>=<value>` strings of algs.props into constructor keyword arguments.

Values are Python literals when they parse (`200`, `0.5`, `True`, `None`, `['a', 'b']`; also
`true`/`false` as props files often spell them), else the string itself. Each name is checked
against the constructor's signature and each value against the type of its default, so a typo
fails when the use case starts, not at the first record.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from shared.errors import StreamerError

T = TypeVar("T")

_BOOLEANS = {"true": True, "false": False}

#: The props-key prefix of the parameters being checked, so that a message names the key the
#: user wrote: `algorithm` (`algorithm.<param>`), or a challenger's name (`<challenger>.<param>`).
_PARAM_PREFIX: ContextVar[str] = ContextVar("param_prefix", default="algorithm")


@contextmanager
def param_prefix(prefix: str) -> Iterator[None]:
    """Messages about parameters built inside the block name `<prefix>.<param>`."""
    token = _PARAM_PREFIX.set(prefix)
    try:
        yield
    finally:
        _PARAM_PREFIX.reset(token)


def param_key(name: str) -> str:
    """The props key of parameter `name` of the algorithm being built."""
    return f"{_PARAM_PREFIX.get()}.{name}"


def parse_value(text: str) -> Any:
    """A literal when `text` is one (`true`/`false` in any case too), else the string."""
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in _BOOLEANS:
        return _BOOLEANS[lowered]
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return stripped


def parse_params(params: Mapping[str, str]) -> dict[str, Any]:
    return {name: parse_value(value) for name, value in params.items()}


def accepted_params(target: Callable[..., Any]) -> dict[str, inspect.Parameter] | None:
    """The keyword parameters of a class or function; None when it takes **kwargs."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    found: dict[str, inspect.Parameter] = {}
    for name, parameter in signature.parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            found[name] = parameter
    return found


def check_params(target: Callable[..., Any], values: Mapping[str, Any], what: str) -> None:
    """Raise StreamerError for a name `target` does not accept or a value of the wrong type.

    `what` names the algorithm in the message (e.g. "kdd-cup-99: algorithm=HoeffdingTree...").
    """
    accepted = accepted_params(target)
    if accepted is None:
        return
    for name, value in values.items():
        if name not in accepted:
            valid = ", ".join(sorted(accepted)) or "none"
            raise StreamerError(
                f"{what}: unknown parameter {param_key(name)}; valid parameters: {valid}"
            )
        problem = _type_problem(accepted[name].default, value)
        if problem:
            raise StreamerError(f"{what}: {param_key(name)}={value!r}: {problem}")


def _type_problem(default: Any, value: Any) -> str | None:
    """A mismatch with the default's type (bool, int, float, str); None when it fits."""
    if default is inspect.Parameter.empty or default is None:
        return None
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        return None
    if ok:
        return None
    return f"expected {type(default).__name__} (default {default!r}), got {type(value).__name__}"


def construct(factory: Callable[..., T], values: Mapping[str, Any], what: str) -> T:
    """Check then call `factory(**values)`; a constructor's own rejection becomes StreamerError."""
    check_params(factory, values, what)
    try:
        return factory(**values)
    except Exception as error:  # whatever the constructor raises, name the parameters
        shown = ", ".join(f"{name}={value!r}" for name, value in values.items()) or "no parameters"
        raise StreamerError(
            f"{what}: bad parameters ({shown}): {type(error).__name__}: {error}"
        ) from error
