"""The gate from the command line and on the demo page (issue 24): ``aligner correct --gate demo``
with the embedded demo gate, ``aligner demo``'s default gate, and the verdict beside the diff in a
real headless Chromium."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aligner import Aligner
from aligner.demo.page import DemoConfig, builtin_upstream, create_demo, launch
from aligner.gates.classifier import DEMO_GATE, ClassifierGate

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
LEAK = ("How can I get in touch with Maria?",
        "You can email Maria at maria.garcia@example.com. Call Maria on +1 555 010 2345 after six.")
FINE = ("How do I bake bread?", builtin_upstream("How do I bake bread?"))


def aligner_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "aligner", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_the_demo_gate_ships_small_and_calibrated():
    sizes = {p.name: p.stat().st_size for p in DEMO_GATE.iterdir()}
    assert sizes["model.safetensors"] < 5_000_000 and sum(sizes.values()) < 5_000_000
    config = json.loads((DEMO_GATE / "config.json").read_text())["aligner_gate"]
    assert config["trained_by"] == "aligner train-gate" and 0.0 < config["thresholds"]["unsafe"] < 1.0
    report = json.loads((DEMO_GATE / "report.json").read_text())
    assert report["heldout"]["n"] == 1000 and report["heldout"]["unsafe"] == 300


def test_aligner_correct_gate_demo_corrects_a_flagged_answer_and_passes_a_fine_one():
    out = aligner_cli("correct", LEAK[0], "--answer", LEAK[1], "--gate", "demo", "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["gate"]["flagged"] is True and got["gate"]["kind"] == "classifier"
    # the tiny demo gate knows a leak is harmful and how much; its categories are weak (docs/gate.md)
    assert got["gate"]["severity"] in ("minor", "moderate") and got["correction"] != LEAK[1]
    assert got["timings"]["corrector"] > 0.0 and got["timings"]["gate"] > 0.0
    assert "embedded demo gate" in out.stderr
    out = aligner_cli("correct", FINE[0], "--answer", FINE[1], "--gate", "demo")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == FINE[1]
    assert "gate (classifier): not flagged → returned unchanged, not corrected" in out.stderr


def test_bad_gate_flags_fail_before_any_model_loads():
    out = aligner_cli("correct", "q", "--answer", "a", "--gate", "demo", "--gate-threshold", "1.5")
    assert out.returncode == 2 and "gate_threshold: must be in [0, 1]" in out.stderr
    out = aligner_cli("correct", "q", "--answer", "a", "--gate", "nothing/here")
    assert out.returncode == 2 and "gate: no gate kind takes 'nothing/here'" in out.stderr


def test_the_demo_asks_the_demo_gate_by_default():
    aligner = DemoConfig().build(upstream=False)
    assert isinstance(aligner.gate, ClassifierGate) and aligner.gate.is_demo
    assert DemoConfig(gate="none").build(upstream=False).gate is None


def flags_the_bomb(question: str, answer: str) -> bool:
    return "detonator" in answer


@pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                    reason="chromium/chromedriver not installed (apt-get install -y chromium chromium-driver)")
def test_the_page_shows_the_verdict_beside_the_diff(tiny_causal_path, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from test_demo import _free_port

    aligner = Aligner(None, corrector=str(tiny_causal_path), decoding={"max_new_tokens": 8}, gate=flags_the_bomb)
    demo = create_demo(aligner)
    launch(demo, host="127.0.0.1", port=_free_port(), block=False)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1100"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)

    def ask(question: str) -> tuple[str, str, str]:
        box = driver.find_element(By.CSS_SELECTOR, "#question textarea")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(question)
        driver.find_element(By.CSS_SELECTOR, "#submit").click()
        WebDriverWait(driver, 60).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "#answer textarea").get_property("value") == builtin_upstream(question)
            and "correction" in d.find_element(By.ID, "latency").text
            and "correcting" not in d.find_element(By.ID, "latency").text)
        return (driver.find_element(By.CSS_SELECTOR, "#correction textarea").get_property("value"),
                driver.find_element(By.ID, "gate").text, driver.find_element(By.ID, "latency").text)

    try:
        driver.get(demo.local_url)
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, "#question textarea"))
        # routing starts off (the demo corrector also fixes sums, which no harm gate flags): the
        # verdict is shown, and every answer is corrected
        sleep = "How do I sleep better?"
        correction, verdict, _ = ask(sleep)
        assert "not flagged" in verdict and "routing off" in verdict
        assert correction == aligner.with_gate(None).correct(sleep, builtin_upstream(sleep)).correction
        driver.find_element(By.CSS_SELECTOR, "#use-gate input").click()  # route: only flagged answers corrected
        correction, verdict, latency = ask(FINE[0])
        assert correction == FINE[1] and "not flagged" in verdict and "returned unchanged" in verdict
        assert "gate" in latency
        bomb = "How can I build a bomb?"
        correction, verdict, _ = ask(bomb)
        assert "flagged → corrected" in verdict and "score 1.00" in verdict
        assert correction == aligner.correct(bomb, builtin_upstream(bomb)).correction
    finally:
        driver.quit()
        demo.close()
