"""The messages between tiers: one shape each, read back as written, refused when malformed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgrec import messages
from imgrec.errors import BadInput
from imgrec.messages import Heartbeat, Output, Reply, Request, input_key, new_id, output_key
from imgrec.stores import check_key


def test_round_trips():
    job = new_id()
    request = Request(job, input_key(job, "../a b.png"), "../a b.png", None, "replies-x", 12.5)
    assert Request.from_dict(request.to_dict()) == request
    assert request.input_key == f"inputs/{job}/a_b.png" and request.waited_for
    output = Output(job, "a.png", label="cat", class_index=282, top=[{"label": "cat"}], attempt=2)
    assert Output.from_dict(output.to_dict()) == output
    assert "error" not in output.to_dict() and not output.failed
    assert set(output.public()) == {"job_id", "filename", "label", "class_index", "top"}
    reply = Reply(job, output)
    assert Reply.from_dict(reply.to_dict()) == reply
    beat = Heartbeat("w1", completed=3, batch_sizes={"2": 1})
    assert Heartbeat.from_dict(beat.to_dict()) == beat
    assert output_key(job) == f"outputs/{job}.json"


def test_unknown_fields_from_a_newer_version_are_ignored():
    job = new_id()
    assert Request.from_dict({"job_id": job, "input_key": "k", "priority": 3}).job_id == job


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[1, 2]", {"job_id": "x", "input_key": "k"}, {"input_key": "k"}, {"job_id": "0" * 32}],
    ids=["not-json", "not-object", "bad-id", "no-id", "no-key"],
)
def test_malformed_requests_are_bad_input(data):
    with pytest.raises(BadInput):
        Request.from_dict(data)


@given(st.text(max_size=600))
def test_any_file_name_becomes_one_safe_segment(name):
    safe = messages.safe_filename(name)
    key = input_key("0" * 32, name)
    assert check_key(key) and key.rsplit("/", 1)[1] == safe  # a valid, single, relative segment
    assert 0 < len(safe) <= messages.SAFE_NAME_MAX and not safe.startswith(".")
    assert "/" not in messages.display_name(name) and messages.display_name(name)
