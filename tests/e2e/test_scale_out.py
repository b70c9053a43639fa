"""Scale-out on one machine (issue 17): 2 APIs, 3 workers, 2 projectors and the notifier
as separate processes against the local stack, 300 jobs through both APIs, one worker and
one API SIGKILLed mid-run (`bench/scale_out.py`; its numbers are in docs/deploy.md, with
why a second Tansu broker and a broker failover are not part of it)."""

from __future__ import annotations

import pytest

from bench.scale_out import ScaleOutConfig, print_table, run_scale_out, summary
from tests.support.stack import stack_state_dir

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONFIG = ScaleOutConfig(jobs=300, rate_per_s=3.0, finish_within_s=540.0)


@pytest.mark.timeout(900)
def test_every_job_completes_once_across_replicas_with_a_worker_and_an_api_killed() -> None:
    with stack_state_dir() as state_dir:
        run = run_scale_out(CONFIG, state_dir)
    report = summary(run)
    print_table(report)  # the figures docs/deploy.md quotes, shown with -s or on a failure
    assert run.failures == [], report
    assert report["accepted"] == CONFIG.jobs
    # both APIs took jobs, and the killed one none after its kill (checked in the verdict)
    assert len(report["accepted_by_api"]) == CONFIG.apis, report
    assert set(report["completed_by_worker"]) == {f"worker-{n}" for n in (1, 2, 3)}, report
    assert sum(report["completed_by_worker"].values()) == CONFIG.jobs, report
    assert len(report["projector_partitions"]) == CONFIG.projectors, report
    assert report["redelivered_jobs"] >= 1, report
