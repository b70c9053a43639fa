"""Fault-injection fixtures: one volatile-broker cluster shared by the package's tests.

Each test breaks one part of the system; `cluster` hands it over with everything
running and brings back whatever the test stopped or killed before the next one.
The broker-restart test needs durable broker storage and starts its own cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import Cluster, running_cluster
from tests.support.fault_audio import looped_speech

# long enough that "processing" lasts several seconds here (≈35x real time on 2 cores)
LONG_CLIP_S = 240.0


@pytest.fixture(scope="package")
def shared_cluster(jfk_flac: Path) -> Iterator[Cluster]:
    with running_cluster(volatile=True) as cluster:
        # one job end to end: the worker has joined and loaded its model
        done = cluster.wait_for_job(cluster.submit_ok(jfk_flac), timeout=240)
        assert done["status"] == "completed", done
        yield cluster


@pytest.fixture
def cluster(shared_cluster: Cluster) -> Iterator[Cluster]:
    shared_cluster.restore()
    yield shared_cluster
    shared_cluster.restore()


@pytest.fixture(scope="package")
def long_speech(jfk_flac: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fault-audio")
    return looped_speech(jfk_flac, folder / "long-speech.flac", LONG_CLIP_S)
