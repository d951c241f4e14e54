"""The page where the service serves several models (IMGREC_MODELS): a picker names them,
the default first; the files chosen go to the model picked when they were chosen, and
each is answered by that model. Where one model is served, no picker."""

from __future__ import annotations

import os
import shutil
import subprocess

from conftest import cards, labelled

from colour_model import plain_image, write_colour_model
from imgrec.lab.harness import IMGREC, WebPart, service_env

COLOURS = {"red": (230, 20, 30), "green": (10, 200, 40), "blue": (20, 30, 220)}


def test_one_model_served_shows_no_picker(page, service):
    page.goto(service.url)
    page.wait_for_selector("#limits-note:not(:empty)")
    assert page.is_hidden("#model-pick")


def test_the_model_picked_answers_the_files_chosen(page, tmp_path, model_dir):
    data = tmp_path / "data"
    added = subprocess.run(
        [IMGREC, "model", "add", str(write_colour_model(tmp_path / "export")), "--name", "colours"],
        env=service_env(data, data / "model-colours"), capture_output=True, text=True, timeout=120,
    )
    assert added.returncode == 0, added.stdout + added.stderr
    shutil.copytree(model_dir, data / "model", ignore=shutil.ignore_patterns(".lock"))  # lite0, the default here
    env = {k: v for k, v in os.environ.items() if k != "IMGREC_MODEL_DIR"}  # each model has its own folder
    env.update(IMGREC_DATA_DIR=str(data), IMGREC_MODELS="lite0,colours", IMGREC_MAX_WORKERS="2")
    svc = WebPart(data / "up.log", env, command="up")
    try:
        page.goto(svc.url)
        page.wait_for_selector("#model-pick:not([hidden])")
        options = page.eval_on_selector_all("#model option", "els => els.map(e => [e.value, e.textContent])")
        assert options == [["lite0", "lite0 (default)"], ["colours", "colours"]]
        assert page.input_value("#model") == "lite0"
        page.select_option("#model", "colours")
        files = []
        for colour, rgb in COLOURS.items():
            path = tmp_path / f"{colour}-card.png"
            path.write_bytes(plain_image(rgb))
            files.append(path)
        page.set_input_files("#files", [str(f) for f in files])
        page.select_option("#model", "lite0")  # chosen files keep the model they were chosen with
        labelled(page, 3)
        assert sorted(map(tuple, cards(page))) == sorted((f"{c}-card.png", c) for c in COLOURS)
    finally:
        svc.stop()
