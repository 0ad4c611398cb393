"""A worker in exactly-once mode that SIGKILLs itself inside a transaction: the
``KILL_AT``-th transaction with messages has sent them (and the batch's state is on the
broker) but is not committed. Run as a script by the integration tests."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

from faust import Worker

from decay.settings import Settings
from stream_app.app import create_app
from stream_app.outbox import Outgoing
from stream_app.transactions import PartitionTransactions


def main() -> None:
    settings = Settings()
    kill_at = int(os.environ["KILL_AT"])
    with_messages = [0]
    commit = PartitionTransactions.commit

    async def commit_or_die(
        self: PartitionTransactions,
        partition: int,
        messages: Sequence[Outgoing],
        next_offset: int | None,
    ) -> None:
        with_messages[0] += bool(messages)
        if messages and with_messages[0] >= kill_at:
            producer = await self._producer(partition)
            await producer.begin_transaction()
            for m in messages:
                await producer.send_and_wait(m.topic, m.value, key=m.key)
            os.kill(os.getpid(), signal.SIGKILL)
        await commit(self, partition, messages, next_offset)

    PartitionTransactions.commit = commit_or_die  # type: ignore[method-assign]
    built = create_app(settings)
    Worker(built.app, loglevel=settings.log_level).execute_from_commandline()


if __name__ == "__main__":
    main()
