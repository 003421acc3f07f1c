"""The `streamer` command: one subcommand per service, plus configuration tools.

Each service runs as its own process (`streamer produce`, `streamer launch`, ...); they talk only
through Kafka topics and Redis keys, so Compose runs one container per subcommand.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shared.config import ConnectionSettings, UseCase, load_usecase
from shared.errors import StreamerError
from shared.health import REQUIRED_SERVICES
from shared.logs import configure_logging

app = typer.Typer(
    help="STREAMER: run online machine learning on live streams.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect and check use-case configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
federate_app = typer.Typer(help="Federated learning across sites (Flower).", no_args_is_help=True)
app.add_typer(federate_app, name="federate")

UseCases = Annotated[
    list[str],
    typer.Argument(help="Use-case names (folders under usecases/) or paths; `a,b` is two."),
]
ServiceUseCases = Annotated[
    list[str] | None,
    typer.Argument(help="Use-case names (folders under usecases/) or paths; `a,b` is two."),
]
Check = Annotated[
    bool,
    typer.Option(
        "--check",
        help="Healthcheck: exit 0 when this host runs the service (its heartbeat in Redis).",
    ),
]
err = Console(stderr=True)


def _report(error: StreamerError) -> None:
    for line in str(error).splitlines():
        err.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)


def _fail(error: StreamerError) -> typer.Exit:
    _report(error)
    return typer.Exit(code=error.exit_code)


def split_refs(refs: list[str] | None) -> list[str]:
    """`a,b c` names three use cases: Compose passes the list as one argument."""
    return [ref.strip() for item in refs or [] for ref in item.split(",") if ref.strip()]


def _load_all(refs: list[str]) -> list[UseCase]:
    """Load every named use case, reporting the problems of all of them before exiting."""
    refs = split_refs(refs)
    if not refs:
        err.print("[bold red]error:[/] name at least one use case (a folder under usecases/)")
        raise typer.Exit(code=2)
    connections = ConnectionSettings()
    loaded: list[UseCase] = []
    failures: list[StreamerError] = []
    for ref in refs:
        try:
            loaded.append(load_usecase(ref, connections))
        except StreamerError as error:
            failures.append(error)
    for failure in failures:
        _report(failure)
    if failures:
        raise typer.Exit(code=max(failure.exit_code for failure in failures))
    return loaded


@config_app.command("validate")
def config_validate(usecases: UseCases) -> None:
    """Print the resolved configuration of each use case, or every error found (exit status 2)."""
    configure_logging("WARNING", json_lines=False)
    for usecase in _load_all(usecases):
        typer.echo(json.dumps(usecase.resolved(), indent=2))


def _check(service: str) -> None:
    """Exit 0 when a `service` of this host is beating in Redis, else 1 (a container's
    healthcheck runs beside the service, on the same hostname)."""
    import asyncio

    from redis.exceptions import RedisError

    from shared.clients.redis import connect_redis
    from shared.health import check_this_host

    async def check() -> tuple[bool, str]:
        redis = connect_redis(ConnectionSettings(), max_connections=1)
        try:
            async with asyncio.timeout(8):  # within a Compose healthcheck's timeout
                return await check_this_host(redis, service)
        except (OSError, RedisError, TimeoutError) as error:
            return False, f"{service}: Redis does not answer: {error}"
        finally:
            await redis.aclose()

    healthy, line = asyncio.run(check())
    typer.echo(line)
    raise typer.Exit(code=0 if healthy else 1)


def _serve(
    refs: list[str] | None, module: str, service: str, check: bool, **options: object
) -> None:
    """Load the use cases, then run the service module's `run(usecases, **options)` until
    stopped; or, with --check, say whether this host's instance is healthy."""
    import asyncio
    import importlib

    from shared.runtime import tune_garbage_collector

    if check:
        _check(service)
    configure_logging()
    loaded = _for_service(_load_all(refs or []), service)
    runner = importlib.import_module(module)
    tune_garbage_collector()
    try:
        asyncio.run(runner.run(loaded, **options))
    except StreamerError as error:
        raise _fail(error) from None


def _for_service(loaded: list[UseCase], service: str) -> list[UseCase]:
    """The use cases `service` runs for: a federated server's only with `federate`, every
    other one with the pipeline's services (one list of use cases, as Compose passes it, serves
    every container). Exits 2 when none is left, naming what is missing."""
    servers = service == "federate"
    kept = [usecase for usecase in loaded if usecase.is_federated_server == servers]
    if not kept:
        names = ", ".join(usecase.name for usecase in loaded)
        wanted = "a federated server use case (federated.props without server.address)"
        if not servers:
            wanted = (
                "a use case that is not a federated server (those run `streamer federate server`)"
            )
        err.print(f"[bold red]error:[/] {service}: {names}: none is {wanted}")
        raise typer.Exit(code=2)
    if servers and len(kept) > 1:
        err.print(f"[bold red]error:[/] federate: one server per process, got {len(kept)}")
        raise typer.Exit(code=2)
    return kept


FromStart = Annotated[
    bool,
    typer.Option(
        "--from-start",
        help="Replay each datafile from its first line, even the lines its topics already hold.",
    ),
]


@app.command()
def produce(
    usecases: ServiceUseCases = None, check: Check = False, from_start: FromStart = False
) -> None:
    """Replay each use case's datafile into its Kafka topic(s), after the last line they hold."""
    _serve(usecases, "services.producer", "producer", check, from_start=from_start)


@app.command()
def launch(usecases: ServiceUseCases = None, check: Check = False) -> None:
    """Consume the topics, store records, run the current model, publish predictions."""
    _serve(usecases, "services.launcher", "launcher", check)


@app.command()
def train(usecases: ServiceUseCases = None, check: Check = False) -> None:
    """Retrain each use case's model periodically or on request, and publish it in Redis."""
    _serve(usecases, "services.trainer", "trainer", check)


@app.command()
def evaluate(usecases: ServiceUseCases = None, check: Check = False) -> None:
    """Score predictions, watch metrics with detectors, write Elasticsearch documents."""
    _serve(usecases, "services.evaluator", "evaluator", check)


@federate_app.command("server")
def federate_server(
    usecases: Annotated[
        list[str],
        typer.Argument(
            help="A server use case (federated.props without server.address); in a list "
            "(comma-separated), the other use cases are skipped."
        ),
    ],
    check: Check = False,
) -> None:
    """Run the rounds of a federated server use case for the client use cases that name it in
    their server.address (docs/federated.md)."""
    _serve(usecases, "services.federated", "federate", check)


class OfflineSource(StrEnum):
    file = "file"
    influx = "influx"


@app.command()
def offline(
    source: Annotated[OfflineSource, typer.Argument(help="Training data: file or influx.")],
    usecase: Annotated[str, typer.Argument(help="Use-case name or path.")],
    train_model: Annotated[bool, typer.Argument(metavar="TRAIN", help="true/false")] = True,
    test_model: Annotated[bool, typer.Argument(metavar="TEST", help="true/false")] = True,
    model_path: Annotated[Path | None, typer.Argument(help="Model file to write/read.")] = None,
    output_dir: Annotated[Path, typer.Option(help="Where the results CSVs go.")] = Path("."),
) -> None:
    """Train and/or test without Kafka, like the original's AlgInvokerMain_offline."""
    import asyncio

    from services.trainer.offline import run_offline

    configure_logging("WARNING", json_lines=False)
    (loaded,) = _load_all([usecase])
    try:
        report = asyncio.run(
            run_offline(loaded, source.value, train_model, test_model, model_path, output_dir)
        )
    except StreamerError as error:
        raise _fail(error) from None
    typer.echo(json.dumps(report.__dict__, indent=2, default=str))


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    token_env: Annotated[
        str, typer.Option(help="Environment variable holding the API token.")
    ] = "STREAMER_API_TOKEN",
    usecase: Annotated[
        list[str] | None,
        typer.Option(
            help="Use cases /health requires (repeat, or `a,b`; default: every valid one)."
        ),
    ] = None,
    require: Annotated[
        str, typer.Option(help="Services /health requires per use case, comma-separated.")
    ] = ",".join(REQUIRED_SERVICES),
    check: Check = False,
) -> None:
    """Serve health, configuration and metrics over HTTP (FastAPI). Changes need the token;
    without one the API serves on loopback only."""
    import asyncio
    import os

    from services.api.server import serve

    if check:
        _check("api")
    configure_logging()
    required = [name.strip() for name in require.split(",") if name.strip()]
    try:
        asyncio.run(
            serve(
                host,
                port,
                token=os.environ.get(token_env) or None,
                required_services=required,
                health_usecases=split_refs(usecase) or None,
            )
        )
    except StreamerError as error:
        raise _fail(error) from None


@app.command()
def run(
    usecases: UseCases,
    port: Annotated[int, typer.Option(help="Port of the api sidecar (on 127.0.0.1).")] = 8000,
    stop_timeout: Annotated[
        float, typer.Option(help="Seconds each service has to stop before SIGKILL.")
    ] = 30.0,
    log_file: Annotated[
        Path | None, typer.Option(help="Append every line of the run to this file too.")
    ] = None,
) -> None:
    """Run producer, launcher, trainer, evaluator and api as local processes; restart crashed
    ones with backoff; Ctrl-C stops them in order. STREAMER_MODEL_SECRET is generated for the
    run when unset."""
    from services.supervisor import run_pipeline

    configure_logging()
    loaded = list(zip(split_refs(usecases), _load_all(usecases), strict=True))
    # a federated server runs `streamer federate server` only (no topic, launcher or trainer)
    servers = [ref for ref, usecase in loaded if usecase.is_federated_server]
    pipelines = [(ref, usecase) for ref, usecase in loaded if not usecase.is_federated_server]
    code = run_pipeline(
        [ref for ref, _ in pipelines],
        names=[usecase.name for _, usecase in pipelines],
        port=port,
        stop_timeout_s=stop_timeout,
        log_file=log_file,
        servers=servers,
    )
    raise typer.Exit(code=code)


@app.command()
def status(
    url: Annotated[str, typer.Option(help="The sidecar's health endpoint.")] = (
        "http://127.0.0.1:8000/health"
    ),
) -> None:
    """Print the health of every service (from the sidecar, else from Redis heartbeats);
    exit status 1 when a required service is down."""
    import asyncio

    from services.supervisor_status import gather_health, print_health

    try:
        health = asyncio.run(gather_health(url, ConnectionSettings()))
    except StreamerError as error:
        raise _fail(error) from None
    print_health(health)
    raise typer.Exit(code=0 if health.ok else 1)


if __name__ == "__main__":
    app()
