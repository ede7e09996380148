"""A driver for tests of harness.browser.run_driver (no browser): what its process sees."""
import os
import time


def echo(args: dict) -> dict:
    with open(f"/proc/{os.getpid()}/cmdline", "rb") as fh:
        cmdline = fh.read()
    return {"args": args, "cmdline": cmdline.decode("utf-8", "replace"), "bytes": b"\x00\xff"}


def hang(args: dict) -> dict:
    time.sleep(3600)
    return {}
