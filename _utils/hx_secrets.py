"""The one place where errors and URLs become text: configured secrets are replaced first.

A webhook's URL is a credential (Slack's path *is* the key), and so are a
PagerDuty routing key and any token or password of a notification channel.
Errors from ``requests`` do not carry the URL as it was configured: a refused
connection says ``Max retries exceeded with url: /services/T0/B0/XXXX``, an
HTTP 500 may echo the request, basic auth travels base64-encoded. So a text is
scrubbed of every *form* a secret can take, not only of the configured string:

- the whole value, its percent-encoded (upper and lower case), decoded,
  JSON-escaped and ``repr``-escaped forms;
- for a URL: its path, query and path + query; every run of path segments and
  every query value that looks like key material (:func:`looks_secret`); the
  user-info password and the base64 ``Authorization`` value of the user-info.

Pure: :class:`Secrets` is built from configuration (:func:`collect`) and
applied by the caller (hx_notify deliveries, the incident desk, the audit log,
the runners' returns, logs and reports).
"""
import base64
import json
import logging
import re
import threading
import urllib.parse

PLACEHOLDER = "***"
# A fragment of a URL (segment run, query value) shorter than MIN_FRAGMENT, or
# shorter than LONG_FRAGMENT and made of lowercase letters only ("services",
# "alerts"), is a route, not a key: scrubbing it would mangle every text that
# happens to use the word.
MIN_FRAGMENT = 8
LONG_FRAGMENT = 16
# Channel settings whose value is a credential, whatever the channel kind.
SECRET_FIELDS = frozenset({"routing_key", "token", "password", "secret", "api_key", "key", "auth", "webhook"})
URL_FIELDS = frozenset({"url"})
BODY_EXCERPT = 200
RAW_BODY = 65536


def looks_secret(fragment):
    """True for a URL fragment that can be key material: long, or not a plain lowercase word."""
    if len(fragment) >= LONG_FRAGMENT:
        return True
    return len(fragment) >= MIN_FRAGMENT and not re.fullmatch(r"[a-z/]+", fragment)


def _encodings(value):
    out = {value, urllib.parse.unquote(value), urllib.parse.unquote_plus(value)}
    for quoted in (urllib.parse.quote(value, safe="/"), urllib.parse.quote(value, safe=""),
                   urllib.parse.quote_plus(value)):
        out.add(quoted)
        out.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted))
    out.add(json.dumps(value)[1:-1])
    out.add(repr(value)[1:-1])
    return {v for v in out if v}


def _url_forms(url):
    forms = {url, url.rstrip("/")}
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return forms
    if parts.password:
        forms.add(parts.password)
        user_pass = f"{urllib.parse.unquote(parts.username or '')}:{urllib.parse.unquote(parts.password)}"
        forms.add(user_pass)
        forms.add(base64.b64encode(user_pass.encode()).decode())
    path = parts.path.rstrip("/")
    if path:
        forms.add(path)
        segments = [s for s in path.split("/") if s]
        for i in range(len(segments)):
            for j in range(i + 1, len(segments) + 1):
                run = "/".join(segments[i:j])
                if looks_secret(run):
                    forms.update({run, "/" + run})
    if parts.query:
        forms.add(parts.query)
        forms.add(f"{path}?{parts.query}")
        for _, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=False):
            if looks_secret(value) or len(value) >= 4:  # a query value is a parameter someone chose to hide
                forms.add(value)
    # "/pd" or "/hooks": a short route is not scrubbed on its own, the whole URL is.
    return {f for f in forms if f == url or f == url.rstrip("/") or len(f) >= 4}


class Secrets:
    """Every form of the given secret values; :meth:`scrub` replaces each with :data:`PLACEHOLDER`."""

    def __init__(self, values=(), urls=()):
        forms = set()
        for value in values:
            if isinstance(value, str) and value:
                forms |= _encodings(value)
        for url in urls:
            if isinstance(url, str) and url:
                for form in _url_forms(url):
                    forms |= _encodings(form)
        # Longest first: a URL is replaced whole before its path would be.
        self.forms = sorted((f for f in forms if f), key=lambda f: (-len(f), f))
        self._re = re.compile("|".join(re.escape(f) for f in self.forms)) if self.forms else None

    def __bool__(self):
        return bool(self.forms)

    def __repr__(self):  # never the values themselves
        return f"<Secrets: {len(self.forms)} form(s)>"

    def scrub(self, text):
        """``text`` (anything; made a str) with every secret form replaced."""
        if text is None:
            return None
        text = text if isinstance(text, str) else str(text)
        return self._re.sub(PLACEHOLDER, text) if self._re is not None else text

    def scrub_obj(self, obj):
        """A copy of a JSON-like value with every string (keys included) scrubbed."""
        if isinstance(obj, str):
            return self.scrub(obj)
        if isinstance(obj, dict):
            return {self.scrub_obj(k) if isinstance(k, str) else k: self.scrub_obj(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.scrub_obj(v) for v in obj)
        return obj

    def error(self, exc, limit=300):
        """An exception as one scrubbed line: ``Type: message``, with status and body excerpt of an HTTP error."""
        text = f"{type(exc).__name__}: {exc}"
        response = getattr(exc, "response", None)
        if response is not None and getattr(response, "status_code", None) is not None:
            text += f" ({self.response_text(response, limit=None)})"
        return self._cut(self.scrub(" ".join(text.split())), limit)

    def response_text(self, response, limit=300):
        """A non-2xx answer as text: ``HTTP <status>`` and an excerpt of its body (receivers explain there)."""
        text = f"HTTP {response.status_code}"
        try:
            body = response.text
        except Exception:  # pylint: disable=broad-except
            body = None
        if isinstance(body, str) and body.strip():
            # Scrubbed whole (up to RAW_BODY), then cut: a cut through a secret would hide it from the match.
            body = self.scrub(" ".join(body[:RAW_BODY].split()))
            text += ": " + self._cut(body, BODY_EXCERPT)
        return self._cut(self.scrub(text), limit)

    def url(self, url):
        """A URL fit for a log line: scheme, host and port; the rest only when it holds no secret."""
        try:
            parts = urllib.parse.urlsplit(str(url))
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            return PLACEHOLDER
        shown = self.scrub(str(url))
        if shown == str(url) and not parts.password:
            return shown
        return f"{parts.scheme}://{host}{port}/{PLACEHOLDER}"

    @staticmethod
    def _cut(text, limit):
        # Scrubbed before cut: a secret cut in half would not match any more.
        return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def collect(channels):
    """:class:`Secrets` of notification channels ``{name: {kind, url, routing_key, ...}}`` (parsed or raw)."""
    values, urls = [], []
    if isinstance(channels, dict):
        for cfg in channels.values():
            if not isinstance(cfg, dict):
                continue
            for key, value in cfg.items():
                if not isinstance(value, str):
                    continue
                if key in URL_FIELDS:
                    urls.append(value)
                elif key in SECRET_FIELDS or key.endswith(("_key", "_token", "_password", "_secret")):
                    values.append(value)
    return Secrets(values, urls)


def collect_layers(layers):
    """:class:`Secrets` of every ``channels`` found in config layers (``hx_incident`` mappings), unvalidated.

    Unvalidated on purpose: a config refused for another reason still holds
    real secrets, and an error about it must not print them.
    """
    channels = {}
    for n, layer in enumerate(layers or ()):
        if isinstance(layer, dict) and isinstance(layer.get("channels"), dict):
            for name, cfg in layer["channels"].items():
                channels[f"{n}:{name}"] = cfg
    return collect(channels)


NONE = Secrets()


class LogScrubber(logging.Filter):
    """A logger filter that scrubs each record's message of the secrets it was last given."""

    def __init__(self):
        super().__init__()
        self.secrets = NONE

    def filter(self, record):
        secrets = self.secrets
        if secrets:
            try:
                message = record.getMessage()
            except Exception:  # pylint: disable=broad-except
                return True
            clean = secrets.scrub(message)
            if clean != message:
                record.msg, record.args = clean, ()
        return True


_SCRUBBER = LogScrubber()
_SCRUBBER_LOCK = threading.Lock()


def scrub_logs(secrets, loggers):
    """Scrub the records of ``loggers`` (names) of ``secrets`` from now on (one filter, the newest secrets)."""
    with _SCRUBBER_LOCK:
        _SCRUBBER.secrets = secrets
        for name in loggers:
            logger = logging.getLogger(name)
            if _SCRUBBER not in logger.filters:
                logger.addFilter(_SCRUBBER)
