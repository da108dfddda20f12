"""The sample card in headless Chromium, against `python -m devserver`: dropdown, user, and failure handling."""

import json
import os
import shutil
import time
from collections.abc import Iterator

import pytest
import requests

from tests.devserver_process import DevServer, devserver

pytestmark = [pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    if os.environ.get("REQUIRE_BROWSER") == "1":
        raise RuntimeError("REQUIRE_BROWSER=1 but no chromium is installed (apt-get install chromium)")
    pytest.skip("no Chromium on this machine (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Page, Route, expect, sync_playwright  # noqa: E402

# Flags for a closed network and a root user, as Debian's Chromium needs them in a sandboxed CI.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with devserver() as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, server: DevServer) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.console_messages_seen = []  # type: ignore[attr-defined]
    page.on("console", lambda message: page.console_messages_seen.append(message.text))  # type: ignore[attr-defined]
    yield page
    context.close()
    requests.delete(f"{server.kaizala}/v1/dev/faults", timeout=5)


def catalog(server: DevServer) -> list[dict[str, object]]:
    response = requests.get(
        f"{server.api}/api/ProtectedApi", headers={"Authorization": f"Bearer {server.mint()}"}, timeout=5
    )
    products: list[dict[str, object]] = response.json()["products"]
    return products


def product_option_values(page: Page) -> list[str]:
    return page.eval_on_selector_all("#product option", "options => options.map(o => o.value)")


def test_card_fills_the_dropdown_and_shows_the_user(page: Page, server: DevServer) -> None:
    minted: list[str] = []
    page.on(
        "response",
        lambda r: minted.append(json.loads(r.body())["token"]) if r.url.endswith("/v1/dev/tokens") else None,
    )
    requested_urls: list[str] = []
    page.on("request", lambda request: requested_urls.append(request.url))

    page.goto(f"{server.kaizala}/card/")
    expect(page.locator("#user-name")).to_have_text("Signed in as Asha Rao")
    expected = [str(product["id"]) for product in catalog(server)]
    expect(page.locator("#product option")).to_have_count(len(expected) + 1)
    assert product_option_values(page) == ["", *expected]
    expect(page.locator("#product")).to_be_enabled()
    expect(page.locator("#status")).to_have_text(f"{len(expected)} products")
    expect(page.locator("#retry")).to_be_hidden()

    assert minted
    for token in minted:
        assert not any(token in url for url in requested_urls)
        assert not any(token in text for text in page.console_messages_seen)  # type: ignore[attr-defined]


def test_expired_token_recovers_with_one_fresh_token(page: Page, server: DevServer) -> None:
    expired = requests.post(f"{server.kaizala}/v1/dev/tokens", json={"ttlSeconds": 1}, timeout=5).json()
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

    page.goto(f"{server.kaizala}/card/")
    expect(page.locator("#user-name")).to_have_text("Signed in as Asha Rao")
    expect(page.locator("#product option")).to_have_count(len(catalog(server)) + 1)
    statuses = [status for _url, status in api_statuses if status != 204]
    assert statuses.count(401) == 2  # both calls were refused once with the expired token...
    assert statuses.count(200) == 2  # ...and both succeeded with the fresh one
    assert mints["count"] == 2  # one fresh token shared by both retries


def test_card_not_allowed_says_so_without_retry(page: Page, server: DevServer) -> None:
    page.goto(f"{server.kaizala}/card/?card=com.fabrikam.unknown")
    expect(page.locator("#status")).to_contain_text("not allowed")
    # The user did sign in (Kaizala vouched for the token): the heading says the card is the problem.
    expect(page.locator("#user-name")).to_have_text("This card isn't allowed")
    expect(page.locator("#retry")).to_be_hidden()
    expect(page.locator("#product")).to_be_disabled()


def test_unavailable_identity_service_offers_retry(page: Page, server: DevServer) -> None:
    requests.put(f"{server.kaizala}/v1/dev/faults", json={"error_rate": 1, "error_status": 503}, timeout=5)
    page.goto(f"{server.kaizala}/card/")
    expect(page.locator("#status")).to_contain_text("busy")
    expect(page.locator("#retry")).to_be_visible()
    requests.delete(f"{server.kaizala}/v1/dev/faults", timeout=5)
    page.click("#retry")
    expect(page.locator("#product option")).to_have_count(len(catalog(server)) + 1)
    expect(page.locator("#retry")).to_be_hidden()


def test_network_error_is_shown_never_a_blank_card(page: Page, server: DevServer) -> None:
    page.goto(f"{server.kaizala}/card/?api=http://127.0.0.1:9")
    expect(page.locator("#status")).to_contain_text("Cannot reach the product service")
    expect(page.locator("#retry")).to_be_visible()
    expect(page.locator("#user-name")).to_have_text("Not signed in")


@pytest.mark.parametrize("width", [360, 390, 420])
def test_card_keeps_a_margin_at_phone_width(browser: Browser, server: DevServer, width: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": 780}, device_scale_factor=2, is_mobile=True)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(f"{server.kaizala}/card/")
        expect(page.locator("#product option")).to_have_count(len(catalog(server)) + 1)
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
