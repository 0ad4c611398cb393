"""How long training's data preparation takes on 1,000,000 simulated events (cleaning with its
report, then the per-event features): `python bench/prepare.py`."""

from __future__ import annotations

import argparse
import time

from decay.features import FeatureSpec, prepare_events
from training.data import clean
from training.simulate import simulate, users_for_events


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    users = users_for_events(1_000_000, days=30, seed=7)
    events = simulate(n_users=users, days=30, seed=7, duplicate_fraction=0.01).events
    started = time.perf_counter()
    cleaned, _report = clean(events, verbose=True)
    cleaning = time.perf_counter() - started
    started = time.perf_counter()
    prepare_events(cleaned, FeatureSpec())
    features = time.perf_counter() - started
    print(
        f"{len(events):,} events: clean {cleaning:.1f} s, features {features:.1f} s, "
        f"total {cleaning + features:.1f} s"
    )


if __name__ == "__main__":
    main()
