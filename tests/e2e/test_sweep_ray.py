"""Sweeps against a Ray cluster started as a separate process (``ray start --head``), the way a lab runs
one, with token authentication on; and every bad ``--ray-address`` through the real CLI.

The cluster is started by the fixture on free loopback ports with its own temp dir, and stopped by it
(its process group, then any process left that names that temp dir), also when a test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import listening
import pytest
from support import merge, write_config

pytestmark = pytest.mark.skipif(
    shutil.which("ray") is None, reason="needs Ray's `ray` command (pip install 'nncli[ray]')"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nncli(*args, cwd, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "nncli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _leftovers(marker: str) -> list[int]:
    """Processes whose command line names ``marker`` (the cluster's own temp dir)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker in (d / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(d.name))
            except OSError:
                continue
    return [p for p in pids if p != os.getpid()]


@pytest.fixture(scope="module")
def ray_cluster():
    """(address, env of a client holding the token, pid of `ray start`): a one-node cluster with token
    authentication, listening on the loopback address only."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="nnray")  # short: Ray's socket paths live inside it
    token = secrets.token_hex(32)
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_USAGE_STATS_ENABLED": "0",
        # without it Ray replaces --node-ip-address=127.0.0.1 by the machine's outward address and
        # listens on every interface (gcs_server, raylet, workers) or on that address (agents, client server)
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        # on SIGTERM `ray start` first asks the (already stopped) GCS to drain the node, for up to 30 s
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    }
    ports = {
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--ray-client-server-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
    }
    cmd = [
        "ray",
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--include-dashboard=false",
        "--num-cpus=2",
        "--num-gpus=0",
        "--object-store-memory=80000000",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
        *(f"{k}={v}" for k, v in ports.items()),
    ]
    log = open(Path(temp) / "ray-start.log", "w")  # noqa: SIM115 (open for the whole fixture)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:  # the cluster is up when the driver's own check passes
            if proc.poll() is not None:
                pytest.fail(
                    f"ray start exited {proc.returncode}: {(Path(temp) / 'ray-start.log').read_text()[-2000:]}"
                )
            probe = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    f"from nncli.runs.sweeps.ray_tasks import check_address; check_address({address!r})",
                ],
                env=env,
                capture_output=True,
                text=True,
            )
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"the Ray cluster did not come up: {probe.stderr[-1000:]}")
            time.sleep(1.0)
        yield address, env, proc.pid
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:  # what did not stop in time: the whole group, at once
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in _leftovers(temp) + ([proc.pid] if proc.poll() is None else []):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def tiny(tmp_path, tiny_config):
    """A folder holding tiny.yaml: the shared tiny config with a validation split and two evaluations."""
    extra = {
        "name": "tiny",
        "data": {"val_split": 0.3},
        "train": {"steps": 6, "eval_every": 3, "log_every": 3},
    }
    write_config(tmp_path, merge(tiny_config, extra), "tiny.yaml")
    return tmp_path


@pytest.mark.slow
def test_sweep_on_a_ray_start_cluster_with_a_relative_runs_dir(ray_cluster, tiny):
    address, env, _ = ray_cluster
    res = nncli(
        "sweep", "tiny.yaml", "--grid", "optimizer.lr=0.05,0.5", "--seeds", "2", "--backend", "ray",
        "--ray-address", address, "--runs-dir", "runs", "-j", "2", "--json",
        cwd=tiny, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    folder = Path(data["folder"])
    assert folder.parent == tiny / "runs" and data["backend"] == "ray"
    assert [t["status"] for t in data["trials"]] == ["completed"] * 4
    assert all(Path(t["run_dir"]).parent == folder for t in data["trials"])
    # read back with nncli's own commands, with relative paths, from the user's directory
    rows = nncli("runs", "runs", "--json", cwd=tiny)
    assert rows.returncode == 0, rows.stderr
    assert len(json.loads(rows.stdout)) == 4
    plot = nncli("plot", f"runs/{folder.name}", "--terminal", cwd=tiny)
    assert plot.returncode == 0, plot.stderr
    assert "(2 seeds)" in plot.stdout  # the two seeds of each learning rate as one curve


def _refused(tiny, address, env=None, match=""):
    started = time.monotonic()
    res = nncli(
        "sweep", "tiny.yaml", "--grid", "optimizer.lr=0.1", "--backend", "ray", "--ray-address", address,
        "--runs-dir", "runs", cwd=tiny, env=env, timeout=180,
    )  # fmt: skip
    took = time.monotonic() - started
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert match in lines[0] and "Traceback" not in res.stderr
    assert not (tiny / "runs").exists()  # no folder left behind
    # a refusal, not Ray's own connection retries (minutes); the bound leaves room for a loaded
    # 2-core machine, where starting Python with Ray imported alone takes 10-30 s
    assert took < 90, took
    return lines[0]


def test_malformed_and_ray_client_addresses_are_refused(tiny):
    _refused(tiny, "localhost", match="expected HOST:PORT")
    _refused(tiny, "127.0.0.1:99999", match="port 99999")
    _refused(tiny, "ray://127.0.0.1:10001", match="Ray Client addresses are not supported")


def test_a_refused_port_is_one_line(tiny):
    _refused(tiny, f"127.0.0.1:{free_port()}", match="connection refused")


def test_a_port_that_never_answers_is_refused_after_the_timeout(tiny):
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        line = _refused(tiny, f"127.0.0.1:{port}", match="no answer within")
    assert "5 s" in line


@pytest.mark.slow
def test_token_authentication_failure_names_ray_auth_mode(ray_cluster, tiny):
    address, env, _ = ray_cluster
    no_token = {k: v for k, v in env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    no_token["HOME"] = str(tiny)  # no ~/.ray/auth_token of the user's to fall back on
    _refused(tiny, address, env=no_token, match="RAY_AUTH_MODE")
    wrong = {**env, "RAY_AUTH_TOKEN": secrets.token_hex(32), "HOME": str(tiny)}
    _refused(tiny, address, env=wrong, match="token authentication")


@pytest.mark.slow
def test_a_search_runs_its_trials_on_the_cluster(ray_cluster, tiny):
    pytest.importorskip("optuna", reason="searches need optuna (pip install 'nncli[search]')")
    address, env, _ = ray_cluster
    res = nncli(
        "sweep", "tiny.yaml", "--search", "random", "--trials", "2", "--param", "optimizer.lr=loguniform(1e-3,1)",
        "--pruner", "none", "--backend", "ray", "--ray-address", address, "--runs-dir", "runs", "-j", "2", "--json",
        cwd=tiny, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [t["status"] for t in data["trials"]] == ["completed"] * 2
    assert all(Path(t["run_dir"]).parent == Path(data["folder"]) for t in data["trials"])


@pytest.mark.slow
def test_the_cluster_listens_on_loopback_only(ray_cluster):
    if not listening.available():
        pytest.skip("reads listening sockets from Linux's /proc/net tables")
    address, _, pid = ray_cluster
    port = int(address.rsplit(":", 1)[1])
    deadline = time.monotonic() + 60
    while True:  # the GCS answers first; the raylet and its agents come up a little later
        sockets = listening.listening_sockets(listening.process_tree(pid))
        seen = {p for _, _, _, p in sockets}, {n for _, n, _, _ in sockets}
        if (port in seen[0] and {"gcs_server", "raylet"} <= seen[1]) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert port in seen[0] and {"gcs_server", "raylet"} <= seen[1], sockets
    exposed = [s for s in sockets if not listening.is_loopback(s[2])]
    assert not exposed, f"listening beyond this machine (pid, process, address, port): {exposed}"
