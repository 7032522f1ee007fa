"""CI installs redis-server and the Redis client (scripts/setup), so there the Redis tests must
run, not skip: this fails a CI run in which they would have been skipped."""

from __future__ import annotations

import os

from redis_server import redis_available


def test_ci_runs_the_redis_tests() -> None:
    if os.environ.get("CI"):
        assert redis_available(), "redis-server or the redis client is missing: the Redis tests would be skipped"
