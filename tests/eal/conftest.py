"""EAL test fixtures: a private hugetlbfs mount."""
import subprocess

import pytest


@pytest.fixture
def hugetlbfs(tmp_path):
    """A 2 MiB hugetlbfs mounted on a fresh directory, unmounted after the test."""
    path = tmp_path / "huge"
    path.mkdir()
    subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "nodev", str(path)], check=True)
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", str(path)], check=True)
