"""The original STREAMER's log files, per use case under logs/<usecase>/, now with timestamps
and levels: metricsLog (metric values), infoLog (alerts, model versions), errorLog (problems),
displayLogTrain and displayLogTest (what the original displayed while training/testing)."""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

FILES = ("metricsLog", "infoLog", "errorLog", "displayLogTrain", "displayLogTest")
FORMAT = "%(asctime)s %(levelname)s [%(usecase)s] %(message)s"
MAX_BYTES = 50 * 1024 * 1024


class UseCaseLogs:
    """One logger per file; each line carries the use case, the time and the level."""

    def __init__(self, root: Path, usecase: str):
        self.folder = root / usecase
        self.folder.mkdir(parents=True, exist_ok=True)
        self.usecase = usecase
        self.loggers: dict[str, logging.Logger] = {}
        for name in FILES:
            logger = logging.getLogger(f"streamer.files.{usecase}.{name}")
            logger.propagate = False  # these lines go to the files, not to stdout twice
            logger.setLevel(logging.INFO)
            if not logger.handlers:
                handler = RotatingFileHandler(
                    self.folder / name, maxBytes=MAX_BYTES, backupCount=3, encoding="utf-8"
                )
                handler.setFormatter(logging.Formatter(FORMAT))
                logger.addHandler(handler)
            self.loggers[name] = logger

    def write(self, file: str, message: str, level: int = logging.INFO) -> None:
        self.loggers[file].log(level, message, extra={"usecase": self.usecase})

    def close(self) -> None:
        for logger in self.loggers.values():
            for handler in list(logger.handlers):
                handler.close()
                logger.removeHandler(handler)
