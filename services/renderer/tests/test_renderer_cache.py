"""The worker's cache of decrypted subject material: bounded, expiring, purged on erasure."""

from __future__ import annotations

from renderer.subject_cache import CacheKey, SubjectCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _key(subject: str, item: str = "lora/trn_1", tenant: str = "acme") -> CacheKey:
    return CacheKey(tenant, subject, item)


def test_least_recently_used_entry_goes_first_when_full() -> None:
    cache = SubjectCache(max_entries=2, max_bytes=1_000, ttl_seconds=60)
    cache.put(_key("a"), b"A")
    cache.put(_key("b"), b"B")
    assert cache.get(_key("a")) == b"A"  # a is now the most recently used
    cache.put(_key("c"), b"C")
    assert cache.get(_key("b")) is None
    assert cache.get(_key("a")) == b"A"
    assert cache.get(_key("c")) == b"C"
    assert len(cache) == 2


def test_bytes_are_bounded_too() -> None:
    cache = SubjectCache(max_entries=10, max_bytes=10, ttl_seconds=60)
    cache.put(_key("a"), b"x" * 6)
    cache.put(_key("b"), b"y" * 6)
    assert cache.get(_key("a")) is None
    assert cache.total_bytes == 6
    cache.put(_key("huge"), b"z" * 11)  # larger than the whole cache: never held
    assert cache.get(_key("huge")) is None
    assert cache.get(_key("b")) == b"y" * 6


def test_entries_expire_after_the_ttl_even_when_used() -> None:
    clock = Clock()
    cache = SubjectCache(max_entries=10, max_bytes=100, ttl_seconds=60, clock=clock)
    cache.put(_key("a"), b"A")
    clock.now += 59
    assert cache.get(_key("a")) == b"A"
    clock.now += 1
    assert cache.get(_key("a")) is None
    assert len(cache) == 0


def test_expired_entries_are_swept_without_being_asked_for() -> None:
    clock = Clock()
    cache = SubjectCache(max_entries=10, max_bytes=100, ttl_seconds=60, clock=clock)
    cache.put(_key("a"), b"A")
    clock.now += 30
    cache.put(_key("b"), b"B")
    clock.now += 30
    assert cache.purge_expired() == 1
    assert len(cache) == 1
    assert cache.total_bytes == 1


def test_erasure_drops_every_entry_of_the_subject_and_only_theirs() -> None:
    cache = SubjectCache(max_entries=10, max_bytes=100, ttl_seconds=60)
    cache.put(_key("a", "lora/trn_1"), b"1")
    cache.put(_key("a", "lora/trn_2"), b"2")
    cache.put(_key("a", "faces"), b"3")
    cache.put(_key("a", tenant="globex"), b"4")  # same subject id, another tenant
    cache.put(_key("b"), b"5")
    assert cache.purge_subject("acme", "a") == 3
    assert not cache.contains_subject("acme", "a")
    assert cache.contains_subject("globex", "a")
    assert cache.contains_subject("acme", "b")
    assert cache.total_bytes == 2


def test_a_decryption_finishing_after_the_erasure_is_not_cached() -> None:
    clock = Clock()
    cache = SubjectCache(max_entries=10, max_bytes=100, ttl_seconds=60, clock=clock)
    cache.purge_subject("acme", "a")
    cache.put(_key("a"), b"late")
    assert cache.get(_key("a")) is None
    clock.now += 61
    cache.purge_expired()
    cache.put(_key("a"), b"much later")  # the tombstone lasts one TTL
    assert cache.get(_key("a")) == b"much later"


def test_a_zero_sized_cache_holds_nothing() -> None:
    cache = SubjectCache(max_entries=0, max_bytes=100, ttl_seconds=60)
    cache.put(_key("a"), b"A")
    assert cache.get(_key("a")) is None
    assert not cache.enabled


def test_clear_empties_it() -> None:
    cache = SubjectCache(max_entries=10, max_bytes=100, ttl_seconds=60)
    cache.put(_key("a"), b"A")
    cache.clear()
    assert len(cache) == 0
    assert cache.total_bytes == 0
