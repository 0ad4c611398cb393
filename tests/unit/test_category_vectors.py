"""The worker's category vectors (stream_app.category_vectors) on the real pinned encoder: the
stored record, each name embedded once and read back after a restart, ``related`` on a
``category_decay`` alert through the processor and the whole in-memory worker, and the pages'
related categories."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from decay import alerts as al
from decay.embeddings import DIMENSION, Encoder, load_encoder
from decay.engagement import Engagement, EngagementRules
from decay.related import Interest, Suggestion, engagement_interest
from decay.scoring import ExponentialDecayScorer
from decay.settings import Settings
from decay.state import UserState, decode_state
from stream_app import category_vectors as cv
from stream_app.alerting import AlertSpec
from stream_app.app import processor_config
from stream_app.category_vectors import CategoryVectors, pack_vector, unpack_vector, vector_key
from stream_app.delivery import Delivery
from stream_app.metrics import Metrics
from stream_app.processor import Processor, ProcessorConfig, Record
from stream_app.queries import describe_user, user_clock
from stream_app.store import MemoryStore
from stream_app.tail import TailWatch
from stream_app.testing import MemoryBatches, MemoryLog, memory_ports
from stream_app.ui import user_page
from stream_app.worker import Worker

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_704_067_200_000  # 2024-01-01
NOW = T0 + 400 * DAY
SCORER = ExponentialDecayScorer(half_life_s=24 * 3600.0)
CONFIG = ProcessorConfig(grace_ms=HOUR, threshold=0.25)
FADING, RISING = "running shoes", "trail running"


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder()


def event(offset: int, user: str, ts: int, category: str) -> bytes:
    body = {"event_id": f"{user}-{offset}", "user_id": user, "ts": ts, "type": "view"}
    return json.dumps({**body, "category": category}).encode()


def drift_log(user: str = "alice", start: int = 0) -> list[tuple[int, str]]:
    """A session a day: running shoes for 8 days, then trail running and, now and then,
    cookware (high for her, unrelated) for 40: running shoes fades."""
    days = [FADING] * 8 + [RISING if d % 4 else "cookware" for d in range(40)]
    return [(T0 + (start + d) * DAY, c) for d, c in enumerate(days)]


def records(log: list[tuple[int, str]], user: str = "alice") -> list[Record]:
    return [Record(0, i, user.encode(), event(i, user, ts, c)) for i, (ts, c) in enumerate(log)]


def test_a_vector_record_round_trips_and_other_records_are_refused() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=DIMENSION).astype(np.float32)
    v /= np.linalg.norm(v)
    kept = cv.round_vector(v)
    raw = pack_vector(kept)
    assert len(raw) == 4 + 2 * DIMENSION  # float16 and the encoder's tag
    back = unpack_vector(raw)
    assert back is not None and np.array_equal(back, kept)
    unit = cv.as_unit(back)
    assert unit.dtype == np.float32 and abs(float(np.linalg.norm(unit)) - 1.0) < 1e-6
    assert float(unit @ v) > 0.9999
    assert unpack_vector(b"\x00\x00\x00\x00" + raw[4:]) is None  # another encoder's
    assert unpack_vector(raw[:-2]) is None and unpack_vector(None) is None
    assert vector_key("running shoes") == "\x00vec:running shoes"


def test_engagement_interest_is_the_share_now_against_the_share_of_all_sessions() -> None:
    rules = EngagementRules(half_life_ms=7 * DAY)
    t = T0 + 14 * DAY
    book = {
        "a": Engagement(activity=4.0, last_ts_ms=T0, visits=8),  # two half-lives ago: 1.0
        "b": Engagement(activity=3.0, last_ts_ms=t, visits=2),
    }
    got = engagement_interest(book, t, sessions=10, rules=rules)
    assert got["a"] == Interest(pytest.approx(0.25), 0.8)
    assert got["b"] == Interest(pytest.approx(0.75), 0.2)
    assert engagement_interest({}, t, 10, rules) == {}
    entry = Suggestion("b", 0.61234, 0.75, True).entry(0.5)
    assert entry == {
        "category": "b", "score": 0.375, "share": 0.75, "similarity": 0.612, "rising": True,
    }  # fmt: skip


def test_each_name_is_embedded_once_and_read_back_after_a_restart(encoder: Encoder) -> None:
    store = MemoryStore()
    vectors = CategoryVectors(encoder)
    proc = Processor(CONFIG, SCORER, store, lambda: NOW, None, vectors)
    batch = [
        Record(0, 0, b"a", event(0, "a", T0, FADING)),
        Record(0, 1, b"a", event(1, "a", T0 + 1, RISING)),
        Record(1, 0, b"b", event(0, "b", T0, FADING)),
        Record(1, 1, b"b", event(1, "b", T0 + 2, "")),  # no category: nothing to embed
    ]
    out = proc.process(batch)
    assert vectors.counts["calls"] == 1 and vectors.counts["embedded"] == 2
    stored = {k for k in out.writes if k[1].startswith(cv.VECTOR_PREFIX)}
    assert stored == {(0, vector_key(FADING)), (0, vector_key(RISING)), (1, vector_key(FADING))}
    for (p, k), v in out.writes.items():
        store.put(p, k, v)
    again = proc.process([Record(0, 2, b"a", event(2, "a", T0 + 3, RISING))])
    assert vectors.counts["calls"] == 1  # known: not embedded again, not written again
    assert not any(k.startswith(cv.VECTOR_PREFIX) for _, k in again.writes)
    # A restarted worker reads them back from the partitions' records.
    fresh = CategoryVectors(encoder)
    restarted = Processor(CONFIG, SCORER, store, lambda: NOW, None, fresh)
    out = restarted.process([Record(1, 2, b"b", event(2, "b", T0 + 4, FADING))])
    assert fresh.counts["embedded"] == 0 and fresh.counts["read"] == 1
    assert not any(k.startswith(cv.VECTOR_PREFIX) for _, k in out.writes)
    assert np.array_equal(fresh.vectors([FADING])[FADING], vectors.vectors([FADING])[FADING])
    # A name another partition holds is written to this one, not embedded again.
    out = restarted.process([Record(1, 3, b"b", event(3, "b", T0 + 5, RISING))])
    assert fresh.counts["embedded"] == 1  # its record is in partition 0 only, not read here
    assert (1, vector_key(RISING)) in out.writes


def test_vectors_are_unit_rows_of_the_encoder_and_the_limit_is_counted(
    encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors = CategoryVectors(encoder)
    got = vectors.vectors(["coffee", "cookware", "coffee"])
    assert set(got) == {"coffee", "cookware"} and vectors.counts["calls"] == 1
    raw = encoder.encode(["coffee"])[0]
    assert got["coffee"].shape == (DIMENSION,) and float(got["coffee"] @ raw) > 0.9999
    monkeypatch.setattr(cv, "MAX_NAMES", 3)
    assert set(vectors.vectors(["tea", "yoga mats", "guitars"])) == {"tea"}
    assert vectors.counts["over_limit"] == 2 and vectors.size == 3
    off = CategoryVectors(None)
    assert not off.enabled and off.vectors(["coffee"]) == {}


def test_a_category_decay_alert_carries_related_categories(encoder: Encoder) -> None:
    store = MemoryStore()
    proc = Processor(CONFIG, SCORER, store, lambda: NOW, None, CategoryVectors(encoder))
    # Bob moves the clock on 3 weeks later: alice is dormant, then back (reengaged).
    back = records(drift_log())
    back.append(Record(0, len(back), b"bob", event(0, "bob", T0 + 70 * DAY, RISING)))
    back.append(Record(0, len(back), b"alice", event(99, "alice", T0 + 71 * DAY, RISING)))
    out = proc.process(back)
    decays = [json.loads(a.payload) for a in out.alerts if a.kind == al.CATEGORY_DECAY]
    assert [a["category"] for a in decays] == [FADING]
    related = decays[0]["related"]
    assert [r["category"] for r in related] == [RISING]  # cookware: high, but unrelated
    assert related[0]["rising"] and 0.5 < related[0]["similarity"] < 0.65
    # scored as the alert is: the user's interest right after the event (1 for this
    # scorer) times the category's share of the user's decayed visits
    assert related[0]["score"] == related[0]["share"] > 0.3
    # The alert as stored in the state, and the other kinds, carry no related field.
    others = [json.loads(a.payload) for a in out.alerts if a.kind != al.CATEGORY_DECAY]
    assert others and all("related" not in a for a in others)
    st = decode_state(out.writes[(0, "alice")])
    assert any(json.loads(s.payload).get("related") == related for s in st.alerts)
    # Without the encoder: the same alert (same id), no related.
    plain = Processor(CONFIG, SCORER, MemoryStore(), lambda: NOW).process(back)
    bare = [json.loads(a.payload) for a in plain.alerts if a.kind == al.CATEGORY_DECAY]
    assert [a["alert_id"] for a in bare] == [decays[0]["alert_id"]] and "related" not in bare[0]


def test_old_alert_records_read_and_empty_related_is_left_out() -> None:
    old = (
        b'{"alert_id":"x","kind":"dormant","user_id":"u","category":null,"score":0.2,'
        b'"peak_score":0.9,"half_life_hours":3.0,"event_time":"2024-01-01T00:00:00.000Z",'
        b'"emitted_at":"2024-01-01T00:00:00.000Z","model_version":"m","reasons":["r"]}'
    )
    alert = al.Alert.from_json(old)
    assert alert.related == [] and "related" not in json.loads(alert.to_json())
    assert json.loads(alert.to_json()) == {**json.loads(old), "explanation": []}
    entry = {"category": "trail running", "score": 0.3}
    with_related = replace(alert, kind=al.CATEGORY_DECAY, related=[entry])
    assert al.Alert.from_json(with_related.to_json()) == with_related
    spec = AlertSpec(al.DORMANT, 0, 0, 0.2)
    assert CategoryVectors(None).relate(spec, UserState()) is spec


def test_the_pages_show_related_categories_of_fading_ones(encoder: Encoder) -> None:
    store = MemoryStore()
    proc = Processor(CONFIG, SCORER, store, lambda: NOW, None, CategoryVectors(encoder))
    out = proc.process(records(drift_log()))
    for (p, k), v in out.writes.items():
        store.put(p, k, v)
    st = decode_state(store.get(0, "alice") or b"")
    clock = user_clock(0, proc.newest_event_ms(0), NOW)
    # A worker that has not seen the names since it started reads them from the partition.
    reader = CategoryVectors(encoder)
    found = reader.fading(st, clock.now_ms, 0, store)
    assert list(found) == [FADING] and [s.category for s in found[FADING]] == [RISING]
    assert reader.counts["embedded"] == 0  # a page never runs the encoder
    body = describe_user("alice", st, SCORER, clock, found)
    entry = body["related"][FADING][0]
    assert entry["category"] == RISING
    assert entry["score"] == pytest.approx(body["interest_now"] * entry["share"], abs=1e-4)
    page = user_page("alice", st, SCORER, 0.25, clock, found)
    assert '<li class="related-now"><b>running shoes</b> faded; related categories still ' in page
    assert '<span class="suggestion">trail running</span>' in page
    assert "related categories still strong: trail running" in page  # the alert's own line
    assert describe_user("alice", st, SCORER, clock)["related"] == {}
    assert CategoryVectors(None).fading(st, clock.now_ms, 0, store) == {}


# -- the whole worker, in memory --------------------------------------------------------------

SETTINGS = Settings(partitions=1, grace_s=3600.0, threshold=0.25, batch_max=1000)


def worker_over(log: MemoryLog, store: MemoryStore, encoder: Encoder) -> Worker:
    ports = memory_ports(log, SETTINGS.events_topic)
    metrics = Metrics.create(CollectorRegistry())
    config = processor_config(SETTINGS)
    vectors = CategoryVectors(encoder, config.engagement, metrics)
    processor = Processor(config, SCORER, store, lambda: NOW, None, vectors)
    delivery = Delivery(SETTINGS, ports.group, ports.producer, processor, store, metrics, {})
    worker = Worker(SETTINGS, ports, processor, delivery, metrics, lambda: NOW, TailWatch(100))
    topics = (SETTINGS.events_topic, SETTINGS.repartition, SETTINGS.erase_topic)
    worker.group.assign(topics, [0])  # type: ignore[attr-defined]
    return worker


def run_batches(worker: Worker, size: int) -> int:
    """Every record of the log, ``size`` at a time; the batches run."""
    batches = worker.batches
    assert isinstance(batches, MemoryBatches)
    for n in range(10_000):  # bounded: every fetch moves the positions on
        fetched = batches.fetch(size)
        if not fetched:
            return n
        assert asyncio.run(worker.handle(fetched))
    raise AssertionError("the log never ran dry")


def sample(worker: Worker, name: str, **labels: str) -> float:
    for metric in worker.metrics.category_names.collect() + worker.metrics.embed_seconds.collect():
        for s in metric.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def test_the_worker_embeds_new_names_once_and_alerts_carry_related(encoder: Encoder) -> None:
    log, store = MemoryLog(1), MemoryStore()
    for i, (ts, category) in enumerate(drift_log()):
        log.append(SETTINGS.events_topic, b"alice", event(i, "alice", ts, category))
    worker = worker_over(log, store, encoder)
    assert run_batches(worker, 5) > 3
    alerts = [json.loads(v) for v in log.values(SETTINGS.alerts_topic)]
    decays = [a for a in alerts if a["kind"] == al.CATEGORY_DECAY]
    assert [a["category"] for a in decays] == [FADING]
    assert [r["category"] for r in decays[0]["related"]] == [RISING]
    # Three names, each embedded in the batch that first named it: three encoder calls
    # (running shoes; trail running and cookware come in one batch of 5).
    embedded = sample(worker, "decay_category_names_total", result="embedded")
    calls = sample(worker, "decay_category_embed_seconds_count")
    assert (embedded, calls) == (3.0, 2.0)
    assert sample(worker, "decay_category_embed_seconds_sum") > 0
    # More batches naming the same categories: nothing embedded again.
    for i, (ts, category) in enumerate(drift_log(start=60)):
        log.append(SETTINGS.events_topic, b"alice", event(100 + i, "alice", ts, category))
    assert run_batches(worker, 5) > 3
    assert sample(worker, "decay_category_names_total", result="embedded") == 3.0
    assert sample(worker, "decay_category_embed_seconds_count") == 2.0
    # A restarted worker on the same state table reads the vectors back.
    asyncio.run(worker.commit_processed())
    for i, (ts, category) in enumerate(drift_log(start=120)):
        log.append(SETTINGS.events_topic, b"alice", event(200 + i, "alice", ts, category))
    restarted = worker_over(log, store, encoder)
    assert run_batches(restarted, 50) > 0
    assert sample(restarted, "decay_category_names_total", result="embedded") == 0.0
    assert sample(restarted, "decay_category_names_total", result="read") == 3.0


def test_without_the_encoder_package_the_worker_says_so_once_and_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The `embed` extra not installed (its model's distribution not found): vectors off,
    one warning naming the extra, and the processor raises the same alerts without related."""
    from decay import embeddings as emb

    absent = replace(emb.MODEL_FILE, distribution="no-such-distribution-x")
    monkeypatch.setattr(emb, "MODEL_FILE", absent)
    with caplog.at_level("WARNING", logger=cv.__name__):
        vectors = CategoryVectors.load(EngagementRules())
    assert not vectors.enabled
    warned = [r.getMessage() for r in caplog.records if r.name == cv.__name__]
    assert len(warned) == 1 and "install the `embed` extra" in warned[0]
    proc = Processor(CONFIG, SCORER, MemoryStore(), lambda: NOW, None, vectors)
    out = proc.process(records(drift_log()))
    decays = [json.loads(a.payload) for a in out.alerts if a.kind == al.CATEGORY_DECAY]
    assert [a["category"] for a in decays] == [FADING] and "related" not in decays[0]
    assert not any(k.startswith(cv.VECTOR_PREFIX) for _, k in out.writes)


class FailingOn:
    """The real encoder, but failing on one name as onnxruntime or the tokenizer might."""

    def __init__(self, encoder: Encoder, bad: str) -> None:
        self.encoder, self.bad, self.calls = encoder, bad, 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.bad in texts:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION")
        return self.encoder.encode(texts)


def test_a_name_the_encoder_fails_on_is_counted_and_the_batch_goes_on(encoder: Encoder) -> None:
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    failing = FailingOn(encoder, "broken name")
    vectors = CategoryVectors(failing, metrics=metrics)  # type: ignore[arg-type]
    proc = Processor(CONFIG, SCORER, MemoryStore(), lambda: NOW, None, vectors)
    batch = [
        Record(0, 0, b"a", event(0, "a", T0, FADING)),
        Record(0, 1, b"a", event(1, "a", T0 + 1, "broken name")),
        Record(0, 2, b"a", event(2, "a", T0 + 2, RISING)),
    ]
    out = proc.process(batch)
    assert out.counts["ok"] == 3 and (0, "a") in out.writes
    stored = {k for _, k in out.writes if k.startswith(cv.VECTOR_PREFIX)}
    assert stored == {vector_key(FADING), vector_key(RISING)}
    assert vectors.counts["failed"] == 1 and vectors.counts["embedded"] == 2
    assert registry.get_sample_value("decay_category_names_total", {"result": "failed"}) == 1
    calls = failing.calls  # the batch's call, then one a name
    assert calls == 4
    # Not tried again: later batches naming it call no encoder, and it has no vector.
    proc.process([Record(0, 3, b"a", event(3, "a", T0 + 3, "broken name"))])
    assert failing.calls == calls and "broken name" not in vectors.vectors(["broken name"])
