"""The page as people use it: many images, folders, a restart or a reload mid-upload,
API keys, the keyboard alone, hostile file names, downloads, a narrow screen, /docs."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
from pathlib import Path

import httpx
from conftest import cards, labelled

from images import chelsea, encode
from imgrec.lab.harness import Part, WebPart, free_port, service_env

DOCS = Path(__file__).parents[2] / "docs"


def _expect(page, photos, files) -> None:
    _, labels = photos
    got = dict(cards(page))
    assert {f.name: labels[f.name] for f in files} == {f.name: got[f.name] for f in files}


def test_twenty_images_are_labelled(page, service, photos):
    files = photos[0][:20]
    page.goto(service.url)
    page.set_input_files("#files", [str(f) for f in files])
    labelled(page, 20)
    _expect(page, photos, files)
    assert page.inner_text("#progress-text").startswith("20 of 20 done")
    assert page.inner_text("#announce") == "All 20 done: 20 labelled, 0 failed."
    assert [n for n, _ in cards(page)] == [f.name for f in files], "cards in upload order"
    assert page.eval_on_selector_all("#grid .card .top", "els => els.map(e => e.children.length)") == [5] * 20
    assert page.get_attribute("#grid .card img", "alt").startswith(files[0].name + ": ")


def test_150_images_at_once_go_in_two_requests(page, service, photos):
    files = photos[0]
    page.goto(service.url)
    page.set_input_files("#files", [str(f) for f in files])
    labelled(page, 150)
    _expect(page, photos, files)
    assert len(page.evaluate("new URL(location.href).searchParams.get('batches')").split(",")) == 2


def test_a_folder_is_taken_with_its_subfolders(page, service, photos, tmp_path):
    folder = tmp_path / "trip"
    (folder / "day2").mkdir(parents=True)
    files = photos[0][:6]
    for i, f in enumerate(files):
        (folder / ("day2" if i % 2 else "") / f.name).write_bytes(f.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    page.goto(service.url)
    page.set_input_files("#folder", str(folder))
    labelled(page, 7)
    got = dict(cards(page))
    assert sum(label not in ("error", "waiting…") for label in got.values()) == 6
    assert got["trip/notes.txt"] == "error"


def test_the_downloads_are_the_services_own(page, service, photos):
    files = photos[0][:120]
    page.goto(service.url)
    page.set_input_files("#files", [str(f) for f in files])
    labelled(page, 120)
    ids = page.evaluate("new URL(location.href).searchParams.get('batches')").split(",")
    with page.expect_download() as got:
        page.click("#download-csv")
    page_csv = Path(got.value.path()).read_bytes().decode()  # as sent: CSV lines end with CR LF
    api_csvs = [httpx.get(f"{service.url}/api/v1/batches/{i}?format=csv").text for i in ids]
    assert page_csv == api_csvs[0] + "".join(c.split("\n", 1)[1] for c in api_csvs[1:])
    assert len(list(csv.DictReader(io.StringIO(page_csv)))) == 120
    with page.expect_download() as got:
        page.click("#download-json")
    page_json = json.loads(Path(got.value.path()).read_text())
    api_results = [r for i in ids for r in httpx.get(f"{service.url}/api/v1/batches/{i}").json()["results"]]
    assert page_json["results"] == api_results


def test_a_reload_mid_upload_brings_the_results_back(page, tmp_path, model_dir, photos):
    svc_env = {"IMGREC_MAX_FILES_PER_REQUEST": "5"}
    from imgrec.lab.harness import ServiceProcess

    svc = ServiceProcess(tmp_path / "svc", model_dir, "--max-workers", "1", env=svc_env)
    try:
        files = photos[0][:40]
        page.goto(svc.url)
        page.set_input_files("#files", [str(f) for f in files])
        labelled(page, 5)
        page.wait_for_function("() => new URL(location.href).searchParams.get('batches').split(',').length >= 8")
        page.reload()
        labelled(page, 40)
        assert sum(label == "error" for _, label in cards(page)) == 0
        assert sorted(label for _, label in cards(page)) == sorted(photos[1][f.name] for f in files)
    finally:
        svc.stop()


def test_a_service_restart_mid_upload_needs_no_reload(page, tmp_path, model_dir, photos):
    env = service_env(tmp_path, model_dir, max_files_per_request=5)
    port = free_port()
    web = WebPart(tmp_path / "web1.log", env, port=port)
    scaler = Part(tmp_path / "autoscaler.log", env, "autoscaler", "--max-workers", "1")
    try:
        files = photos[0][:60]
        page.goto(web.url)
        page.set_input_files("#files", [str(f) for f in files])
        labelled(page, 3)
        os.kill(web.proc.pid, signal.SIGKILL)  # the web tier dies mid-upload
        web.stop()
        web = WebPart(tmp_path / "web2.log", env, port=port)
        labelled(page, 60, timeout=180_000)
        _expect(page, photos, files)
    finally:
        scaler.stop()
        web.stop()


def test_a_wrong_key_is_a_message_then_the_right_one_works(page, tmp_path, model_dir, photos):
    from imgrec.lab.harness import ServiceProcess

    svc = ServiceProcess(tmp_path / "svc", model_dir, "--max-workers", "1", env={"IMGREC_API_KEYS": "right-key"})
    try:
        page.goto(svc.url)
        page.wait_for_function("() => document.getElementById('key-note').textContent.includes('needs an API key')")
        page.fill("#key", "wrong-key")
        page.click("text=Use this key")
        page.set_input_files("#files", [str(photos[0][0])])
        page.wait_for_function("() => document.getElementById('key-note').textContent.includes('refused')")
        assert "API key" in page.inner_text("#message") and page.dialogs == [], "a message, never a prompt"
        page.fill("#key", "right-key")
        page.click("text=Use this key")
        page.set_input_files("#files", [str(f) for f in photos[0][1:3]])
        labelled(page, 3)
        assert [label for _, label in cards(page)][1:] == [photos[1][f.name] for f in photos[0][1:3]]
        page.click("#key-forget")
        assert page.evaluate("localStorage.getItem('imgrec-key')") is None
    finally:
        svc.stop()


def test_the_keyboard_alone_is_enough(page, service, photos):
    page.goto(service.url)
    page.wait_for_function("() => document.getElementById('limits-note').textContent")  # the page is ready
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "pick-files":
            break
    assert page.evaluate("document.activeElement.id") == "pick-files"
    # Listening before the key is pressed: the browser's chooser is answered as soon as it opens.
    page.on("filechooser", lambda chooser: chooser.set_files([str(f) for f in photos[0][:3]]))
    page.wait_for_timeout(200)
    page.keyboard.press("Enter")
    labelled(page, 3)
    _expect(page, photos, photos[0][:3])


def test_file_names_with_markup_stay_text(page, service, tmp_path):
    name = '<img src=x onerror="alert(1)">.png'
    hostile = tmp_path / name
    hostile.write_bytes(encode(chelsea().resize((400, 260)), "PNG"))
    empty = tmp_path / "<b>empty.png"
    empty.write_bytes(b"")
    page.goto(service.url)
    page.set_input_files("#files", [str(hostile), str(empty)])
    labelled(page, 2)
    assert cards(page) == [[name, "tiger cat"], ["<b>empty.png", "error"]]
    assert page.dialogs == [] and page.locator("img[src='x']").count() == 0 and page.locator("#grid b").count() == 0
    assert "the file is empty" in page.inner_text("#grid .card:nth-child(2)")


def test_narrow_screen_docs_and_favicon_work_offline(page, service, photos):
    outside = []
    page.route("**/*", lambda route: (outside.append(route.request.url), route.abort())
               if not route.request.url.startswith(service.url) else route.continue_())
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(service.url)
    page.set_input_files("#files", [str(f) for f in photos[0][:4]])
    labelled(page, 4)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "no sideways scrolling at 390 px"
    page.goto(service.url + "/docs")
    page.wait_for_selector("button.authorize")
    assert page.get_by_text("/api/v1/jobs", exact=False).count() > 0
    assert outside == [], "every asset comes from the service"
    assert httpx.get(service.url + "/favicon.ico").status_code == 200


def test_screenshots_for_the_docs(page, service, photos, tmp_path):
    """The page mid-upload and the dashboard, as the docs show them (written to docs/
    with IMGREC_UPDATE_SCREENSHOTS=1, else to a temporary folder)."""
    out = DOCS if os.environ.get("IMGREC_UPDATE_SCREENSHOTS") else tmp_path
    page.goto(service.url)
    page.set_input_files("#files", [str(f) for f in photos[0][:60]])
    page.wait_for_function("() => parseInt(document.getElementById('progress-text').textContent) >= 12")
    page.screenshot(path=str(out / "page-upload.png"))
    labelled(page, 60)
    if out == DOCS:  # a second, larger wave, so that the charts have a story to tell
        page.wait_for_timeout(6000)
        page.set_input_files("#files", [str(f) for f in photos[0]])
        labelled(page, 210)
        page.wait_for_timeout(4000)
    page.goto(service.url + "/#dashboard")
    page.wait_for_function("() => document.querySelectorAll('#chart-workers polyline').length > 0", timeout=30_000)
    page.screenshot(path=str(out / "dashboard.png"), full_page=True)
    assert (out / "page-upload.png").stat().st_size > 10_000 and (out / "dashboard.png").stat().st_size > 10_000
