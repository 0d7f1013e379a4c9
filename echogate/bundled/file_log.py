"""
file-log: one JSON line per request, in Kong's log shape
(L{echogate.bundled.log_record}), appended to a file.

The C{log} phase only encodes the line and hands it to a
L{LineFileWriter}, whose own thread does the file work (opening,
writing, flushing), so a slow disk never blocks the reactor. Lines queued
together are written together, in one unbuffered C{write} on a file
opened for appending, so several processes (C{--workers}) can share the
file without splitting each other's lines. With C{reopen} the file is opened for each
batch and closed after it, so a rotated file is picked up at once;
L{LineFileWriter.reopen} does the same once (call it after rotating).
"""
from __future__ import annotations

import json
import queue
import re
import threading
from typing import Any, Mapping

import attrs
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from echogate.bundled.log_record import REDACTION_FIELDS, log_record
from echogate.interfaces import IPluginNode
from echogate.plugin import GatewayPlugin, NodeBinding
from echogate.schema import Boolean, Record, String

__all__ = ["FileLog", "LineFileWriter"]

_log = Logger(namespace="echogate.plugins.file-log")

# Kong's rule: no leading or trailing space, none of * & % \ `.
_PATH = re.compile(r"^[^\s*&%\\`][^*&%\\`]*[^\s*&%\\`]$")
_STOP = object()
_REOPEN = object()


def _valid_path(value: str) -> str | None:
    return None if _PATH.match(value) else "not a valid filename"


class LineFileWriter:
    """
    Appends lines to files from a thread of its own, started on the first
    line and stopped by L{stop}.

    @param max_pending: lines that may wait for the thread; past that,
        new lines are dropped (and counted in L{dropped}, with a log line).
    """

    def __init__(self, max_pending: int = 100_000):
        self._queue: queue.Queue = queue.Queue(max_pending)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._files: dict[str, Any] = {}
        self._failing: set[str] = set()
        self.dropped = 0
        self.written = 0

    def append(self, path: str, line: bytes, reopen: bool = False) -> None:
        """
        Queue C{line} (ending with a newline) for the end of C{path};
        never blocks.
        """
        self._start()
        try:
            self._queue.put_nowait((path, line, reopen))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                _log.warn("file-log: {count} lines dropped so far: the writer is {behind} lines behind",
                          count=self.dropped, behind=self._queue.maxsize)

    def reopen(self) -> None:
        """
        Close the open files; the next lines open them again (after log
        rotation).
        """
        self._start()
        self._queue.put(_REOPEN)

    def flush(self, timeout: float | None = 10.0) -> None:
        """
        Block until every line queued so far is written (at most
        C{timeout} seconds): for tests, and for callers off the reactor.
        """
        self._start()
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="echogate file-log writer", daemon=True)
                thread.start()
                self._thread = thread

    def stop(self, timeout: float | None = 10.0) -> None:
        """
        Write what is queued, close the files and end the thread (blocks
        until then, at most C{timeout} seconds).
        """
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines: dict[str, list[bytes]] = {}
            reopen_paths: set[str] = set()
            stop = False
            waiting: list[threading.Event] = []
            for item in batch:
                if isinstance(item, threading.Event):
                    waiting.append(item)
                elif item is _STOP:
                    stop = True
                elif item is _REOPEN:
                    self._write(lines, reopen_paths)
                    lines, reopen_paths = {}, set()
                    self._close_all()
                else:
                    path, line, reopen = item
                    lines.setdefault(path, []).append(line)
                    if reopen:
                        reopen_paths.add(path)
            self._write(lines, reopen_paths)
            for event in waiting:
                event.set()
            if stop:
                self._close_all()
                return

    def _write(self, lines: Mapping[str, list[bytes]], reopen_paths: set[str]) -> None:
        for path, chunk in lines.items():
            try:
                handle = self._files.get(path)
                if handle is None:
                    handle = self._files[path] = open(path, "ab", buffering=0)
                data = memoryview(b"".join(chunk))
                while data:
                    data = data[handle.write(data) or 0:]
                self.written += len(chunk)
                if path in self._failing:
                    self._failing.discard(path)
                    _log.info("file-log: writing to {path} again", path=path)
            except OSError as e:
                self._close(path)
                self.dropped += len(chunk)
                if path not in self._failing:
                    self._failing.add(path)
                    _log.error("file-log: cannot write to {path} ({why}); {n} lines dropped",
                               path=path, why=e.strerror or e, n=len(chunk))
                continue
            if path in reopen_paths:
                self._close(path)

    def _close(self, path: str) -> None:
        handle = self._files.pop(path, None)
        if handle is not None:
            try:
                handle.close()
            except OSError:
                pass

    def _close_all(self) -> None:
        for path in list(self._files):
            self._close(path)


class _WriterService(Service):
    """
    Stops the writer thread (after writing what is queued) with the node.
    """

    def __init__(self, writer: LineFileWriter):
        self._writer = writer

    def stopService(self) -> None:
        super().stopService()
        self._writer.stop()


@attrs.frozen
class FileLog(GatewayPlugin):
    """
    Append Kong's log document for every request to C{config.path}, one
    JSON line each.

    @ivar clock: the clock that stamps entries (C{IReactorTime});
        C{None}: the node's reactor (from C{node_service}).
    @ivar writer: the L{LineFileWriter} (one per plugin object, shared by
        every config).
    @ivar binding: the node, once C{node_service} gave it.
    """

    clock: IReactorTime | None = None
    writer: LineFileWriter = attrs.field(factory=LineFileWriter)
    binding: NodeBinding = attrs.field(factory=NodeBinding, eq=False, repr=False)

    name = "file-log"
    version = "1.0.0"
    priority = 9
    config_schema = Record({
        "path": String(required=True, check=_valid_path,
                       description="The file to append to; created when missing."),
        "reopen": Boolean(required=True, default=False,
                          description="Open and close the file for every batch of lines."),
        **REDACTION_FIELDS,
    })

    def _now(self) -> float:
        clock: IReactorTime = self.clock if self.clock is not None else self.binding.node.reactor
        return clock.seconds()

    def log(self, ctx: Any, config: Mapping[str, Any]) -> None:
        record = log_record(ctx, self._now(), config["redact_credentials"], config["redact"])
        line = json.dumps(record, separators=(",", ":")).encode("utf-8") + b"\n"
        self.writer.append(config["path"], line, config["reopen"])

    def node_service(self, node: IPluginNode) -> Service:
        """
        Keep C{node} (its reactor stamps entries); a service that stops
        the writer thread when the node stops.
        """
        self.binding.bind(node)
        return _WriterService(self.writer)
