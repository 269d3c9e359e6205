"""tracking.py owns MLflow's run lifecycle: a run ends with its block's real status, and so do the children it left
open; with tracking off every call is a no-op."""

from __future__ import annotations

import pickle

import pytest
from mlflow.tracking import MlflowClient

from raytrain.tracking import Store, exit_status


@pytest.fixture
def store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 'mlflow.db'}", "exp", tmp_path)


def status(store: Store, run_id: str) -> str:
    return MlflowClient(store.uri).get_run(run_id).info.status


def test_exit_status_names_each_way_a_block_can_end():
    assert exit_status(None) == "FINISHED"
    assert exit_status(ValueError("x")) == "FAILED"
    assert exit_status(KeyboardInterrupt()) == "KILLED"
    assert exit_status(SystemExit(1)) == "KILLED"


def test_a_block_that_returns_finishes_its_run_and_kills_the_children_it_left_open(store):
    with store.run("parent", tags={"raytrain.stage": "x"}, params={"a": 1}) as parent:
        done = parent.child("done")
        done.end()
        left = parent.child("left")
        assert status(store, parent.run_id) == "RUNNING"
    assert status(store, parent.run_id) == "FINISHED"
    assert status(store, done.run_id) == "FINISHED"  # an ended child keeps its own status
    assert status(store, left.run_id) == "KILLED"
    run = MlflowClient(store.uri).get_run(parent.run_id)
    assert run.data.tags["raytrain.stage"] == "x" and run.data.params == {"a": "1"}
    assert run.data.tags["mlflow.runName"] == "parent"
    assert MlflowClient(store.uri).get_run(left.run_id).data.tags["mlflow.parentRunId"] == parent.run_id


@pytest.mark.parametrize(("exc", "expected"), [(ValueError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_a_block_that_raises_ends_the_run_and_its_open_children_with_that_status(store, exc, expected):
    ids = {}
    with pytest.raises(exc), store.run("parent") as parent:
        ids["parent"] = parent.run_id
        ids["child"] = parent.child("stage").run_id
        ids["other"] = store.open("trial", parent=parent.run_id).run_id  # opened elsewhere, found by its parent tag
        raise exc()
    assert {k: status(store, v) for k, v in ids.items()} == {"parent": expected, "child": expected, "other": expected}


def test_orphans_overrides_the_status_of_the_children_left_open(store):
    with pytest.raises(RuntimeError), store.run("sweep", orphans="KILLED") as parent:
        trial = parent.child("trial")
        raise RuntimeError
    assert (status(store, parent.run_id), status(store, trial.run_id)) == ("FAILED", "KILLED")


def test_a_run_ended_inside_its_block_keeps_that_status(store):
    with store.run("parent") as parent:
        parent.end("FAILED")
    assert status(store, parent.run_id) == "FAILED"


def test_resume_reopens_the_same_run(store):
    with store.run("sweep") as first:
        pass
    with store.run("ignored", resume=first.run_id) as again:
        assert again.run_id == first.run_id and status(store, first.run_id) == "RUNNING"
    assert status(store, first.run_id) == "FINISHED"


def test_end_children_filters_by_tag(store):
    with store.run("sweep") as parent:
        a = parent.child("a", {"raytrain.trial_id": "t1"})
        b = parent.child("b", {"raytrain.trial_id": "t2"})
        assert store.end_children(parent.run_id, "FAILED", "tags.`raytrain.trial_id` = 't1'") == 1
        assert [r.run_id for r in store.children(parent.run_id)] == [b.run_id]
    assert (status(store, a.run_id), status(store, b.run_id)) == ("FAILED", "KILLED")


def test_metrics_and_artifacts_land_in_the_run(store, tmp_path):
    f = tmp_path / "table.md"
    f.write_text("| a |\n")
    with store.run("p") as run:
        run.log_metrics({"best_val_psnr": 30.5})
        run.log_artifact(f)
        run.log_artifact(f, "sub")
    client = MlflowClient(store.uri)
    assert client.get_run(run.run_id).data.metrics == {"best_val_psnr": 30.5}
    assert {a.path for a in client.list_artifacts(run.run_id)} == {"table.md", "sub"}


def test_a_store_survives_pickling_without_its_client(store):
    with store.run("p") as run:
        pass
    clone = pickle.loads(pickle.dumps(store))  # Tune pickles the trial function's arguments and its callbacks
    assert clone._client_obj is None and clone.get(run.run_id).status == "FINISHED"


def test_tracking_off_makes_every_call_a_no_op(tmp_path):
    off = Store(None)
    with off.run("p", tags={"a": 1}, params={"b": 2}) as run:
        assert not run and run.run_id is None and run.info is None
        child = run.child("c")
        child.log_metrics({"x": 1.0})
        child.log_artifact(tmp_path)
        child.set_tags({"y": 2})
        child.end()
    assert off.children(None) == [] and off.end_children("abc", "KILLED") == 0
    assert not list(tmp_path.iterdir())  # no database written


def test_an_unknown_status_is_refused(store):
    with store.run("p") as run, pytest.raises(ValueError, match="RUNNING"):
        run.end("RUNNING")


def test_git_state_names_the_commit_and_whether_the_tree_was_dirty(tmp_path):
    import subprocess

    from raytrain.provenance import git_state

    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True, text=True)  # noqa: E731
    assert git_state.__wrapped__(str(tmp_path)) == ("unknown", "unknown")  # not a checkout
    git("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    git("add", "f.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    head = git("rev-parse", "HEAD").stdout.strip()
    assert git_state.__wrapped__(str(tmp_path)) == (head, "false")
    (tmp_path / "new.txt").write_text("untracked files do not make it dirty")
    assert git_state.__wrapped__(str(tmp_path)) == (head, "false")
    (tmp_path / "f.txt").write_text("b")
    assert git_state.__wrapped__(str(tmp_path)) == (head, "true")


def test_every_run_carries_what_made_it(store):
    import torch

    from raytrain import __version__

    run = store.open("prov")
    tags = store.client.get_run(run.run_id).data.tags
    assert tags["raytrain.version"] == __version__ and tags["torch.version"] == torch.__version__
    assert {"raytrain.git_commit", "raytrain.git_dirty", "mlflow.version", "python.version"} <= set(tags)
