"""`edgepipe batch --executor ray`: every job a Ray task, on a private local instance or on a cluster.

Without --address the batch starts its own Ray instance and stops it at the end: loopback only,
no dashboard, no usage stats, a per-batch auth token, nothing sent over the network.
With --address the jobs run on the cluster's nodes: edgepipe must be installed there (same
versions as here), and the batch directory (-o) must be on a filesystem every node mounts at the
same path, because the Ray workers write each job's artifacts straight into the run directory
its task names.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
import time
from collections import deque
from contextlib import contextmanager, redirect_stdout
from typing import Callable, Iterator

from edgepipe.models.shared.errors import ConfigError, EdgepipeError
from edgepipe.pipeline.batch.pool import Task, run_task

log = logging.getLogger(__name__)

RAY_MISSING = "--executor ray needs Ray: pip install 'edgepipe[ray]'"
# How often the loop wakes without a result: to see nodes an autoscaling cluster has added.
POLL_S = 2.0


def run_on_ray(
    tasks: list[Task],
    address: str | None,
    timeout_s: float,
    on_done: Callable[[dict], None],
    on_start: Callable[[Task], None],
) -> None:
    """Run every task as a Ray task; each one's outcome, failures included, goes to on_done."""
    # Ray's driver prints worker-death notices to sys.stdout from a background thread, and no switch
    # turns them off (log_to_driver covers worker output only); stdout carries `--json`, so stderr it is.
    with _env(_local_env() if address is None else {"RAY_USAGE_STATS_ENABLED": "0"}), redirect_stdout(sys.stderr):
        try:
            import ray
        except ImportError:
            raise ConfigError(RAY_MISSING) from None
        if not tasks:  # every job answered from its cache: no instance to start
            return
        logs = _connect(ray, address)
        try:
            _run(ray, tasks, timeout_s, on_done, on_start, logs)
        finally:
            if address is None:
                ray.shutdown()


def _local_env() -> dict[str, str]:
    """Ray's switches for a private single-machine instance; Ray reads them at import and at start."""
    env = {
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray's own "local Ray only" mode: the node IP is 127.0.0.1 and every server binds to it.
        # Without it Ray replaces even an explicit _node_ip_address="127.0.0.1" by the address it
        # finds by routing towards 8.8.8.8, and its GCS listens on all interfaces.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    if not any(key in os.environ for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        # Ray enables token auth for new local instances and would write a token to ~/.ray/auth_token
        # (failing on a read-only home); a token in our environment reaches its processes instead.
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    return env


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    """Set the variables not already set (the user's own choices win), and restore them afterwards."""
    added = {key: value for key, value in values.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _connect(ray, address: str | None) -> str:
    """Start the local instance or join the cluster; returns where to look for worker logs."""
    if address is None:
        try:
            context = ray.init(
                num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False, logging_level="warning"
            )
        except Exception as exc:  # Ray raises plain RuntimeError/ConnectionError from its own start-up
            raise EdgepipeError(f"could not start a local Ray instance: {exc}; try --executor local") from None
        return f"the Ray worker logs in {context.address_info['session_dir']}/logs"
    _reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level="warning")
    except Exception as exc:
        raise ConfigError(
            f"cannot connect to the Ray cluster at --address {address}: {exc}; give its head node "
            "as HOST:PORT (or 'auto' on one of its nodes)"
        ) from None
    return "the Ray worker logs on the node that ran it"


def _reachable(address: str) -> None:
    """Fail in seconds on a wrong HOST:PORT: ray.init retries an unreachable head for many minutes."""
    host, _, port = address.rpartition(":")
    if "://" in address or not port.isdigit():  # 'auto', ray:// client addresses: Ray resolves them itself
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at --address {address}: {exc.strerror or exc}; give its "
            "head node as HOST:PORT (the GCS port, 6379 unless it was changed)"
        ) from None


def _run(
    ray,
    tasks: list[Task],
    timeout_s: float,
    on_done: Callable[[dict], None],
    on_start: Callable[[Task], None],
    logs: str,
) -> None:
    """Submit no more tasks than the cluster has CPUs, so a job's timeout counts from its start, not its queueing."""
    # max_retries=0: a conversion that crashed its worker must fail, not silently run again.
    remote = ray.remote(max_retries=0)(run_task)
    queue: deque[Task] = deque(tasks)
    running: dict = {}  # ObjectRef -> (task, monotonic start)
    try:
        while queue or running:
            slots = _cpus(ray) if queue else 0
            while queue and len(running) < slots:
                task = queue.popleft()
                running[remote.remote(task)] = (task, time.monotonic())
                on_start(task)
            deadline = min(started + timeout_s for _, started in running.values())
            wait_s = min(POLL_S, max(0.0, deadline - time.monotonic()))
            ready, _ = ray.wait(list(running), num_returns=1, timeout=wait_s)  # wakes at the first result
            for ref in ready:
                task, started = running.pop(ref)
                on_done(_outcome(ray, ref, task, started, logs))
            now = time.monotonic()
            for ref, (task, started) in list(running.items()):
                if now - started > timeout_s:
                    ray.cancel(ref, force=True)  # kills its worker: the job stops writing into its run directory
                    del running[ref]
                    on_done(
                        {
                            "job": task.name,
                            "status": "failed",
                            "seconds": now - started,
                            "error": f"exceeded the {timeout_s:g} s job timeout; its Ray worker was killed",
                        }
                    )
    finally:
        for ref in running:  # interrupted: leave no job running on the cluster
            try:
                ray.cancel(ref, force=True)
            except Exception as exc:  # a cluster that is going away; the job may keep running there
                log.warning("could not cancel Ray task %s: %s: %s", ref, type(exc).__name__, exc)


def _cpus(ray) -> int:
    """The cluster's CPUs now (it may autoscale); at least one, so an empty cluster is asked to grow."""
    return max(1, int(ray.cluster_resources().get("CPU", 0)))


def _outcome(ray, ref, task: Task, started: float, logs: str) -> dict:
    """run_task's outcome, or a failed one when Ray could not deliver it (crashed worker, lost node, ...)."""
    try:
        return ray.get(ref)
    except Exception as exc:  # RayTaskError, WorkerCrashedError, OutOfMemoryError, ObjectLostError: one job's fate
        text = str(exc).strip()
        if isinstance(exc, ray.exceptions.WorkerCrashedError):  # its text says no more than this
            reason = "Ray worker crashed while running this job (killed, out of memory or a native crash)"
        else:
            reason = f"Ray {type(exc).__name__}: " + (text.splitlines()[0].rstrip(".") if text else "no detail")
        return {
            "job": task.name,
            "status": "failed",
            "seconds": time.monotonic() - started,
            "error": f"{reason}; see {logs}",
            "traceback": text[-4000:],
        }
