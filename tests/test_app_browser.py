"""The web app in a real browser: Debian's headless Chromium driven by Selenium.

Needs the system browser and its driver (`apt-get install -y chromium chromium-driver`:
/usr/bin/chromium and /usr/bin/chromedriver); never a downloaded browser.
Screenshots land in tests/artifacts/ (git-ignored by the .gitignore written there).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SHIPPED = REPO / "weights" / "seedance-tiny"
STEPS = 2
TIMEOUT_S = 180  # generous: the 2 cores are often shared with training runs

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver",
)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from app.service import SeedanceService
    from app.ui import start_server

    if (SHIPPED / "model_index.json").is_file():
        weights = SHIPPED
    else:
        pytest.importorskip("pipelines.pipeline_seedance")
        from app.random_model import cached_random_pipeline

        weights = cached_random_pipeline(tmp_path_factory.getbasetemp() / "app-model", steps=STEPS)
    demo, url = start_server(SeedanceService(weights).load(), default_steps=STEPS)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--window-size=1400,1800", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ignore = ARTIFACTS / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    return ARTIFACTS / name


def set_prompt(driver, text: str) -> None:
    """Type into the prompt box (long texts are pasted through the input event, as a paste would)."""
    box = driver.find_element(By.CSS_SELECTOR, "#prompt textarea")
    if len(text) <= 200:
        box.click()
        box.send_keys(text)
        return
    driver.execute_script(
        "const el = arguments[0]; el.value = arguments[1]; el.dispatchEvent(new Event('input', {bubbles: true}));",
        box, text)


def clear_prompt(driver) -> None:
    driver.execute_script(
        "const el = document.querySelector('#prompt textarea'); el.value = '';"
        "el.dispatchEvent(new Event('input', {bubbles: true}));")


def wait_for_playable_video(driver) -> dict:
    """Wait until the output <video> has a source and its metadata (duration) has loaded."""
    wait = WebDriverWait(driver, TIMEOUT_S)
    video = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#gen-video video")))
    wait.until(lambda d: video.get_attribute("src"))
    wait.until(lambda d: d.execute_script("return arguments[0].readyState >= 1 && arguments[0].duration > 0", video))
    return driver.execute_script(
        "const v = arguments[0]; return {src: v.currentSrc || v.src, duration: v.duration, error: v.error};", video)


def error_toasts(driver) -> list[str]:
    """Texts of the error toasts on screen (read in one script call: toasts vanish while being read)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(\"[data-testid='toast-text']\")).map(e => e.textContent);")


def test_generate_in_the_browser_shows_a_playable_video(app_url, browser):
    browser.get(app_url)
    WebDriverWait(browser, TIMEOUT_S).until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#generate-btn")))
    set_prompt(browser, "a red ball bounces on a wooden floor")
    browser.find_element(By.CSS_SELECTOR, "#generate-btn").click()
    state = wait_for_playable_video(browser)
    assert state["src"] and "/file=" in state["src"] and state["src"].endswith(".mp4")
    assert state["duration"] > 0 and state["error"] is None
    time.sleep(0.5)  # let the plot and report render before the picture is taken
    browser.save_screenshot(str(artifact("app_generate.png")))
    assert artifact("app_generate.png").stat().st_size > 10_000


def test_bad_prompts_show_a_visible_error_and_the_app_keeps_serving(app_url, browser):
    browser.get(app_url)
    WebDriverWait(browser, TIMEOUT_S).until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#generate-btn")))
    wait = WebDriverWait(browser, TIMEOUT_S)
    button = browser.find_element(By.CSS_SELECTOR, "#generate-btn")

    set_prompt(browser, "x" * 10_000)
    button.click()
    wait.until(lambda d: any("10,000 characters" in t for t in error_toasts(d)))
    browser.save_screenshot(str(artifact("app_error_long_prompt.png")))

    clear_prompt(browser)
    button.click()
    wait.until(lambda d: any("prompt is empty" in t for t in error_toasts(d)))

    set_prompt(browser, "a blue cube bounces")
    button.click()
    state = wait_for_playable_video(browser)
    assert state["duration"] > 0


def test_fast_and_default_buttons_set_the_steps_slider(app_url, browser):
    from seedance.generate_cli import FAST_SAMPLING

    browser.get(app_url)
    wait = WebDriverWait(browser, TIMEOUT_S)

    def steps_shown(driver) -> str:
        return driver.find_element(By.CSS_SELECTOR, "#steps input[type=number]").get_attribute("value")

    fast = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#gen-fast")))
    assert steps_shown(browser) == str(STEPS)
    fast.click()
    wait.until(lambda d: steps_shown(d) == str(FAST_SAMPLING["num_inference_steps"]))
    browser.find_element(By.CSS_SELECTOR, "#gen-full").click()
    wait.until(lambda d: steps_shown(d) == str(STEPS))
