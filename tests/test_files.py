"""How path items are read: whole-file reads, short reads, growth, the policy's two opens."""

import io
import os

import pytest

import mmsk._files
from mmsk._files import FilePolicy, FileTooLarge, PathOutside, read_regular


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "item.bin"
    path.write_bytes(bytes(range(256)) * 40)
    return path


def test_read_regular_reads_the_whole_file_in_one_call(data_file, monkeypatch):
    calls = []
    real_read = os.read

    def counting_read(fd, n):
        calls.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(mmsk._files.os, "read", counting_read)
    assert read_regular(data_file) == data_file.read_bytes()
    assert calls == [10241]  # its size and one byte more, which tells the end of the file


def test_short_reads_are_completed(data_file, monkeypatch):
    real_read = os.read
    monkeypatch.setattr(mmsk._files.os, "read", lambda fd, n: real_read(fd, min(n, 1000)))
    assert read_regular(data_file) == data_file.read_bytes()


def test_a_file_that_grew_since_its_size_was_read(data_file, monkeypatch):
    real_fstat = os.fstat

    class Smaller:
        def __init__(self, info):
            self.st_mode, self.st_size = info.st_mode, info.st_size - 100

    monkeypatch.setattr(mmsk._files.os, "fstat", lambda fd: Smaller(real_fstat(fd)))
    assert read_regular(data_file) == data_file.read_bytes()  # all of it, not the stale size
    with pytest.raises(FileTooLarge, match="more than 10200 bytes"):
        read_regular(data_file, max_bytes=10200)  # the stale size passed; the bytes do not


@pytest.mark.parametrize("whole", [False, True])
def test_the_policy_opens_files_or_their_bytes_under_the_same_rules(data_file, tmp_path, whole):
    policy = FilePolicy(roots=(tmp_path.resolve(),), whole=whole)
    with policy.open(data_file) as fh:
        assert isinstance(fh, io.BytesIO) is whole
        assert fh.read() == data_file.read_bytes()
    with policy.open_file(data_file) as fh:
        assert fh.fileno() >= 0  # a real file, for callers that need its descriptor
    with pytest.raises(PathOutside):
        policy.open("/etc/hostname")
    with pytest.raises(FileTooLarge):
        FilePolicy(max_bytes=100, whole=whole).open(data_file)
