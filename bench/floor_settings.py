"""Settings of `bench.load`'s floor rows (see bench/floor_api.py): the deployed settings with
`bench.floor_api` as the URL map; with BENCH_BARE=1 also no middleware at all."""

import os

from activity_service.settings import *  # noqa: F403

ROOT_URLCONF = "bench.floor_api"
BENCH_BARE = os.environ.get("BENCH_BARE") == "1"
if BENCH_BARE:
    MIDDLEWARE = []
# Scratch measurements: middleware left out by a part of its dotted path, comma-separated.
_DROPPED = [part for part in os.environ.get("BENCH_DROP_MIDDLEWARE", "").split(",") if part]
MIDDLEWARE = [name for name in MIDDLEWARE if not any(part in name for part in _DROPPED)]  # noqa: F405
