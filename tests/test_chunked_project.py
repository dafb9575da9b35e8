"""Projects in chunks: a commit writes only the chunks it touches, a kill at any moment (also in
the middle of a chunk write) leaves labels and record that agree, previous-layout projects open
and convert, export, file modes follow the umask, the reader is lazy."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tifffile

from napari_risnet.annotation import AnnotationSession
from napari_risnet.annotation.label_store import ChunkedLabels
from napari_risnet.annotation.project import (ImageInfo, Project, open_session, replay)
from napari_risnet.cli import main
from napari_risnet.clicks import Click

from test_project import ComponentSegmenter, as_previous_layout, read_until, saved_labels

SHAPE = (5, 700, 700)  # 2 x 2 tiles of at most 512 per slice
#: (slice, row, col) of the bright discs, one object each
DISCS = [(1, 100, 100), (3, 600, 600), (2, 100, 600), (0, 600, 100)]


def disc_stack(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    stack = rng.normal(40, 8, SHAPE)
    rr, cc = np.mgrid[:SHAPE[1], :SHAPE[2]]
    for z, r, c in DISCS:
        stack[z][(rr - r) ** 2 + (cc - c) ** 2 <= 20 ** 2] += 150
    return np.clip(stack, 0, 255).astype(np.uint8)


def chunk_files(folder) -> dict[str, tuple[int, int]]:
    """Chunk file -> (inode, mtime): a rewritten chunk gets a new inode (written by rename)."""
    root = folder / "labels.zarr" / "c"
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def commit_disc(session, k: int) -> int:
    z, r, c = DISCS[k]
    session.add_click(Click(r, c), slice_key=(z,))
    return session.commit()


def test_a_commit_writes_only_the_chunks_its_object_touches(tmp_path) -> None:
    stack = disc_stack()
    folder = tmp_path / "p.risnet"
    session = AnnotationSession(stack, ComponentSegmenter())
    project, info = Project(folder), ImageInfo.of(stack)
    assert commit_disc(session, 0) == 1
    project.save(session, info)
    assert isinstance(session.labels, ChunkedLabels)  # the session continues on the store
    assert sorted(chunk_files(folder)) == ["1/0/0"]
    before = chunk_files(folder)
    assert commit_disc(session, 1) == 2
    project.save(session, info)
    after = chunk_files(folder)
    assert sorted(after) == ["1/0/0", "3/1/1"] and after["1/0/0"] == before["1/0/0"]
    assert not (folder / "journal").exists() and not (folder / "labels.tif").exists()
    record = json.loads((folder / "project.json").read_text())
    assert record["version"] == 2 and record["generation"] == 2
    assert record["labels"]["store"] == "labels.zarr" and record["labels"]["chunks"] == [1, 512, 512]
    assert record["labels"]["chunk_max"] == {"c/1/0/0": 1, "c/3/1/1": 2}
    session.undo()  # undo rewrites the chunk it touched (the object leaves it empty: deleted)
    project.save(session, info)
    assert sorted(chunk_files(folder)) == ["1/0/0"]
    assert session.next_label_id() == 2  # as with a numpy label array: the id is free again
    session.redo()
    project.save(session, info)
    reopened, _, state = open_session(folder, stack, ComponentSegmenter())
    assert state.object_ids == [1, 2]
    np.testing.assert_array_equal(np.asarray(reopened.labels), np.asarray(session.labels))
    assert reopened.next_label_id() == 3


def test_a_big_volume_is_read_lazily(tmp_path, monkeypatch) -> None:
    """Above the mirror size nothing of the volume is held: reads come from the chunks."""
    import napari_risnet.annotation.project as project_module

    monkeypatch.setattr(project_module, "MIRROR_BYTES", 0)
    stack = disc_stack()
    folder = tmp_path / "p.risnet"
    session = AnnotationSession(stack, ComponentSegmenter())
    commit_disc(session, 0)
    Project(folder).save(session, ImageInfo.of(stack))
    reopened, project, _ = open_session(folder, stack, ComponentSegmenter())
    assert reopened.labels.mirror is None
    assert commit_disc(reopened, 2) == 2
    reopened.undo()
    assert reopened.next_label_id() == 2
    assert commit_disc(reopened, 2) == 2
    assert commit_disc(reopened, 3) == 3
    project.save(reopened, ImageInfo.of(stack))
    assert sorted(chunk_files(folder)) == ["0/1/0", "1/0/0", "2/0/1"]
    z, r, c = DISCS[3]
    assert reopened.labels[z, r, c] == 3 and reopened.object_at((z,), r, c) == 3
    assert reopened.recompute(reopened.click_records()) == [1, 2, 3]  # clears by slice
    project.save(reopened, ImageInfo.of(stack))
    np.testing.assert_array_equal(saved_labels(folder), np.asarray(reopened.labels))


def test_an_unsaved_commit_is_rolled_back_even_with_a_torn_chunk(tmp_path) -> None:
    """A commit whose record was never written (the process died before or during the chunk
    writes) is undone on reopening: labels and record agree."""
    stack = disc_stack()
    folder = tmp_path / "p.risnet"
    session = AnnotationSession(stack, ComponentSegmenter())
    commit_disc(session, 0)
    Project(folder).save(session, ImageInfo.of(stack))
    saved = saved_labels(folder)
    commit_disc(session, 1)  # chunks written, journal holds the old ones; no save
    commit_disc(session, 2)
    assert (folder / "journal" / "base").is_file()
    torn = folder / "labels.zarr" / "c" / "3" / "1" / "1"
    torn.write_bytes(torn.read_bytes()[:7])  # a chunk cut in the middle of its write
    (folder / "labels.zarr" / "c" / "2" / "0" / "1").write_bytes(b"garbage")
    reopened, _, state = open_session(folder, stack, ComponentSegmenter())
    assert state.object_ids == [1] and not (folder / "journal").exists()
    np.testing.assert_array_equal(np.asarray(reopened.labels), saved)
    assert sorted(chunk_files(folder)) == ["1/0/0"]


def test_a_commit_cut_after_its_record_is_kept(tmp_path, monkeypatch) -> None:
    """Killed after the record was written but before the journal was deleted: the commit
    stands (the journal is only cleaned up)."""
    import napari_risnet.annotation.label_store as label_store

    stack = disc_stack()
    folder = tmp_path / "p.risnet"
    session = AnnotationSession(stack, ComponentSegmenter())
    commit_disc(session, 0)
    Project(folder).save(session, ImageInfo.of(stack))
    commit_disc(session, 1)

    def killed(folder):
        raise KeyboardInterrupt("killed before the journal was deleted")

    monkeypatch.setattr(label_store, "drop_journal", killed)
    with pytest.raises(KeyboardInterrupt):
        Project(folder).save(session, ImageInfo.of(stack))
    monkeypatch.undo()
    assert (folder / "journal" / "base").is_file()
    reopened, _, state = open_session(folder, stack, ComponentSegmenter())
    assert state.object_ids == [1, 2] and not (folder / "journal").exists()
    np.testing.assert_array_equal(np.asarray(reopened.labels), np.asarray(session.labels))


KILL_SCRIPT = textwrap.dedent(r"""
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from test_chunked_project import DISCS, commit_disc, disc_stack
    from test_project import ComponentSegmenter
    from napari_risnet.annotation import AnnotationSession
    from napari_risnet.annotation.project import ImageInfo, Project

    stack = disc_stack()
    session = AnnotationSession(stack, ComponentSegmenter())
    project, info = Project(sys.argv[1]), ImageInfo.of(stack)
    mode = sys.argv[3]
    if mode == "torn":  # the next chunk write stops half-way and the process hangs there
        import zarr.storage._local as local

        def torn_put(path, value, exclusive=False):
            data = bytes(value.as_buffer_like())
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(data[:len(data) // 2])
            print("TORN", flush=True)
            time.sleep(600)
    for k in range(len(DISCS)):
        if mode == "torn" and k == 2:
            local._put = torn_put
        commit_disc(session, k)
        project.save(session, info)
        print(f"SAVED {k + 1}", flush=True)
    print("LOOPING", flush=True)
    while True:  # undo / redo the last commit and save, until killed mid-way
        session.undo(); project.save(session, info)
        session.redo(); project.save(session, info)
""")


@pytest.mark.parametrize("kill_after", ["SAVED 2", "LOOPING", "TORN"])
def test_a_killed_process_leaves_labels_and_record_that_agree(tmp_path, kill_after) -> None:
    folder = tmp_path / "proj.risnet"
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    mode = "torn" if kill_after == "TORN" else "loop"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(folder), tests_dir, mode],
                            stdout=subprocess.PIPE, text=True)
    try:
        seen = read_until(proc, kill_after)
        if kill_after == "LOOPING":
            time.sleep(0.5)  # inside the undo / redo / save loop
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
        proc.stdout.close()
    assert kill_after in seen and proc.returncode == -signal.SIGKILL
    committed = max(int(s.split()[1]) for s in seen if s.startswith("SAVED"))
    stack = disc_stack()
    session, _, state = open_session(folder, stack, ComponentSegmenter())
    ids = sorted(session.objects)
    assert not (folder / "journal").exists()
    labels = np.asarray(session.labels)
    assert sorted(int(i) for i in np.unique(labels) if i) == ids  # pixels = records
    for k in ids:
        z, r, c = DISCS[k - 1]
        assert labels[z, r, c] == k
    if kill_after == "LOOPING":
        assert ids in ([1, 2, 3], [1, 2, 3, 4])  # the last commit: undone or redone
    else:
        assert ids == list(range(1, committed + 1))
    np.testing.assert_array_equal(replay(state, stack, ComponentSegmenter()), labels)


def test_a_previous_layout_project_opens_replays_and_converts_at_its_first_save(tmp_path):
    stack = disc_stack()
    folder = tmp_path / "p.risnet"
    session = AnnotationSession(stack, ComponentSegmenter())
    commit_disc(session, 0)
    commit_disc(session, 1)
    Project(folder).save(session, ImageInfo.of(stack))
    expected = np.asarray(session.labels).copy()
    as_previous_layout(folder)  # labels.tif with the record inside, version 1
    assert sorted(p.name for p in folder.iterdir()) == ["labels.tif", "project.json"]
    reopened, project, state = open_session(folder, stack, ComponentSegmenter())
    assert isinstance(state.labels, np.ndarray) and state.object_ids == [1, 2]
    np.testing.assert_array_equal(np.asarray(reopened.labels), expected)
    np.testing.assert_array_equal(replay(state, stack, ComponentSegmenter()), expected)
    assert commit_disc(reopened, 2) == 3
    project.save(reopened, ImageInfo.of(stack))
    assert sorted(p.name for p in folder.iterdir()) == ["labels.zarr", "project.json"]
    state = Project(folder).load()
    assert state.object_ids == [1, 2, 3] and isinstance(state.labels, ChunkedLabels)
    z, r, c = DISCS[2]
    expected[z][np.asarray(reopened.labels)[z] == 3] = 3
    np.testing.assert_array_equal(np.asarray(state.labels), expected)


@pytest.mark.parametrize("name", ["labels.tif", "labels.ome.tif"])
def test_export_writes_one_tiff(tmp_path, capsys, name) -> None:
    stack = disc_stack()
    folder = tmp_path / "p.risnet"
    session = AnnotationSession(stack, ComponentSegmenter())
    commit_disc(session, 0)
    commit_disc(session, 3)
    Project(folder).save(session, ImageInfo.of(stack))
    out = tmp_path / "out" / name
    assert main(["export", str(folder), "-o", str(out)]) == 0
    assert "2 objects" in capsys.readouterr().out
    np.testing.assert_array_equal(tifffile.imread(out), np.asarray(session.labels))
    if name.endswith(".ome.tif"):
        with tifffile.TiffFile(out) as tif:
            assert tif.is_ome and tif.series[0].axes == "ZYX"
    assert main(["export", str(tmp_path / "nothing"), "-o", str(out)]) == 2


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_project_files_follow_the_umask(tmp_path, umask) -> None:
    stack = disc_stack()
    folder = tmp_path / "p.risnet"
    old = os.umask(umask)
    try:
        session = AnnotationSession(stack, ComponentSegmenter())
        commit_disc(session, 0)
        Project(folder).save(session, ImageInfo.of(stack))
        commit_disc(session, 1)
        Project(folder).save(session, ImageInfo.of(stack))
    finally:
        os.umask(old)
    files = [folder / "project.json", *(folder / "labels.zarr").rglob("*")]
    modes = {oct(p.stat().st_mode & 0o777) for p in files if p.is_file()}
    assert modes == {oct(0o666 & ~umask)}


def test_the_reader_opens_a_project_lazily(tmp_path) -> None:
    import zarr

    from napari_risnet._napari.reader import get_reader

    stack = disc_stack()
    image = tmp_path / "stack.tif"
    tifffile.imwrite(image, stack)
    folder = tmp_path / "stack.risnet"
    session = AnnotationSession(stack, ComponentSegmenter())
    commit_disc(session, 0)
    Project(folder).save(session, ImageInfo.of(stack, path=image))
    layers = get_reader(str(folder))(str(folder))
    assert [kind for _, _, kind in layers] == ["image", "labels"]
    labels = layers[1][0]
    assert isinstance(labels, zarr.Array) and labels.shape == SHAPE
    z, r, c = DISCS[0]
    assert labels[z, r, c] == 1


def test_a_large_tiff_is_opened_lazily(tmp_path, monkeypatch) -> None:
    import napari_risnet.data as data

    stack = disc_stack()
    tifffile.imwrite(tmp_path / "plain.tif", stack)
    tifffile.imwrite(tmp_path / "packed.tif", stack, compression="zlib")
    monkeypatch.setattr(data, "LAZY_BYTES", 0)
    plain, packed = data.open_image(tmp_path / "plain.tif"), data.open_image(tmp_path / "packed.tif")
    assert isinstance(plain, np.memmap) and not isinstance(packed, np.ndarray)
    np.testing.assert_array_equal(np.asarray(packed[2]), stack[2])
    np.testing.assert_array_equal(plain[1], stack[1])


def test_the_preview_of_a_stack_holds_only_the_slices_with_a_mask() -> None:
    import asyncio

    from napari_risnet._napari.lazy_labels import labels_layer_data, preview_array
    from napari_risnet._napari.layers import mask_to_preview

    preview = preview_array(SHAPE)
    mask = np.zeros(SHAPE[1:], bool)
    mask[10:20, 30:40] = True
    mask_to_preview(preview, (2,), mask)
    mask_to_preview(preview, (3,), mask)
    mask_to_preview(preview, (3,), None)  # cleared: its chunk goes

    async def keys():
        return [k async for k in preview.store.list_prefix("c/")]

    assert asyncio.run(keys()) == ["c/2/0/0"]
    assert preview[2, 15, 35] == 1 and not preview[3].any()
    flat = preview_array(SHAPE[1:])
    mask_to_preview(flat, (), mask)
    assert isinstance(flat, np.ndarray) and flat.sum() == mask.sum()
    dense = np.zeros(SHAPE, np.int32)
    assert labels_layer_data(dense) is dense
