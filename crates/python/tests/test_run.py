"""m2ib.run writes what `m2ib run` writes; m2ib.results reads it as a DataFrame; reruns resume."""

import pytest
from conftest import REPO, cli

EXPERIMENT = """
name = "py"
seed = 0
devices = "cpu"
workers = 1
chunk_size = 4

[model]
name = "tiny-shapes"
path = "{model}"

[dataset]
reader = "shapes"
split = "test"
n = 4
seed = 0

[methods.saliency]
[methods.gradcam]

[metrics]
localization = ["value"]
text_localization = true
confidence = ["padded"]
"""


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    d = tmp_path_factory.mktemp("exp")
    p = d / "py.toml"
    p.write_text(EXPERIMENT.format(model=REPO / "data" / "tiny-shapes-clip"))
    return p


def test_run_equals_the_cli_and_resumes(m2ib, experiment, tmp_path):
    threads = m2ib._m2ib.num_threads()
    s = m2ib.run(experiment, out=tmp_path / "py", quiet=True)
    # The runner pins threads per worker while it runs; the process gets its own count back.
    assert m2ib._m2ib.num_threads() == threads
    assert s["jobs"] > 0 and s["ran"] == s["jobs"] and s["already_done"] == 0
    again = m2ib.run(experiment, out=tmp_path / "py", quiet=True)
    assert again["already_done"] == s["jobs"] and again["ran"] == 0

    df = m2ib.results(tmp_path / "py")
    assert len(df) > 0
    assert set(df["method"]) >= {"saliency", "gradcam"}
    assert df["value"].notna().sum() > 0

    cli("run", experiment, "--out", tmp_path / "cli", "--quiet")
    want = m2ib.results(tmp_path / "cli")
    key = ["label", "sample_id", "modality", "metric", "metric_variant", "repeat"]
    a = df.sort_values(key).reset_index(drop=True)
    b = want.sort_values(key).reset_index(drop=True)
    assert a[key].equals(b[key])
    assert a["value"].equals(b["value"])


def test_results_in_polars_too(m2ib, experiment, tmp_path):
    pl = pytest.importorskip("polars")
    m2ib.run(experiment, out=tmp_path / "p", quiet=True)
    df = m2ib.results(tmp_path / "p", library="polars")
    assert isinstance(df, pl.DataFrame) and df.height > 0
