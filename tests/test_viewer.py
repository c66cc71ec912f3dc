"""`agent-gym view` in real headless Chromium: the page lists episodes, filters them, opens one."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from agent_gym.trajectory import Step, Trajectory, dumps

pytest.importorskip("aiohttp")
pytest.importorskip("selenium")


def _traj(env_id, task_id, score, status, action):
    return Trajectory(env_id=env_id, task_id=task_id, episode_id=f"{env_id}/test/{task_id}", prompt=[],
                      first_observation=f"Question {task_id}", steps=[Step(action, "Done.", score, True, False,
                                                                            info={"status": status})],
                      score=score, success=score == 1.0, status=status, end_reason="answered", policy="expert",
                      split="test")


@pytest.fixture
def runs(tmp_path):
    path = tmp_path / "runs.jsonl"
    with open(path, "w") as fh:
        fh.write(dumps(_traj("AgentTuning/GSM8K-v0", "3", 1.0, "completed", "The answer is 18")))
        fh.write(dumps(_traj("AgentTuning/GSM8K-v0", "4", 0.0, "invalid_action", "no idea")))
        fh.write(dumps(_traj("AgentTuning/MMLU-v0", "anatomy/1", 1.0, "completed", "Answer: C")))
        fh.write("not a record\n")  # a damaged line is skipped, not fatal
    return path


def _start(runs):
    """``agent-gym view RUNS`` on a free port; returns the process and its URL once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "agent_gym.cli", "view", *map(str, runs), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "api/episodes", timeout=2).read()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the viewer did not start: {proc.stdout.read() if proc.stdout else ''}")
            time.sleep(0.2)


@pytest.fixture
def server(runs):
    proc, url = _start([runs])
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_the_page_lists_filters_and_opens_an_episode_in_chromium(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from agent_gym.browser import Browser

    if not (shutil.which("chromium") or os.environ.get("AGENT_GYM_CHROMIUM")):
        pytest.skip("no chromium: apt-get install chromium chromium-driver")
    browser = Browser()
    try:
        window = browser.new_window(server)
        with window.use() as driver:
            wait = WebDriverWait(driver, 20)
            wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
            rows = driver.find_elements(By.CSS_SELECTOR, "tr.ep")
            assert len(rows) == 3
            assert "3 of 3 episodes" in driver.find_element(By.ID, "count").text
            Select(driver.find_element(By.ID, "f-env")).select_by_value("AgentTuning/GSM8K-v0")
            assert len(driver.find_elements(By.CSS_SELECTOR, "tr.ep")) == 2
            Select(driver.find_element(By.ID, "f-status")).select_by_value("invalid_action")
            rows = driver.find_elements(By.CSS_SELECTOR, "tr.ep")
            assert [r.find_element(By.CSS_SELECTOR, ".status").text for r in rows] == ["invalid_action"]
            rows[0].click()
            wait.until(lambda d: d.find_element(By.ID, "episode-title").is_displayed())
            assert driver.find_element(By.ID, "episode-title").text == "AgentTuning/GSM8K-v0 · 4"
            assert driver.find_element(By.ID, "episode-status").text == "invalid_action"
            step = driver.find_element(By.CSS_SELECTOR, ".step[data-step='0']").text
            assert "no idea" in step and "Done." in step and "reward 0" in step
            shot = Path(tmp_path) / "viewer-episode.png"
            driver.save_screenshot(str(shot))
            assert shot.stat().st_size > 5000
            print(f"screenshot: {shot}")
            driver.find_element(By.ID, "to-report").click()
            wait.until(lambda d: "GSM8K" in d.find_element(By.ID, "report-table").text)
            wait.until(lambda d: d.execute_script("const i=document.getElementById('plot');"
                                                  "return i.complete && i.naturalWidth > 100"))
    finally:
        browser.close()


def test_a_missing_run_file_is_named(tmp_path):
    done = subprocess.run([sys.executable, "-m", "agent_gym.cli", "view", str(tmp_path / "nope.jsonl")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no such run file" in done.stderr


HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def test_html_in_a_run_file_is_shown_as_text_never_run_in_chromium(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from agent_gym.browser import Browser

    if not (shutil.which("chromium") or os.environ.get("AGENT_GYM_CHROMIUM")):
        pytest.skip("no chromium: apt-get install chromium chromium-driver")
    t = _traj("AgentTuning/GSM8K-v0", HOSTILE, 1.0, "completed", HOSTILE)
    # a role inside class="turn ...": the old esc() left quotes alone, so this opened an onmouseover attribute
    t.prompt = [{"role": 'x" onmouseover="window.__pwned=3" data-x="', "content": HOSTILE}]
    runs = tmp_path / "evil.jsonl"
    runs.write_text(dumps(t))
    proc, url = _start([runs])
    browser = Browser()
    try:
        with browser.new_window(url).use() as driver:
            wait = WebDriverWait(driver, 20)
            wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
            driver.find_element(By.CSS_SELECTOR, "tr.ep").click()
            wait.until(lambda d: d.find_element(By.ID, "episode-title").is_displayed())
            assert HOSTILE in driver.find_element(By.CSS_SELECTOR, ".step[data-step='0']").text
            assert driver.execute_script("return document.querySelectorAll('#episode img, #episode script, "
                                         "[onmouseover], [onerror]').length") == 0
            assert driver.execute_script("return window.__pwned === undefined")
    finally:
        browser.close()
        proc.terminate()
        proc.wait(timeout=10)


def test_bad_indexes_hand_edited_records_and_a_vanished_file_get_answers_not_500s(tmp_path):
    good = _traj("AgentTuning/GSM8K-v0", "1", 1.0, "completed", "fine").to_dict()
    odd = dict(good, episode_id="odd", task_id="2", score="high", steps=[dict(good["steps"][0], reward="<b>")])
    runs = tmp_path / "runs.jsonl"
    runs.write_text(json.dumps(good) + "\n" + json.dumps(odd) + "\n")
    proc, url = _start([runs])
    try:
        listing = json.loads(urllib.request.urlopen(url + "api/episodes", timeout=10).read())
        # was: the whole listing a 500 (float("high")); now the record with text for numbers is a damaged line
        assert [e["score"] for e in listing] == [1.0]
        for path, code in (("api/episodes/-1", 404), ("api/episodes/2", 404), ("api/episodes/x", 404),
                           ("api/episodes/1", 404)):  # -1 was the last episode; 1 was a 500
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(url + path, timeout=10)
            assert err.value.code == code, path
        runs.unlink()  # a run file removed while the page is open: was a 500 with a traceback in the log
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + "api/episodes", timeout=10)
        assert err.value.code == 404 and b"cannot read the run files" in err.value.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert "Traceback" not in (proc.stdout.read() if proc.stdout else "")


def test_a_port_in_use_is_one_line_and_exit_2(runs):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        done = subprocess.run([sys.executable, "-m", "agent_gym.cli", "view", str(runs), "--port",
                               str(s.getsockname()[1])], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "address already in use" in done.stderr and "Traceback" not in done.stderr
