from stream_app.tail import TailWatch


def test_a_partition_behind_its_end_with_no_delivery_at_two_checks_is_stalled() -> None:
    watch = TailWatch(chunk=100)
    assert watch.stalled({0: 814, 1: 50}, {0: 1554, 1: 50}) == {}  # first sight: only noted
    assert watch.stalled({0: 814, 1: 50}, {0: 1554, 1: 60}) == {0: (814, 914)}
    # After a read the next offset moved: noted again, read again at the following check.
    assert watch.stalled({0: 914}, {0: 1554}) == {}
    assert watch.stalled({0: 914}, {0: 1000}) == {0: (914, 1000)}


def test_a_delivery_or_progress_between_checks_is_not_a_stall() -> None:
    watch = TailWatch(chunk=100)
    watch.stalled({0: 10, 1: 10}, {0: 20, 1: 20})
    watch.delivered([0])
    assert watch.stalled({0: 10, 1: 12}, {0: 20, 1: 20}) == {}  # 0 delivered, 1 moved
    assert watch.stalled({0: 10, 1: 12}, {0: 20, 1: 20}) == {0: (10, 20), 1: (12, 20)}
    assert watch.stalled({0: 20}, {0: 20}) == {}  # caught up
