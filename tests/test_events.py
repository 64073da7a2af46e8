from agents.events import EventLog, read_events


def test_events_append_and_a_torn_last_line_is_repaired(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.emit("a", x=1)
    log.emit("b", y="two")
    log.close()
    with path.open("a") as f:
        f.write('{"seq": 2, "time": 1.0, "type": "c", "pay')      # a crash mid-write
    events, _ = read_events(path)
    assert [e.type for e in events] == ["a", "b"]
    log = EventLog(path)
    assert log.repaired_bytes > 0
    log.emit("c")
    log.close()
    events, end = read_events(path)
    assert [e.seq for e in events] == [0, 1, 2] and end == path.stat().st_size
