"""Category names as vectors in the worker: each name embedded once, kept in the state table.

The first time a batch's events name a category this worker does not know, the name is
embedded with the sentence encoder training uses (``decay.embeddings``: all-MiniLM-L6-v2 as
int8 ONNX), all of the batch's new names in one encoder call. The vector is written to the
state table of each partition whose events name it, under ``\\x00vec:<name>`` (float16: 768
bytes, after a 4-byte tag of the encoder), before the batch's user records; a restart, or the
partition's next owner, reads it back from there instead of embedding it again. A vector is
rounded to float16 before any use, so one read back is the one used before.

What reads them: the ``related`` categories of a ``category_decay`` alert and of the user's
pages (``decay.related``), and ``vectors(names)`` for anything else (a model's category input).

Without the `embed` extra the worker runs all the same: it says so once in the log, and alerts
carry no ``related``. A name the encoder fails on (an error of onnxruntime or the tokenizer) is
logged and counted (``failed``), and gets no vector in this worker: ``related`` is an extra of
an alert, so its failure must not fail the batch, which would fail again on every retry.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from decay.alerts import CATEGORY_DECAY
from decay.embeddings import DIMENSION, MODEL_ID, Encoder, EncoderUnavailable, load_encoder
from decay.engagement import EngagementRules
from decay.related import Suggestion, engagement_interest, related
from decay.state import UserState
from stream_app.alerting import AlertSpec
from stream_app.batch import StateStore, Step, UserKey
from stream_app.metrics import Metrics

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F16 = npt.NDArray[np.float16]
VECTOR_PREFIX: Final = "\x00vec:"
# A vector of another encoder is not this one's: its records are ignored and the name embedded.
_TAG: Final = zlib.crc32(MODEL_ID.encode()).to_bytes(4, "little")
_RECORD_BYTES: Final = len(_TAG) + 2 * DIMENSION
# Names kept per worker (768 bytes each in memory): a producer sending endless distinct
# categories must not grow it without bound; the names beyond it are counted, not embedded.
MAX_NAMES: Final = 20_000


def vector_key(name: str) -> str:
    return VECTOR_PREFIX + name


def round_vector(vector: F32) -> F16:
    """What is kept of a vector: float16 (little-endian), the encoder's unit vector rounded."""
    return np.asarray(vector, np.float32).astype("<f2")


def pack_vector(kept: F16) -> bytes:
    return _TAG + kept.astype("<f2").tobytes()


def unpack_vector(raw: bytes | None) -> F16 | None:
    """The kept vector of a record; None for a record of another encoder or layout."""
    if raw is None or len(raw) != _RECORD_BYTES or raw[: len(_TAG)] != _TAG:
        return None
    return np.frombuffer(raw, "<f2", offset=len(_TAG)).copy()


def as_unit(kept: F16) -> F32:
    """A kept vector as float32 with unit norm (the float16 rounding moves the norm by 1e-3)."""
    v = kept.astype(np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-12)


class CategoryVectors:
    """Category name -> unit vector (384 floats), each name embedded once per worker (see the
    module's docstring). ``encoder`` None: off, nothing is embedded and nothing suggested.
    ``rules``: the engagement rules the user's category interest is read with."""

    def __init__(
        self,
        encoder: Encoder | None,
        rules: EngagementRules | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._encoder = encoder
        self.rules = rules or EngagementRules()
        self._metrics = metrics
        self._kept: dict[str, F16] = {}
        self._failed: set[str] = set()  # names the encoder failed on: not tried again
        # Per partition, the names whose records its state table holds (seen or written).
        self._stored: dict[int, set[str]] = {}
        self.counts: Counter[str] = Counter()  # names embedded, read, over_limit; calls
        self.embed_seconds = 0.0
        self._warned = False

    @classmethod
    def load(cls, rules: EngagementRules, metrics: Metrics | None = None) -> CategoryVectors:
        """With the pinned encoder when its packages are installed, else off (said once)."""
        try:
            encoder = load_encoder()
        except EncoderUnavailable as exc:
            log.warning("category vectors are off, alerts carry no related categories: %s", exc)
            return cls(None, rules, metrics)
        return cls(encoder, rules, metrics)

    @property
    def enabled(self) -> bool:
        return self._encoder is not None

    @property
    def size(self) -> int:
        """Names with a vector here."""
        return len(self._kept)

    # -- the vectors -----------------------------------------------------------------------

    def vectors(self, names: Iterable[str]) -> dict[str, F32]:
        """Each name's unit vector, those not known yet embedded first, in one encoder call
        (none when off, nor for names over the limit, nor for blank ones: no text)."""
        wanted = [n for n in dict.fromkeys(names) if n.strip()]
        self._embed([n for n in wanted if n not in self._kept and n not in self._failed])
        return self.known(wanted)

    def known(self, names: Iterable[str]) -> dict[str, F32]:
        """The vectors of ``names`` this worker has, none embedded (safe from another thread:
        lookups only)."""
        found = ((n, self._kept.get(n)) for n in names)
        return {n: as_unit(v) for n, v in found if v is not None}

    def _embed(self, new: Sequence[str]) -> None:
        if self._encoder is None or not new:
            return
        room = max(MAX_NAMES - len(self._kept), 0)
        if len(new) > room:
            self._count("over_limit", len(new) - room)
            if not self._warned:
                log.warning("more than %d category names: further ones are not embedded", MAX_NAMES)
                self._warned = True
            new = new[:room]
            if not new:
                return
        started = time.perf_counter()
        encoded = self._encode(list(new))
        seconds = time.perf_counter() - started
        for name, vector in encoded.items():
            self._kept[name] = round_vector(vector)
        self.embed_seconds += seconds
        self.counts["calls"] += 1
        self._count("embedded", len(encoded))
        if self._metrics is not None:
            self._metrics.embed_seconds.observe(seconds)

    def _encode(self, names: list[str]) -> dict[str, F32]:
        """The vectors of ``names``, in one encoder call; if it fails, one call a name, so
        that a name the encoder fails on costs only its own vector (see the module's
        docstring). The failed names are counted and kept out (bounded as the kept ones)."""
        assert self._encoder is not None
        try:
            return dict(zip(names, self._encoder.encode(names), strict=True))
        except Exception:
            log.exception("the encoder failed on %d category names; trying each alone", len(names))
        found: dict[str, F32] = {}
        failed: list[BaseException] = []
        for name in names:
            try:
                found[name] = self._encoder.encode([name])[0]
            except Exception as exc:
                failed.append(exc)
                if len(self._failed) < MAX_NAMES:
                    self._failed.add(name)
        if failed:
            log.error("no vector for %d of %d names: %r", len(failed), len(names), failed[0])
            self._count("failed", len(failed))
        return found

    def _count(self, result: str, n: int) -> None:
        self.counts[result] += n
        if self._metrics is not None:
            self._metrics.category_names.labels(result).inc(n)

    # -- the batch -------------------------------------------------------------------------

    def learn(self, steps: Sequence[Step], store: StateStore, writes: dict[UserKey, bytes]) -> None:
        """Before a batch's alert rules: the vector of every category its events name, read
        back from the partition's state table or embedded (all new names in one call), and
        written to the partitions that do not hold it yet (in ``writes``)."""
        if self._encoder is None:
            return
        named = {(s.partition, s.event.category) for s in steps if s.event.category}
        todo = sorted((p, n) for p, n in named if n not in self._stored.get(p, ()) and n.strip())
        if not todo:
            return
        for p, name in todo:  # stored there already (a restart, a previous owner)?
            kept = unpack_vector(store.get(p, vector_key(name)))
            if kept is not None:
                self._stored.setdefault(p, set()).add(name)
                if name not in self._kept:
                    self._kept[name] = kept
                    self._count("read", 1)
        self._embed(sorted({n for _, n in todo if n not in self._kept and n not in self._failed}))
        for p, name in todo:
            stored = self._stored.setdefault(p, set())
            if name not in stored and name in self._kept:
                writes[(p, vector_key(name))] = pack_vector(self._kept[name])
                stored.add(name)

    # -- related categories ------------------------------------------------------------------

    def suggest(self, fading: str, st: UserState, t_ms: int) -> list[Suggestion]:
        """Categories close to ``fading`` where the user's interest (``st.engagement`` at
        ``t_ms``) is still high or rising (``decay.related.related``)."""
        if self._encoder is None:
            return []
        interest = engagement_interest(st.engagement, t_ms, st.sessions, self.rules)
        return related(fading, self.vectors([fading, *interest]), interest)

    def relate(self, spec: AlertSpec, st: UserState) -> AlertSpec:
        """A ``category_decay`` alert with its related categories (others as they are); each
        scored as the alert is, the user's interest right after the event times its share."""
        if spec.kind != CATEGORY_DECAY or spec.category is None or self._encoder is None:
            return spec
        found = self.suggest(spec.category, st, spec.event_time_ms)
        return dataclasses.replace(spec, related=[s.entry(st.peak_score) for s in found])

    def fading(
        self, st: UserState, t_ms: int, partition: int, store: StateStore
    ) -> dict[str, list[Suggestion]]:
        """For the user's pages: per category whose decay episode is open (alerted, not
        recovered), its related categories at ``t_ms``. Reads vectors only (kept here, else
        the partition's records): a page never runs the encoder."""
        fading = [name for name, e in st.engagement.items() if e.fired]
        if self._encoder is None or not fading:
            return {}
        interest = engagement_interest(st.engagement, t_ms, st.sessions, self.rules)
        vectors = self.known(interest)
        for name in set(interest) - set(vectors):
            kept = unpack_vector(store.get(partition, vector_key(name)))
            if kept is not None:
                vectors[name] = as_unit(kept)
        return {name: related(name, vectors, interest) for name in sorted(fading)}
