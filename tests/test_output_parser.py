"""OutputParser: both pipes' chunks -> events, without lag, independent of chunking."""

from __future__ import annotations

import random

import pytest

from parsers import OutputParser
from parsers.events import Checkpoint, Epoch, LogLine, ModelSaved, Progress

# Our own miniature training run, in musubi's formats: stderr carries logging
# lines and a never-closed tqdm bar, stdout the print() lines.
STDERR = (
    "INFO:musubi_tuner.training.trainer_base:Load dataset config from /d/set.toml\n"
    "INFO:musubi_tuner.dataset.datasources:found 2 images\n"
    "\rtrain:   0%|          | 0/4 [00:00<?, ?it/s]"
    "\rtrain:  25%|██▌       | 1/4 [00:01<00:03,  1.00s/it, avr_loss=0.5]"
    "\rtrain:  50%|█████     | 2/4 [00:02<00:02,  1.00s/it, avr_loss=0.4] "
    "\rtrain: 100%|██████████| 4/4 [00:04<00:00,  1.00s/it, avr_loss=0.3]"
    "INFO:musubi_tuner.training.trainer_base:model saved.\n"
    "\rtrain: 100%|██████████| 4/4 [00:04<00:00,  1.00s/it, avr_loss=0.3]\n"
).encode()
STDOUT = "\nepoch 1/1\n\nsaving checkpoint: /out/lora.safetensors\n".encode()


def run(chunks: list[tuple[str, bytes]], **options) -> list:
    parser = OutputParser(**options)
    events = []
    for stream, data in chunks:
        events += parser.feed(stream, data)
    return events + parser.finish()


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i = [], 0
    for size in sizes:
        if i >= len(data):
            break
        out.append(data[i:i + size])
        i += size
    if i < len(data):
        out.append(data[i:])
    return out


def test_events_of_a_small_run():
    events = run([("stderr", STDERR), ("stdout", STDOUT)])
    progress = [e for e in events if isinstance(e, Progress)]
    assert [(p.n, p.postfix.get("avr_loss")) for p in progress] == [
        (0, None), (1, "0.5"), (2, "0.4"), (4, "0.3"), (4, "0.3")]
    assert ModelSaved() in events and Epoch(1, 1) in events
    assert Checkpoint("/out/lora.safetensors") in events


def test_log_line_glued_onto_a_frame_is_its_own_log_event():
    events = run([("stderr", STDERR)])
    index = next(i for i, e in enumerate(events) if isinstance(e, ModelSaved))
    assert isinstance(events[index - 1], LogLine)
    assert events[index - 1].text == "INFO:musubi_tuner.training.trainer_base:model saved."
    assert events[index - 1].level == "INFO"
    assert isinstance(events[index - 2], Progress) and events[index - 2].n == 4


def test_a_frame_is_reported_when_it_arrives_not_when_the_next_one_ends_it():
    parser = OutputParser()
    events = parser.feed("stderr", b"\rtrain:  25%|##5       | 1/4 [00:01<00:03,  1.00s/it]")
    assert [(e.n, e.total) for e in events] == [(1, 4)]
    # The next frame ends the first one: it is not reported twice.
    events = parser.feed("stderr", b"\rtrain:  50%|#####     | 2/4 [00:02<00:02,  1.00s/it]")
    assert [e.n for e in events] == [2]
    assert parser.finish() == []


def test_a_partial_frame_is_not_reported_early():
    parser = OutputParser()
    assert parser.feed("stderr", b"\rtrain:  50%|#####     | 2/4 [00:02<00:02,  1.0") == []
    assert [e.n for e in parser.feed("stderr", b"0s/it]\r")] == [2]


def test_early_frame_then_glued_log_line_gives_the_log_line_once():
    parser = OutputParser()
    first = parser.feed("stderr", b"\rtrain:  50%|#####     | 2/4 [00:02<00:02,  1.00s/it]")
    second = parser.feed("stderr", b"ERROR:x.y:went wrong\n")
    assert [type(e).__name__ for e in first + second] == ["Progress", "LogLine"]
    assert second[0].text == "ERROR:x.y:went wrong"


def test_padding_between_an_early_frame_and_glued_text_is_dropped():
    parser = OutputParser()
    parser.feed("stderr", b"\rtrain:  50%|#####     | 2/4 [00:02<00:02,  1.00s/it]")
    (line,) = parser.feed("stderr", b"   Traceback (most recent call last):\n")
    assert line.text == "Traceback (most recent call last):"


def test_streams_are_split_separately():
    parser = OutputParser()
    assert parser.feed("stdout", b"epoch 1/") == []
    assert parser.feed("stderr", b"INFO:a:b\n")[0].stream == "stderr"
    assert parser.feed("stdout", b"3\n")[1] == Epoch(1, 3)


def test_finish_flushes_unended_lines_of_every_stream():
    parser = OutputParser()
    parser.feed("stdout", b"model saved.")
    parser.feed("stderr", b"ValueError: boom")
    texts = [e.text for e in parser.finish() if isinstance(e, LogLine)]
    assert texts == ["model saved.", "ValueError: boom"]


def test_last_progress_and_tail_are_kept():
    parser = OutputParser(tail_lines=2)
    parser.feed("stderr", STDERR)
    assert parser.last_progress.n == 4
    assert parser.tail == ["INFO:musubi_tuner.dataset.datasources:found 2 images",
                           "INFO:musubi_tuner.training.trainer_base:model saved."]


def test_classify_uses_the_lines_seen():
    parser = OutputParser()
    parser.feed("stderr", b"Traceback (most recent call last):\nImportError: No bitsandbytes / x\n")
    assert parser.classify(1).kind == "no_bitsandbytes"
    assert parser.classify(0) is None


def test_empty_dataset_is_found_even_when_the_count_scrolled_out_of_the_tail():
    parser = OutputParser(tail_lines=3)
    parser.feed("stderr", b"INFO:m.datasources:found 0 images\n" + b"INFO:m.x:detail\n" * 10)
    failure = parser.classify(0)
    assert failure.kind == "empty_dataset" and failure.message == "INFO:m.datasources:found 0 images"


def test_coalescing_keeps_only_the_last_frame_of_a_chunk():
    data = b"".join(b"\r%dit [00:0%d, 1.00it/s]" % (i, i) for i in range(10)) + b"INFO:a:b\n"
    events = run([("stderr", data)], coalesce_progress=True)
    assert [type(e).__name__ for e in events] == ["Progress", "LogLine"]
    assert events[0].n == 9


@pytest.mark.parametrize("seed", range(8))
def test_random_chunking_gives_identical_events(seed: int):
    rnd = random.Random(seed)
    whole = run([("stderr", STDERR), ("stdout", STDOUT)])
    chunks = [("stderr", c) for c in chunked(STDERR, [rnd.randint(1, 40) for _ in range(len(STDERR))])]
    chunks += [("stdout", c) for c in chunked(STDOUT, [rnd.randint(1, 5) for _ in range(len(STDOUT))])]
    assert run(chunks) == whole


def test_one_byte_chunks_give_identical_events():
    whole = run([("stderr", STDERR)])
    assert run([("stderr", STDERR[i:i + 1]) for i in range(len(STDERR))]) == whole


def non_progress(events: list) -> list:
    return [e for e in events if not isinstance(e, Progress)]


@pytest.mark.parametrize("seed", range(8))
def test_coalescing_keeps_every_line_and_the_final_frame_in_any_chunking(seed: int):
    """Coalescing may only drop frames a later frame overwrote: every log line,
    milestone and the bar's final state survive whatever the read sizes."""
    rnd = random.Random(seed)
    whole = run([("stderr", STDERR), ("stdout", STDOUT)])
    chunks = [("stderr", c) for c in chunked(STDERR, [rnd.randint(1, 400) for _ in range(len(STDERR))])]
    chunks += [("stdout", STDOUT)]
    coalesced = run(chunks, coalesce_progress=True)
    assert non_progress(coalesced) == non_progress(whole)
    frames = [e for e in coalesced if isinstance(e, Progress)]
    assert frames and frames[-1] == [e for e in whole if isinstance(e, Progress)][-1]
    assert all(frame in whole for frame in frames)


def test_a_frame_flood_in_one_read_is_split_once():
    """The splitter drops overwritten frames before splitting, so a read
    holding thousands of frames yields a handful of segments."""
    from parsers.stream import LineSplitter, Segment

    frames = "".join(f"\rsteps:  {i % 100:2d}%| | {i}/5000 [00:01<00:02,  1.00it/s, avr_loss=0.5]"
                     for i in range(5000))
    data = ("INFO:a:start\n" + frames + "INFO:a:glued\r\n" + frames).encode()
    coalescing, plain = LineSplitter(coalesce=True), LineSplitter()
    segments, every = coalescing.feed(data), plain.feed(data)
    assert len(every) > 5000 and len(segments) <= 5
    assert segments[0] == every[0] == Segment("INFO:a:start", "\n")
    glued = Segment("steps:  99%| | 4999/5000 [00:01<00:02,  1.00it/s, avr_loss=0.5]INFO:a:glued", "\n")
    assert glued in segments and glued in every
    # The newest frame of the second flood is still pending, as without coalescing.
    assert segments[-1] == every[-1] and coalescing.pending == plain.pending


def test_the_tail_keeps_bounded_lines_and_still_classifies():
    import parsers

    parser = OutputParser()
    for _ in range(300):
        parser.feed("stderr", b"x" * 60000 + b"\n")
    parser.feed("stderr", b"torch.OutOfMemoryError: CUDA out of memory. " + b"y" * 60000 + b"\n")
    assert len(parser.tail) == parsers.TAIL_LINES
    assert max(map(len, parser.tail)) == parsers.TAIL_LINE_CHARS
    assert parser.classify(1).kind == "out_of_memory"
