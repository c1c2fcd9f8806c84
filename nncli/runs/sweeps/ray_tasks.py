"""Sweep trials as Ray tasks: checking a cluster address, connecting, dispatching, surviving lost workers.

``connect(address, jobs)`` runs before the sweep folder exists, so a bad address leaves nothing behind.
It refuses in seconds, in one line, what Ray itself would retry for long or answer with a traceback:

    malformed / ray://        refused at once (nncli connects as a driver to the GCS address HOST:PORT
                              that ``ray start --head`` prints; Ray Client ``ray://`` is not supported)
    unknown host, refused     a TCP connection with a timeout
    no answer, not Ray        one GCS call (GetClusterId) with a deadline
    token authentication      the same call, carrying the token Ray itself would send: UNAUTHENTICATED
                              means RAY_AUTH_MODE / the token are missing or wrong on this machine

Multi-node clusters: each trial is ``python -m nncli train`` started by a Ray worker, with the config
and the sweep folder given as absolute paths. Every node must therefore have nncli installed and see
those paths on a shared filesystem (NFS, a cluster home); a task on a node that does not see the
sweep folder fails at once saying so, instead of writing its run where nobody looks for it.

The local instance (no ``--ray-address``) is one node that listens on the loopback address only: Ray
replaces a node address of 127.0.0.1 by the machine's outward address (and then binds its GCS, raylet,
object manager, workers and agents to every interface) unless ``ray_constants.ENABLE_RAY_CLUSTER`` is
off, the switch behind ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``. ``start_local`` turns it off while the
instance starts, and refuses to go on if Ray still chose another address. Ray's usage statistics
(reports to usage-stats.ray.io) are off for it unless ``RAY_USAGE_STATS_ENABLED`` says otherwise.

A worker process or node lost mid-trial: Ray runs the task again (``max_retries``); when that fails
too, the trial is reported as failed with Ray's reason and ``nncli sweep --resume SWEEP_DIR`` runs it
again later. Ctrl-C / SIGTERM cancel the tasks, which stop their trials at a checkpoint.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
from collections.abc import Callable
from contextlib import contextmanager

from nncli.core.errors import UserError
from nncli.runs.sweeps.processes import POLL, THREAD_VARS, run_process, sigterm_as_interrupt, thread_env

#: seconds allowed for the TCP connection and for the cluster's first answer
CONNECT_TIMEOUT = 5.0
#: the only address nncli's own local Ray instance listens on
LOOPBACK = "127.0.0.1"
#: environment variables set while the local instance starts (restored afterwards)
LOCAL_ENV = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED")
#: times Ray runs a trial again after its worker process or node died
TASK_RETRIES = 1


class RayAddressError(UserError):
    """An address that is not a reachable Ray cluster nncli may use."""


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``) → (host, port); RayAddressError for anything else."""
    where = f"--ray-address {address!r}"
    if "://" in address:
        scheme = address.split("://", 1)[0]
        hint = (
            "Ray Client addresses are not supported: run nncli on a node of the cluster and give the "
            "HOST:PORT that `ray start --head` printed"
            if scheme == "ray"
            else "give HOST:PORT, without a scheme"
        )
        raise RayAddressError(f"{where}: {hint}")
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([A-Za-z0-9_.-]+):(\d{1,5})", address.strip())
    if not m:
        raise RayAddressError(
            f"{where}: expected HOST:PORT, e.g. 127.0.0.1:6379 as `ray start --head` prints"
        )
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if not 0 < int(port) < 65536:
        raise RayAddressError(f"{where}: port {port} is not between 1 and 65535")
    return host, int(port)


def check_address(address: str, timeout: float = CONNECT_TIMEOUT) -> str:
    """The address as HOST:PORT once a Ray GCS there has answered this client; else RayAddressError."""
    host, port = parse_address(address)
    where = f"--ray-address {address}"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror:
        raise RayAddressError(f"{where}: unknown host {host!r}") from None
    except ConnectionRefusedError:
        raise RayAddressError(
            f"{where}: connection refused (no Ray cluster listens there; is it the port `ray start --head` printed?)"
        ) from None
    except TimeoutError:
        raise RayAddressError(
            f"{where}: no answer within {timeout:g} s (host unreachable or firewalled)"
        ) from None
    except OSError as exc:
        raise RayAddressError(f"{where}: unreachable ({exc.strerror or exc})") from None
    _probe_gcs(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}", where, timeout)
    return f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"


def _probe_gcs(target: str, where: str, timeout: float) -> None:
    """One GetClusterId call, with the authentication metadata Ray's own client would add."""
    try:
        import grpc
        from ray._private.authentication.grpc_authentication_client_interceptor import (
            SyncAuthenticationMetadataClientInterceptor,
        )
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    except ImportError:  # another Ray version: ray.init below still reports what goes wrong
        return
    channel = grpc.intercept_channel(
        grpc.insecure_channel(target), SyncAuthenticationMetadataClientInterceptor()
    )
    try:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        # a generated protobuf class, which ray's type information does not declare
        request = gcs_service_pb2.GetClusterIdRequest()  # type: ignore[attr-defined]
        stub.GetClusterId(request, timeout=timeout)
    except grpc.RpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            mode = os.environ.get("RAY_AUTH_MODE", "not set")
            raise RayAddressError(
                f"{where}: the cluster uses token authentication and refused this client "
                f"(RAY_AUTH_MODE is {mode}): set RAY_AUTH_MODE=token and the cluster's token in "
                "RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH (or ~/.ray/auth_token)"
            ) from None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise RayAddressError(f"{where}: no answer within {timeout:g} s (is it a Ray cluster?)") from None
        if code == grpc.StatusCode.UNAVAILABLE:
            raise RayAddressError(f"{where}: unreachable ({exc.details()})") from None
        raise RayAddressError(f"{where}: this is not a Ray cluster's GCS ({code.name.lower()})") from None
    finally:
        channel.close()


@contextmanager
def connect(address: str | None, jobs: int):
    """Connected to the cluster at ``address`` (checked first), or to a new local instance with ``jobs``
    CPUs; disconnected (a local instance shut down) on leaving. An instance already initialised in this
    process is used and left alone."""
    try:
        import ray
    except ImportError:
        raise UserError("--backend ray needs the 'ray' package: pip install 'nncli[ray]'") from None
    started = not ray.is_initialized()
    if started:
        if address:
            target = address if address == "auto" else check_address(address)
            try:
                ray.init(address=target, log_to_driver=False, logging_level=logging.WARNING)
            except Exception as exc:  # the checks passed, so this is rare: still one line
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise RayAddressError(f"--ray-address {address}: {first}") from None
        else:
            start_local(ray, jobs)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def start_local(ray, jobs: int) -> None:
    """A new local Ray instance with ``jobs`` CPUs whose every port listens on 127.0.0.1 only."""
    from ray._private import ray_constants

    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    saved_env = {name: os.environ.get(name) for name in LOCAL_ENV}
    # read at import by Ray's own processes, so set for them too; the user's usage-stats choice wins
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray_constants.ENABLE_RAY_CLUSTER = False  # this process imported Ray before the variable was set
    try:
        ray.init(
            num_cpus=jobs,
            _node_ip_address=LOOPBACK,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    node = ray.util.get_node_ip_address()
    if not ipaddress.ip_address(node).is_loopback:  # another Ray version that resolves it differently
        ray.shutdown()
        raise UserError(
            f"--backend ray: the local Ray instance chose the address {node} instead of {LOOPBACK} and "
            "would listen beyond this machine; start a cluster yourself and pass --ray-address"
        )


def run_ray(
    arg_lists: list[list[str]],
    jobs: int,
    remote: bool,
    on_result: Callable[[int, tuple], None],
    sweep_dir: str | None = None,
) -> None:
    """Each trial as a Ray task (1 CPU each) on the connected cluster; ``on_result(i, result)`` as each
    ends. A task whose worker or node is lost (after Ray's retries) ends as exit code 1 with the reason."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(run_trial)
    env = {v: "1" for v in THREAD_VARS} if remote else thread_env(jobs)
    pending: dict = {}
    try:
        pending = {task.remote(a, env, sweep_dir): i for i, a in enumerate(arg_lists)}
        with sigterm_as_interrupt():
            while pending:
                # a timeout, so that Ctrl-C / SIGTERM handlers get to run between waits
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in ready:
                    i = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                        result = (1, "", f"Ray lost the trial: {type(exc).__name__}: {reason}")
                    on_result(i, result)
    except BaseException:
        # cancelling raises inside each running task, whose run_process stops its trial gracefully
        for ref in pending:
            ray.cancel(ref)
        ray.wait(list(pending), num_returns=len(pending), timeout=35)
        raise


def run_trial(args: list[str], env: dict[str, str], sweep_dir: str | None) -> tuple[int, str, str]:
    """A Ray task's body: one trial, after checking that this node sees the sweep folder."""
    if sweep_dir is not None and not os.path.isdir(sweep_dir):
        node = socket.gethostname()
        return (
            2,
            "",
            f"{sweep_dir}: not visible on node {node}; a multi-node sweep needs the sweep folder and the "
            "config on a filesystem every node shares",
        )
    return run_process(args, env)


def run_ray_one(
    args: list[str], remote: bool, jobs: int, should_stop: Callable[[], bool], sweep_dir: str
) -> tuple[int, str, str]:
    """One trial as a Ray task, cancelled (it stops at a checkpoint) once ``should_stop()`` is True."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(run_trial)
    env = {v: "1" for v in THREAD_VARS} if remote else thread_env(jobs)
    ref = task.remote(args, env, sweep_dir)
    cancelled = False
    try:
        while True:
            ready, _ = ray.wait([ref], num_returns=1, timeout=POLL)
            if ready:
                break
            if not cancelled and should_stop():
                ray.cancel(ref)
                cancelled = True
        try:
            return ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return 130, "", "stopped"
        except ray.exceptions.RayError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return 1, "", f"Ray lost the trial: {type(exc).__name__}: {reason}"
    except BaseException:
        ray.cancel(ref)
        ray.wait([ref], timeout=35)
        raise
