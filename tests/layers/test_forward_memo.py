"""forward_memo: a record of a forward call's remembered values, replayed in order."""

import pytest

from keras_reformer.layers import forward_memo


def test_remember_computes_outside_a_record_or_replay():
    assert forward_memo.remember(lambda: 3) == 3


def test_replay_returns_the_recorded_values_in_order_without_computing():
    with forward_memo.recording() as record:
        first = forward_memo.remember(lambda: "first")
        second = forward_memo.remember(lambda: "second")
    assert record == [first, second] == ["first", "second"]

    def must_not_run():
        raise AssertionError("replayed values are not computed again")

    with forward_memo.replaying(record):
        assert forward_memo.remember(must_not_run) == "first"
        assert forward_memo.remember(must_not_run) == "second"
    assert forward_memo.remember(lambda: "fresh") == "fresh"  # the replay has ended


def test_disabled_recording_and_empty_replay_change_nothing():
    with forward_memo.recording(enabled=False) as record:
        assert forward_memo.remember(lambda: 1) == 1
    assert record is None
    with forward_memo.replaying(None):
        assert forward_memo.remember(lambda: 2) == 2


def test_a_recompute_asking_for_more_than_was_recorded_fails_loudly():
    with forward_memo.recording() as record:
        forward_memo.remember(lambda: 1)
    with forward_memo.replaying(record), pytest.raises(RuntimeError, match="more remembered"):
        forward_memo.remember(lambda: 1)
        forward_memo.remember(lambda: 1)


def test_records_nest_and_the_outer_one_resumes():
    with forward_memo.recording() as outer:
        forward_memo.remember(lambda: "a")
        with forward_memo.recording() as inner:
            forward_memo.remember(lambda: "b")
        forward_memo.remember(lambda: "c")
    assert outer == ["a", "c"] and inner == ["b"]


def test_a_recording_inside_a_replay_computes_and_keeps_its_own_values():
    # A reversible stack nested in a sublayer: its forward runs again inside
    # the outer sublayer's recompute, and must not consume the outer record.
    with forward_memo.recording() as outer:
        forward_memo.remember(lambda: "outer")
    with forward_memo.replaying(outer):
        with forward_memo.recording() as inner:
            assert forward_memo.remember(lambda: "inner") == "inner"
        with forward_memo.replaying(inner):
            assert forward_memo.remember(lambda: "recomputed") == "inner"
        assert forward_memo.remember(lambda: "recomputed") == "outer"
    assert inner == ["inner"]
