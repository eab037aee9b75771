"""WrittenTargets: a DC does not write again a target its lagging view does not show yet
(pure)."""

from __future__ import annotations

from hastack.model.config import Role
from hastack.model.targets import NodeTarget, WrittenTargets

OLD = NodeTarget(epoch=3, config_revision=10, resources={})
NEW = NodeTarget(epoch=3, config_revision=162, resources={"nova-compute:0": Role.STARTED})


def test_a_write_the_view_has_not_reached_is_what_the_store_holds() -> None:
    written = WrittenTargets()
    written.record(3, 200, {"c1": NEW})
    # The view is at 190: it still shows the target from before the write.
    assert written.current(3, "c1", OLD, 150, 190) == (NEW, False)
    assert NEW.same_work(written.current(3, "c1", OLD, 150, 195)[0])


def test_once_the_view_reaches_the_write_the_view_is_used_again() -> None:
    written = WrittenTargets()
    written.record(3, 200, {"c1": NEW})
    assert written.current(3, "c1", NEW, 200, 200) == (NEW, True)
    # ... and the entry is gone: a later, older-looking view is taken as it is.
    assert "c1" not in written.nodes()
    assert written.current(3, "c1", OLD, 150, 190) == (OLD, True)


def test_a_view_past_the_write_wins_even_if_the_key_changed_since() -> None:
    written = WrittenTargets()
    written.record(3, 200, {"c1": NEW})
    assert written.current(3, "c1", OLD, 210, 220) == (OLD, True)


def test_a_deletion_is_remembered_too() -> None:
    written = WrittenTargets()
    written.record(3, 200, {"c1": None})
    assert written.current(3, "c1", OLD, 150, 190) == (None, False)
    assert written.current(3, "c1", None, 0, 201) == (None, True)


def test_another_epoch_forgets_everything() -> None:
    written = WrittenTargets()
    written.record(3, 200, {"c1": NEW, "c2": NEW})
    # A new term of office (even of the same agent): its own writes only.
    assert written.current(4, "c1", OLD, 150, 190) == (OLD, True)
    assert written.nodes() == set()
    written.record(4, 300, {"c2": NEW})
    written.record(5, 400, {"c3": NEW})
    assert written.nodes() == {"c3"}


def test_nodes_never_written_are_the_views() -> None:
    written = WrittenTargets()
    assert written.current(3, "c9", OLD, 150, 190) == (OLD, True)
    assert written.current(3, "c9", None, 0, 190) == (None, True)


def test_restamps_last_until_the_node_is_given_other_work() -> None:
    written = WrittenTargets()
    written.record(4, 300, {"c1": NEW, "c2": OLD}, restamped={"c1": 200})
    assert written.restamps() == {"c1": (300, 200)}
    # Still a restamp once the view shows the write (the wait is decided on it later).
    written.current(4, "c1", NEW, 300, 305)
    assert written.restamps() == {"c1": (300, 200)}
    # New work for the node: no longer a restamp.
    written.record(4, 310, {"c1": OLD})
    assert written.restamps() == {}


def test_restamps_are_forgotten_with_the_epoch() -> None:
    written = WrittenTargets()
    written.record(4, 300, {"c1": NEW}, restamped={"c1": 200})
    written.current(5, "c1", NEW, 300, 305)
    assert written.restamps() == {}
