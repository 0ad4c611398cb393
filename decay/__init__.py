"""The pure core that the worker (``stream_app``) and training both import: the event contract
(``events``), per-user state and window (``state``, ``window``), the one feature encoder
(``features``), the decay maths (``survival``), scorers (``scoring``), category interest
(``categories``), alerts (``alerts``), the model card (``card``), settings (``settings``),
durations in milliseconds (``durations``), event logs (``eventlog``) and the simulator
(``simulate``). No Faust, no Kafka clients, no command line: tests/unit/test_layers.py checks
it. The ``decay`` command lives in decay_cli; ``python -m decay`` runs it."""
