"""Manifests: write, read and verify, for an output file and for an output folder."""

from __future__ import annotations

import hashlib
import json

import pytest

from potstill import manifest
from potstill.manifest import ManifestError


def _write_file_output(tmp_path):
    out = tmp_path / "emb.npy"
    out.write_bytes(b"some embeddings")
    src = tmp_path / "texts.txt"
    src.write_text("a\nb\n", encoding="utf-8")
    path = manifest.write(
        out, "encode", {"batch_size": 4}, "abc123", [manifest.Input.of(src)], [out], extra={"shape": [2, 3]}
    )
    return out, path


def test_write_and_read_for_a_file(tmp_path):
    out, path = _write_file_output(tmp_path)
    assert path == tmp_path / "emb.npy.manifest.json"
    data = manifest.read(out)
    assert data == json.loads(path.read_text(encoding="utf-8"))
    assert data["stage"] == "encode" and data["config"] == {"batch_size": 4}
    assert data["config_sha256"] == "abc123" and data["shape"] == [2, 3]
    assert data["outputs"] == {"emb.npy": hashlib.sha256(b"some embeddings").hexdigest()}
    assert data["inputs"] == [{"path": str(tmp_path / "texts.txt"), "manifest_sha256": None}]
    assert data["format_version"] == manifest.FORMAT_VERSION and "mlx" in data["versions"]
    assert manifest.read(path) == data  # the manifest file itself may be named
    assert manifest.verify(out) == []
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_verify_detects_changed_and_missing_outputs(tmp_path):
    out, _ = _write_file_output(tmp_path)
    out.write_bytes(b"some embeddingz")
    assert manifest.verify(out) == ["emb.npy: sha256 differs from the manifest"]
    out.unlink()
    with pytest.raises(ManifestError, match="does not exist"):
        manifest.verify(out)


def test_a_folder_output(tmp_path):
    folder = tmp_path / "stage"
    (folder / "sub").mkdir(parents=True)
    files = [folder / "a.bin", folder / "sub" / "b.json"]
    for i, f in enumerate(files):
        f.write_bytes(bytes([i]) * 10)
    path = manifest.write(folder, "distill", {}, "h", [], files)
    assert path == folder / "manifest.json"
    assert set(manifest.read(folder)["outputs"]) == {"a.bin", "sub/b.json"}
    assert manifest.verify(folder) == []
    (folder / "sub" / "b.json").unlink()
    assert manifest.verify(folder) == ["sub/b.json: missing"]


def test_an_input_with_a_manifest_records_its_hash(tmp_path):
    out, path = _write_file_output(tmp_path)
    inp = manifest.Input.of(out)
    assert inp.manifest_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_read_errors(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        manifest.read(tmp_path / "nothing")
    plain = tmp_path / "plain.npy"
    plain.write_bytes(b"x")
    with pytest.raises(ManifestError, match=r"has no manifest \(plain\.npy\.manifest\.json\)"):
        manifest.read(plain)
    out, path = _write_file_output(tmp_path)
    path.write_text("{broken", encoding="utf-8")
    with pytest.raises(ManifestError, match="is unreadable"):
        manifest.read(out)
    path.write_text(json.dumps({"format_version": 99, "outputs": {}}), encoding="utf-8")
    with pytest.raises(ManifestError, match="format_version 99 != 1"):
        manifest.read(out)
