"""Recovery stores of a dataflow cluster: made in one place (`--processes N`) or by each
process on its own host (`-i K -a ...`), each partition exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.cluster import init_share, recovery_dirs
from config.settings import ConfigError


def names(d: Path) -> set[str]:
    return {p.name for p in d.glob("part-*.sqlite3")}


def test_shares_made_apart_are_the_store_made_in_one_place(tmp_path: Path) -> None:
    dirs = recovery_dirs(tmp_path / "one", 3, 12)
    held = [names(d) for d in dirs]
    apart = []
    for k in range(3):
        mine = init_share(tmp_path / f"host{k}", k, 3, 12)
        apart.append(names(tmp_path / f"host{k}"))
        assert mine == len(apart[-1]) == 4
    assert apart == held
    assert set().union(*apart) == {f"part-{i}.sqlite3" for i in range(12)}
    assert not any((tmp_path / f"host{k}" / ".staging").exists() for k in range(3))


def test_every_process_holds_a_partition_and_the_count_is_kept(tmp_path: Path) -> None:
    dirs = recovery_dirs(tmp_path, 2, 1)  # fewer recovery partitions than processes: one each
    assert [len(names(d)) for d in dirs] == [1, 1]
    assert recovery_dirs(tmp_path, 2, 1) == dirs  # found again
    with pytest.raises(ConfigError, match="2-process cluster"):
        recovery_dirs(tmp_path, 3, 1)
