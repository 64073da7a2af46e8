"""Sandbox images for the docker backend.

- offline (the default, for machines that cannot pull): an image imported from an empty
  root filesystem; at run time the host's interpreter, the virtual environment and the
  runner's two packages are mounted read-only into it. Its tag is a hash of what it was
  built for (interpreter, environment, Python version), and the same facts are labels.
- `sandbox/Dockerfile`: a CUDA PyTorch image with the runner baked in, for users with a
  registry (`docker build -f sandbox/Dockerfile -t archlab-sandbox .`, then
  `ARCHLAB_SANDBOX__IMAGE=archlab-sandbox`).
"""
from __future__ import annotations

import hashlib
import io
import platform
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IN_CONTAINER_ROOT = "/opt/archlab"       # where the runner's packages appear
EMPTY_DIRS = ("tmp", "job", "opt/archlab", "proc", "dev", "sys", "etc", "usr")
HOST_SYSTEM = ("/usr", "/lib", "/lib64", "/bin", "/sbin")   # shared libraries and coreutils the interpreter needs


@dataclass
class ImagePlan:
    tag: str
    labels: dict[str, str]
    mounts: dict[str, str] = field(default_factory=dict)   # host path -> container path, all read-only
    python: str = ""
    offline: bool = True


def offline_plan() -> ImagePlan:
    venv = Path(sys.prefix).resolve()
    base = Path(sys.base_prefix).resolve()
    python = Path(sys.executable)
    facts = {"archlab.python": platform.python_version(), "archlab.interpreter": str(base),
             "archlab.venv": str(venv), "archlab.kind": "offline"}
    digest = hashlib.sha256(repr(sorted(facts.items())).encode()).hexdigest()[:12]
    mounts = {p: p for p in HOST_SYSTEM if Path(p).exists() and not Path(p).is_symlink()}
    mounts[str(base)] = str(base)
    mounts[str(venv)] = str(venv)
    for package in ("sandbox", "evaluators", "wire"):
        mounts[str(PROJECT_ROOT / package)] = f"{IN_CONTAINER_ROOT}/{package}"
    return ImagePlan(tag=f"archlab-offline:{digest}", labels=facts, mounts=mounts, python=str(python))


def image_plan(image: str | None) -> ImagePlan:
    """The offline plan, or a prebuilt image (built from sandbox/Dockerfile) used as it is."""
    if not image:
        return offline_plan()
    return ImagePlan(tag=image, labels={}, mounts={}, python="python", offline=False)


def empty_rootfs() -> bytes:
    """A root filesystem of empty directories, plus the host's top-level symlinks (/lib -> usr/lib on merged-/usr systems)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in EMPTY_DIRS:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        for path in HOST_SYSTEM:
            if Path(path).is_symlink():
                info = tarfile.TarInfo(path.lstrip("/"))
                info.type = tarfile.SYMTYPE
                info.linkname = str(Path(path).readlink())
                tar.addfile(info)
    return buffer.getvalue()


def ensure_image(client, plan: ImagePlan) -> None:
    """Import the offline image if it is missing; a missing prebuilt image is the caller's error."""
    import docker.errors
    try:
        client.images.get(plan.tag)
        return
    except docker.errors.ImageNotFound:
        if not plan.offline:
            raise
    repository, tag = plan.tag.split(":")
    changes = [f'LABEL {k}="{v}"' for k, v in plan.labels.items()]
    client.api.import_image_from_data(empty_rootfs(), repository=repository, tag=tag, changes=changes)
