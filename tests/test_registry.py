import pytest

from visiontl.registry import Registry


def test_register_get_list_and_error_lists_valid_names():
    reg = Registry("widget")
    reg.register("b", 2)

    @reg.register("a")
    def a():
        return 1

    assert reg.get("a") is a and reg.get("b") == 2
    assert reg.names() == ["a", "b"] and "a" in reg and len(reg) == 2
    with pytest.raises(KeyError, match="unknown widget 'c'; valid names: a, b"):
        reg.get("c")
    with pytest.raises(KeyError, match="already registered"):
        reg.register("a", 3)
