"""How the page sends: sized to the backlog's room, the key checked before any image,
files not sent remembered across a reload, progress in bytes, cancel."""

from __future__ import annotations

from conftest import cards, labelled

from imgrec.lab.harness import ServiceProcess


def _jobs_posts(page) -> list[int]:
    """The statuses of the page's uploads, as they are answered."""
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status)
            if r.request.method == "POST" and r.url.endswith("/api/v1/jobs") else None)
    return statuses


def test_a_backlog_smaller_than_a_request_still_finishes(page, tmp_path, model_dir, photos):
    svc = ServiceProcess(tmp_path / "svc", model_dir, "--max-workers", "2", env={"IMGREC_MAX_BACKLOG": "20"})
    try:
        statuses = _jobs_posts(page)
        files = photos[0][:100]
        page.goto(svc.url)
        page.set_input_files("#files", [str(f) for f in files])
        labelled(page, 100, timeout=300_000)
        assert dict(cards(page)) == {f.name: photos[1][f.name] for f in files}, "every image answered, none refused"
        assert statuses.count(202) >= 5, "at most 20 files a request"
        # The page asks for the room before each request: a 429 is a race it lost, not its plan.
        assert statuses.count(429) <= 2 and 413 not in statuses, statuses
    finally:
        svc.stop()


def test_leaving_mid_upload_warns_and_the_files_not_sent_can_be_sent_again(browser, service, photos):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.type), d.accept()))
    held = []
    page.route("**/api/v1/jobs", lambda route: held.append(route))  # never answered: nothing is accepted
    try:
        files = photos[0][:12]
        page.goto(service.url)
        page.wait_for_function("() => document.getElementById('limits-note').textContent")
        with page.expect_request("**/api/v1/jobs"):
            with page.expect_file_chooser() as chooser:
                page.click("#pick-files")  # a click: the browser asks before leaving only a page someone used
            chooser.value.set_files([str(f) for f in files])
        page.unroute("**/api/v1/jobs")
        page.reload()
        assert dialogs == ["beforeunload"]
        page.wait_for_selector("#unsent-box:not([hidden])")
        said = page.inner_text("#unsent-text")
        assert said.startswith("12 files were chosen but not sent") and files[0].name in said and "and 7 more" in said
        with page.expect_file_chooser() as chooser:
            page.click("#unsent-pick")
        chooser.value.set_files([str(f) for f in photos[0][:14]])  # two that were never chosen: not sent
        labelled(page, 12)
        assert dict(cards(page)) == {f.name: photos[1][f.name] for f in files}
        assert page.is_hidden("#unsent-box") and page.evaluate("localStorage.getItem('imgrec-unsent')") is None
        page.reload()  # nothing unsent: no question
        assert dialogs == ["beforeunload"]
    finally:
        context.close()


def test_the_key_is_checked_before_any_image_is_sent(page, tmp_path, model_dir, photos):
    svc = ServiceProcess(tmp_path / "svc", model_dir, "--max-workers", "1", env={"IMGREC_API_KEYS": "right-key"})
    try:
        posts: list[str] = []
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        files = photos[0][:3]
        page.goto(svc.url)
        page.wait_for_function("() => document.getElementById('key-note').textContent.includes('needs an API key')")
        page.set_input_files("#files", [str(f) for f in files])
        page.wait_for_function("() => document.getElementById('message').textContent.includes('API key')")
        assert posts == [], "no key: nothing sent"
        assert {label for _, label in cards(page)} == {"waiting for the API key…"}
        page.fill("#key", "wrong-key")
        page.click("text=Use this key")
        page.wait_for_function("() => document.getElementById('key-note').textContent.includes('refused')")
        assert posts == [], "a wrong key: said at once, nothing sent"
        page.fill("#key", "right-key")
        page.click("text=Use this key")
        labelled(page, 3)
        assert cards(page) == [[f.name, photos[1][f.name]] for f in files], "the waiting files go once the key works"
        assert len(posts) == 1 and page.inner_text("#key-note").startswith("The key works")
    finally:
        svc.stop()


def test_upload_progress_is_in_bytes_and_cancel_stops_what_is_not_sent(page, service, photos):
    statuses = _jobs_posts(page)
    page.goto(service.url)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions",
             {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 100 * 1024})
    files = photos[0][:60]
    page.set_input_files("#files", [str(f) for f in files])
    page.wait_for_function(
        "() => /^0 of 60 done · [1-9][0-9]* KB of [0-9.]+ MB sent/.test(document.getElementById('progress-text').textContent)"
    )
    page.click("#cancel")
    labelled(page, 60)
    assert {label for _, label in cards(page)} == {"error"}
    assert page.inner_text("#grid .card .err").endswith("not sent (cancelled)")
    assert page.inner_text("#message") == "Cancelled: 60 files not sent."
    page.wait_for_selector("#cancel", state="hidden")
    assert statuses == [], "the request was aborted, never answered"
    assert page.evaluate("localStorage.getItem('imgrec-unsent')") is None

