"""The user page in a real headless Chromium, against a worker on the real broker."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.harness import Setup, WorkerProcess, produce_messages
from tests.integration.test_stream import simulated_messages

pytestmark = pytest.mark.kafka
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"


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


def test_user_page_in_headless_chromium(bootstrap: str, tmp_path: Path) -> None:
    setup = Setup("ui", bootstrap, tmp_path / "state")
    setup.create_topics()
    messages = simulated_messages(users=60, days=30, seed=3)
    produce_messages(bootstrap, setup.settings().events_topic, messages)
    worker = WorkerProcess(setup, tmp_path / "worker.log")
    try:
        worker.wait_for(lambda: worker.events_seen() >= len(messages), 180, "events")
        # the user with the most alerts makes the fullest page
        counts: dict[str, int] = {}
        for _, value in messages:
            user = json.loads(value)["user_id"]
            counts[user] = counts.get(user, 0) + 1
        user = max(counts, key=lambda u: (len(worker.user(u)[1]["last_alerts"]), counts[u]))
        body = worker.user(user)[1]
        url = f"http://127.0.0.1:{worker.port}/ui/users/{user}"

        dom = browse(url, tmp_path / "profile-dom", "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        html = dom.stdout
        assert f"User {user}" in html
        window = min(counts[user], 64)
        assert len(re.findall(r'<circle class="event"', html)) == window  # every event marked
        points = re.search(r'class="interest"[^>]*points="([^"]+)"', html)
        assert points is not None and len(points.group(1).split()) >= 12 * window
        assert html.count('class="alert"') == len(body["last_alerts"]) > 0
        if body["deadline"]:
            assert 'class="deadline"' in html
        assert 'class="category"' in html

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "user-page.png"
        shot.unlink(missing_ok=True)
        done = browse(
            url, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=900,900"
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
        assert worker.user("nobody")[0] == 404
    finally:
        assert worker.stop() == 0
