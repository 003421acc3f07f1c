"""What services exchange: the one home of every contract that crosses a service boundary.

Services talk only through Kafka topics and Redis keys (and read what others stored in
InfluxDB). Each contract lives here, typed, with its encoder and its validating reader:

- `keys`: every Redis key, built by one function each (no key string anywhere else);
- `kafka`: header names, dead-letter topics, the output message (`Output`) and its codec;
- `store`: model versions (metadata, the `models` stream) and retrain requests;
- `heartbeat`: the heartbeat payload every service writes;
- `influx`: the InfluxDB measurements, with their writers and their readers (no InfluxQL
  anywhere else).

docs/wire-format.md's reference is generated from these models (`reference`, `make docs`);
tests/unit/test_wire_docs.py fails when it is out of date.
"""
