"""Debian's chromium driven by Playwright, one browser per test module.

Per module, not per session: a module that runs its own sync_playwright() (the restart drill)
cannot while another one is open in the same process.
"""

import pytest

from tests.browser.chromium import CHROMIUM, CHROMIUM_FLAGS


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_context_options():
    return {"viewport": {"width": 1400, "height": 1000}}


@pytest.fixture
def page(browser, browser_context_options):
    """A fresh context; page.console_errors collects console errors and every response >= 400."""
    context = browser.new_context(**browser_context_options)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.on("response", lambda response: response.status >= 400 and page.console_errors.append(response.url))
    yield page
    context.close()
