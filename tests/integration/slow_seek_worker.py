"""A worker slowed where a rebalance can overtake it: run as a script by the integration tests.

- ``SEEK_DELAY_S``: Faust's look-up of the committed offsets after a rebalance takes that much
  longer. Faust resumes a partition's fetching before that look-up
  (``Recovery.on_recovery_completed``), so the records of a partition that came back from
  another worker reach the agent while Faust's record of the partition's committed offset is
  still whatever it held before; the delay widens that window, which load opens by chance.
- ``COMMIT_DELAY_S``: each commit of offsets (Faust's consumer commit, or a transaction) waits
  that long first, so a rebalance likely begins while one is under way.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from faust import Worker
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from decay.settings import Settings
from stream_app import transactions
from stream_app.app import create_app


def main() -> None:
    settings = Settings()
    seek_delay = float(os.environ.get("SEEK_DELAY_S", "0"))
    commit_delay = float(os.environ.get("COMMIT_DELAY_S", "0"))
    perform_seek = faust_consumer.Consumer.perform_seek
    consumer_commit = faust_aiokafka.Consumer._commit
    transaction_commit = transactions.PartitionTransactions.commit

    async def slow_seek(self: Any) -> None:
        await asyncio.sleep(seek_delay)
        await perform_seek(self)

    async def slow_consumer_commit(self: Any, offsets: Any) -> bool:
        await asyncio.sleep(commit_delay)
        return await consumer_commit(self, offsets)

    async def slow_transaction(self: Any, *args: Any) -> None:
        await asyncio.sleep(commit_delay)
        await transaction_commit(self, *args)

    faust_consumer.Consumer.perform_seek = slow_seek  # type: ignore[method-assign]
    faust_aiokafka.Consumer._commit = slow_consumer_commit  # type: ignore[method-assign]
    transactions.PartitionTransactions.commit = slow_transaction  # type: ignore[method-assign]
    built = create_app(settings)
    Worker(built.app, loglevel=settings.log_level).execute_from_commandline()


if __name__ == "__main__":
    main()
