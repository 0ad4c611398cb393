"""Create the app's topics explicitly (the broker never auto-creates them)."""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from decay.kafka_client import client_kwargs
from decay.settings import Settings

log = logging.getLogger(__name__)

STATE_TABLE = "user-state"  # the worker's Faust table


def changelog_topic(settings: Settings) -> str:
    """The state table's changelog, named as Faust names it."""
    return f"{settings.app_id}-{STATE_TABLE}-changelog"


async def ensure_topics(settings: Settings, replication: int = 1) -> list[str]:
    """Create the app's topics when missing; returns those created. The erase topic has the
    events topic's partition count: a user's erase request must reach the worker that holds
    the user's state. The state changelog (compacted) is made here too: when Faust declares
    it at the worker's start, a first batch can meet it in the consumer's metadata with 0
    partitions and stop the worker (PartitionsMismatch, seen in `make demo`)."""
    names = [
        settings.events_topic,
        settings.alerts_topic,
        settings.dead_letter_topic,
        settings.erase_topic,
    ]
    if settings.scores_topic:
        names.append(settings.scores_topic)
    names.append(changelog_topic(settings))
    compacted = {"cleanup.policy": "compact"}
    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker won the race
                await admin.create_topics(
                    [
                        NewTopic(
                            n,
                            settings.partitions,
                            replication,
                            topic_configs=compacted if n == changelog_topic(settings) else {},
                        )
                        for n in missing
                    ]
                )
            log.info("created topics %s with %d partitions", missing, settings.partitions)
        return missing
    finally:
        await admin.close()
