import json
from dataclasses import dataclass

import numpy as np
import pytest

from imitlib import artifacts, stats
from imitlib.artifacts import ArtifactError, StaleArtifactWarning, cached, config_hash


@dataclass(frozen=True)
class Cfg:
    n: int = 3
    name: str = "x"


def make(n: int = 3):
    calls = []

    def compute():
        calls.append(1)
        return {"a": np.arange(n, dtype=np.float32), "b": np.eye(2)}

    return compute, calls


def test_round_trip_and_load_if_present(tmp_path):
    compute, calls = make()
    first = cached("demo", Cfg(), compute, scale="lab", root=tmp_path)
    second = cached("demo", Cfg(), compute, scale="lab", root=tmp_path)
    assert len(calls) == 1 and not first.loaded and second.loaded
    for k in ("a", "b"):
        np.testing.assert_array_equal(first[k], second[k])
        assert first[k].dtype == second[k].dtype
    prov = second.provenance
    assert prov["scale"] == "lab" and prov["config"]["n"] == 3 and prov["created"] and "imitlib_version" in prov
    assert "computed just now" in first.provenance_markdown() and "loaded" in second.provenance_markdown()
    assert artifacts.is_stored("demo", Cfg(), "lab", root=tmp_path)
    assert not artifacts.is_stored("demo", Cfg(n=4), "lab", root=tmp_path)


def test_config_change_means_new_artifact(tmp_path):
    compute, calls = make()
    cached("demo", Cfg(n=3), compute, scale="lab", root=tmp_path)
    cached("demo", Cfg(n=4), compute, scale="lab", root=tmp_path)
    cached("demo", Cfg(n=3), compute, scale="full", root=tmp_path)
    assert len(calls) == 3
    assert config_hash("demo", Cfg(), "lab") != config_hash("demo", Cfg(n=4), "lab")


def test_ci_scale_always_computes_and_writes_nothing(tmp_path):
    compute, calls = make()
    cached("demo", Cfg(), compute, scale="ci", root=tmp_path)
    art = cached("demo", Cfg(), compute, scale="ci", root=tmp_path)
    assert len(calls) == 2 and art.path is None and not any(tmp_path.iterdir())


def test_recompute_env_forces_compute(tmp_path, monkeypatch):
    compute, calls = make()
    cached("demo", Cfg(), compute, scale="lab", root=tmp_path)
    monkeypatch.setenv("IMITLIB_RECOMPUTE", "1")
    cached("demo", Cfg(), compute, scale="lab", root=tmp_path)
    assert len(calls) == 2


def test_corrupted_data_is_refused_with_the_file_named(tmp_path):
    compute, _ = make()
    art = cached("demo", Cfg(), compute, scale="lab", root=tmp_path)
    data = art.path / "data.npz"
    data.write_bytes(data.read_bytes()[:-20])  # truncated
    with pytest.raises(ArtifactError, match=r"data\.npz.*checksum.*delete"):
        cached("demo", Cfg(), compute, scale="lab", root=tmp_path)


def test_garbage_with_matching_checksum_is_still_refused(tmp_path):
    compute, _ = make()
    art = cached("demo", Cfg(), compute, scale="lab", root=tmp_path)
    (art.path / "data.npz").write_bytes(b"not a zip file")
    prov = json.loads((art.path / "provenance.json").read_text())
    prov["files"]["data.npz"] = artifacts.sha256_file(art.path / "data.npz")
    (art.path / "provenance.json").write_text(json.dumps(prov))
    with pytest.raises(ArtifactError, match=r"not a readable \.npz"):
        artifacts.load(art.path)


def test_broken_provenance_is_refused(tmp_path):
    compute, _ = make()
    art = cached("demo", Cfg(), compute, scale="lab", root=tmp_path)
    (art.path / "provenance.json").write_text("{half")
    with pytest.raises(ArtifactError, match="provenance"):
        artifacts.load(art.path)


def test_interrupted_compute_leaves_nothing_behind(tmp_path):
    def boom():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached("demo", Cfg(), boom, scale="lab", root=tmp_path)
    assert not list(tmp_path.rglob("*.npz")) and not list(tmp_path.rglob("*.tmp"))


def test_object_arrays_and_odd_configs_are_refused(tmp_path):
    with pytest.raises(TypeError, match="no pickle"):
        cached("demo", Cfg(), lambda: {"x": np.array([{}, 1], dtype=object)}, scale="lab", root=tmp_path)
    with pytest.raises(TypeError, match="artifact config"):
        config_hash("demo", {"f": object()}, "lab")


def test_changed_code_loads_with_a_warning(tmp_path):
    compute, calls = make()
    cached("demo", Cfg(), compute, scale="lab", code=(artifacts,), root=tmp_path)
    fresh = cached("demo", Cfg(), compute, scale="lab", code=(artifacts,), root=tmp_path)
    assert not fresh.stale
    with pytest.warns(StaleArtifactWarning, match="IMITLIB_RECOMPUTE"):
        old = cached("demo", Cfg(), compute, scale="lab", code=(artifacts, stats), root=tmp_path)
    assert old.stale and len(calls) == 1 and "has changed since" in old.provenance_markdown()


def test_large_artifacts_are_split_into_small_files(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "SHARD_BYTES", 1000)
    data = {f"a{i}": np.full(200, i, np.float32) for i in range(5)}  # 800 bytes each
    art = cached("big", Cfg(), lambda: data, scale="lab", root=tmp_path)
    assert sorted(art.provenance["files"]) == ["data-1.npz", "data-2.npz", "data-3.npz", "data-4.npz", "data.npz"]
    loaded = artifacts.load(art.path)
    for k, v in data.items():
        np.testing.assert_array_equal(loaded[k], v)
    (art.path / "data-3.npz").unlink()
    with pytest.raises(ArtifactError, match=r"data-3\.npz: missing"):
        artifacts.load(art.path)
