"""The official `openai` Python SDK through the keyport proxy.

A small OpenAI mock on 127.0.0.1:0 stands in for the upstream. It answers
401 unless a request carries exactly the vault canary key, so every test
fails when the proxy does not replace the client token with the vault key.
Run with `python3 -m pytest tests/e2e/python`; KEYPORT_BIN names the binary.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest

CANARY_KEY = "sk-vault-oai-CANARY0001"
VAULT_PASSWORD = "e2e-vault-password"
PROMPT_MARKER = "prompt-marker-5d1e0c"
ANSWER_MARKER = "answer-marker-93b7aa"
PROMPT = f"hi from python ({PROMPT_MARKER})"
ANSWER = f"The proxy relayed this answer to Python ({ANSWER_MARKER})."
REPO_ROOT = Path(__file__).resolve().parents[3]
KEYPORT_BIN = os.environ.get("KEYPORT_BIN", str(REPO_ROOT / "target" / "debug" / "keyport"))
COMMAND_TIMEOUT_S = 60
SERVE_START_TIMEOUT_S = 30
SERVE_STOP_TIMEOUT_S = 10
LISTENING_PATTERN = re.compile(r"http://127\.0\.0\.1:(\d+)")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

_original_getaddrinfo = socket.getaddrinfo


def _loopback_only_getaddrinfo(host, *args, **kwargs):
    """Reject name lookups for anything but loopback, so no SDK default
    endpoint is ever contacted from the tests."""
    name = host.decode() if isinstance(host, bytes) else host
    if name not in LOOPBACK_HOSTS:
        raise OSError(f"loopback guard: rejected a lookup of {name}; e2e tests may only connect to 127.0.0.1")
    return _original_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_only_getaddrinfo


class MockOpenAI(BaseHTTPRequestHandler):
    """OpenAI chat completions (plain and SSE) and embeddings."""

    protocol_version = "HTTP/1.1"
    requests: list[dict] = []

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by http.server
        pass

    def do_POST(self):  # noqa: N802 - name fixed by http.server
        length = int(self.headers.get("content-length", "0"))
        raw = self.rfile.read(length).decode("utf-8")
        body = json.loads(raw) if raw else {}
        authorized = self.headers.get("authorization") == f"Bearer {CANARY_KEY}"
        MockOpenAI.requests.append(
            {
                "path": self.path,
                "headers": dict(self.headers.items()),
                "raw_body": raw,
                "body": body,
                "authorized": authorized,
            }
        )

        if not authorized:
            self._send_json(
                401,
                {
                    "error": {
                        "message": "Incorrect API key provided (mock upstream expects the vault canary key).",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
            )
        elif self.path == "/v1/chat/completions":
            self._chat(body)
        elif self.path == "/v1/embeddings":
            self._embeddings(body)
        else:
            self._send_json(404, {"error": {"message": f"no route for {self.path}", "type": "invalid_request_error"}})

    def _chat(self, body):
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        base = {"id": "chatcmpl-py", "created": int(time.time()), "model": body.get("model", "")}
        if not body.get("stream"):
            message = {"role": "assistant", "content": ANSWER, "refusal": None}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
            self._send_json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
            return

        def chunk(delta, finish_reason):
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return {**base, "object": "chat.completion.chunk", "choices": [choice]}

        events = [chunk({"role": "assistant", "content": ""}, None)]
        events += [chunk({"content": ANSWER[i : i + 10]}, None) for i in range(0, len(ANSWER), 10)]
        events.append(chunk({}, "stop"))
        if body.get("stream_options", {}).get("include_usage"):
            events.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})

        # No Content-Length: the body ends when the connection closes.
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        for event in events:
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True

    def _embeddings(self, body):
        vector = [0.25, -0.5, len(str(body.get("input", ""))) / 100]
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack("<3f", *vector)).decode()
        else:
            embedding = vector
        self._send_json(
            200,
            {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": embedding}],
                "model": body.get("model", ""),
                "usage": {"prompt_tokens": 11, "total_tokens": 11},
            },
        )

    def _send_json(self, status, value):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Keyport:
    """A temporary data dir, the CLI commands that fill it, and a running
    `keyport serve --port 0` whose output is kept for the canary sweep."""

    def __init__(self, upstream_url: str):
        self.root = Path(tempfile.mkdtemp(prefix="keyport-e2e-py-"))
        self.data_dir = self.root / "data"
        self.home = self.root / "home"
        self.data_dir.mkdir()
        self.home.mkdir()
        (self.data_dir / "config.toml").write_text(f'[providers.openai]\nbase_url = "{upstream_url}/v1"\n')
        self.outputs: list[tuple[str, str, str, bool]] = []
        self.tokens: dict[str, str] = {}
        self.serve: subprocess.Popen | None = None
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._readers: list[threading.Thread] = []
        self.serve_stdout = ""
        self.serve_stderr = ""
        self.port = 0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("KEYPORT_DATA_DIR", "KEYPORT_NEW_PASSWORD")}
        env.update(
            HOME=str(self.home),
            XDG_DATA_HOME=str(self.home / ".local" / "share"),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            KEYPORT_PASSWORD=VAULT_PASSWORD,
            RUST_LOG=os.environ.get("E2E_RUST_LOG", "debug,keyport=trace,keyport_core=trace"),
            NO_COLOR="1",
        )
        return env

    def run(self, *args: str, stdin: str = "", token_output: bool = False) -> str:
        result = subprocess.run(
            [KEYPORT_BIN, "--data-dir", str(self.data_dir), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=COMMAND_TIMEOUT_S,
        )
        self.outputs.append((" ".join(args), result.stdout, result.stderr, token_output))
        if result.returncode != 0:
            raise AssertionError(
                f"keyport {' '.join(args)} exited with {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result.stdout

    def create_token(self, name: str) -> str:
        token = self.run("token", "create", name, token_output=True).strip()
        assert re.fullmatch(r"kp_\S+", token), f"token create printed {token[:80]!r}, expected a kp_ token"
        self.tokens[name] = token
        return token

    def start(self) -> None:
        self.serve = subprocess.Popen(
            [KEYPORT_BIN, "--data-dir", str(self.data_dir), "serve", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
        )
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._readers = [
            threading.Thread(target=_drain, args=(self.serve.stderr, self.stderr_lines), daemon=True),
            threading.Thread(target=_drain, args=(self.serve.stdout, self.stdout_lines), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

        deadline = time.monotonic() + SERVE_START_TIMEOUT_S
        while time.monotonic() < deadline:
            match = LISTENING_PATTERN.search("".join(self.stdout_lines))
            if match:
                self.port = int(match.group(1))
                return
            if self.serve.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(
            f"keyport serve did not print its address within {SERVE_START_TIMEOUT_S} s\n"
            f"stdout: {self.serve_stdout}\nstderr: {self.serve_stderr}"
        )

    def stop(self) -> int | None:
        """Send SIGTERM by PID and return the exit code, or None if it had to be killed."""
        if self.serve is None:
            return None
        if self.serve.poll() is None:
            os.kill(self.serve.pid, signal.SIGTERM)
        try:
            code = self.serve.wait(timeout=SERVE_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.serve.kill()
            self.serve.wait()
            code = None
        for reader in self._readers:
            reader.join(timeout=5)
        self.serve_stdout = "".join(self.stdout_lines)
        self.serve_stderr = "".join(self.stderr_lines)
        return code

    def output_hits(self, needles: dict[str, str]) -> list[str]:
        """Return "name in place" for each needle found in what keyport printed,
        skipping the stdout of `token create`, which prints the token by design."""
        hits = []
        outputs = [*self.outputs, ("serve --port 0", self.serve_stdout, self.serve_stderr, False)]
        for command, stdout, stderr, token_output in outputs:
            for name, value in needles.items():
                if not token_output and value in stdout:
                    hits.append(f"{name} in stdout of keyport {command}")
                if value in stderr:
                    hits.append(f"{name} in stderr of keyport {command}")
        return hits

    def leaks(self, secrets: dict[str, str]) -> list[str]:
        """Return "name in place" for each secret found in keyport's output or data files."""
        hits = self.output_hits(secrets)
        for path in self.data_dir.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                hits += [f"{name} in {path.name}" for name, value in secrets.items() if value.encode() in data]
        return hits


def _drain(stream, lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


@pytest.fixture(scope="module")
def keyport():
    MockOpenAI.requests.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), MockOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    instance = Keyport(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        instance.run("init")
        instance.run("key", "set", "openai", stdin=f"{CANARY_KEY}\n")
        instance.create_token("py-client")
        instance.create_token("py-revoked")
        instance.run("token", "revoke", "py-revoked")
        instance.start()
        yield instance
    finally:
        instance.stop()
        server.shutdown()
        server.server_close()
        if not os.environ.get("E2E_KEEP_TMP"):
            shutil.rmtree(instance.root, ignore_errors=True)


def client(keyport: Keyport, token: str) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=token,
        base_url=f"http://127.0.0.1:{keyport.port}/llm/openai",
        max_retries=0,
        timeout=20,
    )


def last_request(since: int) -> dict:
    received = MockOpenAI.requests[since:]
    assert len(received) == 1, f"expected one upstream request, got {len(received)}"
    return received[0]


def assert_injected(keyport: Keyport, request: dict) -> None:
    assert request["authorized"], f"upstream Authorization was {request['headers'].get('Authorization')!r}"
    seen = json.dumps([request["path"], request["headers"], request["raw_body"]])
    for name, token in keyport.tokens.items():
        assert token not in seen, f"client token {name} reached the upstream"


def test_chat_completion(keyport):
    since = len(MockOpenAI.requests)
    completion = client(keyport, keyport.tokens["py-client"]).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
    )

    assert completion.choices[0].message.content == ANSWER
    assert completion.usage.total_tokens == 18
    request = last_request(since)
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["messages"][0]["content"] == PROMPT
    assert_injected(keyport, request)


def test_chat_completion_streamed(keyport):
    since = len(MockOpenAI.requests)
    stream = client(keyport, keyport.tokens["py-client"]).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = ""
    usage = None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage

    assert text == ANSWER
    assert usage is not None, "the stream carried no usage chunk"
    assert usage.completion_tokens == 7
    request = last_request(since)
    assert request["body"]["stream"] is True
    assert_injected(keyport, request)


def test_embeddings(keyport):
    since = len(MockOpenAI.requests)
    result = client(keyport, keyport.tokens["py-client"]).embeddings.create(
        model="text-embedding-3-small", input="abcd"
    )

    expected = list(struct.unpack("<3f", struct.pack("<3f", 0.25, -0.5, 0.04)))
    assert result.data[0].embedding == pytest.approx(expected)
    assert_injected(keyport, last_request(since))


def test_revoked_token_rejected(keyport):
    since = len(MockOpenAI.requests)
    token = keyport.tokens["py-revoked"]
    with pytest.raises(openai.AuthenticationError) as raised:
        client(keyport, token).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

    message = str(raised.value)
    assert re.search("token", message, re.IGNORECASE), f"error does not mention the token: {message}"
    assert token not in message, "the error message repeats the client token"
    assert len(MockOpenAI.requests) == since, "the proxy forwarded a request with a revoked token"


def test_sweep_finds_no_secrets(keyport):
    assert keyport.stderr_lines, "keyport serve logged nothing, so the sweep of its output would prove nothing"
    code = keyport.stop()
    assert code == 0, f"keyport serve exited with {code} after SIGTERM\n{keyport.serve_stderr}"

    secrets = {"openai canary key": CANARY_KEY, **{f"client token {n}": t for n, t in keyport.tokens.items()}}
    assert (keyport.data_dir / "vault.stronghold").is_file(), "no vault.stronghold to sweep"
    leaks = keyport.leaks(secrets)
    assert leaks == [], "secrets found in clear:\n" + "\n".join(leaks)
    bodies = keyport.output_hits({"prompt text": PROMPT_MARKER, "reply text": ANSWER_MARKER})
    assert bodies == [], "request or response bodies found in keyport output:\n" + "\n".join(bodies)
    assert list(keyport.home.iterdir()) == [], "keyport wrote to HOME although --data-dir was given"
