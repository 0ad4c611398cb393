"""Read and write event logs in the event contract (JSONL, CSV or Parquet).

The format is chosen by suffix: ``.jsonl`` (alias ``.ndjson``), ``.csv`` or ``.parquet``;
``.jsonl.gz`` and ``.csv.gz`` are compressed transparently. In memory a log is a DataFrame
with the contract's columns and canonical dtypes (see :func:`coerce_events`): strings as
``pd.StringDtype()`` with ``<NA>`` for missing values, ``ts`` as int64 epoch milliseconds,
``price`` float64 (NaN when missing) and ``quantity`` nullable ``Int64``.

Example::

    from decay.eventlog import read_events, write_events
    write_events(df, "data/events.parquet")
    df = read_events("data/events.parquet")
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from decay.errors import DecayError

logger = logging.getLogger(__name__)

EVENT_TYPES: tuple[str, ...] = (
    "view",
    "click",
    "cart",
    "purchase",
    "wishlist",
    "search",
    "other",
)
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "user_id",
    "ts",
    "type",
    "item_id",
    "category",
    "price",
    "quantity",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("event_id", "user_id", "ts", "type")
STRING_COLUMNS: tuple[str, ...] = ("event_id", "user_id", "type", "item_id", "category")

EventFormat = Literal["jsonl", "csv", "parquet"]
TsFormat = Literal["ms", "rfc3339"]

_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
_ONE_MS = pd.Timedelta(1, unit="ms")
# Explicit types for the fast pyarrow JSON reader; ts is left to inference because the
# contract allows either integers or RFC 3339 strings there.
_ARROW_JSON_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.string()),
        ("type", pa.string()),
        ("item_id", pa.string()),
        ("category", pa.string()),
        ("price", pa.float64()),
        ("quantity", pa.int64()),
    ]
)
# Characters that JSON strings must escape; their presence sends writing to the slow path.
_JSON_ESCAPE_RE = r'["\\\x00-\x1f]'
_JSONL_BATCH_ROWS = 200_000
_CSV_DTYPES: dict[str, Any] = {
    **{c: pd.StringDtype() for c in STRING_COLUMNS},
    "price": "float64",
    "quantity": "Int64",
}


def event_format(path: str | Path) -> EventFormat:
    """Return the log format implied by ``path``'s suffix (a trailing ``.gz`` is ignored)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compressed = suffixes[-1:] == [".gz"]
    if compressed:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in (".jsonl", ".ndjson"):
        return "jsonl"
    if last == ".csv":
        return "csv"
    if last == ".parquet" and not compressed:
        return "parquet"
    raise ValueError(f"unsupported event log suffix for {path!s}: use .jsonl, .csv or .parquet")


def empty_events() -> pd.DataFrame:
    """An empty event frame with the canonical columns and dtypes."""
    return coerce_events(pd.DataFrame({c: pd.Series(dtype="object") for c in REQUIRED_COLUMNS}))


def to_epoch_ms(ts: pd.Series) -> pd.Series:
    """Convert contract timestamps (epoch ms integers or RFC 3339 strings, mixed) to int64 ms."""
    if pd.api.types.is_datetime64_any_dtype(ts.dtype):
        parsed = ts if getattr(ts.dtype, "tz", None) else ts.dt.tz_localize("UTC")
        return ((parsed - _EPOCH) // _ONE_MS).astype("int64")
    if pd.api.types.is_numeric_dtype(ts.dtype):
        if ts.isna().any():
            raise ValueError("ts has missing values")
        return ts.astype("int64")
    numeric = pd.to_numeric(ts, errors="coerce")
    out = numeric.astype("float64")
    text = numeric.isna() & ts.notna()
    if text.any():
        parsed = pd.to_datetime(ts[text].astype(str), utc=True, format="ISO8601")
        out[text] = ((parsed - _EPOCH) // _ONE_MS).astype("float64")
    if out.isna().any():
        raise ValueError("ts has missing or unparseable values")
    # epoch ms stays below 2**53, so the float64 detour is exact
    return out.astype("int64")


def coerce_events(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``df`` with the contract's columns first, in canonical dtypes.

    Missing optional columns are added as all-missing; extra columns are kept after them.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"event log lacks required columns: {missing}")
    out: dict[str, pd.Series] = {}
    index = df.index
    for col in EVENT_COLUMNS:
        src = df[col] if col in df.columns else pd.Series([None] * len(df), index=index)
        if col == "ts":
            out[col] = to_epoch_ms(src)
        elif col == "price":
            out[col] = pd.to_numeric(src, errors="raise").astype("float64")
        elif col == "quantity":
            out[col] = pd.to_numeric(src, errors="raise").astype("Int64")
        else:
            out[col] = src.astype(pd.StringDtype())
    extras = {c: df[c] for c in df.columns if c not in EVENT_COLUMNS}
    return pd.DataFrame({**out, **extras}, index=index)


def _ts_to_rfc3339(ts: pd.Series) -> pd.Series:
    dt = pd.to_datetime(ts.astype("int64"), unit="ms", utc=True)
    return dt.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str.slice(0, -3) + "Z"


def write_events(df: pd.DataFrame, path: str | Path, *, ts_format: TsFormat = "ms") -> Path:
    """Write an event frame to ``path`` (format by suffix); return the path.

    Missing optional values become ``null`` (JSONL), empty cells (CSV) or nulls (Parquet).
    ``ts_format="rfc3339"`` writes ``ts`` as ``2024-01-01T12:00:00.000Z`` strings instead of
    epoch ms (useful to exercise the other half of the contract).
    """
    path = Path(path)
    fmt = event_format(path)
    events = coerce_events(df)
    if ts_format == "rfc3339":
        events["ts"] = _ts_to_rfc3339(events["ts"])
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        table = pa.Table.from_pandas(events, preserve_index=False)
        if _arrow_jsonl_ok(table):
            _write_jsonl_arrow(table, path)
        else:
            # pandas' ujson writer escapes properly; 10 decimals keep prices exact to the cent
            events.to_json(path, orient="records", lines=True, force_ascii=False)
    elif fmt == "csv":
        events.to_csv(path, index=False)
    else:
        table = pa.Table.from_pandas(events, preserve_index=False)
        pq.write_table(table, path, compression="zstd")
    logger.info("wrote %d events to %s", len(events), path)
    return path


def _arrow_jsonl_ok(table: pa.Table) -> bool:
    """Whether every column can be rendered by :func:`_jsonl_lines` (the common case)."""
    for col in table.columns:
        t = col.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            if pc.any(pc.match_substring_regex(col, _JSON_ESCAPE_RE)).as_py():
                return False
        elif not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            return False
    return True


def _jsonl_lines(batch: pa.RecordBatch) -> pa.Array:
    """One JSON object per row plus newline, built with Arrow kernels; nulls are omitted."""
    fragments = []
    for name, col in zip(batch.schema.names, batch.columns, strict=True):
        t = col.type
        if pa.types.is_integer(t):
            value = pc.cast(col, pa.string())
        elif pa.types.is_floating(t):
            # Arrow prints the shortest round-trip repr; NaN/inf are not JSON, so null them
            value = pc.if_else(pc.is_finite(col), pc.cast(col, pa.string()), None)
        elif pa.types.is_boolean(t):
            value = pc.if_else(col, "true", "false")
        else:
            # batches are small enough for 32-bit offsets, and kernels need matching types
            value = pc.binary_join_element_wise('"', pc.cast(col, pa.string()), '"', "")
        fragments.append(pc.binary_join_element_wise(json.dumps(name) + ":", value, ""))
    body = pc.binary_join_element_wise(*fragments, ",", null_handling="skip")
    lines: pa.Array = pc.binary_join_element_wise("{", body, "}\n", "")
    return lines


def _string_payload(arr: pa.Array) -> memoryview:
    """The concatenated bytes of a string array, without copying."""
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width)
    begin, end = int(offsets[arr.offset]), int(offsets[arr.offset + len(arr)])
    return memoryview(arr.buffers()[2])[begin:end]


def _write_jsonl_arrow(table: pa.Table, path: Path) -> None:
    compressed = path.suffix.lower() == ".gz"
    with gzip.open(path, "wb") if compressed else path.open("wb") as fh:
        # bounded batches keep memory flat and offsets far from the 2 GiB string limit
        for batch in table.to_batches(max_chunksize=_JSONL_BATCH_ROWS):
            if batch.num_rows:
                fh.write(_string_payload(_jsonl_lines(batch)))


def _read_jsonl(path: Path) -> pd.DataFrame:
    try:
        # pyarrow's multi-threaded reader is ~10x faster than pandas on big logs
        table = pa_json.read_json(
            path,
            parse_options=pa_json.ParseOptions(
                explicit_schema=_ARROW_JSON_SCHEMA, unexpected_field_behavior="infer"
            ),
        )
        return table.to_pandas()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        # e.g. ts mixing integers and strings, or a float quantity: slower pandas path
        logger.debug("pyarrow JSON reader failed on %s (%s); using pandas", path, exc)
        return pd.read_json(path, lines=True, dtype=False, convert_dates=False)


def read_events(path: str | Path) -> pd.DataFrame:
    """Read an event log (format by suffix) into a frame in canonical dtypes."""
    path = Path(path)
    fmt = event_format(path)
    if path.stat().st_size == 0:
        return empty_events()
    if fmt == "jsonl":
        raw = _read_jsonl(path)
    elif fmt == "csv":
        raw = pd.read_csv(path, dtype=_CSV_DTYPES)
    else:
        raw = pq.read_table(path).to_pandas()
    if raw.empty and len(raw.columns) == 0:
        return empty_events()
    return coerce_events(raw).reset_index(drop=True)


def frame_to_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Plain-Python dicts (JSON-serialisable) per row, with missing fields omitted."""
    # Arrow's to_pylist yields Python scalars (not numpy ones) and maps NaN/NA to None
    rows = pa.Table.from_pandas(df, preserve_index=False).to_pylist()
    return [{k: v for k, v in row.items() if v is not None} for row in rows]


def _open_text(path: Path) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


class EventLogError(DecayError, ValueError):
    """An event log holds something that is no event record: the message names the file and,
    for JSONL, the line."""


def _numbered_lines(path: Path, fh: IO[str]) -> Iterator[tuple[int, str]]:
    """``enumerate(fh, 1)``, a file that is not UTF-8 reported as an :class:`EventLogError`
    (decoding goes by blocks: the line is the one after the last line read)."""
    number = 0
    try:
        for number, line in enumerate(fh, 1):
            yield number, line
    except UnicodeDecodeError as exc:
        raise EventLogError(f"{path} after line {number}: not UTF-8 ({exc.reason})") from None


def iter_event_records(
    path: str | Path, chunk_size: int = 10_000
) -> Iterator[list[dict[str, Any]]]:
    """Stream an event log as lists of at most ``chunk_size`` record dicts, in file order.

    Only one chunk is held in memory. JSONL lines are passed through as parsed (``ts`` keeps
    its form, null fields are dropped); CSV and Parquet rows are coerced to the contract
    (``ts`` as epoch ms) with missing fields omitted.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    path = Path(path)
    fmt = event_format(path)
    if fmt == "jsonl":
        chunk: list[dict[str, Any]] = []
        with _open_text(path) as fh:
            for number, line in _numbered_lines(path, fh):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise EventLogError(
                        f"{path} line {number}, column {exc.colno}: {exc.msg}"
                    ) from None
                if not isinstance(record, dict):
                    raise EventLogError(f"{path} line {number}: not a JSON object")
                chunk.append({k: v for k, v in record.items() if v is not None})
                if len(chunk) >= chunk_size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk
    else:
        try:
            yield from _table_records(path, fmt, chunk_size)
        except ValueError as exc:  # pandas' and Arrow's parse errors, a missing column
            raise EventLogError(f"{path}: {exc}") from None


def _table_records(path: Path, fmt: EventFormat, chunk_size: int) -> Iterator[list[dict[str, Any]]]:
    if fmt == "csv":
        with pd.read_csv(path, dtype=_CSV_DTYPES, chunksize=chunk_size) as reader:
            for frame in reader:
                yield frame_to_records(coerce_events(frame))
    else:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=chunk_size):
            yield frame_to_records(coerce_events(batch.to_pandas()))


# --- CDNOW ------------------------------------------------------------------------------

_CDNOW_FILES = {False: "CDNOW_master.txt", True: "CDNOW_sample.txt"}
_NOON_MS = 12 * 3600 * 1000


def cdnow_path(sample: bool = False) -> Path:
    """Path of the CDNOW purchase log shipped in the ``lifetimes`` package (no import, no I/O)."""
    # find_spec locates the package without importing it; importing lifetimes pulls in
    # scipy/autograd and warns under pandas 3
    spec = find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("CDNOW data needs the 'lifetimes' package (train extra)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / _CDNOW_FILES[sample]
    if not path.is_file():
        raise FileNotFoundError(f"CDNOW file not found: {path}")
    return path


def cdnow_events(sample: bool = False) -> pd.DataFrame:
    """CDNOW purchases as contract events, sorted by ``ts`` (stable: file order within a day).

    ``CDNOW_master.txt`` (header, then ``customer_id date number_of_cds dollar_value``) holds
    69,659 purchases by 23,570 customers from 1997-01 to 1998-06. ``CDNOW_sample.txt`` (no
    header, ``customer_id sample_id date number_of_cds dollar_value``) holds the 6,919
    purchases of 2,357 of them; its first column is the master id, so ``user_id`` matches
    across both files. Each row becomes a ``purchase`` at 12:00 UTC on its date with
    ``user_id = f"c{id}"``, ``quantity`` = number of CDs, ``price`` = amount / quantity (NaN
    when quantity is 0), ``category = "music"`` and ``event_id`` ``cdnow-{row}`` (master) or
    ``cdnow-sample-{row}`` (sample), ``row`` being the 0-based data row in the file.
    """
    path = cdnow_path(sample)
    with path.open("r", encoding="ascii") as fh:
        first = fh.readline().split()
    has_header = bool(first) and not first[0].isdigit()
    names = (
        ["customer_id", "sample_id", "date", "quantity", "amount"]
        if sample
        else ["customer_id", "date", "quantity", "amount"]
    )
    raw = pd.read_csv(
        path,
        sep=r"\s+",
        header=None,
        names=names,
        skiprows=1 if has_header else 0,
        dtype={"customer_id": "int64", "date": "str", "quantity": "int64", "amount": "float64"},
    )
    day = pd.to_datetime(raw["date"], format="%Y%m%d", utc=True)
    quantity = raw["quantity"]
    prefix = "cdnow-sample-" if sample else "cdnow-"
    events = pd.DataFrame(
        {
            "event_id": prefix + pd.Series(range(len(raw)), dtype="int64").astype(str),
            "user_id": "c" + raw["customer_id"].astype(str),
            "ts": ((day - _EPOCH) // _ONE_MS).astype("int64") + _NOON_MS,
            "type": "purchase",
            "item_id": None,
            "category": "music",
            "price": (raw["amount"] / quantity.where(quantity > 0)).astype("float64"),
            "quantity": quantity,
        }
    )
    events = events.sort_values("ts", kind="stable", ignore_index=True)
    logger.info("loaded %d CDNOW events from %s", len(events), path)
    return coerce_events(events)
