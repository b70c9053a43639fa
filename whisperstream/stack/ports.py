"""Loopback port checks and free-port picking.

Ports are picked below the kernel's ephemeral range. A port the OS hands out for
`bind(0)` comes from that range, which is also where every outgoing connection
takes its local port: between picking such a port and a service binding it, a
client socket (a worker's broker connection, say) can take it, and a restarted
service then finds it taken for as long as that connection lives.
"""

from __future__ import annotations

import random
import socket
from collections import deque
from pathlib import Path

from whisperstream.errors import PortInUseError

_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LINUX_EPHEMERAL_LOW = 32768
_LOWEST_PICKED = 10000
_NARROWEST_WINDOW = 2000
_ATTEMPTS = 500

# Ports this process handed out lately: two services started in the same second
# must not be given one port that neither has bound yet.
_handed_out: deque[int] = deque(maxlen=1024)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def require_free(service: str, host: str, port: int) -> None:
    if not port_is_free(host, port):
        raise PortInUseError(service, host, port)


def ephemeral_range_low(range_file: Path = _EPHEMERAL_RANGE_FILE) -> int:
    """The first port the kernel may give an outgoing connection."""
    try:
        return int(range_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _LINUX_EPHEMERAL_LOW


def free_port(host: str = "127.0.0.1") -> int:
    """A free port no outgoing connection can take before a service binds it."""
    return free_port_pair(0, host)


def free_port_pair(offset: int, host: str = "127.0.0.1") -> int:
    """A free port p such that p + offset is free too (SeaweedFS derives gRPC ports so)."""
    highest = ephemeral_range_low() - 1 - offset
    if highest - _LOWEST_PICKED < _NARROWEST_WINDOW:
        # the machine's ephemeral range starts too low to stay under; take any port
        highest = 65535 - offset
    rng = random.SystemRandom()
    for _ in range(_ATTEMPTS):
        port = rng.randint(_LOWEST_PICKED, highest)
        wanted = {port, port + offset}
        if any(candidate in _handed_out for candidate in wanted):
            continue
        if all(port_is_free(host, candidate) for candidate in wanted):
            _handed_out.extend(wanted)
            return port
    raise PortInUseError("a local service", host, 0)
