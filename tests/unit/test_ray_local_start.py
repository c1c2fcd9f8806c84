"""How nncli starts its local Ray instance, with a stand-in for ``ray.init``: the loopback settings are
in force while Ray starts, the user's environment is given back afterwards, and an instance that chose
an outward address anyway is shut down and refused. (The real instance's sockets are checked in
tests/e2e/test_sweep.py.)"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from nncli.core.errors import UserError

pytest.importorskip("ray", reason="--backend ray needs ray (pip install 'nncli[ray]')")
from ray._private import ray_constants

from nncli.runs.sweeps.ray_tasks import start_local


def fake_ray(node_ip: str):
    """A ``ray`` whose init records the settings it ran under and whose node took ``node_ip``."""
    seen: dict = {}

    def init(**kwargs):
        seen.update(
            kwargs=kwargs,
            flag=ray_constants.ENABLE_RAY_CLUSTER,
            cluster_env=os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"),
            usage_env=os.environ.get("RAY_USAGE_STATS_ENABLED"),
        )

    def shutdown():
        seen["shutdown"] = True

    ray = SimpleNamespace(
        init=init, shutdown=shutdown, util=SimpleNamespace(get_node_ip_address=lambda: node_ip)
    )
    return ray, seen


def test_ray_starts_under_loopback_settings_and_the_environment_is_given_back(monkeypatch):
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    flag = ray_constants.ENABLE_RAY_CLUSTER
    ray, seen = fake_ray("127.0.0.1")
    start_local(ray, 3)
    assert seen["kwargs"]["_node_ip_address"] == "127.0.0.1" and seen["kwargs"]["num_cpus"] == 3
    assert seen["kwargs"]["include_dashboard"] is False
    assert seen["flag"] is False and seen["cluster_env"] == "0" and seen["usage_env"] == "0"
    assert "shutdown" not in seen
    assert flag == ray_constants.ENABLE_RAY_CLUSTER
    assert (
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ and "RAY_USAGE_STATS_ENABLED" not in os.environ
    )


def test_the_users_usage_stats_choice_wins_and_their_values_come_back(monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1")
    ray, seen = fake_ray("::1")
    start_local(ray, 1)
    assert seen["usage_env"] == "1" and seen["cluster_env"] == "0"
    assert (
        os.environ["RAY_USAGE_STATS_ENABLED"] == "1"
        and os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "1"
    )


def test_an_instance_on_an_outward_address_is_shut_down_and_refused():
    ray, seen = fake_ray("192.0.2.7")
    with pytest.raises(UserError, match=r"chose the address 192\.0\.2\.7 instead of 127\.0\.0\.1"):
        start_local(ray, 2)
    assert seen["shutdown"] is True


def test_a_failed_start_gives_the_settings_back(monkeypatch):
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    flag = ray_constants.ENABLE_RAY_CLUSTER

    def init(**kwargs):
        raise RuntimeError("no room for the object store")

    with pytest.raises(RuntimeError, match="object store"):
        start_local(SimpleNamespace(init=init), 2)
    assert flag == ray_constants.ENABLE_RAY_CLUSTER and "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ
