"""ferrovent.local: threading.local semantics with greenlets in place of threads."""

from __future__ import annotations

import gc
import weakref

import ferrovent
import greenlet
import pytest
from ferrovent.local import local

pytestmark = pytest.mark.timeout(10)


class Item:
    """Something a weak reference can watch."""


def test_attributes_are_per_greenlet():
    data = local()
    data.number = 42
    seen = []

    def other():
        seen.append(dict(data.__dict__))
        data.number = 11
        seen.append(data.number)

    ferrovent.spawn(other).join()
    assert seen == [{}, 11]
    assert data.number == 42 and data.__dict__ == {"number": 42}


def test_missing_attributes_and_read_only_dict():
    data = local()
    with pytest.raises(AttributeError, match="has no attribute 'missing'"):
        data.missing  # noqa: B018
    with pytest.raises(AttributeError):
        del data.missing
    with pytest.raises(AttributeError, match="read-only"):
        data.__dict__ = {}
    with pytest.raises(AttributeError, match="read-only"):
        del data.__dict__
    data.x = 1
    del data.x
    assert not hasattr(data, "x")


def test_arguments_need_an_init():
    with pytest.raises(TypeError, match="Initialization arguments are not supported"):
        local(1)
    with pytest.raises(TypeError):
        local(key="value")


class Counter(local):
    """A subclass with defaults, a property, a method and an __init__ that must run once per greenlet."""

    number = 2
    initialized = False

    def __init__(self, **kw):
        if self.initialized:
            raise SystemError("__init__ called twice in one greenlet")
        self.initialized = True
        self.__dict__.update(kw)

    @property
    def plus_one(self):
        return self.number + 1

    def squared(self):
        return self.number**2


def test_subclass_init_runs_in_each_greenlet_with_the_original_arguments():
    data = Counter(color="red")
    assert (data.number, data.color, data.squared(), data.plus_one) == (2, "red", 4, 3)
    seen = []

    def other():
        seen.append(sorted(data.__dict__.items()))
        data.number = 7
        seen.append((data.squared(), data.plus_one))

    ferrovent.spawn(other).join()
    assert seen == [[("color", "red"), ("initialized", True)], (49, 8)]
    assert data.number == 2
    del data.color
    with pytest.raises(AttributeError):
        data.color  # noqa: B018


def test_slots_are_shared_between_greenlets():
    class Slotted(local):
        __slots__ = ("shared",)

    data = Slotted()
    data.shared = 1
    data.private = "main"
    ferrovent.spawn(lambda: (setattr(data, "shared", 2), setattr(data, "private", "other"))).join()
    assert data.shared == 2 and data.private == "main"


def test_each_of_many_greenlets_keeps_its_own_value_across_switches():
    data = local()
    seen = []

    def worker(n):
        data.value = n
        ferrovent.sleep(0)
        seen.append(data.value == n)

    ferrovent.joinall([ferrovent.spawn(worker, n) for n in range(50)])
    assert seen == [True] * 50


def test_raw_greenlets_get_their_own_dict():
    data = local()
    data.value = "main"
    out = []
    greenlet.greenlet(lambda: (setattr(data, "value", "raw"), out.append(data.value))).switch()
    assert out == ["raw"] and data.value == "main"


def test_a_finished_greenlets_values_are_released():
    data = local()

    def keep():
        data.item = Item()
        return weakref.ref(data.item)

    g = ferrovent.spawn(keep)
    watcher = g.get()
    ferrovent.sleep(0)  # the greenlet's links (and so the cleanup) run in the hub
    gc.collect()
    assert watcher() is None
    assert g.dead  # released while the Greenlet object itself is still referenced


def test_values_are_released_with_the_local_object():
    data = local()
    data.item = Item()
    watcher = weakref.ref(data.item)
    del data
    gc.collect()
    assert watcher() is None


def test_a_collected_raw_greenlets_values_are_released():
    data = local()
    refs = []

    def body():
        data.item = Item()
        refs.append(weakref.ref(data.item))

    raw = greenlet.greenlet(body)
    raw.switch()
    del raw
    gc.collect()
    assert refs[0]() is None


def test_a_dropped_local_leaves_no_link_on_the_greenlet_that_used_it():
    survivor = local()

    def make_and_drop_many():
        me = ferrovent.getcurrent()
        before = me.has_links()  # the joiner's
        for n in range(1000):
            data = local()
            data.value = n
            del data
        dropped = me.has_links() - before
        survivor.value = 1
        return dropped, me.has_links() - before

    # A local still alive keeps its link until the greenlet finishes.
    assert ferrovent.spawn(make_and_drop_many).get() == (0, 1)


def test_copy_is_a_new_local_with_the_current_greenlets_values():
    import copy

    class Configured(local):
        def __init__(self, start):
            self.start = start
            self.inits = getattr(self, "inits", 0) + 1

    original = Configured(5)
    original.items = [1]
    original.extra = "x"
    duplicate = copy.copy(original)
    assert type(duplicate) is Configured and duplicate is not original
    assert duplicate.__dict__ == original.__dict__
    assert duplicate.items is original.items  # a shallow copy
    duplicate.items = [2]
    duplicate.only_here = True
    assert original.items == [1] and not hasattr(original, "only_here")
    # In another greenlet, the copy starts afresh from its constructor, like the original.
    seen = ferrovent.spawn(lambda: (duplicate.__dict__.copy(), original.__dict__.copy())).get()
    assert seen == ({"start": 5, "inits": 1}, {"start": 5, "inits": 1})
