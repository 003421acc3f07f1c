"""Where evaluation results go: Elasticsearch documents with declared mappings (documents.py),
the buffered idempotent writer (elastic.py) and the reader of the Kibana dashboard's saved
objects that keeps the dashboard and the mappings in step (kibana.py)."""

from __future__ import annotations

from shared.sinks.documents import INDICES, IndexSpec, document_id, validate_document
from shared.sinks.elastic import DEFAULT_PREFIX, ElasticSink, SinkStats, ensure_templates

__all__ = [
    "DEFAULT_PREFIX",
    "INDICES",
    "ElasticSink",
    "IndexSpec",
    "SinkStats",
    "document_id",
    "ensure_templates",
    "validate_document",
]
