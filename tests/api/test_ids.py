"""`api.ids.RandomIds`: the shape of ``uuid4().hex``, no repeats across batches, and a forked
child that does not hand out its parent's next ids."""

from __future__ import annotations

import os
import re

from api.ids import RandomIds


def test_ids_are_32_hex_digits_and_do_not_repeat_across_batches() -> None:
    ids = RandomIds()
    got = [ids.hex() for _ in range(2_000)]  # ~8 reads of the OS's generator
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in got)
    assert len(set(got)) == len(got)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    ids = RandomIds()
    ids.hex()  # a batch read before the fork: the child must not reuse its rest
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(r)
        os.write(w, ids.hex().encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 64).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert len(child) == 32 and child != ids.hex()


def test_any_length_and_a_batch_boundary_crossed() -> None:
    ids = RandomIds()
    got = [ids.hex(12) for _ in range(1_000)]  # 12 does not divide the 4 KB batch
    assert all(re.fullmatch(r"[0-9a-f]{24}", i) for i in got)
    assert len(set(got)) == len(got)
