"""
Tests for the uploads benchmark's own logic (L{bench.uploads}); the sink
and the temporary-file watcher are tried in this process, on 127.0.0.1.
"""
from __future__ import annotations

import io
import os
import tempfile
import threading
from pathlib import Path

from twisted.trial import unittest

from bench.uploads import (
    MB,
    Mode,
    TempFileWatcher,
    Upload,
    _Sink,
    parse_arguments,
    read_chunked,
    summarize_mode,
    upload,
)


class ReadChunkedTests(unittest.TestCase):
    def test_length(self) -> None:
        """A chunked body's length, its extensions and trailers read past."""
        stream = io.BufferedReader(io.BytesIO(b"5;x=y\r\nhello\r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\nNEXT"))
        self.assertEqual(read_chunked(stream, 100, memoryview(bytearray(4))), 15)
        self.assertEqual(stream.read(), b"NEXT")

    def test_limit(self) -> None:
        """A body over the limit is refused."""
        stream = io.BufferedReader(io.BytesIO(b"10\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n"))
        self.assertRaises(ValueError, read_chunked, stream, 8, memoryview(bytearray(4)))

    def test_truncated(self) -> None:
        """A body that ends early is refused."""
        stream = io.BufferedReader(io.BytesIO(b"10\r\nshort"))
        self.assertRaises(ValueError, read_chunked, stream, 100, memoryview(bytearray(4)))


class SinkTests(unittest.TestCase):
    def test_upload(self) -> None:
        """The sink reads a whole body and answers its length, which L{upload} checks."""
        import http.server

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(thread.join)
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        done = upload(server.server_address[1], "/x", 3 * 1024 * 1024 + 5)
        self.assertEqual((done.error, done.bytes), (None, 3 * 1024 * 1024 + 5))


class TempFileWatcherTests(unittest.TestCase):
    def test_seen(self) -> None:
        """An unlinked temporary file open in the directory is seen once, with its size, however many descriptors."""
        directory = Path(tempfile.mkdtemp())
        self.addCleanup(directory.rmdir)
        with tempfile.TemporaryFile(dir=directory) as spooled:
            spooled.write(b"x" * 5000)
            spooled.flush()
            again = os.dup(spooled.fileno())
            self.addCleanup(os.close, again)
            watcher = TempFileWatcher(os.getpid(), directory)
            watcher.sample()
        self.assertEqual((watcher.files, watcher.largest), (1, 5000))

    def test_elsewhere(self) -> None:
        """Files open outside the directory are not counted."""
        directory = Path(tempfile.mkdtemp())
        self.addCleanup(directory.rmdir)
        with tempfile.TemporaryFile():
            watcher = TempFileWatcher(os.getpid(), directory)
            watcher.sample()
        self.assertEqual(watcher.files, 0)


class ModeTests(unittest.TestCase):
    def _mode(self, seconds: float, error: str | None = None) -> Mode:
        return Mode(uploads=(Upload(50 * MB, 1.0), Upload(50 * MB, 2.0, error)), seconds=seconds,
                    cpu_seconds=seconds / 2, peak_rss_kb=2048, written=100 * MB, temp_files=2,
                    largest_temp=50 * MB)

    def test_rates(self) -> None:
        """The aggregate is all bytes over the wall time; one upload's is its own."""
        mode = self._mode(2.0)
        self.assertEqual((mode.mb_per_second, mode.uploads[1].mb_per_second), (50.0, 25.0))

    def test_summary(self) -> None:
        """The summary line has the median rate, CPU, peak RSS, what was written, temporary files, errors."""
        text = summarize_mode("buffered", [self._mode(2.0), self._mode(4.0, "502")])
        for part in ("37.5 MB/s (median; runs 50.0, 25.0)", "one upload 50.0 MB/s", "node CPU 50%",
                     "peak RSS 2.0 MB", "written to files 100.0 MB", "temporary files 2 (largest 50.0 MB)",
                     "errors 1"):
            self.assertIn(part, text)


class ArgumentsTests(unittest.TestCase):
    def test_quick(self) -> None:
        """--quick makes fewer rounds and uploads."""
        arguments = parse_arguments(["--quick"])
        self.assertEqual((arguments.rounds, arguments.count, arguments.size_mb, arguments.concurrency),
                         (2, 10, 50, 4))

    def test_bounded(self) -> None:
        """More rounds, uploads, MB or concurrency than the bounds are refused."""
        for argv in (["--rounds", "6"], ["--count", "101"], ["--size-mb", "201"], ["--concurrency", "17"],
                     ["--count", "0"]):
            self.assertRaises(SystemExit, parse_arguments, argv)
