"""The reps' web inbox end to end: the real app served by uvicorn, a real run, headless Chromium driving the page.

Needs Debian's Chromium at /usr/bin/chromium (CI installs it); Playwright never downloads a browser here.
"""

from __future__ import annotations

import copy
import json
import shutil
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from agents.services import Services
from tests.conftest import FIXED_NOW
from tests.test_governance import make_services
from tests.test_graph import demo_event
from tools.calendar import Booking, booking_uid
from tools.cases import index_cases

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
EDITED = "Hello Kevin,\n\nThank you for your note. Our SOC 2 Type II report and the questionnaire answers follow this week."
TIMEOUT_MS = 20_000

# No skip: CI must run this test, and the README's test command installs Debian's Chromium first.
assert CHROMIUM.exists(), f"the web inbox test drives Debian's Chromium and {CHROMIUM} is missing: apt-get install chromium"


class Served:
    """The app on a loopback port, its services, one waiting run, and tokens for its owner and another rep."""

    def __init__(self, base_url: str, app, services: Services, data_dir: Path, run_id: str, owner: str,
                 owner_token: str, other_token: str):
        self.base_url, self.app, self.services, self.data_dir = base_url, app, services, data_dir
        self.run_id, self.owner, self.owner_token, self.other_token = run_id, owner, owner_token, other_token

    def api(self, method: str, path: str, token: str, **kwargs) -> httpx.Response:
        return httpx.request(method, self.base_url + path, headers={"Authorization": f"Bearer {token}"}, timeout=60, **kwargs)


@pytest.fixture(scope="module")
def served(tmp_path_factory, demo_source, model_dir):
    from service.app import create_app

    root = tmp_path_factory.mktemp("web-inbox")
    data_dir = root / "data"
    shutil.copytree(demo_source, data_dir)
    services = make_services(root, data_dir, model_dir)
    assert services.clock() == FIXED_NOW
    index_cases(services.crm, services.embedder, services.vectors)
    app = create_app(services, start_workers=False)
    info, _ = app.state.orch.start(demo_event(data_dir, "security-review"))
    assert info.status == "waiting", info
    owner = app.state.orch.state(info.run_id).lead.owner_rep_id
    assert owner, "the security-review lead's account has an owner rep"
    owner_token = app.state.tokens.add("owner-rep", "rep", rep_id=owner)
    other_token = app.state.tokens.add("other-rep", "rep", rep_id=f"{owner}-not")

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn-web-inbox")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    base_url = f"http://127.0.0.1:{port}"
    assert httpx.get(base_url + "/inbox", timeout=10).status_code == 200
    try:
        yield Served(base_url, app, services, data_dir, info.run_id, owner, owner_token, other_token)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        services.vectors.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"the page threw: {errors}"


def sign_in(page: Page, served: Served, token: str, fragment: str = "") -> None:
    page.goto(f"{served.base_url}/inbox{fragment}")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("whoami")).to_be_visible()


def booked_times(data_dir: Path, run_id: str) -> int:
    uid = booking_uid(run_id)
    return sum(path.read_text().count(uid) for path in sorted((data_dir / "crm" / "calendars").glob("*.ics")))


def test_another_rep_sees_nothing_and_may_not_decide(served: Served, page: Page):
    sign_in(page, served, served.other_token, fragment=f"#run={served.run_id}")
    expect(page.get_by_test_id("whoami-name")).to_have_text("other-rep")
    # A deep link to somebody else's run shows the API's reason, and the list does not offer the run.
    expect(page.get_by_test_id("error-text")).to_contain_text(f"may not see run {served.run_id}")
    expect(page.locator(f'[data-testid="run-item"][data-run-id="{served.run_id}"]')).to_have_count(0)
    expect(page.get_by_test_id("actions")).to_have_count(0)

    # The API refuses the decision whatever the page shows, and stores nothing.
    body = {"type": "edit", "args": {"action": "send_proposal", "args": {"draft": "not mine to send"}}}
    answer = served.api("POST", f"/api/runs/{served.run_id}/decision", served.other_token, json=body)
    assert answer.status_code == 403, answer.text
    assert "other-rep" in answer.json()["detail"]
    assert not [r for r in served.services.feedback.for_run(served.run_id) if r.rep_id != served.owner]
    assert served.api("GET", f"/api/runs/{served.run_id}", served.other_token).status_code == 403
    assert served.api("GET", "/api/me", "sl_not-a-token").status_code == 401


def book_elsewhere(served: Served, uid: str, start, end) -> None:
    """A meeting booked in the consultant's calendar by someone else, as another tool or another run would."""
    plan = served.app.state.orch.state(served.run_id).plan
    consultant = plan.consultant.consultant
    served.services.calendar.book(consultant, Booking(uid=uid, consultant_id=consultant.id, start=start, end=end,
                                                      summary="Busy", description="", attendees=[consultant.email]))


def test_slots_booked_since_the_plan_are_marked_and_a_slot_taken_meanwhile_sends_the_run_back(served: Served, page: Page):
    slots = served.app.state.orch.state(served.run_id).plan.slots
    assert len(slots) == 3 and slots[1].start - slots[0].start == timedelta(minutes=30)  # 60-minute slots, 30 minutes apart
    # Booked before the rep opens the run: half an hour before slot 0 to half into it, so slot 1 stays free.
    book_elsewhere(served, "dentist@example.com", slots[0].start - timedelta(minutes=30), slots[0].start + timedelta(minutes=30))
    sign_in(page, served, served.owner_token, fragment=f"#run={served.run_id}")
    options = page.get_by_test_id("slot")
    expect(options).to_have_count(3)
    expect(options.nth(0)).to_have_attribute("data-taken", "true")
    expect(options.nth(0).get_by_test_id("slot-taken")).to_contain_text("dentist@example.com")
    expect(page.get_by_test_id("slot-radio").nth(0)).to_be_disabled()
    expect(page.get_by_test_id("slot-radio").nth(1)).to_be_checked()  # the first free slot is the default
    expect(page.get_by_test_id("slot-taken")).to_have_count(1)

    # Slot 1 is booked while the page is open; the rep adopts it: nothing is booked, the run waits with new slots.
    book_elsewhere(served, "board@example.com", slots[1].start, slots[1].end)
    page.get_by_role("button", name="Adopt and send").click()
    expect(page.get_by_test_id("error-text")).to_contain_text("board@example.com", timeout=60_000)
    expect(page.get_by_test_id("error-text")).to_contain_text("waits again with new slots")
    expect(page.get_by_test_id("slot-conflict")).to_contain_text("board@example.com")
    expect(page.get_by_test_id("run-status")).to_have_text("waiting")
    expect(page.get_by_test_id("interrupt-description")).to_contain_text("board@example.com")
    state = served.app.state.orch.state(served.run_id)
    assert state.conflicts[-1].taken_by.uid == "board@example.com" and state.applied is None
    assert all(s.start >= slots[1].end for s in state.plan.slots)
    expect(page.get_by_test_id("slot-radio")).to_have_count(len(state.plan.slots))
    expect(page.get_by_test_id("slot-taken")).to_have_count(0)
    expect(page.get_by_test_id("slot-radio").nth(0)).to_be_checked()
    expect(page.get_by_test_id("actions")).to_be_visible()
    assert booked_times(served.data_dir, served.run_id) == 0 and served.services.feedback.for_run(served.run_id) == []


def test_owner_edits_the_draft_in_the_page_and_the_meeting_is_booked_once(served: Served, page: Page):
    state = served.app.state.orch.state(served.run_id)
    sign_in(page, served, served.owner_token)
    expect(page.get_by_test_id("whoami-name")).to_have_text("owner-rep")
    item = page.locator(f'[data-testid="run-item"][data-run-id="{served.run_id}"]')
    expect(item.get_by_test_id("run-company")).to_have_text(state.lead.account_name)
    expect(item.get_by_test_id("run-grade")).to_have_text(state.grade.grade)
    item.click()

    detail = page.get_by_test_id("run-detail")
    expect(page.get_by_test_id("detail-title")).to_contain_text(state.lead.account_name)
    # The grade, each signal's reason and its sources.
    expect(page.get_by_test_id("grade-letter")).to_have_text(state.grade.grade)
    expect(page.get_by_test_id("signal")).to_have_count(len(state.grade.signals))
    first = state.grade.signals[0]
    expect(page.get_by_test_id("signal").first.get_by_test_id("signal-reason")).to_have_text(first.reason)
    expect(page.get_by_test_id("signal").first.get_by_test_id("signal-sources")).to_contain_text(first.sources[0].id)
    # Similar cases with their chunk ids; the draft's provenance; slots and the rule behind each clause.
    expect(page.get_by_test_id("case")).to_have_count(len(state.cases))
    expect(page.get_by_test_id("case").first.get_by_test_id("case-chunks")).to_contain_text(state.cases[0].chunks[0].id)
    expect(page.get_by_test_id("draft-prompt")).to_contain_text(f"{state.draft.prompt_name} @ {state.draft.prompt_sha256[:12]}")
    expect(page.get_by_test_id("draft-model")).to_contain_text(state.draft.model_id)
    expect(page.get_by_test_id("slot-radio")).to_have_count(len(state.plan.slots))
    expect(page.get_by_test_id("clause").first.get_by_test_id("clause-rule")).to_have_text(state.plan.clauses[0].rule_id)
    share = f"{round(state.draft.supported_share * 100)}%"
    expect(page.get_by_test_id("supported-share")).to_contain_text(share)

    # Each sentence of the real draft shows its sources on hover, or is marked unsupported.
    sentences = page.get_by_test_id("sentence")
    expect(sentences).to_have_count(len(state.draft.sentences))
    panel = page.get_by_test_id("sentence-sources")
    for index, sentence in enumerate(state.draft.sentences):
        sentences.nth(index).hover()
        expect(panel.get_by_test_id("panel-sentence")).to_have_text(sentence.text)
        if sentence.sources:
            expect(sentences.nth(index).get_by_test_id("unsupported-badge")).to_have_count(0)
            expect(panel.get_by_test_id("source")).to_have_count(len(sentence.sources))
        else:
            expect(sentences.nth(index).get_by_test_id("unsupported-badge")).to_have_text("unsupported")
            expect(panel.get_by_test_id("sentence-method")).to_contain_text("Unsupported")

    # Edit in place: the draft becomes a textarea holding the draft, pick the second slot, submit.
    page.get_by_role("button", name="Edit the draft").click()
    editor = page.get_by_label("Edit the draft, then submit it")
    expect(editor).to_be_focused()
    expect(editor).to_have_value(state.draft.text)
    expect(page.get_by_test_id("draft-text")).to_be_hidden()
    editor.fill(EDITED)
    slot = 1 if len(state.plan.slots) > 1 else 0
    page.get_by_test_id("slot-radio").nth(slot).check()
    page.get_by_role("button", name="Submit the edited draft").click()

    result = page.get_by_test_id("result")
    expect(result).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("result-decision")).to_have_attribute("data-decision", "edit")
    expect(page.get_by_test_id("result-decision")).to_contain_text(f"by {served.owner}")
    expect(page.get_by_test_id("result-final-text")).to_have_text(EDITED)
    expect(page.get_by_test_id("result-booking")).to_have_attribute("data-booked", "true")
    expect(page.get_by_test_id("result-booking")).to_contain_text(booking_uid(served.run_id))
    expect(page.get_by_test_id("run-status")).to_have_text("done")
    expect(page.get_by_test_id("actions")).to_have_count(0)
    # The list was refreshed: the run no longer waits.
    expect(page.locator(f'[data-testid="run-item"][data-run-id="{served.run_id}"]')).to_have_count(0)
    expect(detail).to_be_visible()

    (record,) = served.services.feedback.for_run(served.run_id)
    assert (record.decision, record.final_text, record.rep_id) == ("edit", EDITED.strip(), served.owner)
    done = served.app.state.orch.state(served.run_id)
    assert done.decision.slot_index == slot and done.applied.booked_slot == state.plan.slots[slot]
    assert booked_times(served.data_dir, served.run_id) == 1

    # Deciding again differently is refused, and the page shows the API's reason; nothing is booked twice.
    answer = served.api("POST", f"/api/runs/{served.run_id}/decision", served.owner_token, json={"type": "accept"})
    assert answer.status_code == 409 and "already decided" in answer.json()["detail"]
    assert booked_times(served.data_dir, served.run_id) == 1
    assert len(served.services.feedback.for_run(served.run_id)) == 1


def test_sentence_sources_render_as_text_with_chunks_and_records(served: Served, page: Page):
    """A draft whose sentences carry sources (and hostile text): the panel names each source, all as plain text."""
    state = served.app.state.orch.state(served.run_id)
    fact, case = state.lead.facts[0], state.cases[0]
    chunk = case.chunks[1]
    hostile = 'Rates <img src=x onerror="window.__pwned=1"> apply.'
    sentences = [
        {"text": f"{fact.value} is a fit [L1][C1].", "method": "marker", "similarity": None,
         "sources": [fact.source.model_dump(mode="json"),
                     {"kind": "case", "id": case.case_id, "field": None, "version": None, "note": case.outcome},
                     {"kind": "document_chunk", "id": chunk.id, "field": chunk.kind, "version": None, "note": None}]},
        {"text": hostile, "method": "similarity", "similarity": 0.61,
         "sources": [{"kind": "document_chunk", "id": chunk.id, "field": chunk.kind, "version": None, "note": None}]},
        {"text": "Kind regards.", "method": "none", "similarity": 0.2, "sources": []},
    ]

    def with_sources(route):
        response = route.fetch()
        data = response.json()
        draft = data["state"]["draft"]
        draft.update(text=" ".join(s["text"] for s in sentences), sentences=copy.deepcopy(sentences), supported_share=2 / 3)
        data["state"]["decision"] = data["state"]["applied"] = None  # show it as still waiting
        route.fulfill(status=200, content_type="application/json", body=json.dumps(data))

    page.route(f"**/api/runs/{served.run_id}", with_sources)
    sign_in(page, served, served.owner_token, fragment=f"#run={served.run_id}")
    nodes = page.get_by_test_id("sentence")
    expect(nodes).to_have_count(3)
    panel = page.get_by_test_id("sentence-sources")

    nodes.nth(0).click()  # click pins the sentence
    expect(nodes.nth(0)).to_have_attribute("aria-pressed", "true")
    expect(panel.get_by_test_id("sentence-method")).to_contain_text("marker")
    record = panel.locator('[data-testid="source"][data-kind="crm_record"]')
    expect(record).to_contain_text(fact.source.id)
    expect(record).to_contain_text(fact.source.field)
    expect(panel.locator('[data-testid="source"][data-kind="case"]')).to_contain_text(case.case_id)
    expect(panel.locator('[data-testid="source"][data-kind="document_chunk"]')).to_contain_text(chunk.id)
    expect(panel.get_by_test_id("source-chunk-text")).to_have_text(chunk.text)
    nodes.nth(2).hover()
    expect(panel.get_by_test_id("sentence-method")).to_contain_text("Unsupported")
    page.mouse.move(1, 1)
    expect(panel.get_by_test_id("panel-sentence")).to_have_text(sentences[0]["text"])  # back to the pinned one

    nodes.nth(1).focus()  # keyboard focus shows the sources too
    expect(panel.get_by_test_id("sentence-method")).to_contain_text("similarity 0.61")
    expect(panel.get_by_test_id("source-chunk-text")).to_have_text(chunk.text)
    expect(nodes.nth(1)).to_have_text(hostile)
    expect(page.locator('[data-testid="draft-text"] img')).to_have_count(0)
    assert page.evaluate("window.__pwned === undefined")
    expect(nodes.nth(2).get_by_test_id("unsupported-badge")).to_be_visible()
    expect(page.get_by_test_id("supported-share")).to_contain_text("2 of 3")
