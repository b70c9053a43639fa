"""Ports the local stack picks stay out of the way of outgoing connections."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from whisperstream.stack import ports
from whisperstream.stack.ports import ephemeral_range_low, free_port, free_port_pair


def test_picked_ports_lie_below_the_kernels_ephemeral_range() -> None:
    low = ephemeral_range_low()
    picked = [free_port() for _ in range(200)]
    assert all(10000 <= port < low for port in picked)


def test_no_port_is_handed_out_twice_before_it_is_bound() -> None:
    picked = [free_port() for _ in range(300)]
    assert len(set(picked)) == len(picked)


def test_a_pair_keeps_both_ports_below_the_ephemeral_range() -> None:
    port = free_port_pair(10000)
    assert port + 10000 < ephemeral_range_low()


class _ScriptedRandom:
    """Draws the given ports in order, as SystemRandom would draw them by chance."""

    def __init__(self, draws: list[int]) -> None:
        self._draws = iter(draws)

    def randint(self, low: int, high: int) -> int:
        drawn = next(self._draws)
        assert low <= drawn <= high
        return drawn


def test_a_port_someone_listens_on_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", free_port()))
        listener.listen()
        taken = listener.getsockname()[1]
        ports._handed_out.clear()
        scripted = _ScriptedRandom([taken, taken + 1])
        monkeypatch.setattr("whisperstream.stack.ports.random.SystemRandom", lambda: scripted)
        assert free_port() == taken + 1


def test_the_range_is_read_from_the_kernel_file(tmp_path: Path) -> None:
    range_file = tmp_path / "ip_local_port_range"
    range_file.write_text("40000\t60999\n")
    assert ephemeral_range_low(range_file) == 40000
    assert ephemeral_range_low(tmp_path / "missing") == 32768
