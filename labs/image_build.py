"""Build the FROM-scratch lab images into a Docker daemon, and copy them between daemons.

A thin shell around the ``docker`` CLI (``docker -H URL build|save|load``).
No registry is reachable from the lab, so images are built locally from
labs/images/ and moved from one daemon to another with ``save | load``.

Builds run with ``DOCKER_BUILDKIT=0``: a current docker CLI without the buildx
plugin refuses BuildKit builds ("BuildKit is enabled but the buildx component
is missing or broken"), and the lab images need nothing the classic builder
lacks. Forcing it keeps the build independent of the CLI's and daemon's
defaults.

Images are tagged ``discovery-lab/<name>:<project version>``, never
``latest``, so a lab never silently runs an image from another version.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import IO

from discovery.errors import DiscoveryError
from labs.docker_tls import without_tls

# Package data of labs (pyproject.toml): each image's Dockerfile and files, on disk.
IMAGES_DIR = Path(str(resources.files("labs") / "images"))
# Build order matters: web is FROM base.
LAB_IMAGES = ("base", "web")
# The lab's own build (labs/images/build-busybox: Debian's source and static
# configuration, musl, `wget -T` that works), else Debian's busybox-static, whose
# `wget -T N` crashes with SIGSEGV (see build-busybox for why).
LAB_BUSYBOX = Path("/var/cache/discovery-lab/busybox-musl/busybox")
DEBIAN_BUSYBOX = Path("/bin/busybox")


def default_busybox() -> Path:
    """The busybox the images get: the lab's musl build when it was made, else Debian's."""
    return LAB_BUSYBOX if LAB_BUSYBOX.is_file() else DEBIAN_BUSYBOX


# Created empty in the image (git cannot hold empty folders); mode is kept by COPY.
_EMPTY_DIRS = {"tmp": 0o1777, "www": 0o755, "root": 0o700}


class ImageError(DiscoveryError):
    """Building, saving or loading a lab image failed."""


def project_version() -> str:
    """The installed discovery-lab version, else the one in pyproject.toml."""
    try:
        return importlib.metadata.version("discovery-lab")
    except importlib.metadata.PackageNotFoundError:
        pyproject = IMAGES_DIR.parent.parent / "pyproject.toml"
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])


def lab_image_names() -> dict[str, str]:
    """Short name -> full tag, e.g. ``{"base": "discovery-lab/base:0.1.0", ...}``."""
    version = project_version()
    return {name: f"discovery-lab/{name}:{version}" for name in LAB_IMAGES}


def elf_interpreter(binary: bytes) -> str | None:
    """The dynamic loader an ELF binary asks for (PT_INTERP), or None if static.

    A dynamically linked busybox copied into a FROM-scratch image fails to
    start with a bare "no such file or directory"; checking here names the
    real problem instead.
    """
    if binary[:4] != b"\x7fELF" or binary[4] != 2:  # 64-bit ELF only, as on the lab's amd64
        raise ValueError("not a 64-bit ELF binary")
    order = "<" if binary[5] == 1 else ">"
    (phoff,) = struct.unpack_from(order + "Q", binary, 0x20)
    phentsize, phnum = struct.unpack_from(order + "HH", binary, 0x36)
    for i in range(phnum):
        offset = phoff + i * phentsize
        (p_type,) = struct.unpack_from(order + "I", binary, offset)
        if p_type == 3:  # PT_INTERP
            (p_offset,) = struct.unpack_from(order + "Q", binary, offset + 8)
            (p_filesz,) = struct.unpack_from(order + "Q", binary, offset + 32)
            return binary[p_offset : p_offset + p_filesz].rstrip(b"\0").decode()
    return None


def _install_busybox(busybox: Path, rootfs: Path) -> None:
    """Copy a static busybox into ``rootfs`` with one symlink per applet."""
    try:
        interpreter = elf_interpreter(busybox.read_bytes())
    except (OSError, ValueError) as exc:
        raise ImageError(f"build: cannot use {busybox} as the image's busybox: {exc}") from exc
    if interpreter is not None:
        raise ImageError(
            f"build: {busybox} is dynamically linked (needs {interpreter}); a FROM-scratch "
            "image needs a static one (Debian: apt-get install busybox-static)"
        )
    (rootfs / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    listing = _run("busybox --list-full", [str(busybox), "--list-full"], None)
    for applet in listing.split():
        # "linuxrc" belongs at / of an initrd, not in a container image.
        if applet == "linuxrc" or applet.endswith("/busybox"):
            continue
        link = rootfs / applet
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists() and not link.is_symlink():
            link.symlink_to("/bin/busybox")
    for name, mode in _EMPTY_DIRS.items():
        (rootfs / name).mkdir(exist_ok=True)
        (rootfs / name).chmod(mode)


def _run(
    step: str,
    cmd: list[str],
    docker_url: str | None,
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
) -> str:
    """Run one command; any failure becomes an ImageError naming the step and daemon."""
    # -H names a unix socket: TLS variables of a learner's shell do not apply to it
    env = {**without_tls(dict(os.environ)), "DOCKER_BUILDKIT": "0"}
    where = f" on {docker_url}" if docker_url else ""
    try:
        done = subprocess.run(
            cmd,
            stdin=stdin,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            check=False,
        )
    except OSError as exc:
        raise ImageError(f"{step}{where}: cannot run {cmd[0]!r}: {exc}") from exc
    out = (done.stdout or b"").decode(errors="replace")
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip() or out.strip()
        tail = "\n".join(err.splitlines()[-10:])
        raise ImageError(f"{step}{where} failed (exit {done.returncode}):\n{tail}")
    return out


def build_lab_images(
    docker_url: str,
    *,
    busybox: Path | None = None,
    docker_cli: str = "docker",
    images_dir: Path = IMAGES_DIR,
) -> list[str]:
    """Build every lab image into the daemon at ``docker_url``; return their tags.

    The build context is a temporary copy of ``images_dir``, so nothing is
    written into the source tree. Rebuilding is cheap: the daemon's layer
    cache makes an unchanged build a no-op. ``busybox`` None: ``default_busybox()``.
    """
    busybox = busybox or default_busybox()
    if not (images_dir / "base" / "Dockerfile").is_file():
        raise ImageError(f"build: no lab images at {images_dir} (a source checkout is needed)")
    names = lab_image_names()
    version = project_version()
    with tempfile.TemporaryDirectory(prefix="discovery-images-") as tmp:
        context_root = Path(tmp)
        for name in LAB_IMAGES:
            shutil.copytree(images_dir / name, context_root / name, symlinks=True)
        _install_busybox(busybox, context_root / "base" / "rootfs")
        for name in LAB_IMAGES:
            cmd = [docker_cli, "-H", docker_url, "build", "--quiet", "--tag", names[name]]
            cmd += ["--build-arg", f"VERSION={version}", "--build-arg", f"BASE={names['base']}"]
            cmd.append(str(context_root / name))
            _run(f"build {names[name]}", cmd, docker_url)
    return [names[name] for name in LAB_IMAGES]


def copy_images(
    from_url: str, to_url: str, names: Sequence[str], *, docker_cli: str = "docker"
) -> None:
    """Copy images between two daemons without a registry: ``save | load``."""
    if not names:
        return
    with tempfile.TemporaryFile() as archive:
        # Through a file rather than a pipe: each side's exit status and
        # stderr are then simply its own.
        _run(
            f"save {' '.join(names)}",
            [docker_cli, "-H", from_url, "save", *names],
            from_url,
            stdout=archive,
        )
        archive.seek(0)
        load = [docker_cli, "-H", to_url, "load", "--quiet"]
        _run(f"load {' '.join(names)}", load, to_url, stdin=archive)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the lab images into a Docker daemon.")
    parser.add_argument("--host", required=True, help="daemon URL, e.g. unix:///run/docker.sock")
    parser.add_argument(
        "--busybox", type=Path, default=None, help=f"default {LAB_BUSYBOX}, else {DEBIAN_BUSYBOX}"
    )
    args = parser.parse_args(argv)
    try:
        tags = build_lab_images(args.host, busybox=args.busybox)
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(tags))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
