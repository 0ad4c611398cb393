"""The user page in a real headless Chromium, against a worker on the real broker.

On a replayed CDNOW log (1997-1998: years behind the wall clock) and on the simulator, with
the default hazard model and with the lapse step model: the page reads interest on the
partition's event-time clock and says so; a dormant user's curve runs through the crossing
of the threshold where the dormant alert fired, and the alert is drawn there; the chart
covers the user's whole tracked period, with a date axis, a legend and the threshold in
words; a category name with an emoji renders in colour; a user whose category faded (the
semantic simulator's names, embedded by the worker) sees its related categories, on the page and
in the alert; the page and /users/{id} say which recent events move interest now most, and the
dormant alert which moved its score. A screenshot of each page is written to var/test-artifacts/.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from decay.alerts import rfc3339
from stream_app.queries import partition_for
from stream_app.rollout import load_scorer, shipped_model
from stream_app.ui import STYLE
from stream_app.ui_chart import BOTTOM, TOP, H
from tests.integration.harness import Setup, WorkerProcess, produce_messages
from tests.integration.test_stream import simulated_messages

pytestmark = pytest.mark.kafka
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"
EMOJI_CATEGORY = "📚 books"
SVG = "{http://www.w3.org/2000/svg}"
Messages = list[tuple[bytes | None, bytes]]


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: run deploy/ui/install-chromium.sh")
        pytest.skip("chromium is missing: run deploy/ui/install-chromium.sh")
    return path


def browse(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}",
    ]  # fmt: skip
    return subprocess.run(
        [chromium(), *flags, *extra, url], capture_output=True, text=True, timeout=120
    )


def screenshot(
    url: str, profile: Path, shot: Path, size: str = "960,1250", least: int = 10_000
) -> None:
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.unlink(missing_ok=True)
    done = browse(url, profile, f"--screenshot={shot}", f"--window-size={size}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.stat().st_size > least  # a rendered page, not a blank one


def cdnow_messages() -> Messages:
    from decay.eventlog import cdnow_events
    from decay_cli.replay import encode

    frame = cdnow_events(sample=True)
    return [
        encode({k: v for k, v in r.items() if v is not None and v == v})
        for r in frame.to_dict(orient="records")
    ]


def sim_messages() -> Messages:
    """The simulator's log, one of its categories renamed with an emoji."""
    out: Messages = []
    for key, value in simulated_messages(users=60, days=30, seed=3):
        event = json.loads(value)
        if event.get("category") == "books":
            event["category"] = EMOJI_CATEGORY
        out.append((key, json.dumps(event, ensure_ascii=False).encode()))
    return out


def semantic_messages() -> Messages:
    """The semantic simulator's users (real category names, drifts to related ones) over
    the 60 days before and the 30 of ``sim_messages``: several get a category_decay alert
    with related categories."""
    from decay.eventlog import frame_to_records
    from decay_cli.replay import encode
    from training.semantic_sim import simulate_semantic
    from training.simulate import DEFAULT_START

    log = simulate_semantic(40, days=90, seed=11, start=DEFAULT_START - timedelta(days=60))
    return [encode(r) for r in frame_to_records(log.events)]


def partition_clocks(messages: Messages, partitions: int) -> dict[int, int]:
    """The newest event time of each partition: the worker's clock for its users."""
    clocks: dict[int, int] = {}
    for key, value in messages:
        assert key is not None
        p = partition_for(key, partitions)
        clocks[p] = max(clocks.get(p, 0), int(json.loads(value)["ts"]))
    return clocks


def svg_of(page: str) -> ET.Element:
    found = re.search(r"<svg[^>]*aria-label=\"interest over time\".*?</svg>", page, re.S)
    assert found is not None, "no chart"
    return ET.fromstring(found.group(0))


def curve_points(svg: ET.Element) -> list[tuple[float, float]]:
    points = []
    for line in svg.iter(f"{SVG}polyline"):
        pairs = line.attrib["points"].split()
        points.extend(tuple(map(float, p.split(","))) for p in pairs)
    return [(x, y) for x, y in points]


def y_of(value: float) -> float:
    return H - BOTTOM - value * (H - TOP - BOTTOM)


def check_page(
    page: str,
    body: dict[str, Any],
    clock_ms: int,
    events: Sequence[dict[str, Any]],
    threshold: float,
) -> None:
    """What every page must show (``body``: the user's /users JSON; ``events``: the user's,
    as produced; ``threshold``: the served one, a lapse model's serving point or the
    worker's)."""
    types = sorted({e["type"] for e in events[-body["events_in_window"] :]})
    assert f"User {body['user_id']}" in page
    # (a) interest on the partition's event time, which the page names
    clock = re.search(r'class="clock">Clock: now = ([0-9-]+ [0-9:]+) UTC, the event time', page)
    assert clock is not None and clock.group(1) == rfc3339(clock_ms)[:16].replace("T", " ")
    assert body["clock"] == "event time" and body["now"] == rfc3339(clock_ms)
    # (c) the whole tracked period: from first seen, every kept event a dot, the rest counted
    first = body["first_event"][:16].replace("T", " ")
    assert f"{body['events_seen']} events seen since {first}" in page
    svg = svg_of(page)
    assert len(list(svg.iter(f"{SVG}circle"))) == body["events_in_window"]
    earlier = body["events_seen"] - body["events_in_window"]
    assert (f"{earlier} earlier events: counted, not kept" in page) == (earlier > 0)
    # (d) a date axis, a legend of what is drawn, the threshold in words
    ticks = [t.text or "" for t in svg.iter(f"{SVG}text") if t.attrib.get("class") == "tick"]
    assert len(ticks) >= 3 and all(re.fullmatch(r"[0-9]{2,4}(-[0-9]{2})*( .*)?", t) for t in ticks)
    legend = re.search(r'<p class="legend">(.*?)</p>', page, re.S)
    assert legend is not None
    for kind in types:
        assert f"{kind} event" in legend.group(1)
    assert f"threshold θ = {threshold:g}" in legend.group(1)
    below = re.escape(f"Below θ = {threshold:g} the user counts as dormant")
    assert re.search(r'class="threshold-meaning">Interest is .* ' + below, page)
    # related categories when the user has fading ones and alerts carry them
    fading = any(body["related"].values())
    assert ('class="related-now"' in page) == bool(body["related"])
    assert ('class="suggestion"' in page) == fading
    carried = any(a.get("related") for a in body["last_alerts"])
    assert ('class="related"' in page) == carried

    # (f) which recent events move interest now most, on the page and in /users/{id}
    why = re.search(r'<p class="explanation-now">What moves interest now most: (.*?)\.</p>', page)
    assert why is not None and body["explanation"]
    assert html.unescape(why.group(1)) == "; ".join(body["explanation"])
    check_explanation(body["explanation"], events)


EXPLAINED = re.compile(
    r"the (?:[0-9]+ )?(\w+) events? (?:in (.+) )?on [A-Z][a-z]{2} [0-9]{1,2}(?:, [0-9]{4})? "
    r"(?:(?:raised interest most|also raised it|lowered (?:interest|it) most) \([+-][0-9.]+\)"
    r"|is the only event the score rests on)"
)


def check_explanation(sentences: Sequence[str], events: Sequence[dict[str, Any]]) -> None:
    """Each sentence names a kind of event and a category the user's events have."""
    for sentence in sentences:
        found = EXPLAINED.fullmatch(sentence)
        if found is None:
            assert re.fullmatch(r"none of the last [0-9]+ events moved interest by .*", sentence)
            continue
        assert found.group(1) in {e["type"] for e in events}, sentence
        if found.group(2) is not None:
            assert found.group(2) in {e.get("category") for e in events}, sentence


def text(name: str) -> str:
    return html.escape(name, quote=False)


def check_related(page: str, body: dict[str, Any]) -> None:
    """The fading categories' related ones, as /users/{id} lists them, on the page; the
    category_decay alert's own suggestions under it. (The DOM as Chromium dumps it escapes
    &, < and > in text, not quotes.)"""
    for fading, found in body["related"].items():
        assert f'<li class="related-now"><b>{text(fading)}</b> faded' in page
        for r in found:
            assert f'<span class="suggestion">{text(r["category"])}</span>' in page
            assert r["similarity"] >= 0.25 and r["score"] > 0.0
    decays = [a for a in body["last_alerts"] if a["kind"] == "category_decay" and a["related"]]
    assert decays
    names = ", ".join(f"{text(r['category'])} ({r['score']:.2f})" for r in decays[0]["related"])
    assert f'class="related">related categories still strong: {names}</p>' in page


def check_dormant(page: str, body: dict[str, Any], threshold: float) -> None:
    """(b) The curve runs through the threshold at the dormant alert, and the alert is there."""
    since = body["dormant_since"]
    assert since is not None
    svg = svg_of(page)
    marks = [p for p in svg.iter(f"{SVG}path") if p.attrib.get("class") == "alert-mark"]
    at = [m for m in marks if since[:16].replace("T", " ") in (m.findtext(f"{SVG}title") or "")]
    assert at and "dormant" in (at[0].findtext(f"{SVG}title") or "")
    found = re.match(r"M([0-9.]+),([0-9.]+)", at[0].attrib["d"])
    assert found is not None
    x, y = float(found.group(1)), float(found.group(2)) + 7
    assert abs(y - y_of(threshold)) < 1.0  # at the threshold
    points = np.array(curve_points(svg))
    assert np.min(np.hypot(points[:, 0] - x, points[:, 1] - y)) < 0.5  # on the curve
    assert points[:, 0].max() >= x
    # the alert says which events moved its score, on the page as in the alerts topic
    alert = next(
        a for a in body["last_alerts"] if a["kind"] == "dormant" and a["event_time"] == since
    )
    shown = re.findall(r'<p class="explanation">why: (.*?)</p>', page)
    assert alert["explanation"] and "; ".join(alert["explanation"]) in map(html.unescape, shown)


def colour_pixels(png: Path) -> int:
    from PIL import Image

    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 80).sum())


def check_emoji_renders(tmp_path: Path) -> None:
    """(e) An emoji in a category name is a colour glyph, not a box: the page's own style."""
    probe = tmp_path / "emoji.html"
    probe.write_text(
        f"<!doctype html><meta charset='utf-8'><style>{STYLE}</style>"
        f"<p style='font-size:64px;margin:0'>{EMOJI_CATEGORY}</p>",
        encoding="utf-8",
    )
    shot = tmp_path / "emoji.png"
    screenshot(probe.as_uri(), tmp_path / "profile-emoji", shot, "400,200", least=1_000)
    assert colour_pixels(shot) > 300, "the emoji renders without colour: no emoji font"


def run_pages(
    bootstrap: str,
    tmp_path: Path,
    name: str,
    messages: Messages,
    model: Path | None,
    related_from: Messages | None = None,
) -> dict[str, str]:
    """A worker on ``messages`` (and ``related_from``, in event-time order); the page of the
    most recently active user of ``messages`` and of a dormant one, and of a user of
    ``related_from`` with related categories if any, checked, with their screenshots.
    Returns the pages' HTML by role."""
    overrides = {"model_path": model} if model is not None else {}
    setup = Setup(name, bootstrap, tmp_path / "state", overrides=overrides)
    setup.create_topics()
    related_from = related_from or []
    related_users = {json.loads(v)["user_id"] for _, v in related_from}
    if related_from:
        messages = sorted([*messages, *related_from], key=lambda m: int(json.loads(m[1])["ts"]))
    produce_messages(bootstrap, setup.settings().events_topic, messages)
    clocks = partition_clocks(messages, setup.partitions)
    users: dict[str, list[dict[str, Any]]] = {}
    for _, value in messages:
        event = json.loads(value)
        users.setdefault(event["user_id"], []).append(event)
    served = getattr(load_scorer(setup.settings()), "threshold", None)
    threshold = setup.settings().dormancy_threshold if served is None else served
    worker = WorkerProcess(setup, tmp_path / "worker.log")
    pages = {}
    try:
        worker.wait_for(lambda: worker.events_seen() >= len(messages), 180, "events")
        bodies = {u: worker.user(u)[1] for u in users}
        plain = [u for u in bodies if u not in related_users]
        active = max(plain, key=lambda u: (bodies[u]["last_event"], len(users[u])))
        dormant = max(
            (u for u in plain if bodies[u]["dormant_since"]),
            key=lambda u: (bodies[u]["events_seen"], u),
        )
        roles = [("active", active), ("dormant", dormant)]
        faded = sorted(
            u
            for u in related_users
            if any(bodies[u]["related"].values())
            and any(
                a["kind"] == "category_decay" and a.get("related") for a in bodies[u]["last_alerts"]
            )
        )
        roles += [("related", faded[0])] if faded else []
        for role, user in roles:
            url = f"http://127.0.0.1:{worker.port}/ui/users/{user}"
            dom = browse(url, tmp_path / f"profile-{role}", "--dump-dom")
            assert dom.returncode == 0, dom.stderr[-2000:]
            body = bodies[user]
            clock = clocks[partition_for(user.encode(), setup.partitions)]
            check_page(dom.stdout, body, clock, users[user], threshold)
            if role == "dormant":
                check_dormant(dom.stdout, body, threshold)
            if role == "related":
                check_related(dom.stdout, body)
            size = "960,1900" if role == "related" else "960,1250"  # down to the alerts
            shot = ARTIFACTS / f"{name}-{role}.png"
            screenshot(url, tmp_path / f"profile-shot-{role}", shot, size)
            pages[role] = dom.stdout
        assert worker.user("nobody")[0] == 404
    finally:
        assert worker.stop() == 0
    return pages


def interest_now(page: str) -> float:
    found = re.search(r'class="interest-now">([0-9.]+)<', page)
    assert found is not None
    return float(found.group(1))


@pytest.mark.parametrize("model", ["hazard", "lapse"])
def test_the_page_of_replayed_cdnow_users(bootstrap: str, tmp_path: Path, model: str) -> None:
    pytest.importorskip("lifetimes", reason="the CDNOW log ships inside lifetimes")
    path = shipped_model("cdnow-lapse.onnx") if model == "lapse" else None
    pages = run_pages(bootstrap, tmp_path, f"ui-cdnow-{model}", cdnow_messages(), path)
    # the wall clock would make every replayed user's interest 0.00
    assert interest_now(pages["active"]) > 0.1
    bars = re.findall(r'class="category"><td class="name">music</td>.*?<td>([0-9.]+)</td>',
                      pages["active"])  # fmt: skip
    assert bars and float(bars[0]) > 0.1


def test_the_page_of_a_dormant_simulated_user(bootstrap: str, tmp_path: Path) -> None:
    pages = run_pages(bootstrap, tmp_path, "ui-sim", sim_messages(), None, semantic_messages())
    assert "related" in pages, "no semantic user with related categories"
    assert any(EMOJI_CATEGORY in p for p in pages.values())
    names = re.findall(r'<td class="name">([^<]*)</td>', "".join(pages.values()))
    assert EMOJI_CATEGORY in names
    check_emoji_renders(tmp_path)
