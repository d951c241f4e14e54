"""`imgrec submit`'s parts that need no service: where a run keeps its state, what it
counts as its own speed, which files it leaves out, the columns it writes, the key it
reads."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgrec import cli
from imgrec.client.files import find_images
from imgrec.client.submit import Report, RowWriter, Run, State, Tally, state_dir, state_path
from imgrec.web.batches import to_csv


def test_state_lives_in_the_user_s_state_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert state_dir() == tmp_path / "home" / ".local" / "state" / "imgrec" / "submit"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir() == tmp_path / "xdg" / "imgrec" / "submit"
    one = state_path("http://a:8000", ["pics"], Path("out.csv"), None)
    assert one.parent == state_dir() and one == state_path("http://a:8000", ["pics"], Path("out.csv"), None)
    assert one != state_path("http://a:8000", ["pics"], Path("other.csv"), None), "another command, another state"
    assert one != state_path("http://b:8000", ["pics"], Path("out.csv"), None)


def test_a_resumed_run_s_speed_counts_only_what_it_sent(tmp_path):
    """974 files of which an earlier run had 970 answered: 4 answered a second after this
    run began is 4 images/s, not 974."""
    files = [tmp_path / f"{i}.jpg" for i in range(974)]
    state = State(tmp_path / "state.json", "http://x", {str(f): {"result": {"label": "cat"}} for f in files[:970]})
    shown: list[tuple[int, int]] = []
    run = Run(state, files, 1, lambda t: shown.append((t.done, t.this_run)))
    run._count()
    run.sent.update(map(str, files[970:]))
    for f in files[970:]:
        run._record(f, {"label": "dog"}, save=False)
    run._count()
    assert shown == [(970, 0), (974, 4)]
    assert run.tally.rate(now=run.tally.started + 1.0) == pytest.approx(4.0)


def test_files_left_out_for_their_extension_are_said(tmp_path):
    for name in ("a.jpg", "b.PNG", "c.HEIC", "notes.txt", ".DS_Store"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "only.txt").write_bytes(b"x")
    found, skipped = find_images([tmp_path / "a.jpg", tmp_path])
    assert [f.name for f in found] == ["a.jpg", "a.jpg", "b.PNG"]
    assert sorted(f.name for f in skipped) == [".DS_Store", "c.HEIC", "notes.txt", "only.txt"]


def test_submit_s_csv_has_the_service_s_columns_in_its_order(tmp_path):
    row = {"filename": "a.jpg", "label": "cat", "score": 0.9, "class_index": 281, "wnid": "n1", "job_id": "j"}
    with RowWriter(tmp_path / "mine.csv", None) as out:
        out.write(row)
    mine = list(csv.reader((tmp_path / "mine.csv").open()))
    served = list(csv.reader(io.StringIO(to_csv([row]))))
    assert mine == served


@pytest.mark.parametrize("variables, sent", [
    ({"IMGREC_CLIENT_KEY": "k2"}, "k2"),
    ({"IMGREC_API_KEY": "k3"}, "k3"),  # the older name still works
    ({"IMGREC_CLIENT_KEY": "k2", "IMGREC_API_KEY": "k3"}, "k2"),
    ({"IMGREC_API_KEYS": "k4"}, None),  # the service's list is not the client's key
])
def test_the_client_s_key_comes_from_its_own_variable(monkeypatch, tmp_path, variables, sent):
    import imgrec.client.submit

    for name in ("IMGREC_CLIENT_KEY", "IMGREC_API_KEY", "IMGREC_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    seen = {}

    def fake(paths, url, **options):
        seen["key"] = options["api_key"]
        return Report([], Tally(0), [], tmp_path / "state.json", 0.0)

    monkeypatch.setattr(imgrec.client.submit, "submit", fake)
    (tmp_path / "a.jpg").write_bytes(b"x")
    result = CliRunner().invoke(cli.app, ["submit", str(tmp_path / "a.jpg")], env=variables)
    assert result.exit_code == 0, result.output
    assert seen["key"] == sent
