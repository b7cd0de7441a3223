"""The SAM CLI (`sam ...`, same arguments) with `--docker-network host` honoured.

SAM 1.170 only ever attaches a container to a named network (`network.connect`) and skips that
for `host`, so the container keeps Docker's default network: with `dockerd --bridge=none` that
is an isolated namespace, where SAM cannot reach the Runtime Interface Emulator and the function
cannot reach DynamoDB Local. For `--docker-network host` this puts the container on the host's
network instead, and has the emulator listen on 127.0.0.1 at the port SAM already chose for it
(its Runtime API on another free loopback port), so that several containers can run at once and
nothing listens beyond loopback. Nothing else of SAM changes. scripts/sam-local runs SAM this
way; see docs/decisions.md.
"""

import socket
import sys

from docker.models.containers import ContainerCollection
from samcli.cli.main import cli
from samcli.local.docker import container

_create = container.Container.create
_docker_create = ContainerCollection.create


def _free_loopback_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _create_on_host_network(self, *args, **kwargs):
    if self.network_id == "host" and self._entrypoint:
        self._container_opts = {**(self._container_opts or {}), "network_mode": "host"}
        self._entrypoint = list(self._entrypoint) + [
            "--runtime-interface-emulator-address", f"127.0.0.1:{self.rapid_port_host}",
            "--runtime-api-address", f"127.0.0.1:{_free_loopback_port()}",
        ]
    return _create(self, *args, **kwargs)


def _docker_create_without_published_ports(self, image, command=None, **kwargs):
    # On the host's network there is nothing to publish (Docker refuses both at once).
    if kwargs.get("network_mode") == "host":
        kwargs.pop("ports", None)
    return _docker_create(self, image, command, **kwargs)


container.Container.create = _create_on_host_network
ContainerCollection.create = _docker_create_without_published_ports

if __name__ == "__main__":
    sys.argv[0] = "sam"
    sys.exit(cli())
