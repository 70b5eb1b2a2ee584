"""One walker, one policy: the files the SDK uploads are the files local mode links."""

from __future__ import annotations

import os
import stat

import pytest

from container.local import build_tree
from container.walk import UnsafeTree, walk_files
from sdk import ConfigurationError
from sdk.jobs.s3 import plan_upload


def _dataset(root):
    """labels/ real, images/ a link to a folder inside the dataset, one file linked by name."""
    (root / "store" / "train").mkdir(parents=True)
    (root / "store" / "train" / "a.jpg").write_bytes(b"jpg")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "images").symlink_to("store", target_is_directory=True)
    (root / "data.yaml").write_text("names: [a]\n")
    (root / "same.yaml").symlink_to("data.yaml")
    return root


def _tree_files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_links_inside_are_followed_and_upload_equals_local_mode(tmp_path):
    root = _dataset(tmp_path / "data")
    rel = [f.relpath for f in walk_files(root)]
    assert rel == ["data.yaml", "images/train/a.jpg", "labels/train/a.txt", "same.yaml", "store/train/a.jpg"]
    uploaded = [f.relpath for f in plan_upload(root, "s3://bucket-name/p", channel="train").files]
    base = build_tree(tmp_path / "opt_ml", {"train": root}, {})
    assert uploaded == rel == _tree_files(base / "input" / "data" / "train")
    # local mode links the real files, never a link
    linked = base / "input" / "data" / "train" / "images" / "train" / "a.jpg"
    assert not linked.is_symlink() and linked.read_bytes() == b"jpg"


def test_every_refused_entry_is_listed_in_one_error(tmp_path):
    root = _dataset(tmp_path / "data")
    (root / "etc").symlink_to("/etc", target_is_directory=True)
    (root / "passwd").symlink_to("/etc/passwd")
    (root / "gone.txt").symlink_to(root / "missing.txt")
    (root / "labels" / "train" / "back").symlink_to("..", target_is_directory=True)  # a loop
    (root / "x").symlink_to("y")
    (root / "y").symlink_to("x")  # a loop of links
    os.mkfifo(root / "pipe")
    with pytest.raises(UnsafeTree) as info:
        walk_files(root)
    problems = info.value.problems
    assert len(problems) == 7, problems
    text = str(info.value)
    for words in ("etc (a link to /etc, outside the folder)", "passwd (a link to /etc/passwd, outside the folder)",
                  "gone.txt (a dangling link", "labels/train/back (a link loop: back to labels)",
                  "x (a link loop)", "y (a link loop)", "pipe (a fifo)", "7 entries refused"):
        assert words in text
    # upload and local mode refuse the same way, before anything is uploaded or linked
    with pytest.raises(ConfigurationError, match="channel .train.: .*7 entries refused"):
        plan_upload(root, "s3://bucket-name/p", channel="train")
    with pytest.raises(UnsafeTree):
        build_tree(tmp_path / "opt_ml", {"train": root}, {})
    assert not (tmp_path / "opt_ml" / "input" / "data" / "train").exists()


def test_a_link_to_the_folder_itself_is_a_loop(tmp_path):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f.txt").write_text("x")
    (root / "sub" / "top").symlink_to(root, target_is_directory=True)
    with pytest.raises(UnsafeTree, match=r"sub/top \(a link loop: back to \.\)"):
        walk_files(root)


def test_a_linked_root_and_a_single_file(tmp_path):
    root = _dataset(tmp_path / "data")
    (tmp_path / "alias").symlink_to(root, target_is_directory=True)  # the folder the user named may be a link
    assert [f.relpath for f in walk_files(tmp_path / "alias")] == [f.relpath for f in walk_files(root)]
    assert [(f.relpath, f.path) for f in walk_files(root / "same.yaml")] == [("same.yaml", root / "data.yaml")]
    with pytest.raises(Exception, match="does not exist"):
        walk_files(tmp_path / "nothing")


@pytest.mark.parametrize("name", ["with space", "100%", "a#b", "données-é漢"])
def test_odd_names_work_in_both(tmp_path, name):
    root = tmp_path / name / name
    (root / name).mkdir(parents=True)
    (root / name / f"{name}.txt").write_text("x")
    rel = [f.relpath for f in walk_files(root)]
    assert rel == [f"{name}/{name}.txt"]
    base = build_tree(tmp_path / "opt_ml", {"train": root}, {})
    assert _tree_files(base / "input" / "data" / "train") == rel
    assert stat.S_ISREG((base / "input" / "data" / "train" / rel[0]).lstat().st_mode)
