"""Frame intake of one owned camera: the :class:`~ovbus.rtsp.RtspReader` of its announced stream
(opened, kept or replaced as the descriptor changes), holding only the newest frame.

A descriptor whose URL the reader refuses builds nothing: :attr:`StreamIntake.error` says why
until another descriptor comes. Logins and the CA come from the worker's settings, never from
the bus. The decode size the camera's models need is kept here and given to every reader, so a
reader opened for a new URL scales its frames as the one before did.
"""

from __future__ import annotations

from dataclasses import dataclass

from ovbus.errors import StreamError
from ovbus.log import get_logger
from ovbus.payloads.stream import StreamDescriptor
from ovbus.rtsp import Pending, ReaderState, RtspReader
from services.infer.parts import StreamListener

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ReaderOptions:
    """How the worker reads every stream (its settings)."""

    frame_timeout: float = 10.0
    decoder_threads: int = 1
    login: tuple[str, str] | None = None
    tls_ca: str | None = None


class StreamIntake:
    """The reader of one camera's stream (:class:`services.infer.parts.Intake`)."""

    def __init__(self, camera: str, options: ReaderOptions) -> None:
        self.camera = camera
        self.options = options
        self._reader: RtspReader | None = None
        self._refused: str | None = None  # the URL of a refused descriptor
        self._error: StreamError | None = None
        self._size: tuple[int, int] | None = None

    @property
    def error(self) -> StreamError | None:
        return self._error

    @property
    def skipped(self) -> int:
        reader = self._reader
        return reader.skipped if reader is not None else 0

    def open(self, stream: StreamDescriptor, listener: StreamListener) -> bool:
        old = self._reader
        if old is not None and (old.url, old.codec) == (stream.url, stream.codec):
            return True
        if self._refused == stream.url:
            return False
        self.close()

        def on_state(state: ReaderState, error: StreamError | None) -> None:
            if state == "streaming":
                self._error = None
            if error is not None:
                self._error = error
                listener.stream_failed(error)

        try:
            reader = RtspReader(
                stream.url,
                camera=self.camera,
                frame_timeout=self.options.frame_timeout,
                on_state=on_state,
                on_frame=listener.frame_ready,
                decoder_threads=self.options.decoder_threads,
                login=self.options.login,
                tls_ca=self.options.tls_ca,
                codec=stream.codec,
            )
        except StreamError as e:
            log.error("stream descriptor refused", camera=self.camera, error=e.message)
            self._refused, self._error = stream.url, e
            return False
        self._refused, self._error = None, None
        reader.decode_size = self._size
        self._reader = reader.start()
        log.info("reading stream", camera=self.camera, url=stream.url)
        return True

    def refuse(self, error: StreamError) -> None:
        self._error = error

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.stop()

    def take(self) -> Pending | None:
        reader = self._reader
        return reader.take() if reader is not None else None

    def scale_to(self, size: tuple[int, int] | None) -> None:
        self._size = size
        reader = self._reader
        if reader is not None:
            reader.decode_size = size
