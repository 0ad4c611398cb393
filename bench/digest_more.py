"""``bench/processor.py --digest`` over more of the processor's paths: the same spoiled records
plus a price beyond float32 every 211th (a dead letter), every 5th batch led by the previous
batch's last 3 records again (redelivered: same offsets), every 7th missing its second record
(a gap: the record comes once the processor reports it, with the records held behind it, as
the worker hands them in), five users erased a third of the way in, and all of it again with
user ids pseudonymised. Prints a SHA-256 of everything the processor gave per batch size
(lapse or window model as ``DECAY_MODEL_PATH`` says): two versions of the code that print the
same digests behave the same on these records.

    PYTHONPATH=. .venv/bin/python bench/digest_more.py
"""

from __future__ import annotations

from dataclasses import replace

import orjson

from bench.processor import Digest, records, spoiled
from decay.settings import Settings
from stream_app.app import processor_config
from stream_app.processor import Processor, Record
from stream_app.rollout import load_scorer
from stream_app.store import MemoryStore


def more_spoiled(recs: list[Record]) -> list[Record]:
    """A price beyond float32 every 211th (invalid_value); record times that go up (erasure
    reads them)."""
    out = []
    for i, r in enumerate(recs):
        value = r.value or b""
        if i % 211 == 17 and value.startswith(b"{"):
            try:
                event = orjson.loads(value)
                event["price"] = 1e39
                value = orjson.dumps(event)
            except orjson.JSONDecodeError:
                pass
        out.append(Record(r.partition, r.offset, r.key, value, 1000 + i))
    return out


def run(recs: list[Record], batch: int, clock: int, pseudo: bool) -> str:
    """The digest of everything the processor gave, fed as the docstring says."""
    settings = Settings(partitions=4)
    config = replace(processor_config(settings), publish_scores=True, score_min_change=0.0)
    store = MemoryStore()
    pseudonymize = (lambda u: "p-" + u) if pseudo else None
    proc = Processor(config, load_scorer(settings), store, lambda: clock, pseudonymize)
    d = Digest(store)
    apply = d.apply

    def process(chunk: list[Record]) -> None:
        for _ in range(len(chunk) + 1):
            out = proc.process(chunk)
            apply(out)
            forwards = [
                Record(f.partition, n, f.record.key, f.record.value, f.record.timestamp)
                for n, f in enumerate(out.forwards)
            ]
            if forwards:
                apply(proc.process_forwarded(forwards))
            chunk = []
            for p, (missing, came) in out.gaps.items():
                proc.accept_gap(p, came)
                chunk += [r for r in held_back if r.partition == p and missing <= r.offset < came]
                chunk += [r for r in out.held if r.partition == p]
            if not chunk:
                return

    held_back: list[Record] = []
    erase_at = len(recs) // 3
    for n, i in enumerate(range(0, len(recs), batch)):
        chunk = recs[i : i + batch]
        if n % 7 == 3 and len(chunk) > 2:
            held_back.append(chunk[1])  # comes later: a gap
            chunk = chunk[:1] + chunk[2:]
        if n % 5 == 2 and i >= 3:
            chunk = recs[i - 3 : i] + chunk  # redelivered
        process(chunk)
        if i <= erase_at < i + batch:
            for r in recs[erase_at : erase_at + 5]:
                if r.key:
                    user = r.key.decode()
                    apply(proc.erase(proc.own_partition(user), -1, user, clock))
    return d.hexdigest()


def main() -> None:
    plain = records(2000, 20000, 4, 7)
    recs = more_spoiled(spoiled(plain))
    clock = max(orjson.loads(r.value or b"").get("ts", 0) for r in plain) + 86_400_000
    for pseudo in (False, True):
        for size in (1, 7, 700, 2000):
            print(f"pseudo={pseudo} batches of {size}: {run(recs, size, clock, pseudo)}")


if __name__ == "__main__":
    main()
