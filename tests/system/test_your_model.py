"""A model of one's own, as a user brings it: a folder made outside imgrec (a generated
three-colour ONNX classifier, model.onnx and labels.txt, no manifest) added with
`imgrec model add`, served by `IMGREC_MODEL=NAME imgrec up` with its own labels; a
new version pushed under load: every request answered, the results showing the switch;
and served beside Lite0 (`IMGREC_MODELS`), each model answered by its own workers, which
go to zero on their own."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import httpx
import pytest

from colour_model import plain_image, write_colour_model
from images import PHOTOS
from imgrec.lab.harness import IMGREC, ServiceProcess, WebPart, service_env, wait_until

COLOURS = {"red": (230, 20, 30), "green": (10, 200, 40), "blue": (20, 30, 220)}


def imgrec(data, *args: str) -> subprocess.CompletedProcess:
    env = service_env(data, data / "model-colours")
    return subprocess.run([IMGREC, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def data(tmp_path):
    src = write_colour_model(tmp_path / "export")  # as torch.onnx.export would leave it: no manifest
    cards = tmp_path / "cards"  # known colours, to measure it on
    cards.mkdir()
    rows = ["filename,class_index"]
    for i, (colour, rgb) in enumerate(COLOURS.items()):
        (cards / f"{colour}.jpg").write_bytes(plain_image(rgb, fmt="JPEG"))
        rows.append(f"{colour}.jpg,{i}")
    (cards / "labels.csv").write_text("\n".join(rows) + "\n")
    added = imgrec(tmp_path / "data", "model", "add", str(src), "--name", "colours", "--tag", "v1", "--eval", str(cards))
    assert added.returncode == 0, added.stdout + added.stderr
    assert "colours@" in added.stdout and "3 labels (red, green, blue)" in added.stdout
    assert "top-1 100.00%, top-5 100.00% on 3 images of cards" in added.stdout
    return tmp_path / "data"


def _serve(data, *args: str, **env: str) -> ServiceProcess:
    return ServiceProcess(data / "svc", data / "model-colours", *args,
                          env={"IMGREC_MODEL": "colours", "IMGREC_DATA_DIR": str(data), **env})


def test_a_model_of_ones_own_answers_with_its_own_labels(data):
    svc = _serve(data, "--max-workers", "1")
    try:
        for colour, rgb in COLOURS.items():
            r = httpx.post(svc.url + "/", files={"myfile": (f"{colour}-card.png", plain_image(rgb), "image/png")}, timeout=60)
            assert (r.status_code, r.text) == (200, f"{colour}-card:{colour}")
        r = httpx.post(svc.url + "/api/v1/classify", files=[("file", ("g.jpg", plain_image(COLOURS["green"], fmt="JPEG")))],
                       timeout=60)
        (result,) = r.json()["results"]
        assert result["label"] == "green" and result["model"].startswith("colours@") and result["wnid"] == ""
        listed = imgrec(data, "model", "list")
        assert listed.returncode == 0 and "* colours" in listed.stdout and result["model"][8:] in listed.stdout
        assert listed.stdout.splitlines()[1].split()[-1] == "100.0%", listed.stdout  # the top-1 measured at add
    finally:
        svc.stop()


def test_a_folder_that_would_not_serve_is_refused_in_one_line(tmp_path):
    src = write_colour_model(tmp_path / "export", labels=("red", "green"))
    out = imgrec(tmp_path / "data", "model", "add", str(src), "--name", "colours")
    assert out.returncode == 1
    assert out.stdout.strip().splitlines() == [
        "refused: the model gives 3 scores per image but labels.txt has 2 labels; write one label a line, in the order "
        "of the outputs"
    ]


def test_a_version_pushed_under_load_is_taken_up_and_rolled_back_with_nothing_lost(data, tmp_path):
    svc = _serve(data, "--max-workers", "2", "--min-workers", "2", IMGREC_MODEL_CHECK_INTERVAL="0.5")
    answers: list[tuple[int, str, str, float]] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                r = http.post(svc.url + "/api/v1/classify", files=[("file", ("r.png", plain_image(COLOURS["red"])))])
                got = r.json()["results"][0] if r.status_code == 200 else {}
                answers.append((r.status_code, got.get("label", ""), got.get("model", ""), time.monotonic()))

    clients = [threading.Thread(target=client) for _ in range(4)]
    try:
        for t in clients:
            t.start()
        wait_until(lambda: len(answers) >= 40, 60, what="answers from the first version")
        v2 = write_colour_model(tmp_path / "v2", labels=("crimson", "lime", "navy"), sharpness=5.0)
        pushed_at = time.monotonic()
        out = imgrec(data, "model", "add", str(v2), "--name", "colours", "--tag", "v2")
        assert out.returncode == 0, out.stdout + out.stderr
        wait_until(lambda: sum(a[1] == "crimson" for a in answers) >= 40, 60, what="answers from the second version")
        new_version = next(a[2] for a in answers if a[1] == "crimson").split("@")[1]
        # every worker on the new version, as the status says (each heartbeat names its own)
        wait_until(lambda: [m["version"] for m in svc.status()["models"]] == [new_version], 30, what="the status to show it")
        back = imgrec(data, "model", "rollback", "colours")
        assert back.returncode == 0 and "colours rolled back to" in back.stdout and "(v1)" in back.stdout, back.stdout
        rolled_at = time.monotonic()
        wait_until(lambda: sum(a[1] == "red" and a[3] > rolled_at for a in answers) >= 20, 60, what="the first again")
        stop.set()
    finally:
        stop.set()
        for t in clients:
            t.join(90)
        svc.stop()
    assert all(a[0] == 200 for a in answers), {a[0] for a in answers}
    models = {label: {m for _, lab, m, _ in answers if lab == label} for label in ("red", "crimson")}
    assert set(models) == {"red", "crimson"} and all(len(m) == 1 for m in models.values()), models
    assert {a[1] for a in answers} == {"red", "crimson"}, "each answer from one version or the other"
    assert models["red"] != models["crimson"]
    first_new = min(t for _, lab, _, t in answers if lab == "crimson")
    print(f"{len(answers)} answers, 0 failed; first from the new version {first_new - pushed_at:.2f} s after the push began")


def test_two_models_side_by_side_each_answered_by_its_own_and_scaled_on_its_own(data, model_dir, photo_bytes, tmp_path):
    shutil.copytree(model_dir, data / "model", ignore=shutil.ignore_patterns(".lock"))  # lite0, as `make setup` built it
    env = {k: v for k, v in os.environ.items() if k != "IMGREC_MODEL_DIR"}  # each model has its own folder
    env.update(IMGREC_DATA_DIR=str(data), IMGREC_MODELS="colours,lite0", IMGREC_MAX_WORKERS="2",
               IMGREC_SCALE_TO_ZERO_DELAY="2", IMGREC_SCALE_IN_DELAY="2")
    svc = WebPart(data / "up.log", env, command="up")
    stop = threading.Event()
    try:
        assert svc.get("/api/v1/models") == {"default": "colours", "models": ["colours", "lite0"]}
        r = httpx.post(svc.url + "/api/v1/models/colours/classify", files=[("file", ("b.png", plain_image(COLOURS["blue"])))],
                       timeout=60)
        (mine,) = r.json()["results"]
        assert (mine["label"], mine["model"].split("@")[0]) == ("blue", "colours")
        r = httpx.post(svc.url + "/api/v1/models/lite0/classify", files=[("file", ("cat.png", photo_bytes["chelsea.png"]))],
                       timeout=60)
        (theirs,) = r.json()["results"]
        assert (theirs["label"], theirs["model"].split("@")[0]) == (PHOTOS["chelsea.png"], "efficientnet-lite0")
        r = httpx.post(svc.url + "/", files={"myfile": ("g.png", plain_image(COLOURS["green"]), "image/png")}, timeout=60)
        assert r.text == "g:green", "the classic route serves the default model"
        r = httpx.post(svc.url + "/api/v1/models/lite0/jobs", files=[("file", ("c.png", photo_bytes["coffee.png"]))], timeout=60)
        (job,) = r.json()["jobs"]
        done = wait_until(lambda: (j := svc.get(job["url"]))["status"] == "done" and j, 60, what="the job")
        assert (done["result"]["label"], done["result"]["model"].split("@")[0]) == ("espresso", "efficientnet-lite0")
        r = httpx.post(svc.url + "/api/v1/models/nope/classify", files=[("file", ("b.png", plain_image(COLOURS["blue"])))])
        assert r.status_code == 404 and "served: colours, lite0" in r.json()["detail"]
        assert set(svc.status()["queues"]) == {"colours", "lite0"}, "each model's queue in the status"
        shown = subprocess.run([IMGREC, "status"], capture_output=True, text=True, timeout=60, env={**env, "COLUMNS": "200"})
        assert "colours 0 waiting" in shown.stdout and "lite0 0 waiting" in shown.stdout, shown.stdout + shown.stderr
        assert "efficientnet-lite0@" in shown.stdout and "colours@" in shown.stdout
        photos = tmp_path / "photos"
        photos.mkdir()
        (photos / "cat.png").write_bytes(photo_bytes["chelsea.png"])
        (photos / "red.png").write_bytes(plain_image(COLOURS["red"]))
        for model, said in (("lite0", "cat:tiger cat"), ("colours", "red:red")):
            out = subprocess.run([IMGREC, "submit", str(photos), "--url", svc.url, "--model", model], capture_output=True,
                                 text=True, timeout=120, env={**env, "XDG_STATE_HOME": str(tmp_path / "state")})
            assert out.returncode == 0 and said in out.stdout, out.stdout + out.stderr

        def lite0_traffic() -> None:  # only lite0 is asked: the colours' workers must go, lite0's stay
            with httpx.Client(timeout=60) as http:
                while not stop.is_set():
                    cat = [("file", ("c.png", photo_bytes["chelsea.png"]))]
                    r = http.post(svc.url + "/api/v1/models/lite0/classify", files=cat)
                    assert r.status_code == 200 and r.json()["results"][0]["label"] == PHOTOS["chelsea.png"]

        client = threading.Thread(target=lite0_traffic)
        client.start()

        def running() -> dict[str, int]:
            return {m["name"]: m["workers"] for m in svc.status()["models"]}

        wait_until(lambda: running() == {"efficientnet-lite0": 1} or running() == {"efficientnet-lite0": 2}, 60,
                   what="the colours' workers to stop while lite0's serve")
        stop.set()
        client.join(60)
        wait_until(lambda: running() == {}, 60, what="lite0's workers to stop too once its traffic stops")
    finally:
        stop.set()
        svc.stop()
