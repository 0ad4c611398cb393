"""Everything of the worker that reaches into Faust's, mode's and aiokafka's internals.

Nothing outside this folder uses a private name of another library (tests/unit/
test_runtime_contract.py checks it, and pins every private name used here, so that an upgrade
of faust-streaming, mode-streaming or aiokafka fails a test instead of changing behaviour):

- ``changelog_send``: the state table's changelog written a batch at a time;
- ``intake``: the events topic taken whole from each fetch (Faust's drain loop replaced);
- ``offsets``: the worker's own commits against Faust's consumer, the gap and tail readers;
- ``record_batch``: aiokafka record batches as large as their topic takes;
- ``rocks``: one RocksDB memory budget for all partitions of the state table;
- ``table_store``: the Faust table as the processor's store, addressed by partition.
"""
