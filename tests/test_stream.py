"""LineSplitter: bytes of one pipe -> segments (decoding, line ends, ANSI, bounds)."""

from __future__ import annotations

import pytest

from parsers.stream import MAX_SEGMENT, LineSplitter, Segment, strip_ansi


def split_all(*chunks: bytes, max_segment: int = MAX_SEGMENT) -> list[Segment]:
    splitter = LineSplitter(max_segment=max_segment)
    segments: list[Segment] = []
    for chunk in chunks:
        segments.extend(splitter.feed(chunk))
    return segments + splitter.flush()


def bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


def test_splits_on_carriage_return_and_newline_and_keeps_the_end():
    assert split_all(b"frame 1\rframe 2\rINFO:x:done\n") == [
        Segment("frame 1", "\r"), Segment("frame 2", "\r"), Segment("INFO:x:done", "\n"),
    ]


def test_crlf_is_one_line_end():
    assert split_all(b"one\r\ntwo\r\n") == [Segment("one", "\n"), Segment("two", "\n")]


def test_crlf_split_between_reads_is_still_one_line_end():
    assert split_all(b"one\r", b"\ntwo\r", b"three\n") == [
        Segment("one", "\n"), Segment("two", "\r"), Segment("three", "\n"),
    ]


def test_a_trailing_carriage_return_is_a_frame_end_at_flush():
    assert split_all(b"last frame\r") == [Segment("last frame", "\r")]


def test_unended_text_comes_out_at_flush_with_empty_end():
    splitter = LineSplitter()
    assert splitter.feed(b"no newline yet") == []
    assert splitter.flush() == [Segment("no newline yet", "")]
    assert splitter.flush() == []


@pytest.mark.parametrize("cut", [1, 2])
def test_block_character_split_between_reads_decodes_whole(cut: int):
    data = "steps:  40%|████      | 2/5\r".encode()
    first_block = data.index("█".encode())
    assert split_all(data[:first_block + cut], data[first_block + cut:]) == [
        Segment("steps:  40%|████      | 2/5", "\r"),
    ]


def test_one_byte_reads_give_the_same_segments_as_one_read():
    data = "学習開始 / running\r\n\x1b[31mred\x1b[0m █▋\rINFO:a:b\n".encode()
    assert split_all(*bytewise(data)) == split_all(data)


def test_invalid_utf8_becomes_replacement_characters():
    assert split_all(b"bad \xff\xfe bytes\n") == [Segment("bad \ufffd\ufffd bytes", "\n")]


def test_windows_code_page_output_does_not_crash():
    data = "Café – 50% ‰ done\r\n".encode("cp1252")
    (segment,) = split_all(data)
    assert segment.text.startswith("Caf\ufffd") and segment.text.endswith("done")


def test_truncated_utf8_at_end_of_stream_is_replaced_not_lost():
    assert split_all(b"tail \xe2\x96") == [Segment("tail \ufffd", "")]


def test_ansi_escapes_are_removed_including_cursor_up():
    data = b"\x1b[32mINFO\x1b[0m:x:ok\n\x1b[Asteps: 1/2\r\x1b]0;title\x07plain\n"
    assert split_all(data) == [Segment("INFO:x:ok", "\n"), Segment("steps: 1/2", "\r"), Segment("plain", "\n")]


def test_ansi_escape_split_between_reads_is_removed():
    assert split_all(b"a\x1b[3", b"1mb\n") == [Segment("ab", "\n")]


def test_strip_ansi_leaves_plain_text_alone():
    assert strip_ansi("no escapes here") == "no escapes here"


def test_empty_and_blank_segments_are_dropped():
    # tqdm's close() without leave writes `\r` + spaces + `\r`; prints add blank lines.
    assert split_all(b"\n\nepoch 1/2\n\r          \r\r\n  \n") == [Segment("epoch 1/2", "\n")]


def test_pending_shows_the_newest_unended_frame():
    splitter = LineSplitter()
    assert splitter.feed(b"\rsteps: 1/6\rsteps: 2/6") == [Segment("steps: 1/6", "\r")]
    assert splitter.pending == "steps: 2/6"


def test_pending_excludes_a_held_carriage_return():
    splitter = LineSplitter()
    assert splitter.feed(b"frame\r") == []
    assert splitter.pending == "frame"


def test_a_long_line_is_emitted_in_pieces_of_max_segment():
    segments = split_all(b"x" * 25 + b"\n", max_segment=10)
    assert [len(s.text) for s in segments] == [10, 10, 5]
    assert [s.end for s in segments] == ["", "", "\n"]


def test_ten_megabyte_line_without_newline_keeps_memory_bounded():
    splitter = LineSplitter()
    chunk = b"0123456789abcdef" * 4096  # 64 KiB
    total = 0
    for _ in range(160):  # 10 MiB
        for segment in splitter.feed(chunk):
            assert len(segment.text) <= MAX_SEGMENT
            total += len(segment.text)
        assert len(splitter.pending) <= MAX_SEGMENT
    total += sum(len(s.text) for s in splitter.flush())
    assert total == 160 * len(chunk)
