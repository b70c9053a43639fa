"""Loopback port checks and free-port picking."""

from __future__ import annotations

import random
import socket

from whisperstream.errors import PortInUseError


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


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_pair(offset: int, host: str = "127.0.0.1") -> int:
    """A free port p such that p + offset is free too (SeaweedFS derives gRPC ports so)."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(20000, 65535 - offset - 1)
        if port_is_free(host, port) and port_is_free(host, port + offset):
            return port
    raise PortInUseError("seaweedfs", host, 0)
