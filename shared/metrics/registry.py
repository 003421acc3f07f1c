"""The one place where names of `evaluation.metrics` become Metric objects.

Resolution order of a name, first match wins (the same order as the algorithm registry):
  (a) a class, factory or instance of that name in the use-case folder's metrics.py;
  (b) a built-in, under the original STREAMER class name (a `cea.util.metrics.` prefix is
      accepted) or one of the extra names below;
  (c) a River metric class, `river.metrics.<Name>` or just `<Name>` (Accuracy, MacroF1, ...).
River is imported only for (c): it takes about two seconds.

Output names must be distinct (they become Elasticsearch fields): a repeated spec is built once,
and a second metric with the same output name gets `_2` (then `_3`, ...) and a warning.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from shared.errors import StreamerError
from shared.metrics import classification as cls
from shared.metrics import intervals, probabilistic, regression, show
from shared.metrics.base import Metric, snake_case
from shared.metrics.river_adapter import NOT_SCALAR, RiverMetric
from shared.metrics.user import METRICS_FILE, UserMetric, find_user_metric, user_metric_names
from shared.usercode import searched_place

if TYPE_CHECKING:
    from shared.config import UseCase
    from shared.metrics.evaluation import MetricSet

log = logging.getLogger(__name__)

T = TypeVar("T")

Factory = Callable[[int | None], Metric]

BUILTINS: dict[str, Factory] = {
    # original STREAMER names (cea.util.metrics)
    "AccuracyBinaryClassificationMetric": lambda n: cls.BinaryAccuracy(),
    "PrecisionBinaryClassificationMetric": lambda n: cls.BinaryPrecision(),
    "SensitivityBinaryClassificationMetric": lambda n: cls.BinaryRecall(),
    "F1scoreBinaryClassificationMetric": lambda n: cls.BinaryF1(),
    "AccuracyMultiClassClassificationMetric": lambda n: cls.MultiClassAccuracy(n),
    "PrecisionMultiClassClassificationMetric": lambda n: cls.MacroPrecision(n),
    "SensitivityMultiClassClassificationMetric": lambda n: cls.MacroRecall(n),
    "F1scoreMultiClassClassificationMetric": lambda n: cls.MacroF1(n),
    "MeanAbsoluteErrorMetric": lambda n: regression.MeanAbsoluteError(),
    "MeanSquareErrorMetric": lambda n: regression.MeanSquaredError(),
    "RootMeanSquareErrorMetric": lambda n: regression.RootMeanSquaredError(),
    "MeanAbsolutePercentageError": lambda n: regression.MeanAbsolutePercentageError(),
    "RSquaredMetric": lambda n: regression.RSquared(),
    "AccuracyMetricRegression": lambda n: regression.RegressionAccuracy(),
    "CMAPSSScore": lambda n: regression.CMAPSSScore(),
    "AverageCoverageError": lambda n: intervals.AverageCoverageError(),
    "PredictionIntervalNormAvWidth": lambda n: intervals.NormalizedAverageWidth(),
    "PredictionIntervalNormRootWidth": lambda n: intervals.NormalizedRootMeanSquareWidth(),
    "ShowOutputs": lambda n: show.ShowOutputs(),
    "ShowTargets": lambda n: show.ShowTargets(),
    # extra (no original counterpart)
    "PredictionIntervalCoverageProbability": lambda n: intervals.CoverageProbability(),
    # of the class probabilities outputs carry (output.probabilities)
    "ROCAUCMetric": lambda n: probabilistic.ROCAUC(),
    "LogLossMetric": lambda n: probabilistic.LogLoss(),
    "CalibrationMetric": lambda n: probabilistic.Calibration(),
    "BinaryCalibrationMetric": lambda n: probabilistic.BinaryCalibration(),
}

# Original names that cannot fit the (target, output) contract, and why.
UNSUPPORTED: dict[str, str] = {
    "ShowCMAPSSUnit": "it showed a record feature (unit_nr), not a target or an output",
    "ShowCMAPSSTimeCycles": "it showed a record feature (time_cycles), not a target or an output",
}

ORIGINAL_PREFIX = "cea.util.metrics."
RIVER_PREFIX = "river.metrics."


def build_metrics(
    names: Iterable[str], classes_number: int | None = None, folder: Path | None = None
) -> list[Metric]:
    """The metrics of `names`, in order, each once, with distinct output names."""
    built: list[Metric] = []
    specs: set[str] = set()
    owners: dict[str, str] = {}  # output name -> spec
    for raw in names:
        spec = raw.strip()
        key = spec.removeprefix(ORIGINAL_PREFIX)
        if not key or key in specs:
            continue
        specs.add(key)
        metric = build_metric(spec, classes_number, folder)
        wanted = metric.name
        if wanted in owners:
            suffix = 2
            while f"{wanted}_{suffix}" in owners:
                suffix += 1
            metric.name = f"{wanted}_{suffix}"
            log.warning(
                "metrics %s and %s both produce %r: the second is reported as %r",
                owners[wanted],
                spec,
                wanted,
                metric.name,
            )
        owners[metric.name] = spec
        built.append(metric)
    return built


def build_metric(
    spec: str, classes_number: int | None = None, folder: Path | None = None
) -> Metric:
    """One metric from its name (see the module docstring for the order)."""
    name = spec.strip().removeprefix(ORIGINAL_PREFIX)
    searched: list[str] = []

    user = find_user_metric(folder, name)
    if user is not None:
        found, path = user
        metric = _from_user_object(found, path, name)
        metric.spec = spec
        return metric
    searched.append(searched_place(folder, METRICS_FILE, name))

    if name in BUILTINS:
        metric = BUILTINS[name](classes_number)
        metric.spec = spec
        return metric
    if name in UNSUPPORTED:
        raise StreamerError(f"metric {spec!r} is not available: {UNSUPPORTED[name]}")
    searched.append("the built-in metrics (original STREAMER names)")

    river_name = name.removeprefix(RIVER_PREFIX)
    found = _river_class(river_name)
    if found is not None:
        metric = RiverMetric(_construct(found, f"river.metrics.{river_name}"))
        metric.spec = spec
        return metric
    searched.append("river.metrics")

    candidates = [*BUILTINS, *_river_names(), *user_metric_names(folder)]
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise StreamerError(f"unknown metric {spec!r}. Looked in: {'; '.join(searched)}.{hint}")


def build_usecase_metrics(usecase: UseCase) -> list[Metric]:
    """The metrics of a use case's `evaluation.metrics`."""
    algs = usecase.algs
    return build_metrics(algs.evaluation_metrics, algs.classes_number, usecase.folder)


def usecase_metric_set(usecase: UseCase) -> MetricSet:
    """The batch/cumulative/window views of a use case's metrics (`evaluation.window` pairs)."""
    from shared.metrics.evaluation import MetricSet

    return MetricSet(build_usecase_metrics(usecase), window=usecase.algs.evaluation_window)


def _from_user_object(found: Any, path: Path, name: str) -> Metric:
    """A Metric subclass or instance as is; River metrics wrapped; anything else a UserMetric."""
    what = f"{path}: {name}"
    if inspect.isclass(found) and issubclass(found, Metric):
        return _construct(found, what)
    if isinstance(found, Metric):  # configured in metrics.py: named after its variable
        metric = found.clone()
        metric.name = snake_case(name)
        return metric
    if _is_river_metric(found):
        if inspect.isclass(found):
            return RiverMetric(_construct(found, what))
        metric = RiverMetric(found)
        metric.name = snake_case(name)
        return metric
    if callable(found):
        return UserMetric(found, path, name)
    if callable(getattr(found, "update", None)) and callable(getattr(found, "get", None)):
        return UserMetric(lambda: copy.deepcopy(found), path, name)
    raise StreamerError(f"{what} is not a metric: it needs update(target, output) and get()")


def _construct(factory: Callable[[], T], what: str) -> T:
    try:
        return factory()
    except TypeError as error:
        raise StreamerError(
            f"{what} cannot be built without parameters ({error}); define it with its "
            f"parameters in the use case's {METRICS_FILE}, e.g. `F2 = FBeta(beta=2)`"
        ) from error
    except Exception as error:
        raise StreamerError(f"{what}() failed: {type(error).__name__}: {error}") from error


def _is_river_metric(found: Any) -> bool:
    module = getattr(found if inspect.isclass(found) else type(found), "__module__", "")
    if not module.startswith("river."):
        return False
    from river.metrics.base import Metric as RiverBase

    return (inspect.isclass(found) and issubclass(found, RiverBase)) or isinstance(found, RiverBase)


def _river_class(name: str) -> Any:
    if not name.isidentifier() or name in NOT_SCALAR:
        return None
    from river import metrics
    from river.metrics.base import Metric as RiverBase

    found = getattr(metrics, name, None)
    if inspect.isclass(found) and issubclass(found, RiverBase) and not inspect.isabstract(found):
        return found
    return None


def _river_names() -> list[str]:
    from river import metrics

    return [name for name in dir(metrics) if _river_class(name) is not None]
