"""Kafka adapters shared by the worker (``stream_app``) and the command line (``decay_cli``):
how every aiokafka client connects (``kafka_client``), the topics and their settings
(``topics``), and control of the local broker that deploy/kafka/kafka.sh runs
(``kafka_broker``). It imports the core ``decay`` and aiokafka, never the worker or the CLI."""
