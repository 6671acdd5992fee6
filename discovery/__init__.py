"""The shared core: settings, record schema, subnet arithmetic and the etcd store."""

import os

# gRPC's C core logs every failed TLS handshake on stderr, dozens a second while it
# retries; the store reports each failure itself, in one line. Set before grpc loads.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
