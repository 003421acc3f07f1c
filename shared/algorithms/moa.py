"""MOA learners as Algorithms: `algorithm=moa.HoeffdingTree` (through capymoa, in a JVM).

MOA is the reference library of online learning; capymoa ships its jar and starts it in this
process through JPype. Optional: `pip install -e '.[moa]'` and a Java runtime (11 or newer).

Names: `moa.<Name>` is a MOA learner that capymoa wraps, as capymoa names it
(`moa.HoeffdingTree`, `moa.AdaptiveRandomForestClassifier`, `moa.FIMTDD`); a classifier may drop
capymoa's `Classifier` suffix (`moa.AdaptiveRandomForest`, MOA's own name). Classifiers win over
regressors of the same name (NoChange, StochasticGradientTree): `moa.regressor.<Name>` picks
the regressor, `moa.classifier.<Name>` says the other explicitly. Only learners whose learning
happens in MOA are listed (capymoa's scikit-learn and PyTorch ones are not MOA).
`algorithm.<param>` values are the capymoa constructor's keyword arguments, checked by name and
type when the algorithm is built, then by building one (a bad value fails there too).

Schema: MOA needs a header (each attribute's type, nominal values, the class values) before
the first record; STREAMER records are dicts. The rules:
- the features and their types are fixed by the first batch learned (the first `learn_many`,
  or `learn_one`'s record): every name with a value there, in order of appearance; a string
  makes the feature nominal, a number numeric. A feature first seen later is ignored (logged
  once per name). Before the first learning, predictions are None.
- nominal values get indexes in order of appearance while learning, and the header's list of
  values grows with them (MOA's learners index their statistics by value index, so this is
  what an ARFF header listing the same values in that order gives: on KDD, predictions equal
  MOA's own loop on such a file). A value never learned gets the next index when predicting,
  one the model has no statistics for, as MOA sees a listed value it never learned
  (predictions never change the model). A number given to a nominal feature is the category
  `str(number)`.
- a missing feature (absent, None or NaN) is MOA's missing value. A numeric feature given
  text that is not a number is an error naming the feature.
- classification: `classes.number` of algs.props fixes the number of classes up front (MOA's
  learners size their counts by it); labels get class indexes in order of appearance. A label
  beyond that number is not learned: the record is skipped, counted in describe()'s
  `records_skipped` and logged once per label. Regression: the target is a float.
- predictions are MOA's: the class of the highest vote, the first on a tie (Utils.maxIndex),
  so the first label learned when the learner gives no vote; a regressor's first vote (0 when
  none). predict_proba_one is the votes normalised, None when they are all zero.
Models pickle as Java serialization of the learner (its header included) plus this schema, and
load in a fresh process (which starts its own JVM) with identical predictions.

Speed: a batch crosses into the JVM once (MoaBatch.java beside this file loops over its
records in Java), so learn_many/predict_many/predict_learn_many cost a few microseconds of
Python per record and no JPype call per record. The helper is compiled at install time into
the virtualenv (`python -m shared.algorithms.moa compile`; make install and the Docker image
run it). The JVM starts in the process on first use, with capymoa's CAPYMOA_JVM_ARGS (default
-Xmx8g -Xss10M) plus -Xrs, so SIGTERM and SIGINT stay with Python.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.algorithms.base import Algorithm, Features
from shared.algorithms.params import accepted_params, check_params, param_key
from shared.errors import StreamerError

log = logging.getLogger(__name__)

PREFIX = "moa."
CLASSIFIER = "classifier"
REGRESSOR = "regressor"
INSTALL_HINT = (
    "MOA learners need the moa extra (capymoa): pip install -e '.[moa]' (make install does it)"
)
JAVA_HINT = (
    "MOA learners need a Java runtime, 11 or newer (17 is tested): install one (Debian: "
    "apt-get install openjdk-17-jre-headless) and put `java` on PATH or set JAVA_HOME"
)
HELPER_SOURCE = Path(__file__).with_name("MoaBatch.java")
HELPER_CLASS = "streamer.MoaBatch"
CAPYMOA_JVM_ARGS = "-Xmx8g -Xss10M"  # capymoa's default, when CAPYMOA_JVM_ARGS is not set
UNSEEN = "(unseen)"  # the last value of each nominal attribute in MOA's header
COMPILE_COMMAND = f"{Path(sys.executable).name} -m shared.algorithms.moa compile"


def helper_classes_dir() -> Path:
    """Where the compiled helper lives: in the virtualenv, so each install has its own."""
    return Path(sys.prefix) / "share" / "streamer" / "moa-classes"


def moa_jar() -> Path:
    """capymoa's MOA jar, found without importing capymoa (importing it starts the JVM)."""
    configured = os.environ.get("CAPYMOA_MOA_JAR")
    if configured:
        return Path(configured)
    spec = importlib.util.find_spec("capymoa")
    if spec is None or not spec.submodule_search_locations:
        raise StreamerError(INSTALL_HINT)
    return Path(next(iter(spec.submodule_search_locations))) / "jar" / "moa.jar"


def compile_helper(destination: Path | None = None) -> Path:
    """Compile MoaBatch.java against MOA's jar (needs a JDK's javac); returns the folder."""
    destination = destination or helper_classes_dir()
    java_home = os.environ.get("JAVA_HOME")
    javac = shutil.which("javac") or (str(Path(java_home) / "bin" / "javac") if java_home else None)
    if not javac or not Path(javac).exists():
        raise StreamerError("compiling the MOA helper needs a JDK's javac on PATH or in JAVA_HOME")
    destination.mkdir(parents=True, exist_ok=True)
    command = [javac, "--release", "11", "-classpath", str(moa_jar())]
    command += ["-d", str(destination), str(HELPER_SOURCE)]
    subprocess.run(command, check=True)
    return destination


def java_helper() -> Any:
    """The MoaBatch class, in a running JVM with MOA (started on first use, once per process)."""
    with _JVM_LOCK:  # the launcher's and trainer's worker threads may ask at the same time
        return _start_java()


_JVM_LOCK = threading.Lock()


@functools.cache
def _start_java() -> Any:
    classes = helper_classes_dir()
    if not (classes / "streamer" / "MoaBatch.class").is_file():
        raise StreamerError(
            f"the MOA batch helper is not compiled (no {classes}/streamer/MoaBatch.class): "
            f"run `make install` or `{COMPILE_COMMAND}`"
        )
    try:
        import jpype
    except ImportError as error:
        raise StreamerError(INSTALL_HINT) from error
    # -Xrs: SIGTERM and SIGINT stay Python's (the services' graceful stop). Without it, a JVM
    # started after a service installed its handlers takes them and exits at once.
    jvm_args = os.environ.get("CAPYMOA_JVM_ARGS", CAPYMOA_JVM_ARGS)
    if "-Xrs" not in jvm_args.split():
        os.environ["CAPYMOA_JVM_ARGS"] = f"{jvm_args} -Xrs"
    started_here = not jpype.isJVMStarted()
    try:
        import capymoa  # starts the JVM with MOA's jar on its class path
    except ImportError as error:
        if error.name and error.name.split(".")[0] in ("capymoa", "jpype"):
            raise StreamerError(INSTALL_HINT) from error
        raise StreamerError(f"{JAVA_HINT} ({type(error).__name__}: {error})") from error
    except Exception as error:  # capymoa's own error when there is no usable Java
        raise StreamerError(f"{JAVA_HINT} ({type(error).__name__}: {error})") from error
    if started_here and threading.current_thread() is not threading.main_thread():
        # The thread that creates the JVM is its non-daemon "main": left attached when it ends
        # (a worker of asyncio.to_thread), the JVM's shutdown at exit waits for it forever.
        # Detached, it is attached again on its next call, as a daemon like other threads.
        jpype.JClass("java.lang.Thread").detach()
    # A class loader of our own: the JVM may have been started (by capymoa) before we could add
    # our folder to its class path. MOA's classes come from its parent, the system loader.
    url = jpype.JClass("java.io.File")(str(classes)).toURI().toURL()
    loader = jpype.JClass("java.net.URLClassLoader")(
        [url], jpype.JClass("java.lang.ClassLoader").getSystemClassLoader()
    )
    java = jpype.JClass("java.lang.System").getProperty("java.version")
    log.info("MOA: capymoa %s on Java %s", capymoa.__version__, java)
    return jpype.JClass(HELPER_CLASS, loader=loader)


@functools.cache
def learners() -> dict[str, tuple[type, str]]:
    """`classifier.<Name>` / `regressor.<Name>` -> (capymoa class, kind), MOA learners only."""
    java_helper()
    from capymoa import classifier, regressor
    from capymoa.base import MOAClassifier, MOARegressor

    found: dict[str, tuple[type, str]] = {}
    for module, base, kind in (
        (classifier, MOAClassifier, CLASSIFIER),
        (regressor, MOARegressor, REGRESSOR),
    ):
        for name in module.__all__:
            cls = vars(module).get(name)  # torch learners are imported lazily: never MOA ones
            if isinstance(cls, type) and issubclass(cls, base):
                found[f"{kind}.{name}"] = (cls, kind)
    return found


def learner_names() -> list[str]:
    """The names `moa.<Name>` accepts, short where they are not ambiguous."""
    found = learners()
    short = [key.split(".", 1)[1] for key in found]
    return sorted(
        key if short.count(key.split(".", 1)[1]) > 1 and key.startswith(REGRESSOR) else name
        for key, name in zip(found, short, strict=True)
    )


def resolve(name: str, what: str) -> tuple[type, str]:
    """The capymoa class and kind of `moa.<Name>` (see the module docstring)."""
    found = learners()
    short = name.removeprefix(PREFIX)
    candidates = (
        [short]
        if short.startswith((f"{CLASSIFIER}.", f"{REGRESSOR}."))
        else [f"{CLASSIFIER}.{short}", f"{REGRESSOR}.{short}", f"{CLASSIFIER}.{short}Classifier"]
    )
    for candidate in candidates:
        if candidate in found:
            return found[candidate]
    valid = ", ".join(PREFIX + known for known in learner_names())
    raise StreamerError(f"{what}: no such MOA learner; MOA learners: {valid}")


def build_moa(
    name: str, values: Mapping[str, Any], classes_number: int | None, what: str
) -> MOAAlgorithm:
    """A checked, untrained MOA algorithm (the JVM starts here, so a missing Java shows now)."""
    try:
        java_helper()
    except StreamerError as error:
        raise StreamerError(f"{what}: {error}") from error
    cls, kind = resolve(name, what)
    valid = sorted(set(accepted_params(cls) or {}) - {"schema"})
    for parameter in values:
        if parameter not in valid:
            raise StreamerError(
                f"{what}: unknown parameter {param_key(parameter)}; valid parameters: "
                f"{', '.join(valid)}"
            )
    check_params(cls, values, what)
    if kind == CLASSIFIER and classes_number is None:
        raise StreamerError(
            f"{what}: set classes.number in algs.props: MOA fixes the number of classes "
            "before the first record"
        )
    algorithm = MOAAlgorithm(cls, name, kind, dict(values), classes_number)
    try:  # the values' own checks (an unknown split criterion...) happen when MOA builds it
        RecordSchema.probe(kind, classes_number).new_learner(cls, values)
    except Exception as error:
        shown = ", ".join(f"{key}={value!r}" for key, value in values.items()) or "no parameters"
        raise StreamerError(
            f"{what}: bad parameters ({shown}): {type(error).__name__}: {error}"
        ) from error
    return algorithm


class RecordSchema:
    """Feature names, types and nominal values, and class labels, as the MOA header has them
    (the rules are in the module docstring). Pure Python, pickled with the model."""

    def __init__(
        self, features: dict[str, dict[Any, int] | None], kind: str, classes_number: int | None
    ) -> None:
        self.features = features  # name -> {category: index} for nominal ones, None numeric
        self.kind = kind
        self.classes_number = classes_number
        self.labels: list[Any] = []
        self.label_index: dict[Any, int] = {}
        self.columns = list(features.items())
        self.width = len(self.columns) + 1
        self.synced = [0] * len(self.columns)  # nominal values the Java header already lists
        self.labels_synced = 0
        self.ignored: set[str] = set()

    @classmethod
    def fixed_by(
        cls, xs: Sequence[Features], kind: str, classes_number: int | None
    ) -> RecordSchema:
        features: dict[str, dict[Any, int] | None] = {}
        for x in xs:
            for name, value in x.items():
                if name not in features and value is not None:
                    features[name] = {} if isinstance(value, str) else None
        return cls(features, kind, classes_number)

    @classmethod
    def probe(cls, kind: str, classes_number: int | None) -> RecordSchema:
        """A one-feature schema to build a learner on, only to check its parameters."""
        return cls({"x": None}, kind, classes_number)

    def target_name(self) -> str:
        name = "class" if self.kind == CLASSIFIER else "target"
        while name in self.features:
            name += "_"
        return name

    def new_learner(self, cls: type, params: Mapping[str, Any]) -> Any:
        """A fresh MOA learner on this schema's header (nominal values: only UNSEEN for now)."""
        from capymoa.stream import Schema

        target = self.target_name()
        categories: dict[str, list[str]] = {
            name: [UNSEEN] for name, values in self.columns if values is not None
        }
        if self.kind == CLASSIFIER:
            categories[target] = [f"_{index}" for index in range(self.classes_number or 0)]
        schema = Schema.from_custom(
            features=[*self.features, target], target=target, categories=categories
        )
        return cls(schema=schema, **params).moa_learner

    def sync_header(self, learner: Any) -> None:
        """List the nominal values and labels learned since the last call in the header. Each
        nominal attribute keeps UNSEEN last: the index predictions give a value never learned."""
        header = learner.getModelContext()
        for position, (_, values) in enumerate(self.columns):
            if values is not None and len(values) > self.synced[position]:
                listed = header.attribute(position).getAttributeValues()
                new = [str(value) for value in list(values)[self.synced[position] :]]
                listed.set(listed.size() - 1, new[0])
                for value in [*new[1:], UNSEEN]:
                    listed.add(value)
                self.synced[position] = len(values)
        if len(self.labels) > self.labels_synced:
            listed = header.classAttribute().getAttributeValues()
            for index in range(self.labels_synced, len(self.labels)):
                listed.set(index, str(self.labels[index]))
            self.labels_synced = len(self.labels)

    def encode(self, xs: Sequence[Features], ys: Sequence[Any] | None = None) -> np.ndarray:
        """One row per record, values in header order and the class column last: NaN when
        predicting (`ys` None), else the target (NaN: unlabelled or not learnable). Only the
        records learned add nominal values; another value gets the next index, which the model
        has never learned (so a record predicted then learned in one batch is predicted as
        predict_one would, before it is learned).

        On the hot path of learning and predicting launchers and of the trainer: the values are
        gathered by C-level lookups and converted by numpy in one call, and only the few nominal
        columns are walked in Python. A value numpy cannot take sends the batch through
        `encode_checked`, which names the culprit."""
        targets = (
            [math.nan] * len(xs)
            if ys is None
            else [math.nan if y is None else self.target(y) for y in ys]
        )
        names = [name for name, _ in self.columns]
        nominal = [
            (position, categories)
            for position, (_, categories) in enumerate(self.columns)
            if categories is not None
        ]
        rows = [list(map(x.get, names)) for x in xs]
        raw = [[row[position] for row in rows] for position, _ in nominal]
        for row in rows:
            for position, _ in nominal:
                row[position] = 0.0  # placeholders: numpy converts the numeric columns only
        matrix = np.empty((len(xs), self.width), dtype=np.float64)
        try:
            matrix[:, :-1] = rows if rows else np.empty((0, self.width - 1))
        except (TypeError, ValueError):
            return self.encode_checked(xs, ys)
        matrix[:, -1] = targets
        for (position, categories), values in zip(nominal, raw, strict=True):
            column: list[float] = []
            for value, target in zip(values, targets, strict=True):
                index = categories.get(value)
                column.append(
                    index
                    if index is not None
                    else math.nan
                    if value is None
                    else self._category(categories, value, not math.isnan(target))
                )
            matrix[:, position] = column
        known = self.features.keys()
        for x, target in zip(xs, targets, strict=True):
            if not math.isnan(target) and not x.keys() <= known:
                self._note_unknown(x)
        return matrix

    def encode_checked(self, xs: Sequence[Features], ys: Sequence[Any] | None = None) -> np.ndarray:
        """`encode` value by value: the error names the feature and the value it cannot take."""
        rows = []
        columns = self.columns
        known = self.features.keys()
        for row_index, x in enumerate(xs):
            y = None if ys is None else ys[row_index]
            target = math.nan if y is None else self.target(y)
            learning = not math.isnan(target)
            row = []
            for name, categories in columns:
                value = x.get(name)
                if categories is None:
                    if type(value) is not float:
                        value = self._number(name, value)
                elif value is None:
                    value = math.nan
                else:
                    index = categories.get(value)
                    value = (
                        index if index is not None else self._category(categories, value, learning)
                    )
                row.append(value)
            row.append(target)
            rows.append(row)
            if learning and not x.keys() <= known:
                self._note_unknown(x)
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), self.width)

    def target(self, y: Any) -> float:
        """The class index (NaN: not learnable, see the docstring) or the regression target."""
        if self.kind == REGRESSOR:
            try:
                return float(y)
            except (TypeError, ValueError):
                raise StreamerError(f"target {y!r} is not a number (a regressor)") from None
        index = self.label_index.get(y)
        if index is not None:
            return index if index >= 0 else math.nan
        if len(self.labels) >= (self.classes_number or 0):
            log.warning(
                "label %r is beyond classes.number=%s (labels so far: %s): records with it "
                "are not learned; raise classes.number",
                y,
                self.classes_number,
                ", ".join(map(str, self.labels)),
            )
            self.label_index[y] = -1
            return math.nan
        self.label_index[y] = len(self.labels)
        self.labels.append(y)
        return len(self.labels) - 1

    def _number(self, name: str, value: Any) -> float:
        if value is None:
            return math.nan
        if isinstance(value, bool | int | float):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise StreamerError(
                f"feature {name!r} is numeric (fixed by the first records learned) but got "
                f"{value!r}"
            ) from None

    @staticmethod
    def _category(categories: dict[Any, int], value: Any, learning: bool) -> float:
        if isinstance(value, float) and math.isnan(value):
            return math.nan
        if not isinstance(value, str):
            value = str(value)
            if value in categories:
                return categories[value]
        if not learning:
            return len(categories)  # an index the model has never learned
        categories[value] = len(categories)
        return categories[value]

    def _note_unknown(self, x: Features) -> None:
        for name in x.keys() - self.features.keys() - self.ignored:
            self.ignored.add(name)
            log.warning("feature %r first seen after the MOA schema was fixed: ignored", name)


class MOAAlgorithm(Algorithm):
    """A MOA learner (a Java object) with the schema that turns records into its instances."""

    incremental = True

    def __init__(
        self,
        learner_class: type,
        name: str,
        kind: str,
        params: dict[str, Any],
        classes_number: int | None,
    ) -> None:
        self.name = name
        self.learner_class = f"{learner_class.__module__}.{learner_class.__qualname__}"
        self.kind = kind
        self.params = params
        self.classes_number = classes_number
        self.schema: RecordSchema | None = None
        self.learner: Any = None  # the Java learner, built with the schema at the first learning
        self.n_learned = 0
        self.n_skipped = 0

    def learn_one(self, x: Features, y: Any) -> None:
        self.learn_many([x], [y])

    def learn_many(self, xs: Sequence[Features], ys: Sequence[Any]) -> None:
        labelled = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
        schema = self._schema_for(labelled)
        if schema is None:
            return
        matrix = schema.encode([x for x, _ in labelled], [y for _, y in labelled])
        learnable = ~np.isnan(matrix[:, -1])
        if not learnable.all():
            self.n_skipped += int((~learnable).sum())
            matrix = matrix[learnable]
        if len(matrix):
            java_helper().train(self._synced_learner(), _java_doubles(matrix), schema.width)
            self.n_learned += len(matrix)

    def predict_learn_many(self, xs: Sequence[Features], ys: Sequence[Any]) -> list[Any]:
        """Test-then-train in one JVM call: each record's prediction made just before it is
        learned, as predict_one then learn_one per record give (River's progressive validation,
        MOA's evaluation loop), at the speed of a batch. Unlabelled records are only predicted."""
        ys = list(ys)
        schema = self._schema_for([(x, y) for x, y in zip(xs, ys, strict=True) if y is not None])
        if schema is None:
            return self.predict_many(xs)
        rows = schema.encode(xs, ys)
        learnable = ~np.isnan(rows[:, -1])
        labelled = np.fromiter((y is not None for y in ys), dtype=bool, count=len(ys))
        self.n_skipped += int((labelled & ~learnable).sum())
        predicted = self._decode(
            java_helper().predictThenTrain(
                self._synced_learner(), _java_doubles(rows), schema.width, self.kind == REGRESSOR
            )
        )
        if self.n_learned == 0:  # as predict_one: None until a record has been learned
            first = int(learnable.argmax()) if learnable.any() else len(predicted) - 1
            predicted[: first + 1] = [None] * (first + 1)
        self.n_learned += int(learnable.sum())
        return predicted

    def predict_one(self, x: Features) -> Any:
        return self.predict_many([x])[0]

    def predict_many(self, xs: Sequence[Features], ys: Sequence[Any] | None = None) -> list[Any]:
        if self.learner is None or self.schema is None or not xs:
            return [None] * len(xs)
        rows = _java_doubles(self.schema.encode(xs))
        helper = java_helper()
        if self.kind == REGRESSOR:
            return self._decode(helper.predictValues(self.learner, rows, self.schema.width))
        return self._decode(helper.predictClasses(self.learner, rows, self.schema.width))

    def _schema_for(self, labelled: Sequence[tuple[Features, Any]]) -> RecordSchema | None:
        """The schema, fixed by the first labelled records; None until there are some."""
        if self.schema is None and labelled:
            xs = [x for x, _ in labelled]
            self.schema = RecordSchema.fixed_by(xs, self.kind, self.classes_number)
        return self.schema

    def _synced_learner(self) -> Any:
        """The Java learner (built on the first learning), its header listing every value."""
        assert self.schema is not None
        if self.learner is None:
            cls = _capymoa_class(self.learner_class)
            self.learner = self.schema.new_learner(cls, self.params)
        self.schema.sync_header(self.learner)
        return self.learner

    def _decode(self, predicted: Any) -> list[Any]:
        """Java's predictions: class indexes to labels (MOA's own rule: the first of the highest
        votes, so the first label learned when the learner gives no vote), values as floats."""
        values = np.asarray(predicted).tolist()
        if self.kind == REGRESSOR:
            return [None if math.isnan(value) else value for value in values]
        assert self.schema is not None
        labels = self.schema.labels
        return [labels[int(index)] if 0 <= index < len(labels) else None for index in values]

    def predict_proba_one(self, x: Features) -> dict[Any, float] | None:
        """The learner's votes normalised to sum to 1, per label learned; None when it gives
        no vote (nothing learned yet, or only zeros: then predict_one is MOA's first class)."""
        return self.predict_proba_many([x])[0]

    def predict_proba_many(self, xs: Sequence[Features]) -> list[dict[Any, float] | None]:
        """predict_proba_one of each record, the batch crossing into the JVM once."""
        if self.kind != CLASSIFIER or self.learner is None or self.schema is None or not xs:
            return [None] * len(xs)
        labels = self.schema.labels
        rows = _java_doubles(self.schema.encode(xs))
        votes = np.asarray(java_helper().votes(self.learner, rows, self.schema.width, len(labels)))
        answers: list[dict[Any, float] | None] = []
        for row in votes.reshape(len(xs), len(labels)):
            total = float(row.sum())
            if not math.isfinite(total) or total <= 0:
                answers.append(None)
                continue
            answers.append(
                {label: float(vote) / total for label, vote in zip(labels, row, strict=True)}
            )
        return answers

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self.learner is not None:
            state["learner"] = bytes(java_helper().serialize(self.learner))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if isinstance(self.learner, bytes):
            from jpype.types import JArray, JByte

            self.learner = java_helper().deserialize(JArray(JByte)(self.learner))

    def describe(self) -> dict[str, Any]:
        schema = self.schema
        moa_class = str(self.learner.getClass().getName()) if self.learner is not None else None
        return {
            **super().describe(),
            "kind": self.kind,
            "estimator": self.learner_class,
            "moa_class": moa_class,
            "params": {name: repr(value) for name, value in self.params.items()},
            "library": f"capymoa {_capymoa_version()}",
            "records_learned": self.n_learned,
            "records_skipped": self.n_skipped,
            "features": len(schema.features) if schema else None,
            "labels": [str(label) for label in schema.labels] if schema else [],
        }


def _capymoa_class(path: str) -> type:
    java_helper()
    module, _, name = path.rpartition(".")
    found: type = getattr(importlib.import_module(module), name)
    return found


def _capymoa_version() -> str:
    from importlib.metadata import version

    return version("capymoa")


def _java_doubles(matrix: np.ndarray) -> Any:
    from jpype.types import JArray, JDouble

    return JArray(JDouble)(np.ascontiguousarray(matrix).ravel())


def main(argv: Sequence[str]) -> int:
    """`python -m shared.algorithms.moa compile [FOLDER]`: what make install runs."""
    if not argv or argv[0] != "compile" or len(argv) > 2:
        print(f"usage: {COMPILE_COMMAND} [FOLDER]", file=sys.stderr)
        return 2
    try:
        folder = compile_helper(Path(argv[1]) if len(argv) > 1 else None)
    except (StreamerError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"compiled {HELPER_CLASS} into {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
