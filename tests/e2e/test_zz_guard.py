"""Runs last in the session: no packet for a cluster range tried to leave through an interface
tinykube did not create while the suite ran (the guard's `leaked` counter)."""
from __future__ import annotations

from tinykube.net.guard import guard_leak_count


def test_guard_stopped_no_packet(cluster):
    assert guard_leak_count(cluster.name) == 0
