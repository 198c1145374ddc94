"""Ids made in a row sort in the order they were made, even within one millisecond."""

from __future__ import annotations

import threading

from likeness.ids import is_valid_id, new_id


def test_ids_made_in_a_row_sort_in_order() -> None:
    made = [new_id("pho") for _ in range(5000)]  # many share a millisecond
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert all(is_valid_id(value, "pho") for value in made)


def test_ids_from_many_threads_are_unique() -> None:
    made: list[str] = []
    lock = threading.Lock()

    def make() -> None:
        mine = [new_id("img") for _ in range(500)]
        with lock:
            made.extend(mine)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 4000
