"""The producer service: replays each use case's data file into its Kafka input topics."""

from services.producer.service import ProducerStats, produce_all, run

__all__ = ["ProducerStats", "produce_all", "run"]
