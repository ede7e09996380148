"""The professional's logins, driven in a real browser (the services kit's, :mod:`harness.browser`).

:func:`logins` runs in the kit's driver process: one sandboxed Chromium, each attempt in a
browser context of its own (its cookies, its storage), several side by side. An attempt is what a
person does: open the software's login page, click its Pro Santé Connect button, on the
stand-in's page pick the professional, the means and the answer (the conformant one, or an
attack), then see where the software lands; then ask for a page only a logged-in
professional may see; for the conformant attempt, log out and ask again.

Everything is returned as data (the facts, page texts, cookies, storage, screenshots): the
harness's process scans it for the tokens the stand-in issued and records it without them.
The browser trusts the stand-in's certificate by its key only (``--ignore-certificate-errors-
spki-list``): nothing else's.
"""
from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import browser as kit

MAX_TEXT = 20_000  # characters of a page's text kept
MAX_HTML = 200_000  # characters of a page's markup kept (scanned for tokens, then dropped)
SETTLE_MS = 5_000  # at most, waiting for the page to settle after a navigation
AT_ONCE = 4  # attempts whose browser contexts run side by side (each waits on pages more than it works)


def logins(args: dict) -> dict:
    """The driver (:func:`harness.browser.run_driver`): every attempt of ``args["attempts"]``,
    the first (the conformant login, which later ones may draw on: a nonce to replay, the last
    identity a faulty software keeps) alone, the others :data:`AT_ONCE` at a time, each in a
    browser context of its own (its own cookies and storage)."""
    import asyncio

    return asyncio.run(_logins(args))


async def _logins(args: dict) -> dict:
    import asyncio

    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import async_playwright

    out: dict[str, Any] = {"attempts": [], "sandbox": "", "browser": "", "error": None}
    ms = int(float(args.get("deadline", 20.0)) * 1000)
    try:
        with tempfile.TemporaryDirectory(prefix="harness-psc-browser-") as tmp:
            async with async_playwright() as p:
                launched = await kit.launch_async(p, Path(tmp), browser=args["browser"], timeout_ms=ms,
                                                  loopback_only=bool(args.get("loopback_only")),
                                                  extra_args=(f"--ignore-certificate-errors-spki-list={args['spki']}",))
                out["sandbox"], out["browser"] = launched.sandbox, launched.browser
                gate = asyncio.Semaphore(AT_ONCE)

                async def one(attempt: dict) -> dict:
                    async with gate:
                        context = await launched.context.browser.new_context(**kit.CONTEXT)
                        try:
                            return await _attempt(context, attempt, args, ms)
                        finally:
                            await context.close()

                try:
                    attempts = args["attempts"]
                    out["attempts"] = [await one(attempts[0])] + list(await asyncio.gather(*(one(a) for a in attempts[1:])))
                finally:
                    await launched.context.close()
    except PlaywrightError as exc:
        out["error"] = str(exc).splitlines()[0][:300]
    return out


async def _settle(page, ms: int) -> None:
    try:
        await page.wait_for_load_state("networkidle", timeout=min(ms, SETTLE_MS))
    except Exception:  # a page that keeps a request open: read as it stands
        pass


async def _state(page, context) -> dict:
    """What the browser holds once a navigation settled: where, what the page says and holds,
    the cookies (each with its flags), what scripts can read (document.cookie, storage)."""
    try:
        readable = await page.evaluate("""() => {
            const dump = (s) => { const o = {}; try { for (let i = 0; i < s.length; i++) o[s.key(i)] = s.getItem(s.key(i)); } catch (e) {} return o; };
            return {cookie: document.cookie, local: dump(localStorage), session: dump(sessionStorage)};
        }""")
    except Exception:
        readable = {"cookie": "", "local": {}, "session": {}}
    try:
        text = (await page.inner_text("body", timeout=2000))[:MAX_TEXT]
        markup = (await page.content())[:MAX_HTML]
    except Exception:
        text, markup = "", ""
    cookies = [{k: c.get(k) for k in ("name", "value", "domain", "path", "httpOnly", "secure", "sameSite")} for c in await context.cookies()]
    return {"url": page.url, "text": text, "html": markup, "cookies": cookies, "script_cookie": readable.get("cookie", ""),
            "local_storage": readable.get("local", {}), "session_storage": readable.get("session", {})}


async def _click(page, pattern: str, ms: int) -> bool:
    """Click the link or button whose accessible name matches ``pattern`` (case ignored), once
    the page shows one (a page whose script draws it late included), within ``ms``."""
    name = re.compile(pattern, re.IGNORECASE)
    target = page.get_by_role("link", name=name).or_(page.get_by_role("button", name=name)).first
    try:
        await target.wait_for(state="visible", timeout=ms)
    except Exception:  # none within the step's deadline
        return False
    await target.click(timeout=ms)
    return True


async def _attempt(context, attempt: dict, args: dict, ms: int) -> dict:
    started = time.monotonic()
    page = await context.new_page()
    record: dict[str, Any] = {"answer": attempt.get("answer", ""), "professional": attempt["professional"], "means": attempt["means"],
                              "navigations": [], "steps": []}
    page.on("framenavigated", lambda frame: frame == page.main_frame and len(record["navigations"]) < 50
            and record["navigations"].append(frame.url))
    provider = args["provider"].rstrip("/")

    def step(name: str, **facts: Any) -> None:
        record["steps"].append({"step": name, "at": round(time.monotonic() - started, 3), **facts})

    try:
        await page.goto(args["login_url"], wait_until="load", timeout=ms)
        step("login-page", url=page.url)
        if not await _click(page, args["login_button"], ms):
            record["error"] = "no-login-button"
            record["after"] = await _state(page, context)
            return record
        await page.wait_for_url(lambda u: u.startswith(provider), timeout=ms)
        await page.wait_for_load_state("load", timeout=ms)
        step("provider-page", url=page.url.split("?")[0])
        await page.check(f"input[name=professional][value='{attempt['professional']}']", timeout=ms)
        await page.select_option("select[name=means]", attempt["means"], timeout=ms)
        await page.select_option("select[name=answer]", attempt.get("answer", ""), timeout=ms)
        await page.evaluate("(n) => { const i = document.createElement('input'); i.type = 'hidden'; i.name = 'attempt'; i.value = n;"
                            " document.forms[0].appendChild(i); }", str(attempt["n"]))
        await page.get_by_role("button", name=re.compile("Se connecter")).click(timeout=ms)
        await page.wait_for_url(lambda u: not u.startswith(provider), timeout=ms)
        await page.wait_for_load_state("load", timeout=ms)
        await _settle(page, ms)
        step("back", url=page.url)
        record["after"] = await _state(page, context)
        record["after"]["shot"] = await page.screenshot(timeout=ms)
        protected = await context.new_page()
        response = await protected.goto(args["protected_url"], wait_until="load", timeout=ms)
        await _settle(protected, ms)
        record["protected"] = {**await _state(protected, context), "status": response.status if response else None}
        if attempt.get("logout"):
            if await _click(protected, args["logout_button"], ms):
                await _settle(protected, ms)
                await protected.wait_for_load_state("load", timeout=ms)
                step("logged-out", url=protected.url)
                record["logout_landing"] = {"url": protected.url, "text": (await protected.inner_text("body", timeout=2000))[:MAX_TEXT]}
                again = await protected.goto(args["protected_url"], wait_until="load", timeout=ms)
                await _settle(protected, ms)
                record["after_logout"] = {**await _state(protected, context), "status": again.status if again else None}
            else:
                record["logout_error"] = "no-logout-button"
        await protected.close()
    except Exception as exc:  # a step that did not happen is a fact of the attempt, the next ones go on
        record["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        if "after" not in record:
            try:
                record["after"] = await _state(page, context)
            except Exception:
                pass
    record["seconds"] = round(time.monotonic() - started, 3)
    return record
