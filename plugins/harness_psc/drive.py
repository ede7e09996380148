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
def _launched(args: dict, ms: int, out: dict, *, pinned: bool = True):
    """The kit's sandboxed Chromium for one driver (``pinned``: the stand-in's certificate
    trusted by its key), its sandbox and name said in ``out``; closed on the way out."""
    import contextlib

    from playwright.async_api import async_playwright

    @contextlib.asynccontextmanager
    async def launched():
        with tempfile.TemporaryDirectory(prefix="harness-psc-browser-") as tmp:
            async with async_playwright() as p:
                extra = (f"--ignore-certificate-errors-spki-list={args['spki']}",) if pinned and args.get("spki") else ()
                browser = await kit.launch_async(p, Path(tmp), browser=args["browser"], timeout_ms=ms,
                                                 loopback_only=bool(args.get("loopback_only")), extra_args=extra)
                out["sandbox"], out["browser"] = browser.sandbox, browser.browser
                try:
                    yield browser
                finally:
                    await browser.context.close()

    return launched()


async def _drive(args: dict, out: dict, body, *, pinned: bool = True) -> dict:
    """``out`` once ``body(browser, ms)`` ran in the driver's browser (each step within the
    target's deadline, ``ms``); a browser that failed is said in ``out["error"]``."""
    from playwright.async_api import Error as PlaywrightError

    out.update({"sandbox": "", "browser": "", "error": None})
    ms = int(float(args.get("deadline", 20.0)) * 1000)
    try:
        async with _launched(args, ms, out, pinned=pinned) as launched:
            await body(launched, ms)
    except PlaywrightError as exc:
        out["error"] = str(exc).splitlines()[0][:300]
    return out


AT_ONCE = 4  # attempts whose browser contexts run side by side (each waits on pages more than it works)


def logins(args: dict) -> dict:
    """The driver (:func:`harness.browser.run_driver`): every attempt of ``args["attempts"]``,
    the first (the conformant login, which later ones may draw on: a nonce to replay, the last
    identity a faulty software keeps) alone, the others ``args["at_once"]`` (:data:`AT_ONCE`)
    at a time, each in a browser context of its own (its own cookies and storage)."""
    import asyncio

    return asyncio.run(_logins(args))


async def _logins(args: dict) -> dict:
    import asyncio

    out: dict[str, Any] = {"attempts": []}

    async def body(launched, ms: int) -> None:
        gate = asyncio.Semaphore(max(1, int(args.get("at_once", AT_ONCE))))

        async def one(attempt: dict) -> dict:
            async with gate:
                context = await launched.context.browser.new_context(**kit.CONTEXT)
                try:
                    return await _attempt(context, attempt, args, ms)
                finally:
                    await context.close()

        attempts = args["attempts"]
        out["attempts"] = [await one(attempts[0])] + list(await asyncio.gather(*(one(a) for a in attempts[1:])))

    return await _drive(args, out, body)


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
        shot = await page.screenshot(timeout=ms) if not attempt.get("answer") else None  # the login as a person saw it
        protected = await context.new_page()
        response = await protected.goto(args["protected_url"], wait_until="load", timeout=ms)
        await _settle(protected, ms)
        record["protected"] = {**await _state(protected, context), "status": response.status if response else None}
        if shot is None and args.get("national_id") and args["national_id"] in record["protected"]["text"]:
            shot = await page.screenshot(timeout=ms)  # an attack the software let through: what it showed after it
        if shot is not None:
            record["after"]["shot"] = shot
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


# -- through the login to the services -----------------------------------------------------------

def _utc() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # the simulators' journal clock (harness.services.http)


def through(args: dict) -> dict:
    """The driver of the services reached through the login: for each professional of
    ``args["logins"]``, one after the other and each in a browser context of its own, the
    conformant login through PSC, then the software's page whose action calls a national
    service (``args["action_url"]``), the moments before and after it said (UTC, the
    simulators' clock): what the service received meanwhile was sent for this login."""
    import asyncio

    return asyncio.run(_through(args))


async def _through(args: dict) -> dict:
    out: dict[str, Any] = {"logins": []}

    async def body(launched, ms: int) -> None:
        for attempt in args["logins"]:
            context = await launched.context.browser.new_context(**kit.CONTEXT)
            try:
                login = await _attempt(context, attempt, args, ms)
                record: dict[str, Any] = {"login": login}
                if "error" not in login:
                    page = await context.new_page()
                    record["action_started"] = _utc()
                    try:
                        response = await page.goto(args["action_url"], wait_until="load", timeout=ms)
                        await _settle(page, ms)
                        record["action"] = {**await _state(page, context), "status": response.status if response else None}
                    except Exception as exc:  # the page that did not answer is a fact of the login
                        record["action_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                    record["action_ended"] = _utc()
                out["logins"].append(record)
            finally:
                await context.close()

    return await _drive(args, out, body)


# -- the e-ID rules: a session left idle, the software's own login ----------------------------

def idle(args: dict) -> dict:
    """The driver of the inactivity rule: the conformant login through PSC (``args["attempt"]``)
    and the software's own login with both factors (``args["local"]``), each when asked and in
    a browser context of its own, then nothing for ``args["wait"]`` seconds (the pages left
    open, as a person walking away leaves them; one wait for both sessions), then the page
    only a logged-in professional may see, in each."""
    import asyncio

    return asyncio.run(_idle(args))


async def _idle(args: dict) -> dict:
    import asyncio

    out: dict[str, Any] = {}

    async def body(launched, ms: int) -> None:
        opened, contexts = [], []  # (where the result goes, context, the protected page's address); every context, closed at the end
        if args.get("attempt"):
            contexts.append(context := await launched.context.browser.new_context(**kit.CONTEXT))
            out["login"] = await _attempt(context, args["attempt"], args, ms)
            if "error" not in out["login"]:
                opened.append((out, context, args["protected_url"]))
        if args.get("local"):
            contexts.append(context := await launched.context.browser.new_context(**kit.CONTEXT))
            out["local"] = {}
            try:
                out["local"]["login"] = await _local_case(context, "both-factors", args["local"], ms)
                opened.append((out["local"], context, args["local"]["protected_url"]))
            except Exception as exc:  # a step that did not happen is a fact of the login
                out["local"]["login"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
        idle_from = time.monotonic()
        if opened:
            await asyncio.sleep(float(args["wait"]))
        for where, context, protected in opened:
            page = await context.new_page()
            response = await page.goto(protected, wait_until="load", timeout=ms)
            await _settle(page, ms)
            where["after_idle"] = {**await _state(page, context), "status": response.status if response else None,
                                   "idle_seconds": round(time.monotonic() - idle_from, 3)}
        for context in contexts:
            await context.close()

    return await _drive(args, out, body)


def local(args: dict) -> dict:
    """The driver of the software's own login: with both factors (it must open a session), with
    the password alone, enrolment by nobody logged in, then wrong codes until past the declared
    lockout and the right one last; each in a browser context of its own."""
    import asyncio

    return asyncio.run(_local(args))


def _codes(secret: str) -> tuple[str, str]:
    """(the right TOTP code now, a wrong one: valid at no step from a minute before to a minute after)."""
    import pyotp

    totp = pyotp.TOTP(secret)
    now = time.time()
    near = {totp.at(now + 30 * k) for k in range(-2, 3)}
    wrong = next(f"{n:06d}" for n in range(123456, 1_000_000, 7919) if f"{n:06d}" not in near)
    return totp.at(now), wrong


async def _local(args: dict) -> dict:
    out: dict[str, Any] = {}

    async def body(launched, ms: int) -> None:
        for case in ("both-factors", "password-only", "enrol-anonymous", "lockout"):
            context = await launched.context.browser.new_context(**kit.CONTEXT)
            try:
                out[case] = await _local_case(context, case, args, ms)
            except Exception as exc:  # a step that did not happen is a fact of the case
                out[case] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
            finally:
                await context.close()

    return await _drive(args, out, body, pinned=False)


async def _password_step(page, args: dict, ms: int) -> None:
    await page.goto(args["login_url"], wait_until="load", timeout=ms)
    await page.locator(args["username_field"]).first.fill(args["username"], timeout=ms)
    await page.locator(args["password_field"]).first.fill(args["password"], timeout=ms)
    async with page.expect_navigation(wait_until="load", timeout=ms):
        await page.locator(args["password_field"]).first.press("Enter", timeout=ms)


async def _code_step(page, code: str, ms: int, field: str) -> bool:
    """Type ``code`` where the software asks for one; False when it asks for none."""
    target = page.locator(field).first
    if not await target.count():
        return False
    await target.fill(code, timeout=ms)
    async with page.expect_navigation(wait_until="load", timeout=ms):
        await target.press("Enter", timeout=ms)
    return True


async def _protected(context, args: dict, ms: int) -> dict:
    page = await context.new_page()
    response = await page.goto(args["protected_url"], wait_until="load", timeout=ms)
    await _settle(page, ms)
    state = {**await _state(page, context), "status": response.status if response else None}
    await page.close()
    return state


async def _local_case(context, case: str, args: dict, ms: int) -> dict:
    page = await context.new_page()
    record: dict[str, Any] = {}
    if case == "enrol-anonymous":
        response = await context.request.post(args["enrol_url"], form={"means": "totp"}, max_redirects=0, timeout=ms)
        record["enrol"] = {"status": response.status, "body": (await response.text())[:500]}
        return record
    await _password_step(page, args, ms)
    record["asked_code"] = bool(await page.locator(args["code_field"]).count())
    record["after_password"] = {"url": page.url, "text": (await page.inner_text("body", timeout=2000))[:MAX_TEXT]}
    if case == "both-factors":
        right, _ = _codes(args["totp"])
        record["code_typed"] = await _code_step(page, right, ms, args["code_field"])
    elif case == "lockout":
        tries = []
        for _ in range(int(args["lockout_after"]) + 1):
            if not await page.locator(args["code_field"]).count() and await page.locator(args["password_field"]).count():
                await _password_step(page, args, ms)  # a software that asks for the password again after a wrong code
            _, wrong = _codes(args["totp"])
            typed = await _code_step(page, wrong, ms, args["code_field"])
            tries.append({"typed": typed, "text": (await page.inner_text("body", timeout=2000))[:500]})
        if not await page.locator(args["code_field"]).count() and await page.locator(args["password_field"]).count():
            await _password_step(page, args, ms)
        right, _ = _codes(args["totp"])
        record["wrong_codes"] = tries
        record["right_code_typed"] = await _code_step(page, right, ms, args["code_field"])
        record["after_right_code"] = {"url": page.url, "text": (await page.inner_text("body", timeout=2000))[:MAX_TEXT]}
    record["protected"] = await _protected(context, args, ms)
    return record
