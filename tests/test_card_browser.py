"""The sample card in headless Chromium, against `python -m devserver`: dropdown, user, and failure handling.

The same page runs as a Kaizala card (the preview's KASClient stand-in) and as a Teams tab (`/card/?host=teams`:
the real teams-js bundle with its app.initialize and authentication.getAuthToken stood in, minting Teams tokens
from the Entra ID stand-in).
"""

import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
import requests

from devserver.package import TEAMS_DIR, TEAMS_JS_PACKAGE
from tests.devserver_process import ROOT, DevServer, devserver
from tests.helpers import secret
from tests.shared_data import teams_js_bundle

pytestmark = [pytest.mark.browser]

from playwright.sync_api import Browser, Page, Response, Route, expect  # noqa: E402


def catalog(card_server: DevServer) -> list[dict[str, object]]:
    response = requests.get(
        f"{card_server.api}/api/ProtectedApi", headers={"Authorization": f"Bearer {card_server.mint()}"}, timeout=5
    )
    products: list[dict[str, object]] = response.json()["products"]
    return products


def product_option_values(page: Page) -> list[str]:
    return page.eval_on_selector_all("#product option", "options => options.map(o => o.value)")


@dataclass
class Traffic:
    """What a page sent and got: every URL, the tokens minted for it (Kaizala and Teams), the API's answers."""

    urls: list[str] = field(default_factory=list)
    kaizala_mints: int = 0
    teams_mints: int = 0
    tokens: list[str] = field(default_factory=list)
    api: list[tuple[str, int]] = field(default_factory=list)  # (path, status), preflights left out
    identities: list[dict[str, object]] = field(default_factory=list)  # ValidateToken's 200 answers

    def on_response(self, response: Response) -> None:
        path = urlsplit(response.url).path
        if path in ("/v1/dev/tokens", "/v1/dev/teams-tokens") and response.status == 201:
            self.tokens.append(secret(json.loads(response.body())["token"]))
        if path.startswith("/api/") and response.request.method != "OPTIONS":
            self.api.append((path, response.status))
            if path == "/api/ValidateToken" and response.status == 200:
                self.identities.append(json.loads(response.body()))

    def on_request(self, url: str) -> None:
        self.urls.append(url)
        path = urlsplit(url).path
        self.kaizala_mints += path == "/v1/dev/tokens"
        self.teams_mints += path == "/v1/dev/teams-tokens"

    def statuses(self) -> list[int]:
        return sorted(status for _path, status in self.api)


def watch(page: Page) -> Traffic:
    traffic = Traffic()
    page.on("request", lambda request: traffic.on_request(request.url))
    page.on("response", traffic.on_response)
    return traffic


def assert_no_token_leaks_and_nothing_off_the_machine(page: Page, traffic: Traffic) -> None:
    assert traffic.tokens
    for token in traffic.tokens:
        assert not any(token in url for url in traffic.urls)
        assert not any(token in text for text in page.console_messages_seen)  # type: ignore[attr-defined]
    # Nothing from a CDN (teams-js included) and no call beyond the loopback stand-ins.
    assert {urlsplit(url).hostname for url in traffic.urls} == {"127.0.0.1"}, traffic.urls


def teams_users() -> list[dict[str, str]]:
    demo = json.loads((ROOT / "devserver" / "demo_users.json").read_text())
    users: list[dict[str, str]] = demo["teams"]["users"]
    return users


def teams_token(card_server: DevServer, **body: object) -> str:
    response = requests.post(f"{card_server.kaizala}/v1/dev/teams-tokens", json=body, timeout=5)
    assert response.status_code == 201, response.text
    return secret(response.json()["token"])


def expect_the_catalog(page: Page, card_server: DevServer) -> None:
    """The dropdown holds the whole catalog (after an empty choice), enabled, with no Retry offered."""
    expected = [str(product["id"]) for product in catalog(card_server)]
    expect(page.locator("#product option")).to_have_count(len(expected) + 1)
    assert product_option_values(page) == ["", *expected]
    expect(page.locator("#product")).to_be_enabled()
    expect(page.locator("#status")).to_have_text(f"{len(expected)} products")
    expect(page.locator("#retry")).to_be_hidden()


def test_card_fills_the_dropdown_and_shows_the_user(page: Page, card_server: DevServer) -> None:
    minted: list[str] = []
    page.on(
        "response",
        lambda r: minted.append(json.loads(r.body())["token"]) if r.url.endswith("/v1/dev/tokens") else None,
    )
    requested_urls: list[str] = []
    page.on("request", lambda request: requested_urls.append(request.url))

    traffic = watch(page)

    page.goto(f"{card_server.kaizala}/card/")
    expect(page.locator("#user-name")).to_have_text("Signed in as Asha Rao")
    expect_the_catalog(page, card_server)

    assert minted
    for token in minted:
        assert not any(token in url for url in requested_urls)
        assert not any(token in text for text in page.console_messages_seen)  # type: ignore[attr-defined]
    # The preview loads teams-js too: with KASClient present the page is a Kaizala card all the same.
    assert page.evaluate("document.documentElement.dataset.host") == "kaizala"
    assert (traffic.kaizala_mints, traffic.teams_mints) == (1, 0)
    assert_no_token_leaks_and_nothing_off_the_machine(page, traffic)


def test_expired_token_recovers_with_one_fresh_token(page: Page, card_server: DevServer) -> None:
    expired = requests.post(f"{card_server.kaizala}/v1/dev/tokens", json={"ttlSeconds": 1}, timeout=5).json()
    time.sleep(1.2)
    mints = {"count": 0}

    def first_token_is_expired(route: Route) -> None:
        mints["count"] += 1
        if mints["count"] == 1:
            route.fulfill(status=201, content_type="application/json", body=json.dumps(expired))
        else:
            route.continue_()

    page.route("**/v1/dev/tokens", first_token_is_expired)
    api_statuses: list[tuple[str, int]] = []
    page.on("response", lambda r: api_statuses.append((r.url, r.status)) if "/api/" in r.url else None)

    page.goto(f"{card_server.kaizala}/card/")
    expect(page.locator("#user-name")).to_have_text("Signed in as Asha Rao")
    expect(page.locator("#product option")).to_have_count(len(catalog(card_server)) + 1)
    statuses = [status for _url, status in api_statuses if status != 204]
    assert statuses.count(401) == 2  # both calls were refused once with the expired token...
    assert statuses.count(200) == 2  # ...and both succeeded with the fresh one
    assert mints["count"] == 2  # one fresh token shared by both retries


def test_card_not_allowed_says_so_without_retry(page: Page, card_server: DevServer) -> None:
    page.goto(f"{card_server.kaizala}/card/?card=com.fabrikam.unknown")
    expect(page.locator("#status")).to_contain_text("not allowed")
    # The user did sign in (Kaizala vouched for the token): the heading says the card is the problem.
    expect(page.locator("#user-name")).to_have_text("This card isn't allowed")
    expect(page.locator("#retry")).to_be_hidden()
    expect(page.locator("#product")).to_be_disabled()


def test_unavailable_identity_service_offers_retry(page: Page, card_server: DevServer) -> None:
    requests.put(f"{card_server.kaizala}/v1/dev/faults", json={"error_rate": 1, "error_status": 503}, timeout=5)
    page.goto(f"{card_server.kaizala}/card/")
    expect(page.locator("#status")).to_contain_text("busy")
    expect(page.locator("#retry")).to_be_visible()
    requests.delete(f"{card_server.kaizala}/v1/dev/faults", timeout=5)
    # Retry is held until the 503's Retry-After has passed (the API's default for a Kaizala outage: 5 s).
    expect(page.locator("#retry")).to_be_enabled(timeout=15_000)
    page.click("#retry")
    expect(page.locator("#product option")).to_have_count(len(catalog(card_server)) + 1)
    expect(page.locator("#retry")).to_be_hidden()


def test_network_error_is_shown_never_a_blank_card(page: Page, card_server: DevServer) -> None:
    page.goto(f"{card_server.kaizala}/card/?api=http://127.0.0.1:9")
    expect(page.locator("#status")).to_contain_text("Cannot reach the product service")
    expect(page.locator("#retry")).to_be_visible()
    expect(page.locator("#user-name")).to_have_text("Not signed in")


@pytest.mark.parametrize("width", [360, 390, 420])
def test_card_keeps_a_margin_at_phone_width(browser: Browser, card_server: DevServer, width: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": 780}, device_scale_factor=2, is_mobile=True)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(f"{card_server.kaizala}/card/")
        expect(page.locator("#product option")).to_have_count(len(catalog(card_server)) + 1)
        box = page.locator(".card").bounding_box()
        assert box is not None
        inner_width = page.evaluate("window.innerWidth")
        assert inner_width == width
        assert box["x"] >= 8, box
        assert inner_width - (box["x"] + box["width"]) >= 8, box
        # Nothing inside pokes out of the card or makes the page scroll sideways.
        assert page.evaluate("document.documentElement.scrollWidth") <= inner_width
        select = page.locator("#product").bounding_box()
        assert select is not None
        assert box["x"] <= select["x"]
        assert select["x"] + select["width"] <= box["x"] + box["width"]
    finally:
        context.close()


# --- the same page as a Microsoft Teams tab ------------------------------------------------------------------------


def test_teams_tab_fills_the_dropdown_and_shows_the_teams_user(page: Page, card_server: DevServer) -> None:
    teams_js_bundle()  # the preview wraps the real teams-js (make test installs it; REQUIRE_TEAMS_JS=1 fails)
    traffic = watch(page)
    user = teams_users()[1]

    page.goto(f"{card_server.kaizala}/card/?host=teams&user={user['id']}")
    expect(page.locator("#user-name")).to_have_text(f"Signed in as {user['name']}")
    expect_the_catalog(page, card_server)

    assert page.evaluate("document.documentElement.dataset.host") == "teams"
    # The real library, with only its two calls stood in, at the version teams/package.json pins.
    pinned = json.loads((TEAMS_DIR / "package.json").read_text())["dependencies"][TEAMS_JS_PACKAGE]
    assert page.evaluate("[window.microsoftTeams.preview, window.microsoftTeams.version]") == ["teams-js", pinned]
    assert (traffic.kaizala_mints, traffic.teams_mints) == (0, 1)  # one token for both calls
    assert traffic.statuses() == [200, 200]
    assert traffic.identities == [
        {
            "provider": "teams",
            "id": user["id"],
            "name": user["name"],
            "tenantId": json.loads((ROOT / "devserver" / "demo_users.json").read_text())["teams"]["tenantId"],
            "userPrincipalName": user["userPrincipalName"],
        }
    ]
    assert_no_token_leaks_and_nothing_off_the_machine(page, traffic)


def test_teams_token_for_another_tenant_says_so_without_retry(page: Page, card_server: DevServer) -> None:
    teams_js_bundle()
    traffic = watch(page)
    page.goto(f"{card_server.kaizala}/card/?host=teams&tenant=other")
    expect(page.locator("#status")).to_contain_text("not allowed")
    # Entra did sign the user in (a genuine token): the heading says their tenant or account is the problem.
    expect(page.locator("#user-name")).to_have_text("Your account isn't allowed")
    expect(page.locator("#retry")).to_be_hidden()
    expect(page.locator("#product")).to_be_disabled()
    assert traffic.statuses() == [403, 403]  # no second token, no second call
    assert traffic.teams_mints == 1
    assert_no_token_leaks_and_nothing_off_the_machine(page, traffic)


def test_teams_expired_token_recovers_with_one_fresh_token(page: Page, card_server: DevServer) -> None:
    teams_js_bundle()
    traffic = watch(page)
    page.goto(f"{card_server.kaizala}/card/?host=teams&expired=1")
    expect(page.locator("#user-name")).to_have_text(f"Signed in as {teams_users()[0]['name']}")
    expect(page.locator("#product option")).to_have_count(len(catalog(card_server)) + 1)
    expect(page.locator("#retry")).to_be_hidden()
    assert traffic.statuses() == [200, 200, 401, 401]  # both calls refused once, then both succeeded
    assert traffic.teams_mints == 2  # one fresh token shared by both retries
    assert_no_token_leaks_and_nothing_off_the_machine(page, traffic)


def test_teams_entra_unreachable_offers_retry_then_succeeds(browser: Browser) -> None:
    teams_js_bundle()
    # A devserver of its own: the module's has Entra's keys cached already, so it would not need Entra.
    with devserver() as fresh:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.console_messages_seen = []  # type: ignore[attr-defined]
            page.on("console", lambda message: page.console_messages_seen.append(message.text))  # type: ignore[attr-defined]
            traffic = watch(page)
            down = requests.put(f"{fresh.kaizala}/v1/dev/faults", json={"entra_down": True}, timeout=5)
            assert down.status_code == 200, down.text

            page.goto(f"{fresh.kaizala}/card/?host=teams")
            expect(page.locator("#status")).to_contain_text("busy")
            expect(page.locator("#retry")).to_be_visible()
            expect(page.locator("#user-name")).to_have_text("Not signed in")
            assert traffic.statuses() == [503, 503]

            up = requests.put(f"{fresh.kaizala}/v1/dev/faults", json={"entra_down": False}, timeout=5)
            assert up.status_code == 200, up.text
            # However long the API holds off asking Entra again, wait until it has the keys, then retry.
            token = teams_token(fresh)
            assert answers_200(fresh, token), "the API never recovered after Entra came back"
            expect(page.locator("#retry")).to_be_enabled()  # held for the 503's Retry-After (2 s) first
            page.click("#retry")
            expect(page.locator("#user-name")).to_have_text(f"Signed in as {teams_users()[0]['name']}")
            expect(page.locator("#product option")).to_have_count(len(catalog(fresh)) + 1)
            expect(page.locator("#retry")).to_be_hidden()
            assert traffic.statuses() == [200, 200, 503, 503]  # sorted: both refused while Entra was down, then both ok
            assert traffic.teams_mints == 1  # a 503 is not the token's fault: the same token is sent again
            assert_no_token_leaks_and_nothing_off_the_machine(page, traffic)
        finally:
            context.close()


def answers_200(card_server: DevServer, token: str, seconds: float = 30) -> bool:
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        response = requests.get(
            f"{card_server.api}/api/ValidateToken", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        if response.status_code == 200:
            return True
        time.sleep(0.25)
    return False


def test_teams_network_error_is_shown_never_a_blank_tab(page: Page, card_server: DevServer) -> None:
    teams_js_bundle()
    page.goto(f"{card_server.kaizala}/card/?host=teams&api=http://127.0.0.1:9")
    expect(page.locator("#status")).to_contain_text("Cannot reach the product service")
    expect(page.locator("#retry")).to_be_visible()
    expect(page.locator("#user-name")).to_have_text("Not signed in")


def test_a_page_with_neither_sdk_says_where_to_open_it(page: Page, card_server: DevServer) -> None:
    for sdk in ("KASClient.js", "MicrosoftTeams.min.js"):
        page.route(f"**/card/{sdk}", lambda route: route.fulfill(status=200, content_type="text/javascript", body=""))
    traffic = watch(page)
    page.goto(f"{card_server.kaizala}/card/")
    expect(page.locator("#status")).to_contain_text("Open this page in Kaizala or Microsoft Teams")
    expect(page.locator("#retry")).to_be_hidden()
    expect(page.locator("#product")).to_be_disabled()
    assert (traffic.kaizala_mints, traffic.teams_mints) == (0, 0)
    assert traffic.api == []
