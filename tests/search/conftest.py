"""Shared fixtures for the search tests: one two-node local Ray cluster for the whole session.

The cluster (``ray.cluster_utils.Cluster``: a head and a second node, 1 CPU each, on
127.0.0.1) is started once; in-process searches join it through ``ray.init(address=...)``
and command-line searches get ``--address``. Ray's files go to a private short temp folder
(``RAY_TMPDIR``) so that nothing here is found by other Ray users on the machine.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on 127.0.0.1
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.pop("RAY_ADDRESS", None)

import pytest


@pytest.fixture(scope="session")
def ray_tmpdir():
    # A short path: Ray's unix sockets live below it (limit ~107 characters).
    folder = tempfile.mkdtemp(prefix="mtlrt", dir="/tmp")
    old = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = folder
    yield folder
    if old is None:
        os.environ.pop("RAY_TMPDIR", None)
    else:
        os.environ["RAY_TMPDIR"] = old
    subprocess.run(["rm", "-rf", folder], check=False)


@pytest.fixture(scope="session")
def ray_cluster(ray_tmpdir):
    """A real two-node cluster on this machine; the test process is connected as a driver."""
    import ray
    from ray.cluster_utils import Cluster

    import mtlkit.search  # noqa: F401  (Ray's environment)

    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 1, "include_dashboard": False,
                                      "resources": {"head": 1}})
    cluster.add_node(num_cpus=1, resources={"second": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
