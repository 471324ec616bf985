from kdbench.models import cache


def test_cache_key_is_stable_and_order_free():
    assert cache.cache_key(a=1, b=[1, 2]) == cache.cache_key(b=[1, 2], a=1) != cache.cache_key(a=2, b=[1, 2])
