"""Shared fixtures. Heavier ones live in tests/fixtures/ and load as plugins."""

pytest_plugins = [
    "tests.fixtures.etcd",
    "tests.fixtures.docker",
]
