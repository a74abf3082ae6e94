"""One libtorch per process: m2ib beside PyTorch 2.13 in either import order, and a clear
ImportError (not a crash) beside any other torch. README "Python: PyTorch in the same process".
"""

import os
import subprocess
import sys
import textwrap

import pytest

ORDER = {
    "torch first": "import torch\nimport m2ib\n",
    "m2ib first": "import m2ib\nimport torch\n",
}

PROBE = textwrap.dedent(
    """
    model = m2ib.load("tiny-shapes")
    ex = model.attribute("{image}", "a red circle", method="saliency")
    x = torch.arange(6.0).reshape(2, 3)
    assert float((x @ x.T).sum()) == 83.0
    maps = open("/proc/self/maps").read().splitlines()
    libs = sorted({{l.split()[-1] for l in maps if l.endswith(("/libtorch_cpu.so", "/libtorch.so", "/libtorch_cuda.so"))}})
    print("ok", torch.__version__, "cuda available:", torch.cuda.is_available(),
          "cuda built:", torch.backends.cuda.is_built(), "map max:", float(ex.image_map.max()),
          "libraries:", libs)
    """
)


def _env(extra_path=None):
    env = dict(os.environ)
    path = [p for p in [extra_path, env.get("PYTHONPATH")] if p]
    env["PYTHONPATH"] = os.pathsep.join(path)
    return env


def test_another_torch_version_is_refused_at_import(tmp_path):
    """A torch 2.5.1 distribution in the environment: `import m2ib` explains instead of loading
    a second libtorch (the check reads the installed version; torch itself is not imported)."""
    info = tmp_path / "torch-2.5.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.5.1\n")
    out = subprocess.run(
        [sys.executable, "-c", "import m2ib"], capture_output=True, text=True, env=_env(str(tmp_path))
    )
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: m2ib links libtorch 2.13.0, but torch 2.5.1 is installed"), last


@pytest.mark.parametrize("order", sorted(ORDER))
def test_beside_pytorch_2_13_in_either_order(order, scenes):
    """Needs a Python with torch 2.13 (~5.4 GB, so not in CI): M2IB_TORCH_PYTHON=/path/to/python."""
    python = os.environ.get("M2IB_TORCH_PYTHON")
    if not python:
        pytest.skip("set M2IB_TORCH_PYTHON to a Python with torch 2.13 and numpy installed")
    code = ORDER[order] + PROBE.format(image=scenes[0])
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=_env())
    print(order, "->", out.stdout.strip() or out.stderr[-2000:])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ok 2.13" in out.stdout
    # torch's CUDA half is loaded in both orders (not shadowed by the CLI folder's stub).
    assert "/libtorch_cuda.so" in out.stdout and "cuda built: True" in out.stdout
