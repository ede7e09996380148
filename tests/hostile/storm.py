"""A slowloris storm for the tests of bounded servers."""
import threading
import time
from typing import Callable


def slowloris(connect: Callable[[], object], *, clients: int = 100, seconds: float = 8.0, byte: bytes = b"G") -> list[float]:
    """``clients`` connections (``connect()`` opens one) each sending ``byte`` every 0.4 s for
    ``seconds`` at most; when each ended (its connection closed under it, or its time up)."""
    ended: list[float] = []
    started = time.monotonic()

    def slow() -> None:
        try:
            with connect() as s:
                while time.monotonic() - started < seconds:
                    s.sendall(byte)
                    time.sleep(0.4)
        except OSError:
            pass
        ended.append(time.monotonic() - started)

    threads = [threading.Thread(target=slow, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 17)
    return ended
