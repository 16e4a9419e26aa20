"""The real twilio client, optionally pointed elsewhere, and the one error translation.

`make_client` builds twilio.rest.Client with a TwilioHttpClient subclass (the library's
custom HTTP client hook): it rewrites https://<product>.twilio.com to `api_base` when one is
set (a local fake in tests, a proxy in production), applies a timeout, and remembers the
last response's headers per thread so Retry-After can be honoured (TwilioRestException
does not carry headers).

`translate` is the only place Twilio error codes are interpreted (REST errors, timeouts and
the ErrorCode of a status callback):
- 20429 / HTTP 429 and 5xx: retry, after Retry-After when given, else the backoff;
- 30001 (queue overflow): retry later; 30003 (unreachable handset), 30005 (unknown
  destination), 30006 (landline or unreachable carrier): undelivered, each its own code,
  officers told for 30005/30006;
- 21211 (invalid To), 21614 (not a mobile), 21610 (recipient replied STOP), 21408
  (region not enabled): rejected, never retried, officers told;
- connect errors: retry (nothing was sent); read timeouts: uncertain (it may have been
  sent; the provider is asked before any resend).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from notify import logmask
from notify.outcomes import Outcome

log = logging.getLogger(__name__)
NEVER_RETRY = {21211: "invalid phone number", 21614: "not a mobile number",
               21610: "recipient replied STOP (unsubscribed)",
               21408: "sending to this region is not enabled"}
DELIVERY_ERRORS = {30001: "queue overflow", 30003: "unreachable handset",
                   30005: "unknown destination handset", 30006: "landline or unreachable "
                   "carrier"}


class RedirectingHttpClient(TwilioHttpClient):
    def __init__(self, api_base: str | None, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.api_base = urlsplit(api_base) if api_base else None
        self._local = threading.local()
        self.session = requests.Session()  # http:// as well, for a local fake

    def request(self, method: str, url: str, params: Any = None, data: Any = None,
                headers: Any = None, auth: Any = None, timeout: Any = None,
                allow_redirects: bool = False) -> Response:
        if self.api_base is not None:
            parts = urlsplit(url)
            url = urlunsplit((self.api_base.scheme, self.api_base.netloc,
                              self.api_base.path.rstrip("/") + parts.path, parts.query, ""))
        self._local.headers = {}
        response = super().request(method, url, params, data, headers, auth, timeout,
                                   allow_redirects)
        self._local.headers = dict(response.headers or {})
        return response

    # The library logs query strings and bodies at INFO (To=+86...): personal data. Only the
    # method and path are logged here, at DEBUG.
    def log_request(self, kwargs: dict[str, Any]) -> None:
        log.debug("twilio %s %s", kwargs.get("method"), urlsplit(str(kwargs.get("url"))).path)

    def log_response(self, status_code: int, response: Any) -> None:
        log.debug("twilio answered %s", status_code)

    @property
    def last_headers(self) -> Mapping[str, str]:
        return getattr(self._local, "headers", {})


def make_client(account_sid: str, auth_token: str, *, api_base: str | None = None,
                timeout: float = 10.0) -> tuple[Client, RedirectingHttpClient]:
    logmask.install("urllib3.connectionpool", "twilio.http_client")
    http = RedirectingHttpClient(api_base, timeout)
    return Client(account_sid, auth_token, http_client=http), http


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return None  # an HTTP-date: fall back to the backoff
    return None


def translate(*, error: BaseException | None = None, code: int | None = None,
              headers: Mapping[str, str] | None = None) -> Outcome:
    """A Twilio failure (an exception from a REST call, or a callback's ErrorCode) as our
    Outcome."""
    status = None
    message = ""
    # Twilio's messages may quote the number ("The 'To' number +86... is not valid").
    if isinstance(error, TwilioRestException):
        status, code, message = error.status, error.code, logmask.mask_numbers(str(error.msg))
    elif isinstance(error, TwilioServiceException):  # RFC 9457 error bodies
        status, code = error.status, error.code
        message = logmask.mask_numbers(str(error.title))
    elif isinstance(error, requests.ConnectTimeout):
        return Outcome("retry", code="connect", message="provider unreachable")
    elif isinstance(error, requests.Timeout):
        return Outcome("uncertain", code="timeout",
                       message="no answer in time; the provider will be asked before a resend")
    elif isinstance(error, requests.ConnectionError):
        if "refused" in str(error) or "NewConnectionError" in str(error):
            return Outcome("retry", code="connect", message="provider unreachable")
        # Cut after the request went out: it may have been taken.
        return Outcome("uncertain", code="connection_lost", message="connection lost")
    if code == 20429 or status == 429:
        return Outcome("retry", code=str(code or 429), message="rate limited",
                       retry_after_s=_retry_after(headers or {}))
    if code in NEVER_RETRY:
        return Outcome("rejected", code=str(code), message=NEVER_RETRY[code],
                       tell_officers=True)
    if code in DELIVERY_ERRORS:
        if code == 30001:
            return Outcome("retry", code="30001", message=DELIVERY_ERRORS[code])
        return Outcome("failed", code=str(code), message=DELIVERY_ERRORS[code],
                       tell_officers=code in (30005, 30006))
    if status is not None and status >= 500:
        return Outcome("retry", code=str(code or status), message=message[:200] or "server "
                       "error", retry_after_s=_retry_after(headers or {}))
    if error is not None and not isinstance(error, TwilioRestException | TwilioServiceException):
        return Outcome("retry", code=type(error).__name__,
                       message=logmask.mask_numbers(str(error))[:200])
    return Outcome("failed", code=str(code or status), message=message[:200] or "refused",
                   tell_officers=True)
