"""Finding exercises and the steps in their READMEs (pure)."""

import os
import subprocess
import time

import pytest

from labs.exercise import (
    ExerciseError,
    all_exercises,
    before_in,
    find_exercise,
    run_check,
    steps_in,
)

README = """# 03: Docker networks

## Before you start

```sh before
eval $(discoveryctl lab env host1)
```

Background text with a reading-only block:

```
NETWORK ID   NAME
```

```sh step
docker network create ex03-net
docker network ls
```

Then:

```sh step
discoveryctl lab exec host2 -- docker ps
```

Only where hosts are namespaces:

```sh step local
discoveryctl lab create host4
```
"""


def test_only_sh_step_blocks_are_steps_in_order():
    assert steps_in(README) == [
        "docker network create ex03-net\ndocker network ls",
        "discoveryctl lab exec host2 -- docker ps",
        "discoveryctl lab create host4",
    ]
    # On the Vagrant lab, hosts are VMs: the local-only step is left out.
    assert steps_in(README, "vagrant") == steps_in(README)[:2]
    assert before_in(README) == "eval $(discoveryctl lab env host1)"


def test_exercises_are_numbered_folders(tmp_path):
    for name in ("02-networks", "01-docker-hosts", "notes", "3-bad"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "README.md").write_text(f"# Title of {name}\n")
    found = all_exercises(tmp_path)
    assert [(e.number, e.title) for e in found] == [
        ("01", "Title of 01-docker-hosts"),
        ("02", "Title of 02-networks"),
    ]
    assert find_exercise("2", tmp_path).folder.name == "02-networks"
    with pytest.raises(ExerciseError, match="exercises: 01, 02"):
        find_exercise("09", tmp_path)


def test_a_check_that_hangs_with_a_child_holding_its_pipes_is_stopped(tmp_path):
    folder = tmp_path / "01-hangs"
    folder.mkdir()
    (folder / "README.md").write_text("# 01: hangs\n")
    check = folder / "check"
    # The child keeps stdout open after the check itself would be killed.
    check.write_text("#!/bin/sh\nsleep 300 &\nsleep 300\n")
    check.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(ExerciseError, match="did not finish in 1 s"):
        run_check(find_exercise("01", tmp_path), {}, timeout_s=1)
    assert time.monotonic() - started < 10
    leftovers = subprocess.run(
        ["pgrep", "-f", "sleep 300"], capture_output=True, text=True
    ).stdout.split()
    mine = [pid for pid in leftovers if str(folder) in _cwd_of(pid)]
    assert mine == []


def _cwd_of(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""
