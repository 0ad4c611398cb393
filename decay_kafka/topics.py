"""Create the app's topics explicitly (the broker never auto-creates them)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from decay.settings import Settings
from decay_kafka.kafka_client import client_kwargs

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
        settings.repartition,
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


def output_topics(settings: Settings) -> list[str]:
    """The topics the worker writes to."""
    names = [
        settings.alerts_topic,
        settings.dead_letter_topic,
        settings.repartition,
        settings.erase_topic,  # erase requests forwarded to their user's partition
        changelog_topic(settings),
    ]
    return names + ([settings.scores_topic] if settings.scores_topic else [])


async def message_limits(settings: Settings, topics: Sequence[str] | None = None) -> dict[str, int]:
    """``max.message.bytes`` of each of ``topics`` (default: the worker's output topics) that
    exists (the topic's own setting, else the broker's ``message.max.bytes``): the largest
    record batch the broker takes there. The worker sizes its producer and its dead letters
    by them."""
    names = output_topics(settings) if topics is None else list(topics)
    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=15000)
    await admin.start()
    try:
        limit = "max.message.bytes"
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n, {limit: None}) for n in names]
        )
    finally:
        await admin.close()
    limits = {}
    for response in responses:
        for error_code, _, _, name, entries in response.resources:
            if error_code == 0:
                for key, value, *_ in entries:
                    if key == limit:
                        limits[name] = int(value)
    unknown = sorted(set(names) - set(limits))
    if unknown:  # missing, or not ours to describe: record batches stay small there
        log.warning("max.message.bytes not readable for topics %s: 16 KB batches", unknown)
    return limits
