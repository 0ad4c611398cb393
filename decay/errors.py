"""The project's one exception root.

Every error the project raises on purpose derives from :class:`DecayError`, and from the
builtin it is a kind of, so that ``except ValueError`` around a parse still works::

    DecayError
    ├── EventLogError (ValueError)            decay.eventlog: an event log that cannot be read
    ├── StateError (ValueError)               decay.state: a stored record that cannot be decoded
    ├── TrendStateError (ValueError)          decay.trends: a stored trend record unreadable
    ├── CardError (ValueError)                decay.card: a model card missing or malformed
    ├── EncoderUnavailable (RuntimeError)     decay.embeddings: the sentence encoder's packages
    ├── KafkaBrokerError (RuntimeError)       decay_kafka.kafka_broker: the local broker failed
    ├── KafkaAuthError (RuntimeError)         decay_kafka.kafka_client: credentials refused
    ├── KafkaUnreachableError (RuntimeError)  decay_kafka.kafka_client: no broker answers
    ├── WorkerProcessError (RuntimeError)     decay_cli.worker_process: a child worker failed
    ├── ModelUnavailableError (RuntimeError)  stream_app.rollout: no model to start with
    ├── ModelMismatchError (RuntimeError)     stream_app.onnx_scorer: a model for other features
    │   └── UnknownStateLayoutError           stream_app.lapse_scorer: a step model's state
    ├── ProcessorHalted (RuntimeError)        stream_app.batch: a batch failed before its
    ├── ProducerNotReady (RuntimeError)       stream_app.runtime.faust_ports: nothing to send by
    └── ExportError (RuntimeError)            training.export: a model that cannot be exported
"""

from __future__ import annotations


class DecayError(Exception):
    """The root of every error this project raises on purpose."""
