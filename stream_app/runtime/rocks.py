"""RocksDB for the state table with one memory budget for all its partitions.

Faust opens one RocksDB per partition and gives each its own block cache and memtables, so a
worker's RocksDB memory grows with the partitions it holds (4 x 32 MB of cache filled only after
~45 minutes of the soak, bench/README.md run 6). Here all partitions' DBs of a table share one
LRU block cache, and their memtables are charged to it through one RocksDB write-buffer
manager: the table's RocksDB memory is about ``cache_mb`` whatever the partition count (RocksDB
holds these limits softly, a little over at times; index and filter blocks stay outside the
cache and grow with the data).
"""

from __future__ import annotations

from typing import Any

import faust
import rocksdict
from faust.stores import rocksdb as faust_rocksdb
from faust.types import StoreT

CACHE_MB = "decay_cache_mb"  # table option: the shared budget (MB); Faust's own keys pass on


class SharedMemoryOptions(faust_rocksdb.RocksDBOptions):
    """Faust's rocksdict options, with the cache and the write-buffer manager shared."""

    def __init__(self, cache_mb: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cache = rocksdict.Cache(cache_mb * 2**20)
        # Memtables may take up to half the budget; their memory is reserved in the cache.
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            cache_mb * 2**20 // 2, False, self.cache
        )

    def as_options(self) -> rocksdict.Options:
        options = super().as_options()  # Faust's settings: bloom filter, index, file sizes
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_block_cache(self.cache)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        options.set_write_buffer_manager(self.write_buffers)
        return options


class StateTable(faust.Table):
    """A Faust table whose RocksDB store shares one memory budget when its options give one."""

    def _new_store_by_url(self, url: Any) -> StoreT:
        store = super()._new_store_by_url(url)
        cache_mb = (self.options or {}).get(CACHE_MB)
        # Only the rocksdict driver (the one installed): python-rocksdb takes other options.
        if cache_mb and isinstance(store, faust_rocksdb.Store) and store.use_rocksdict:
            # The store opens its partitions' DBs later, each with these options.
            options = {k: v for k, v in (store.options or {}).items() if k != CACHE_MB}
            store.rocksdb_options = SharedMemoryOptions(
                int(cache_mb), **options, use_rocksdict=True
            )
        return store
