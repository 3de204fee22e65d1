"""The one reader of files someone may have planted something in place of (plugin/files.py):
a regular file, bounded; never a FIFO (no hang), never a symlink unless asked to follow."""

import os

import pytest

from plugin.files import NotRegular, read_regular


def test_a_regular_file_is_read_and_a_missing_one_is_none(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 10)
    assert read_regular(str(tmp_path / "f"), 10) == b"x" * 10
    assert read_regular(str(tmp_path / "none"), 10) is None


def test_a_file_over_the_limit_is_not_read(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 11)
    with pytest.raises(NotRegular):
        read_regular(str(tmp_path / "f"), 10)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NotRegular):
        read_regular(str(tmp_path / "fifo"), 10)


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(NotRegular):
        read_regular(str(tmp_path), 10)


def test_a_symlink_is_refused_unless_followed_and_then_only_to_a_regular_file(tmp_path):
    (tmp_path / "f").write_bytes(b"data")
    os.symlink(tmp_path / "f", tmp_path / "link")
    with pytest.raises(NotRegular):
        read_regular(str(tmp_path / "link"), 10)
    assert read_regular(str(tmp_path / "link"), 10, follow=True) == b"data"
    os.mkfifo(tmp_path / "fifo")
    os.symlink(tmp_path / "fifo", tmp_path / "to-fifo")
    with pytest.raises(NotRegular):
        read_regular(str(tmp_path / "to-fifo"), 10, follow=True)
