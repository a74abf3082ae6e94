"""Which libtorch this process uses.

m2ib's extension links libtorch 2.13.0 by its library names (libtorch_cpu.so, libc10.so). In one
process each name is loaded once, so if PyTorch is imported too -- before m2ib or after -- both
share one set of libraries, and that only works when PyTorch is the same version. We therefore
check the installed torch's version *before* loading the extension (without importing torch):
2.13.x is fine in either import order, anything else is refused with a message instead of a
crash. README "Python" says more.
"""

from importlib import metadata

TORCH_VERSION = "2.13.0"


def check_installed_torch():
    """Raise ImportError when a torch other than 2.13.x is installed in this environment."""
    try:
        found = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None
    release = found.split("+")[0]
    if release.split(".")[:2] != TORCH_VERSION.split(".")[:2]:
        where = metadata.distribution("torch").locate_file("torch")
        raise ImportError(
            f"m2ib links libtorch {TORCH_VERSION}, but torch {found} is installed here ({where}); "
            f"one process can hold only one libtorch. Install torch=={TORCH_VERSION} "
            f"(pip install torch=={TORCH_VERSION}) or use m2ib from an environment without torch."
        )
    return found
