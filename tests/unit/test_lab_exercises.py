"""Finding exercises and the steps in their READMEs (pure)."""

import pytest

from discovery.lab.exercises import ExerciseError, all_exercises, find_exercise, steps_in

README = """# 03: Docker networks

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
"""


def test_only_sh_step_blocks_are_steps_in_order():
    assert steps_in(README) == [
        "docker network create ex03-net\ndocker network ls",
        "discoveryctl lab exec host2 -- docker ps",
    ]


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
