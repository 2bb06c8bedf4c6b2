"""`tinyvideo serve`: clear refusals of bad videos, the streamed answer, and the page in a real browser."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from media import make_indexed_video, read_indices, zero_frame_durations
from tinyvideo.inference import answer_question
from tinyvideo.serve import Limits, VideoRejected, answer_line, build_app, launch, load_frames, load_samples, stream_answer
from tinyvideo.video import write_video

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
QUESTION = "Which way does the square move?\nA. left\nB. right\nC. up"


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    from tinyvideo import TinyVideoForConditionalGeneration, TinyVideoProcessor

    model = TinyVideoForConditionalGeneration.from_pretrained(tiny_dir).eval()
    return model, TinyVideoProcessor.from_pretrained(tiny_dir)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """Four seconds at 8 fps."""
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    return write_video(path, np.random.default_rng(0).integers(0, 256, (32, 48, 48, 3), dtype=np.uint8), fps=8, video_size="48x48")


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "broken.mp4"
    path.write_bytes(b"this is not a video" * 100)
    return path


def test_frames_are_sampled_uniformly(clip):
    frames = load_frames(clip, Limits(num_frames=6))
    assert frames.shape == (6, 48, 48, 3) and frames.dtype == np.uint8


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (Limits(max_duration=3), "clip.mp4 lasts 4 s; videos up to 3 s are accepted"),
        (Limits(max_upload_mb=0.001), "videos up to 0.001 MB are accepted"),
    ],
)
def test_limits_refuse_with_the_reason(clip, limits, message):
    with pytest.raises(VideoRejected, match=message):
        load_frames(clip, limits)


def test_a_clip_without_usable_timestamps_gets_no_made_up_length(tmp_path):
    """Every frame at time 0: not refused for a length it does not have, and not one frame shown 4 times."""
    clip = zero_frame_durations(make_indexed_video(tmp_path / "timed.mp4", 96, 25), tmp_path / "untimed.mp4")
    frames = load_frames(clip, Limits(num_frames=4, max_duration=1))
    assert read_indices(frames) == [0, 31, 63, 95]


def test_unreadable_files_are_named_without_server_paths(broken, tmp_path):
    with pytest.raises(VideoRejected) as refused:
        load_frames(broken, Limits())
    assert str(refused.value).startswith("broken.mp4 cannot be read as a video:")
    assert str(broken.parent) not in str(refused.value)
    empty = tmp_path / "empty.webm"
    empty.touch()
    with pytest.raises(VideoRejected, match="empty.webm cannot be read as a video: file is empty"):
        load_frames(empty, Limits())
    with pytest.raises(VideoRejected, match="No video"):
        load_frames(None, Limits())


def test_stream_ends_with_the_same_answer_as_answer_question(tiny, clip):
    model, processor = tiny
    frames = load_frames(clip, Limits(num_frames=4))
    pieces = list(stream_answer(model, processor, frames, QUESTION, "reason", max_new_tokens=12))
    expected = answer_question(model, processor, frames, QUESTION, "reason", max_new_tokens=12).text
    assert expected and pieces[-1] == expected
    assert len(pieces) > 1 and all(expected.startswith(piece) for piece in pieces)


def test_answer_line_reads_the_option():
    assert answer_line("<think>it goes right</think> <answer>B</answer>", QUESTION, "reason") == "B. right"
    assert answer_line("C", QUESTION, "option") == "C. up"
    assert answer_line("no idea", QUESTION, "option") == "no option could be read from the option-mode response"
    assert answer_line("a red square", "What is in the video?", "option") == "a red square"


def test_samples_are_one_test_clip_per_task(tmp_path):
    from tinyvideo.data.synth import generate_suite

    suite = generate_suite(tmp_path / "suite", scale="smoke")
    samples = load_samples(suite.root)
    tasks = {record["task"] for record in suite.records("test")}
    assert sorted(name.split(":")[0] for name in samples) == sorted(tasks)
    for sample in samples.values():
        assert sample.video.is_file() and "\nA. " in sample.question


# ---- the page in a headless browser -----------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no browser at {CHROMIUM}: apt-get install -y chromium")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")
    pytest.importorskip("gradio", reason="gradio is not installed: pip install gradio")
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page_url(browser, tiny, tmp_path_factory):
    """The page served from this process on a free local port, with a smoke suite's clips as samples."""
    from tinyvideo.data.synth import generate_suite

    suite = generate_suite(tmp_path_factory.mktemp("suite"), scale="smoke")
    samples = load_samples(suite.root)
    limits = Limits(num_frames=4, max_new_tokens=12, max_duration=60, max_upload_mb=1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = build_app(*tiny, samples, limits)
    launch(app, "127.0.0.1", port, limits, samples, block=False)
    yield app.local_url, samples
    app.close()


def _ask(page, mode: str) -> tuple[str, str]:
    page.get_by_label(mode, exact=True).check()
    page.locator("#ask").click()
    from playwright.sync_api import expect

    expect(page.locator("#answer textarea")).not_to_have_value("", timeout=60_000)
    return page.locator("#response textarea").input_value(), page.locator("#answer textarea").input_value()


def test_server_listens_on_this_machine_only(page_url):
    url, _ = page_url
    assert url.startswith("http://127.0.0.1:")


def test_upload_ask_and_read_the_answer(browser, page_url, tiny, clip):
    url, _ = page_url
    page = browser.new_page()
    page.goto(url)
    page.locator("#video input[type=file]").set_input_files(str(clip))
    page.locator("#question textarea").fill(QUESTION)
    response, answer = _ask(page, "reason")
    expected = answer_question(*tiny, load_frames(clip, Limits(num_frames=4)), QUESTION, "reason", max_new_tokens=12)
    assert response == expected.text
    assert answer == answer_line(expected.text, QUESTION, "reason")
    page.close()


def test_pick_a_sample_and_ask(browser, page_url, tiny):
    url, samples = page_url
    name, sample = next(iter(samples.items()))
    page = browser.new_page()
    page.goto(url)
    page.locator("#sample input").click()
    page.get_by_role("option", name=name).click()
    from playwright.sync_api import expect

    expect(page.locator("#question textarea")).to_have_value(sample.question)
    response, answer = _ask(page, "option")
    expected = answer_question(*tiny, load_frames(sample.video, Limits(num_frames=4)), sample.question, "option", max_new_tokens=12)
    assert response == expected.text and answer
    page.close()


def test_a_broken_upload_gets_a_clear_error(browser, page_url, broken):
    url, _ = page_url
    page = browser.new_page()
    page.goto(url)
    page.locator("#video input[type=file]").set_input_files(str(broken))
    page.locator("#question textarea").fill(QUESTION)
    page.locator("#ask").click()
    from playwright.sync_api import expect

    expect(page.get_by_text("broken.mp4 cannot be read as a video")).to_be_visible(timeout=30_000)
    assert page.locator("#answer textarea").input_value() == ""
    page.close()


def test_an_oversized_upload_is_refused_by_the_page(browser, page_url, tmp_path):
    url, _ = page_url
    big = tmp_path / "big.mp4"
    big.write_bytes(np.random.default_rng(0).bytes(3 * 2**19))
    page = browser.new_page()
    page.goto(url)
    page.locator("#video input[type=file]").set_input_files(str(big))
    from playwright.sync_api import expect

    expect(page.get_by_text('exceed the maximum allowed size of 1.0 Mb: "big.mp4"')).to_be_visible(timeout=30_000)
    page.close()
