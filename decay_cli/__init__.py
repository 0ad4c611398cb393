"""The ``decay`` command line and what only it uses: the demo, replay of an event log into
Kafka, and the alert feed. It sits on top of every other package (the core ``decay``, the
Kafka adapters ``decay_kafka``, the worker ``stream_app`` and ``training``); nothing imports it
except the tests and the benchmarks."""
