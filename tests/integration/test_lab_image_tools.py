"""The lab images' tools fail the way a real distribution's do: an error, never a crash.

Debian's busybox-static segfaulted in `wget -T N` (busybox 1.35 without
CONFIG_FEATURE_WGET_TIMEOUT stores -T's number through a NULL pointer), so the
images carry labs/images/build-busybox's musl build. Each case runs in a real
container on the private dockerd of ``docker_host``: exit status 139 (SIGSEGV)
or "Segmentation fault" fails the test.
"""

from __future__ import annotations

import pytest

from labs.image_build import LAB_BUSYBOX
from tests.fixtures.docker import DockerHost
from tests.integration.registrator_support import unique

pytestmark = [pytest.mark.docker, pytest.mark.root]

SEGFAULT_EXIT = 128 + 11


def run_in(host: DockerHost, script: str, **kwargs: object) -> tuple[int, str]:
    """Run ``sh -c script`` in a new base-image container; (exit status, output)."""
    container = host.client.containers.run(
        host.images["base"], ["sh", "-c", script], detach=True, name=unique("tools"), **kwargs
    )
    try:
        status = container.wait(timeout=60)["StatusCode"]
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    return int(status), output


def assert_fails_cleanly(status: int, output: str) -> None:
    assert status != 0, output
    assert status != SEGFAULT_EXIT and "Segmentation fault" not in output, output


def test_the_images_carry_the_lab_busybox() -> None:
    assert LAB_BUSYBOX.is_file(), (
        "labs/images/build-busybox has not run (scripts/bootstrap runs it)"
    )


def test_wget_with_a_timeout_and_a_name_that_does_not_resolve(docker_cleanup: DockerHost) -> None:
    # The shell's exit status is wget's; sh itself reports a crash of its child.
    status, output = run_in(docker_cleanup, "wget -T 3 http://nosuchname/")
    assert_fails_cleanly(status, output)
    assert "bad address 'nosuchname'" in output


def test_nslookup_of_a_name_that_does_not_resolve(docker_cleanup: DockerHost) -> None:
    status, output = run_in(docker_cleanup, "nslookup nosuchname")
    assert_fails_cleanly(status, output)
    assert output.strip(), "nslookup said nothing"


def test_wget_with_a_timeout_of_a_real_address_still_works(docker_cleanup: DockerHost) -> None:
    client, images = docker_cleanup.client, docker_cleanup.images
    web = client.containers.run(
        images["web"], detach=True, name=unique("web"), environment={"LAB_HOST": "tools"}
    )
    try:
        web.reload()
        address = web.attrs["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        # httpd may take a moment to listen: a few tries, each bounded by -T.
        fetch = f"wget -T 3 -qO- http://{address}/ && exit 0"
        script = f"for i in 1 2 3 4 5 6 7 8 9 10; do {fetch}; sleep 0.2; done; exit 1"
        status, output = run_in(docker_cleanup, script)
    finally:
        web.remove(force=True)
    assert status == 0, output
    assert "lab host: tools" in output
