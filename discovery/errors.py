"""The project's own errors.

Client-library errors (aetcd, grpc, docker, pyroute2) are converted into these
at the boundary, with ``raise ... from``, so callers never depend on which
client library sits underneath.
"""


class DiscoveryError(Exception):
    """Base of every error this project raises on purpose."""


class SettingsError(DiscoveryError):
    """A flag, environment variable or config file value is wrong."""


class SchemaError(DiscoveryError):
    """A key or value in etcd does not follow the record format."""


class EtcdUnavailable(DiscoveryError):
    """No etcd endpoint answered."""


class LeaseLost(DiscoveryError):
    """An etcd lease we hold has expired or was revoked."""


class RevisionCompacted(DiscoveryError):
    """A watch asked for a revision etcd has already compacted away."""

    def __init__(self, compacted_revision: int):
        super().__init__(f"revision compacted below {compacted_revision}")
        self.compacted_revision = compacted_revision
