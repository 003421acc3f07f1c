"""Elasticsearch client. Callers must `await client.close()` (else aiohttp warns of unclosed
sessions, elasticsearch-py #2349); `ensure_close` in services' shutdown does it."""

from __future__ import annotations

from elastic_transport import TransportError
from elasticsearch import AsyncElasticsearch

from shared.config.settings import ConnectionSettings
from shared.errors import ServiceUnavailableError


def connect_elasticsearch(settings: ConnectionSettings) -> AsyncElasticsearch:
    auth = None
    if settings.es_user and settings.es_password:
        auth = (settings.es_user, settings.es_password.get_secret_value())
    return AsyncElasticsearch(
        settings.es_url, basic_auth=auth, request_timeout=10, max_retries=3, retry_on_timeout=True
    )


async def check_elasticsearch(client: AsyncElasticsearch, url: str) -> None:
    """Raise ServiceUnavailableError naming Elasticsearch when the cluster is not usable."""
    try:
        health = await client.cluster.health(wait_for_status="yellow", timeout="5s")
    except (TransportError, OSError) as error:
        raise ServiceUnavailableError("Elasticsearch", url, error) from error
    if health["status"] == "red":
        raise ServiceUnavailableError("Elasticsearch", url, "cluster status is red")
