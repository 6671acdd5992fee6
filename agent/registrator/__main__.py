"""``python -m agent.registrator``: the registrator half alone.

Exactly ``discovery-agent services`` (same flags and behaviour); useful where
the network half is not wanted, such as a host without VXLAN, or a test.
"""

import sys

from agent.cli import main

if __name__ == "__main__":
    sys.exit(main(["services", *sys.argv[1:]]))
