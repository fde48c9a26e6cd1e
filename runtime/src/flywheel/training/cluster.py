"""Which Ray a training run uses.

In a cluster the RayJob's entrypoint joins its RayCluster ($RAY_ADDRESS, set by Ray's
job submission). `flywheel run` enters `local_ray` once, so every TrainingJob of a run
shares one small local Ray instead of paying its start-up each time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

CPUS_ENV = "FLYWHEEL_RAY_CPUS"


def local_cpus() -> int:
    return int(os.environ.get(CPUS_ENV) or min(os.cpu_count() or 1, 4))


# Ray Train on one machine: the controller polls its workers every 2 s by default, and a
# worker's per-epoch report waits for that poll, so every epoch costs at least 2 s however
# small; each fit also starts a watcher for cloud nodes being drained, which a laptop has
# none of. Read from the driver's environment when a trainer starts; a value the user set
# wins, and a cluster ($RAY_ADDRESS) keeps Ray's defaults.
LOCAL_TRAIN_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}


def ensure_ray() -> None:
    """Join the Ray already started here, or $RAY_ADDRESS; alone, start a local one."""
    import ray

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if not address:
            for name, value in LOCAL_TRAIN_ENV.items():
                os.environ.setdefault(name, value)
        ray.init(
            address=address,
            num_cpus=None if address else local_cpus(),
            include_dashboard=False,
            configure_logging=False,
            log_to_driver=False,
        )


@contextmanager
def local_ray() -> Iterator[None]:
    """A local Ray for the duration of a run; one that is already running is reused."""
    import ray

    started = not ray.is_initialized()
    ensure_ray()
    try:
        yield
    finally:
        if started:
            ray.shutdown()
