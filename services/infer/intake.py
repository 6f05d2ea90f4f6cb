"""Frame intake of one owned camera: the :class:`~ovbus.rtsp.RtspReader` of its announced stream
(opened, kept or replaced as the descriptor changes), holding only the newest frame.

A descriptor whose URL the reader refuses builds nothing: :attr:`StreamIntake.error` says why
until another descriptor comes. Logins and the CA come from the worker's settings, never from
the bus. The decode size the camera's models need is kept here and given to every reader, so a
reader opened for a new URL scales its frames as the one before did.

The worker's cameras share one :class:`~ovbus.pacing.DecodePacer` (:attr:`ReaderOptions.pacer`):
past saturation their readers take turns decoding, so the decoders' cores go to inference. A
camera limited by ``detect_fps`` leaves frames untaken on purpose and is not paced
(:meth:`StreamIntake.pace`). :meth:`StreamIntake.undecoded` gives the frames not decoded
(paced, decoder behind) since its last call, for the camera's stats.
"""

from __future__ import annotations

from dataclasses import dataclass

from ovbus.errors import StreamError
from ovbus.log import get_logger
from ovbus.pacing import DecodePacer
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
    pacer: DecodePacer | None = None  # shared by the worker's readers


class StreamIntake:
    """The reader of one camera's stream (:class:`services.infer.parts.Intake`)."""

    def __init__(self, camera: str, options: ReaderOptions) -> None:
        self.camera = camera
        self.options = options
        self._reader: RtspReader | None = None
        self._refused: str | None = None  # the URL of a refused descriptor
        self._error: StreamError | None = None
        self._size: tuple[int, int] | None = None
        self._paced = True
        self._seen: tuple[RtspReader | None, int, int] = (None, 0, 0)  # (reader, paced, behind)

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
                pacer=self.options.pacer,
            )
        except StreamError as e:
            log.error("stream descriptor refused", camera=self.camera, error=e.message)
            self._refused, self._error = stream.url, e
            return False
        self._refused, self._error = None, None
        reader.decode_size = self._size
        if reader.pacing is not None:
            reader.pacing.paced = self._paced
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

    def pace(self, on: bool) -> None:
        self._paced = on
        reader = self._reader
        if reader is not None and reader.pacing is not None:
            reader.pacing.paced = on

    def undecoded(self) -> tuple[int, int]:
        reader = self._reader
        if reader is None:
            return 0, 0
        last, paced, behind = self._seen
        if last is not reader:
            paced = behind = 0
        self._seen = (reader, reader.paced, reader.dropped)
        return max(0, reader.paced - paced), max(0, reader.dropped - behind)

    def scale_to(self, size: tuple[int, int] | None) -> None:
        self._size = size
        reader = self._reader
        if reader is not None:
            reader.decode_size = size
