"""Bench fixtures: the same real redis-server the runtime tests use."""

from tests.components.conftest import redis_url

__all__ = ["redis_url"]
