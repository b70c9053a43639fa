"""Issue 15: the web page, driven in a real browser on the running system.

Debian's chromium (installed by `make system-tools`) through Playwright for Python;
no browser is downloaded. The same run writes the README's screenshots to
docs/screenshots/.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Route,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.support.audio import JFK_FLAC, repeat
from tests.support.system import System, UserKey

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}
JOB_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def user(system: System) -> UserKey:
    return system.create_key("web-page-user")


def _context(browser: Browser, key: str | None, viewport: ViewportSize = DESKTOP) -> BrowserContext:
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    context.set_default_timeout(30_000)
    if key is not None:  # signed in as the page itself would be after a sign-in
        context.add_init_script(f"localStorage.setItem('whisperstream.apiKey', {key!r})")
    return context


@pytest.fixture
def page(browser: Browser, user: UserKey) -> Iterator[Page]:
    context = _context(browser, user.key)
    try:
        yield context.new_page()
    finally:
        context.close()


def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_a_wrong_key_is_refused_and_a_right_one_signs_in(
    system: System, browser: Browser, user: UserKey
) -> None:
    context = _context(browser, None)
    try:
        page = context.new_page()
        # the address `up` prints
        printed = re.search(r"web page: (http://\S+/)", system.log_path.read_text())
        assert printed is not None
        assert printed.group(1) == system.api_url + "/"
        page.goto(printed.group(1))
        page.get_by_label("API key").fill("not-a-key")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("That API key was not accepted")
        assert page.evaluate("localStorage.getItem('whisperstream.apiKey')") is None

        page.get_by_label("API key").fill(user.key)
        page.get_by_label("API key").press("Enter")  # the keyboard alone signs in
        expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
        expect(page.locator("#stream-state")).to_have_text("live")
        assert page.evaluate("localStorage.getItem('whisperstream.apiKey')") == user.key
        # a user key sees no admin view
        expect(page.get_by_role("link", name="Admin")).to_be_hidden()

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_label("API key")).to_be_visible()
        assert page.evaluate("localStorage.getItem('whisperstream.apiKey')") is None
    finally:
        context.close()


def test_upload_progress_then_the_transcript_against_the_audio(
    system: System, page: Page, user: UserKey
) -> None:
    page.goto(system.api_url + "/")
    expect(page.locator("#stream-state")).to_have_text("live")
    # a slow uplink, so that the upload's progress is seen between empty and full
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 250_000},
    )
    # the options go with the upload; the models are the server's installed ones
    page.get_by_label("Model").select_option("tiny.en")
    page.get_by_label("Language").fill("en")
    page.get_by_label("Word timestamps").check()
    page.locator("#file-input").set_input_files(str(JFK_FLAC))
    page.wait_for_function(
        "() => { const p = document.querySelector('li.upload progress');"
        " return p !== null && p.value > 0 && p.value < p.max; }"
    )
    upload = page.locator("li.upload", has_text=JFK_FLAC.name)
    expect(upload).to_have_class("upload done", timeout=60_000)
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    job_id = upload.get_attribute("data-job-id")
    assert job_id

    # the list follows the job live to its end
    row = page.locator(f"tr[data-job-id='{job_id}']")
    expect(row).to_have_attribute("data-status", "completed", timeout=JOB_TIMEOUT_MS)
    row.get_by_role("link").click()
    segments = page.locator("button.segment")
    expect(segments.first).to_be_visible()
    expect(page.locator("ol.segments")).to_contain_text("ask not what your country can do for you")

    # the SRT download is the API's own rendering
    with page.expect_download() as download_info:
        page.get_by_role("button", name="SRT").click()
    download = download_info.value
    assert download.suggested_filename == "jfk.srt"
    with system.http(user.key) as client:
        api_srt = client.get(f"/transcribe/{job_id}", params={"format": "srt"})
        job = client.get(f"/transcribe/{job_id}").json()
        api_text = client.get(f"/transcribe/{job_id}", params={"format": "text"}).text
        document = client.get(f"/transcribe/{job_id}", params={"format": "json"}).json()
    assert (job["model"], job["language"]) == ("tiny.en", "en")
    assert document["segments"][0]["words"], "word timestamps were asked for"
    assert api_srt.status_code == 200
    assert Path(download.path()).read_text(encoding="utf-8") == api_srt.text

    # Copy text puts the transcript on the clipboard, as ?format=text gives it
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy text").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == api_text.rstrip("\n")

    # the audio plays from S3 through a presigned URL; a click on a segment seeks to it
    page.wait_for_function("() => document.querySelector('#player').readyState >= 1")
    duration = page.evaluate("document.querySelector('#player').duration")
    assert 10 < duration < 12, duration
    assert segments.count() >= 2
    second = segments.nth(1)
    start = float(second.get_attribute("data-start") or "nan")
    end = float(second.get_attribute("data-end") or "nan")
    assert start > 1
    second.click()
    page.wait_for_function(
        "([start, end]) => { const t = document.querySelector('#player').currentTime;"
        " return t >= start - 0.05 && t < end; }",
        arg=[start, end],
    )
    # while it plays, the segment under the play head is the highlighted one
    page.evaluate("document.querySelector('#player').pause()")
    page.evaluate(f"document.querySelector('#player').currentTime = {start + 0.1}")
    expect(second).to_have_attribute("aria-current", "true")
    _shot(page, "job-desktop")
    page.set_viewport_size(PHONE)
    _shot(page, "job-phone")


def _drop(page: Page, files: list[tuple[str, str, bytes]]) -> None:
    """Drop files on the drop zone as a user dragging them from their desktop would."""
    page.evaluate(
        """(files) => {
          const transfer = new DataTransfer();
          for (const [name, type, b64] of files) {
            const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            transfer.items.add(new File([data], name, { type }));
          }
          const zone = document.querySelector('#drop-zone');
          zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: transfer, bubbles: true }));
          zone.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true }));
        }""",
        [[name, kind, base64.b64encode(data).decode()] for name, kind, data in files],
    )


def test_a_refused_file_shows_the_problem_while_the_good_one_completes(
    system: System, page: Page, user: UserKey
) -> None:
    notes = b"meeting notes, not audio\n" * 10
    with system.http(user.key) as client:
        refused = client.post("/transcribe", files={"file": ("notes.txt", notes, "text/plain")})
    assert refused.status_code == 415
    detail = refused.json()["detail"]

    page.goto(system.api_url + "/")
    expect(page.locator("#stream-state")).to_have_text("live")
    _drop(
        page,
        [("notes.txt", "text/plain", notes), ("speech.flac", "audio/flac", JFK_FLAC.read_bytes())],
    )
    bad = page.locator("li.upload[data-file='notes.txt']")
    expect(bad.get_by_role("alert")).to_have_text(f"Unsupported Media Type: {detail}")
    good = page.locator("li.upload[data-file='speech.flac']")
    expect(good).to_have_class("upload done", timeout=60_000)
    job_id = good.get_attribute("data-job-id")
    row = page.locator(f"tr[data-job-id='{job_id}']")
    expect(row).to_have_attribute("data-status", "completed", timeout=JOB_TIMEOUT_MS)
    expect(row.locator("progress")).to_have_js_property("value", 1)
    _shot(page, "jobs-desktop")
    page.set_viewport_size(PHONE)
    _shot(page, "jobs-phone")


def test_cancel_a_long_job_from_the_list(
    system: System, page: Page, user: UserKey, tmp_path: Path
) -> None:
    page.goto(system.api_url + "/")
    expect(page.locator("#stream-state")).to_have_text("live")
    long_audio = repeat(JFK_FLAC, tmp_path / "long.flac", 20)
    with httpx.Client(base_url=system.api_url, timeout=60) as client:
        accepted = client.post(
            "/transcribe",
            headers={"Authorization": f"Bearer {user.key}"},
            files={"file": ("long.flac", long_audio.read_bytes(), "audio/flac")},
        )
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    # it appears in the list from the event stream, without a reload
    row = page.locator(f"tr[data-job-id='{job_id}']")
    expect(row).to_be_visible()
    row.get_by_role("button", name="Cancel long.flac").click()
    expect(row).to_have_attribute("data-status", "cancelled", timeout=JOB_TIMEOUT_MS)
    assert system.wait_for_job(job_id)["status"] == "cancelled"

    # the status filter asks the API for that status only
    others = page.locator("table.jobs tbody tr:not([data-status='cancelled'])")
    page.get_by_label("Status").select_option("completed")
    expect(row).to_have_count(0)
    page.get_by_label("Status").select_option("cancelled")
    expect(row).to_be_visible()
    expect(others).to_have_count(0)


def _wait_for_dead_letter(system: System, job_id: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    with system.http() as client:
        while time.monotonic() < deadline:
            page = client.get("/admin/errors", params={"resolved": "false", "limit": 100})
            if job_id in {e["job_id"] for e in page.json()["items"]}:
                return
            time.sleep(0.3)
    raise AssertionError(f"no dead letter of job {job_id} after {timeout_s} s")


def _failed_job(system: System, user: UserKey) -> dict[str, Any]:
    """A job of `user` that failed for good (a model no worker has): its final view."""
    model = f"missing-{uuid.uuid4().hex[:6]}"
    with system.http(user.key) as client:
        accepted = client.post(
            "/transcribe",
            data={"model": model},
            files={"file": ("jfk.flac", JFK_FLAC.read_bytes(), "audio/flac")},
        )
    assert accepted.status_code == 202, accepted.text
    failed: dict[str, Any] = system.wait_for_job(accepted.json()["job_id"])
    assert failed["status"] == "failed"
    return failed


def _resolved_error_ids(system: System) -> set[int]:
    with system.http() as client:
        page = client.get("/admin/errors", params={"resolved": "true", "limit": 100}).json()
    return {entry["id"] for entry in page["items"]}


def test_a_failed_job_shows_its_error_and_the_admin_redrives_its_dead_letter(
    system: System, browser: Browser, page: Page, user: UserKey
) -> None:
    failed = _failed_job(system, user)
    job_id = failed["job_id"]

    page.goto(f"{system.api_url}/#/jobs/{job_id}")
    failure = page.locator("section.failure")
    expect(failure).to_contain_text(failed["error"]["message"])
    expect(failure).to_contain_text(f"Attempts: {failed['attempts']}")

    _wait_for_dead_letter(system, job_id)  # the projector writes it apart from the status
    context = _context(browser, system.admin_key)
    try:
        admin = context.new_page()
        admin.goto(system.api_url + "/#/admin")
        letter = admin.locator("table.errors tr", has=admin.locator(f"a[href='#/jobs/{job_id}']"))
        expect(letter).to_contain_text(failed["error"]["type"])
        error_id = letter.get_attribute("data-error-id")
        letter.get_by_role("button", name="Redrive").click()
        expect(admin.locator(f"tr[data-error-id='{error_id}']")).to_have_count(0)
    finally:
        context.close()
    assert int(error_id or 0) in _resolved_error_ids(system)


def test_the_admin_resolves_a_dead_letter_from_the_page(
    system: System, browser: Browser, user: UserKey
) -> None:
    job_id = _failed_job(system, user)["job_id"]
    _wait_for_dead_letter(system, job_id)
    context = _context(browser, system.admin_key)
    try:
        admin = context.new_page()
        admin.goto(system.api_url + "/#/admin")
        letter = admin.locator("table.errors tr", has=admin.locator(f"a[href='#/jobs/{job_id}']"))
        error_id = letter.get_attribute("data-error-id")
        letter.get_by_role("button", name="Resolve").click()
        # resolved, not redriven: the page says which, and the row leaves the open list
        expect(admin.locator("#announce")).to_have_text(f"Error {error_id} resolved")
        expect(admin.locator(f"tr[data-error-id='{error_id}']")).to_have_count(0)
    finally:
        context.close()
    assert int(error_id or 0) in _resolved_error_ids(system)


def _live_worker_that_has_used_its_pool(system: System, timeout_s: float = 60) -> Any:
    """A worker's heartbeat, once one reports a model-pool lookup (the jobs above made
    some; heartbeats come every few seconds)."""
    deadline = time.monotonic() + timeout_s
    with system.http() as client:
        while time.monotonic() < deadline:
            for worker in client.get("/admin/health").json()["workers"]["live"]:
                pool = worker["model_pool"]
                if pool["hits"] + pool["misses"] >= 1:
                    return worker
            time.sleep(0.5)
    raise AssertionError(f"no live worker with pool lookups after {timeout_s} s")


def test_the_admin_view_shows_a_worker_with_its_pool_stats(
    system: System, browser: Browser
) -> None:
    with system.http() as client:  # a job of its own, so the pool has been used
        accepted = client.post(
            "/transcribe", files={"file": ("jfk.flac", JFK_FLAC.read_bytes(), "audio/flac")}
        )
    assert accepted.status_code == 202, accepted.text
    assert system.wait_for_job(accepted.json()["job_id"])["status"] == "completed"
    worker = _live_worker_that_has_used_its_pool(system)
    context = _context(browser, system.admin_key)
    try:
        page = context.new_page()
        page.goto(system.api_url + "/#/admin")
        row = page.locator(f"table.workers tr[data-worker-id='{worker['worker_id']}']")
        expect(row).to_be_visible()
        hits = int(row.locator("[data-stat='hits']").inner_text())
        misses = int(row.locator("[data-stat='misses']").inner_text())
        # the pool had looked up a model for the jobs above; the figures only grow
        assert hits + misses >= 1
        assert hits >= worker["model_pool"]["hits"]
        expect(page.locator("#projector-lag")).to_contain_text("events behind")
        expect(page.get_by_role("heading", name="Dead letters")).to_be_visible()
        _shot(page, "admin-desktop")
    finally:
        context.close()


def test_the_file_picker_opens_from_the_keyboard(
    system: System, page: Page, tmp_path: Path
) -> None:
    # interception of file choosers starts without an answer from the browser: start it
    # before the page, so the chooser opened below cannot slip past it
    page.on("filechooser", lambda _chooser: None)
    page.goto(system.api_url + "/")
    picker = page.get_by_role("button", name="Choose files…")
    picker.focus()
    expect(picker).to_be_focused()
    with page.expect_file_chooser() as chooser_info:
        page.keyboard.press("Enter")
    chooser = chooser_info.value
    assert chooser.is_multiple()
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    chooser.set_files(str(empty))
    refused = page.locator("li.upload[data-file='empty.wav']").get_by_role("alert")
    expect(refused).to_contain_text("empty")


def test_the_event_stream_parser_reads_events_split_anywhere(system: System, page: Page) -> None:
    """The page reads SSE with fetch (EventSource cannot send the key): its parser must
    join chunks cut mid-line, take CRLF, skip comments, and carry the last id."""
    page.goto(system.api_url + "/")
    events = page.evaluate(
        """async () => {
          const { SseParser } = await import('/web/api.js');
          const seen = [];
          const parser = new SseParser((e) => seen.push(e));
          const stream = 'retry: 2000\\n\\n: keep-alive\\n\\nid: 0:5\\r\\nevent: state\\r\\n'
            + 'data: {"a":\\r\\ndata: 1}\\r\\n\\r\\nevent: progress\\ndata: {"b": 2}\\n\\n';
          for (const size of [1, 3, 7]) {
            for (let i = 0; i < stream.length; i += size) parser.push(stream.slice(i, i + size));
          }
          return seen;
        }"""
    )
    expected = [
        {"type": "state", "data": '{"a":\n1}', "id": "0:5"},
        {"type": "progress", "data": '{"b": 2}', "id": "0:5"},
    ]
    assert events == expected * 3


def test_the_job_list_resumes_its_stream_from_the_last_event_id(system: System, page: Page) -> None:
    asked_with: list[str | None] = []

    def first_stream_breaks(route: Route) -> None:
        asked_with.append(route.request.headers.get("last-event-id"))
        if len(asked_with) > 1:
            route.continue_()
            return
        # one event, then the connection ends, as a restarted API or a proxy would end it
        event = {"job_id": str(uuid.uuid4()), "status": "pending", "progress": 0}
        route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream"},
            body=f"id: 0:0\nevent: state\ndata: {json.dumps(event)}\n\n",
        )

    page.route("**/jobs/events", first_stream_breaks)
    with page.expect_request(
        lambda request: (
            request.url.endswith("/jobs/events") and request.headers.get("last-event-id") == "0:0"
        )
    ):
        page.goto(system.api_url + "/")
    expect(page.locator("#stream-state")).to_have_text("live")
    assert asked_with[:2] == [None, "0:0"]


def test_the_job_list_pages_newest_first(system: System, browser: Browser) -> None:
    owner = system.create_key("web-page-pager")
    names = [f"clip-{i}.flac" for i in range(6)]
    with system.http(owner.key) as client:
        ids = []
        for name in names:
            accepted = client.post(
                "/transcribe", files={"file": (name, JFK_FLAC.read_bytes(), "audio/flac")}
            )
            assert accepted.status_code == 202, accepted.text
            ids.append(accepted.json()["job_id"])
        for job_id in ids:  # only the list matters here: leave the worker free
            assert client.delete(f"/transcribe/{job_id}").status_code in (202, 409)
    for job_id in ids:
        system.wait_for_job(job_id)
    context = _context(browser, owner.key)
    try:
        page = context.new_page()
        page.goto(system.api_url + "/")
        rows = page.locator("table.jobs tbody tr th")
        expect(rows).to_have_count(6)
        page.get_by_label("Per page").select_option("5")
        expect(rows).to_have_text(names[:0:-1])
        older = page.get_by_role("button", name="Older")
        older.click()
        expect(rows).to_have_text([names[0]])
        expect(older).to_be_disabled()
        page.get_by_role("button", name="Newer").click()
        expect(rows).to_have_text(names[:0:-1])
    finally:
        context.close()
