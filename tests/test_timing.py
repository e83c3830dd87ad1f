from napari_alseg.timing import ActivityClock


def test_idle_gaps_count_only_up_to_the_threshold():
    now = [0.0]
    clock = ActivityClock(idle_after=30, clock=lambda: now[0])
    clock.start()
    for t in (5, 10, 300, 310):  # a long interruption between 10 s and 300 s
        now[0] = t
        clock.touch()
    now[0] = 315
    assert clock.active_seconds() == 5 + 5 + 30 + 10 + 5


def test_nothing_started_is_zero():
    assert ActivityClock().active_seconds() == 0.0
