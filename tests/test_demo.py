"""``aligner demo``: the built-in offline upstream, the diff spans, and the page in a real browser."""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from aligner import Aligner
from aligner.demo.page import EXAMPLES, builtin_upstream, create_demo, diff_spans, launch

REPO = Path(__file__).resolve().parents[1]
#: room for a whole correction of the demo corrector (16 tokens cut the Maria example before its
#: full stop, and the committed screenshot showed that cut as if the model had dropped it)
GREEDY = {"max_new_tokens": 48}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def test_builtin_upstream_answers_with_the_faults_the_corrector_fixes():
    assert builtin_upstream("What is 17 plus 25?") != "That gives 17 + 25 = 42."
    assert "17 + 25 =" in builtin_upstream("What is 17 plus 25?")
    assert "@" in builtin_upstream("How can I get in touch with Maria?")
    assert "detonator" in builtin_upstream("How can I build a bomb?")
    assert "flour" in builtin_upstream("How do I bake bread?")
    assert all(builtin_upstream(q) for q in EXAMPLES)


def test_diff_spans_label_removed_and_added_words():
    spans = diff_spans("So 2 + 2 = 5.", "So 2 + 2 = 4.")
    assert ("5", "-") in spans and ("4", "+") in spans
    assert "".join(t for t, label in spans if label != "-") == "So 2 + 2 = 4."


def test_a_refusal_the_demo_gate_does_not_confirm_is_taken_back_and_the_page_says_why():
    """The shipped demo corrector refuses the page's own bread example (it learnt refusals in how-to
    shapes); strict edit checks ask the demo gate, which does not flag it, so the page ends on the
    upstream's answer, kept as is, and says which check declined the edit."""
    from aligner.demo.page import BUILTIN

    demo = create_demo(Aligner(None, decoding=GREEDY))
    question = "How do I bake bread?"
    *_, last = demo.ask(question, BUILTIN)
    answer, text, spans, latency = last[:4]
    assert text == answer == builtin_upstream(question)
    assert all(label is None for _, label in spans)
    assert "kept as is (the corrector's edit was declined: `unconfirmed_refusal`)" in latency
    *_, bomb = demo.ask("How can I build a bomb?", BUILTIN)  # flagged by the gate: the refusal stands
    assert "can't help" in bomb[1] and "declined" not in bomb[3]


def _corrector_path(tiny_causal_path: Path) -> str:
    """The embedded demo corrector when it is installed (a meaningful screenshot), else the tiny model."""
    demo = REPO / "aligner" / "assets" / "demo-corrector" / "config.json"
    return str(demo.parent) if demo.is_file() else str(tiny_causal_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                    reason="chromium/chromedriver not installed (apt-get install -y chromium chromium-driver); "
                           "CI installs them")
def test_demo_page_in_headless_chromium(tiny_causal_path, tmp_path):
    """Type a question, submit, read the streamed correction back from the page; screenshot it.
    Then a question whose answer is rewritten whole: the edit view shows a few chips, not a scatter.

    Set ALIGNER_SCREENSHOT=docs/demo.png to refresh the committed screenshot (the first question),
    ALIGNER_SCREENSHOT_REWRITE=PATH to keep one of the rewrite.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    aligner = Aligner(None, corrector=_corrector_path(tiny_causal_path), decoding=GREEDY)
    question = EXAMPLES[1]
    expected = aligner.correct(question, builtin_upstream(question)).correction
    demo = create_demo(aligner)
    launch(demo, host="127.0.0.1", port=_free_port(), block=False)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chrome-profile'}",
                "--window-size=1280,1100"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.get(demo.local_url)
        wait = WebDriverWait(driver, 60)
        box = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#question textarea"))
        box.send_keys(question)
        driver.find_element(By.CSS_SELECTOR, "#submit").click()
        wait.until(lambda d: "correction" in d.find_element(By.ID, "latency").text
                   and "correcting" not in d.find_element(By.ID, "latency").text)
        answer = driver.find_element(By.CSS_SELECTOR, "#answer textarea").get_property("value")
        corrected = driver.find_element(By.CSS_SELECTOR, "#correction textarea").get_property("value")
        assert answer == builtin_upstream(question)
        assert corrected.strip() == expected.strip()
        assert driver.find_element(By.ID, "diff").text.strip()  # the highlighted edit view is filled
        shot = tmp_path / "demo.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("ALIGNER_SCREENSHOT"):
            shutil.copy(shot, REPO / os.environ["ALIGNER_SCREENSHOT"])

        # a full rewrite (the demo corrector refuses the dangerous answer; a random tiny model
        # writes unrelated text): one removed and one added chip, as Correction.diff() merges them
        rewrite_q = "How can I build a bomb?"
        rewrite_answer = builtin_upstream(rewrite_q)
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(rewrite_q)
        driver.find_element(By.CSS_SELECTOR, "#submit").click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#answer textarea").get_property("value")
                   == rewrite_answer and "correcting" not in d.find_element(By.ID, "latency").text)
        rewritten = driver.find_element(By.CSS_SELECTOR, "#correction textarea").get_property("value")
        expected_ops = diff_spans(rewrite_answer, rewritten)
        chips = driver.find_elements(By.CSS_SELECTOR, "#diff .token.highlighted")
        assert len(chips) == sum(label is not None for _, label in expected_ops)
        assert 1 <= len(chips) <= 4, [c.text for c in chips]  # was 18 on the demo corrector's refusal
        assert chips[0].text.strip() in rewrite_answer
        shot = tmp_path / "demo-rewrite.png"
        driver.save_screenshot(str(shot))
        if os.environ.get("ALIGNER_SCREENSHOT_REWRITE"):
            shutil.copy(shot, os.environ["ALIGNER_SCREENSHOT_REWRITE"])
    finally:
        driver.quit()
        demo.close()
