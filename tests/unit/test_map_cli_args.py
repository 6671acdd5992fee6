"""The command lines of `discoveryctl map` and `discoveryctl lab map` (parsing only)."""

import pytest

from labs.cli import build_parser as lab_parser
from mapserver.cli import build_parser
from mapserver.server import DEFAULT_LISTEN


def test_map_listens_on_consuls_port_on_loopback_by_default():
    args = build_parser().parse_args([])
    assert args.listen == DEFAULT_LISTEN == ("127.0.0.1", 8500)
    assert args.datacenter is None


@pytest.mark.parametrize(
    ("text", "address"),
    [("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:8500", ("::1", 8500)),
     ("127.0.0.2", ("127.0.0.2", 8500))],
)  # fmt: skip
def test_listen_addresses(text, address):
    assert build_parser().parse_args(["--listen", text]).listen == address


@pytest.mark.parametrize("text", ["localhost:8500", "127.0.0.1:99999", "127.0.0.1:x"])
def test_bad_listen_addresses_are_usage_errors(text, capsys):
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["--listen", text])
    assert stopped.value.code == 2
    assert "--listen" in capsys.readouterr().err


def test_lab_map_takes_the_same_options():
    args = lab_parser().parse_args(["map", "--listen", "127.0.0.1:0", "--datacenter", "dc1"])
    assert args.lab_command == "map"
    assert args.listen == ("127.0.0.1", 0) and args.datacenter == "dc1"
