"""The one place where `algorithm=` of algs.props becomes an Algorithm.

Resolution order of the name, first match wins:
  (a) a class (or factory) of that name in the use-case folder's algs.py: an Algorithm subclass,
      or any object with learn_one/predict_one (wrapped like a River model) or fit/predict
      (wrapped like a scikit-learn model);
  (b) a built-in (shared/algorithms/builtin.py);
  (c) `moa.<Name>`: a MOA learner through capymoa (shared/algorithms/moa.py, the moa extra);
  (d) a dotted import path: `river.tree.HoeffdingTreeClassifier`,
      `sklearn.linear_model.SGDClassifier`, or any importable class;
  (e) `ExternalAlgorithm`: train/test commands in any language (shared/algorithms/external.py).
`algorithm.<name>` values are parsed and checked against the constructor (params.py).
With `challengers`, each is resolved the same way (its parameters: `<challenger>.<name>`) and
the use case's algorithm is the champion and its challengers together (contenders.py).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.algorithms.base import Algorithm
from shared.algorithms.builtin import BUILTINS
from shared.algorithms.contenders import Contenders
from shared.algorithms.external import DEFAULT_TIMEOUT_S, ExternalAlgorithm
from shared.algorithms.params import (
    accepted_params,
    construct,
    param_key,
    param_prefix,
    parse_params,
    parse_value,
)
from shared.algorithms.river_algorithm import RiverAlgorithm, is_online_model
from shared.algorithms.sklearn_algorithm import (
    INSTALL_HINT,
    SklearnAlgorithm,
    is_batch_model,
    require_sklearn,
)
from shared.algorithms.usercode import ALGS_FILE, UserAlgorithm, find_user_class
from shared.errors import StreamerError
from shared.usercode import searched_place

if TYPE_CHECKING:
    from shared.config import ConnectionSettings, UseCase

EXTERNAL = "ExternalAlgorithm"
MOA_PREFIX = "moa."
EXTERNAL_PARAMS = ("train", "test", "timeout")


def build_algorithm(usecase: UseCase) -> Algorithm:
    """A fresh, untrained algorithm of the use case (cheap: call it whenever one is needed):
    with `challengers`, the champion and its challengers as one Contenders."""
    algs = usecase.algs
    champion = _build_model(usecase, algs.algorithm, algs.algorithm_params)
    if not algs.challengers:
        return champion
    models = {algs.algorithm: champion}
    for name in algs.challengers:
        with param_prefix(name):
            challenger = _build_model(usecase, name, algs.challenger_params.get(name, {}))
        if challenger.incremental != champion.incremental:
            raise StreamerError(
                f"{usecase.name}: challenger {name} learns "
                f"{'incrementally' if challenger.incremental else 'in batches'} but the "
                f"champion {algs.algorithm} does not: a use case's models learn the same way "
                "(docs/pipeline.md)"
            )
        models[name] = challenger
    return Contenders(models, algs.algorithm)


def _build_model(usecase: UseCase, name: str, params: Mapping[str, str]) -> Algorithm:
    what = name if name == usecase.algs.algorithm else f"challenger {name}"
    return build(
        name,
        params,
        usecase.folder,
        usecase_name=usecase.name,
        connections=usecase.connections,
        classes_number=usecase.algs.classes_number,
        label=None if name == usecase.algs.algorithm else what,
    )


def build(
    name: str,
    params: Mapping[str, str],
    folder: Path | None,
    *,
    usecase_name: str | None = None,
    connections: ConnectionSettings | None = None,
    classes_number: int | None = None,
    label: str | None = None,
) -> Algorithm:
    """Resolve `name` (see the module docstring) and construct it with `params` (strings).
    `classes_number` (classes.number) is for MOA classifiers, which fix it up front; `label`
    says what it is in messages (default `algorithm=<name>`)."""
    usecase_name = usecase_name or (folder.name if folder else "(no use case)")
    what = f"{usecase_name}: {label or f'algorithm={name}'}"
    searched: list[str] = []

    user = find_user_class(folder, name) if folder and name.isidentifier() else None
    if user is not None:
        found, path = user
        return UserAlgorithm(_from_object(found, name, parse_params(params), what), path)
    searched.append(searched_place(folder, ALGS_FILE, name))

    if name in BUILTINS:
        return BUILTINS[name](parse_params(params), what)
    searched.append(f"the built-ins ({', '.join([*BUILTINS, EXTERNAL])})")

    if name.startswith(MOA_PREFIX):  # before imports: JPype makes Java's `moa` importable
        from shared.algorithms.moa import build_moa

        return build_moa(name, parse_params(params), classes_number, what)

    if "." in name:
        found, problem = _import(name)
        if found is not None:
            return _from_object(found, name, parse_params(params), what)
        searched.append(f"the import path {name} ({problem})")

    if name == EXTERNAL:
        return _external(params, folder, usecase_name, connections, what)

    close = difflib.get_close_matches(name, [*BUILTINS, EXTERNAL], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise StreamerError(f"{what}: no such algorithm. Looked in: {'; '.join(searched)}.{hint}")


def _import(dotted: str) -> tuple[Any, str]:
    """The object at a dotted path, or None and why not (the longest importable module wins)."""
    parts = dotted.split(".")
    problem = "not importable"
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            found: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if parts[0] == "sklearn" and error.name == "sklearn":
                raise StreamerError(f"algorithm={dotted}: {INSTALL_HINT}") from error
            problem = f"no module {error.name}"
            continue
        except ImportError as error:
            return None, f"import of {module_name} failed: {error}"
        try:
            for attribute in parts[cut:]:
                found = getattr(found, attribute)
        except AttributeError:
            return None, f"module {module_name} has no {'.'.join(parts[cut:])}"
        return found, ""
    return None, problem


def _from_object(found: Any, name: str, values: dict[str, Any], what: str) -> Algorithm:
    """Construct `found` (a class or factory) and wrap what it makes as needed."""
    label = name
    if inspect.isclass(found) and issubclass(found, Algorithm):
        algorithm = construct(found, values, what)
        if algorithm.name == Algorithm.name:
            algorithm.name = label
        return algorithm
    if not callable(found):
        raise StreamerError(f"{what}: {found!r} is not a class")
    if is_batch_model(found) and not is_online_model(found):
        return _sklearn(found, label, values, what)
    obj = construct(found, values, what)
    if isinstance(obj, Algorithm):  # a factory function that returns one
        return obj
    if is_online_model(obj):
        return RiverAlgorithm(obj, label, values)
    if is_batch_model(obj):
        return SklearnAlgorithm(obj, label, params=values)
    raise StreamerError(
        f"{what}: {label} is not an algorithm: it needs learn_one and predict_one (River style), "
        "fit and predict (scikit-learn style), or to subclass shared.algorithms.base.Algorithm"
    )


def _sklearn(cls: Any, label: str, values: dict[str, Any], what: str) -> SklearnAlgorithm:
    """`classes` is ours (for partial_fit) unless the estimator itself takes it."""
    require_sklearn()
    values = dict(values)
    accepted = accepted_params(cls)
    classes = values.pop("classes", None) if accepted is not None else None
    if accepted is not None and "classes" in accepted and classes is not None:
        values["classes"], classes = classes, None
    estimator = construct(cls, values, what)
    validate = getattr(estimator, "_validate_params", None)
    if callable(validate):
        try:
            validate()
        except (TypeError, ValueError) as error:
            raise StreamerError(f"{what}: bad parameters: {error}") from error
    return SklearnAlgorithm(estimator, label, classes=classes, params=values)


def _external(
    params: Mapping[str, str],
    folder: Path | None,
    usecase_name: str,
    connections: ConnectionSettings | None,
    what: str,
) -> ExternalAlgorithm:
    unknown = sorted(set(params) - set(EXTERNAL_PARAMS))
    if unknown:
        raise StreamerError(
            f"{what}: unknown parameter {param_key(unknown[0])}; valid parameters: "
            f"{', '.join(EXTERNAL_PARAMS)}"
        )
    timeout = parse_value(params["timeout"]) if "timeout" in params else DEFAULT_TIMEOUT_S
    if connections is None:
        from shared.config import ConnectionSettings

        connections = ConnectionSettings()
    password = connections.redis_password
    return ExternalAlgorithm(
        usecase_name,
        train=params.get("train", ""),
        test=params.get("test", ""),
        folder=folder,
        timeout=timeout,
        redis_url=connections.redis_url,
        redis_password=password.get_secret_value() if password else None,
    )
