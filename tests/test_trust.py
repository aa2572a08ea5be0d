"""Issue 14, point 5: nothing from a shared store is unpickled without proof. Whoever can write the artifact store
changes a registered model's file, leaves an old cloudpickle model whose pickle runs code, or swaps a step's output
for a skops file that names a function: each is refused with a message naming the artifact, and the code in it
never runs."""
import io, os, pickle, re, zipfile
from pathlib import Path

import pytest
from conftest import cli, client_for, mini_project

M = "mlops-wb-model"


class _Bomb:
    "Unpickling this creates the file `path`: what a hostile pickle would do, harmlessly."
    def __init__(self, path): self.path = str(path)
    def __reduce__(self): return (open, (self.path, "w"))


def _evil_skops(size: int | None = None) -> bytes:
    "A skops file naming os.system (skops would call it while loading), padded with a zip comment to `size` bytes."
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer
    data = sio.dumps(FunctionTransformer(os.system), compression=zipfile.ZIP_DEFLATED)
    if size is None: return data
    pad = size - len(data)
    assert 0 <= pad < 65536, f"cannot pad {len(data)} bytes to {size}"
    buf = io.BytesIO(data)
    with zipfile.ZipFile(buf, "a") as z: z.comment = b" " * pad
    assert len(buf.getvalue()) == size
    return buf.getvalue()


def test_tampered_or_pickled_models_are_refused(tmp_path):
    import mlflow
    from mlops_wb.data import load_demo
    from mlops_wb.models import load_model
    from mlops_wb.registry import register_model
    from mlops_wb.train import fit_model
    from mlops_wb.trust import UntrustedArtifact
    root = mini_project(tmp_path / "p", {}, "")
    client, eid = client_for(root)
    df = load_demo("breast_cancer")
    X = df.drop(columns="target")
    m = fit_model(df, "target", max_iter=300)
    v1 = register_model(m, X.head(5), client.create_run(eid).info.run_id, M)
    assert list(load_model(f"models:/{M}/{v1}").predict(X.head(9))) == list(m.predict(X.head(9)))

    # 1. the registered file changed in the artifact store: its sha256 is not the one the version recorded
    art = next((root / "store").rglob("model.skops"))
    art.write_bytes(_evil_skops())
    with pytest.raises(UntrustedArtifact, match=rf"model {M} version {v1} \(model.skops\): refused, its sha256"):
        load_model(f"models:/{M}/{v1}")

    # 2. ... and with its digest tag gone too, the file is still refused for the types it names
    client.delete_model_version_tag(M, v1, "mlops_wb.model_sha256")
    with pytest.raises(UntrustedArtifact, match=r"names types that are not trusted: posix.system"):
        load_model(f"models:/{M}@challenger")

    # 3. a model saved with cloudpickle (as versions before skops were), whose pickle runs code when loaded
    marker = tmp_path / "pickle-ran"
    with mlflow.start_run(experiment_id=eid):
        old = mlflow.sklearn.log_model(m, name="model", serialization_format="cloudpickle")
    ov = mlflow.register_model(old.model_uri, "legacy").version
    next(p for p in (root / "store").rglob("model.pkl")).write_bytes(pickle.dumps(_Bomb(marker)))
    with pytest.raises(UntrustedArtifact, match=rf"model legacy version {ov} \(model.pkl\): saved with cloudpickle.*"
                                                r"Re-register it"):
        load_model(f"models:/legacy/{ov}")
    assert not marker.exists()   # nothing in it ran


A = ("", ["from mlops_wb.step import StepIO\nfrom sklearn.preprocessing import StandardScaler\n"
          "StepIO(step_dir, upstream).save('model', StandardScaler().fit([[0.0], [2.0]]))"])
B = ("x = 1\n", ["from mlops_wb.step import StepIO\nio = StepIO(step_dir, upstream)\n"
                 "io.save('mean', {'mean': float(io.load('a', 'model').mean_[0]) * x})"])
STEPS = ("  - name: a\n    notebook: nbs/a.ipynb\n"
         "  - name: b\n    notebook: nbs/b.ipynb\n    depends_on: [a]\n")


def test_a_step_output_swapped_in_the_store_is_refused(tmp_path):
    root = mini_project(tmp_path / "p", {"a": A, "b": B}, STEPS)
    res = cli(root, "run")
    assert res.returncode == 0, res.stderr
    out = next((root / "store").rglob("outputs/model.skops"))     # step a's output, as the store keeps it
    assert not list((root / "store").rglob("*.joblib"))           # nothing pickled
    out.write_bytes(_evil_skops(out.stat().st_size))              # same size, other content

    # the tampered file never reaches a step: its sha256 is not the one a's run recorded, so a runs again
    res = cli(root, "run", "-p", "b.x=2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"│ a\s+│ ran ", res.stdout) and re.search(r"│ b\s+│ ran ", res.stdout), res.stdout

    # and a skops file naming types that are not trusted is refused when a step reads it, whatever its digest
    from mlops_wb.step import StepIO
    from mlops_wb.trust import UntrustedArtifact
    evil = tmp_path / "outputs" / "model.skops"; evil.parent.mkdir()
    evil.write_bytes(_evil_skops())
    with pytest.raises(UntrustedArtifact, match=r"output 'model' of step 'a'.*names types that are not trusted: posix.system"):
        StepIO(tmp_path / "b", {"a": {"model": str(evil)}}).load("a", "model")
    assert "Traceback" not in res.stderr, res.stderr
