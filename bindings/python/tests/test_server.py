"""`lamina serve` through OpenAI's own Python client: greedy answers equal to `lamina generate`
and `lamina chat`, streams that join to the whole reply, JSON-schema output, embeddings, two
clients at once, an adapter chosen per request, and bad requests answered with OpenAI's error
shape while the server goes on serving.

It runs target/release/lamina (cargo build --release -p lamina-cli) and needs the `openai`
package (python3 -m pip install openai); without it the module is skipped.

Run from the repository root:  python3 -m pytest -q bindings/python/tests/test_server.py
"""

import json
import math
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

openai = pytest.importorskip("openai", reason="the server tests use OpenAI's client: python3 -m pip install openai")

ROOT = Path(__file__).resolve().parents[3]
LAMINA = ROOT / "target" / "release" / "lamina"
# Small and fast on two cores: a short context, two threads.
COMMON = ["-t", "2", "--ctx", "1024"]
KEY = "sk-test-key"

if not LAMINA.is_file():
    pytest.skip("{} is not built: cargo build --release -p lamina-cli".format(LAMINA), allow_module_level=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `lamina serve` process on a free port, its output in a log file."""

    def __init__(self, log_path, *args, api_key=None):
        self.port = free_port()
        self.url = "http://127.0.0.1:{}".format(self.port)
        self.log_path = log_path
        env = dict(os.environ)
        env.pop("LAMINA_API_KEY", None)
        if api_key:
            env["LAMINA_API_KEY"] = api_key
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [str(LAMINA), "serve", "--port", str(self.port), *COMMON, *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.wait_ready()

    def output(self):
        return Path(self.log_path).read_text()

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail("lamina serve exited with {}:\n{}".format(self.proc.returncode, self.output()))
            try:
                urllib.request.urlopen(self.url + "/v1/models", timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # it answers (401 without a key): it is up
            except OSError:
                time.sleep(0.1)
        self.stop()
        pytest.fail("lamina serve did not answer within {} s:\n{}".format(timeout, self.output()))

    def stop(self):
        """SIGTERM, then SIGKILL if it does not exit; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def client(self, api_key="unused", **kwargs):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0, timeout=120, **kwargs)

    def post(self, path, data, headers=None):
        """A raw POST: (status, parsed JSON body)."""
        request = urllib.request.Request(self.url + path, data=data, method="POST", headers=headers or {})
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A LoRA adapter from two training steps (a few seconds), or None when training fails."""
    path = tmp_path_factory.mktemp("adapter") / "facts.gguf"
    result = subprocess.run(
        [str(LAMINA), "finetune", "--data", str(ROOT / "tests/data/made_up_facts.jsonl"),
         "--steps", "2", "--lr", "3e-3", "-t", "2", "--output", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return path if result.returncode == 0 and path.is_file() else None


@pytest.fixture(scope="module")
def server(tmp_path_factory, adapter):
    args = ["--lora", "facts={}".format(adapter)] if adapter else []
    s = Server(tmp_path_factory.mktemp("server") / "serve.log", *args)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.client()


@pytest.fixture(scope="module")
def model_id(client):
    return client.models.list().data[0].id


def lamina_cli(*args, stdin=None):
    """stdout of a lamina command, without the newline it ends the text with."""
    result = subprocess.run([str(LAMINA), *args, *COMMON], input=stdin, capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.endswith("\n"), result.stdout
    return result.stdout[:-1]


def chat(client, model, content, max_tokens=24, **kwargs):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], temperature=0, max_tokens=max_tokens, **kwargs
    )


def test_start_line_and_models(server, model_id, adapter):
    assert "listening on {} (model {}".format(server.url, model_id) in server.output()
    ids = [m.id for m in server.client().models.list().data]
    assert ids[0] == model_id
    if adapter:
        assert ids[1:] == ["facts"]
    assert server.client().models.retrieve(model_id).id == model_id


def test_completion_equals_lamina_generate(client, model_id):
    prompt = "The capital of France is"
    r = client.completions.create(model=model_id, prompt=prompt, temperature=0, max_tokens=12)
    assert r.choices[0].text == lamina_cli("generate", "-p", prompt, "--temperature", "0", "-n", "12")
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 12 and r.usage.total_tokens == r.usage.prompt_tokens + 12


def test_streamed_chat_joins_to_the_whole_reply(client, model_id):
    question = "What is the largest planet?"
    whole = chat(client, model_id, question)
    reply = whole.choices[0].message.content
    assert reply and whole.choices[0].finish_reason in ("stop", "length")
    assert reply == lamina_cli("chat", "--temperature", "0", "-n", "24", stdin=question + "\n")
    chunks = list(chat(client, model_id, question, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) > 1, "the reply came in one piece"
    assert "".join(pieces) == reply
    finished = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finished == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_json_schema_response(client, model_id):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    r = chat(client, model_id, "Describe a person as JSON.", max_tokens=80,
             response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
    assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
    person = json.loads(r.choices[0].message.content)
    assert set(person) == {"name", "age"} and isinstance(person["name"], str) and isinstance(person["age"], int)
    r = chat(client, model_id, "Describe a person as JSON.", max_tokens=8, response_format={"type": "json_object"})
    assert r.choices[0].message.content.lstrip().startswith("{")


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_embeddings_rank_related_sentences_higher(client, model_id):
    texts = ["The cat sat on the mat.", "A cat is sitting on a rug.", "Interest rates rose sharply in the bond market."]
    r = client.embeddings.create(model=model_id, input=texts)  # the client asks for base64
    assert [d.index for d in r.data] == [0, 1, 2]
    a, b, c = (d.embedding for d in r.data)
    assert abs(math.sqrt(sum(x * x for x in a)) - 1) < 1e-4
    assert cosine(a, b) > cosine(a, c) and cosine(a, b) > cosine(b, c)
    floats = client.embeddings.create(model=model_id, input=texts[0], encoding_format="float").data[0].embedding
    assert len(floats) == len(a) and max(abs(x - y) for x, y in zip(floats, a)) < 1e-6
    assert r.usage.prompt_tokens > 0


def test_two_clients_at_once_get_their_own_answers(server, model_id):
    prompts = ["The capital of France is", "Water boils at a temperature of"]
    one = server.client()
    alone = [one.completions.create(model=model_id, prompt=p, temperature=0, max_tokens=16).choices[0].text for p in prompts]
    results = [None] * len(prompts)
    barrier = threading.Barrier(len(prompts))

    def ask(i):
        c = server.client()
        barrier.wait()
        results[i] = c.completions.create(model=model_id, prompt=prompts[i], temperature=0, max_tokens=16).choices[0].text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == alone


def test_adapter_chosen_per_request(server, model_id, adapter):
    if adapter is None:
        pytest.skip("lamina finetune could not make an adapter")
    prompt = "The capital of Vorlandia is"
    expected = {
        "facts": lamina_cli("generate", "-p", prompt, "--temperature", "0", "-n", "12", "--lora", str(adapter)),
        model_id: lamina_cli("generate", "-p", prompt, "--temperature", "0", "-n", "12"),
    }
    names = ["facts", model_id, "{}:facts".format(model_id)]
    results = {}
    barrier = threading.Barrier(len(names))

    def ask(name):
        c = server.client()
        barrier.wait()
        results[name] = c.completions.create(model=name, prompt=prompt, temperature=0, max_tokens=12).choices[0].text

    threads = [threading.Thread(target=ask, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == {"facts": expected["facts"], model_id: expected[model_id], "{}:facts".format(model_id): expected["facts"]}


def test_bad_requests_get_openai_errors(server, client, model_id):
    status, body = server.post("/v1/chat/completions", b'{"model": "x", "messages": [')
    assert status == 400 and "not valid JSON" in body["error"]["message"], body
    wrong_type = {"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}
    status, body = server.post("/v1/chat/completions", json.dumps(wrong_type).encode())
    assert status == 400 and body["error"]["param"] == "temperature", body
    status, body = server.post("/v1/completions", b'{"prompt": "' + b"x" * (1024 * 1024 + 16) + b'"}')
    assert status == 413 and body["error"]["type"] == "invalid_request_error", body
    with pytest.raises(openai.NotFoundError) as e:
        chat(client, "no-such-model", "hi")
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        bad_schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "foo"}}}
        chat(client, model_id, "hi", response_format=bad_schema)
    assert "unrecognized type foo" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, model_id, "hi", n=2)
    assert e.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=model_id, prompt="word " * 1100, max_tokens=4)
    assert e.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=model_id, prompt="hi", max_tokens=100000)
    # ... and it goes on serving.
    assert chat(client, model_id, "Say hello.", max_tokens=4).choices[0].message.content


def test_a_client_that_leaves_mid_stream_stops_only_its_own_generation(server, client, model_id):
    # The time of a token here and now (other processes may share the cores).
    start = time.monotonic()
    client.completions.create(model=model_id, prompt="The capital of France is", temperature=0, max_tokens=32)
    per_token = (time.monotonic() - start) / 32
    stream = client.completions.create(model=model_id, prompt="Once upon a time", temperature=0, max_tokens=900, stream=True)
    first = next(iter(stream))
    assert first.choices[0].text is not None
    stream.close()
    # Were the abandoned sequence still running, this request would wait for its ~900 tokens
    # (one batch at a time).
    start = time.monotonic()
    r = client.completions.create(model=model_id, prompt="The capital of France is", temperature=0, max_tokens=4)
    elapsed = time.monotonic() - start
    assert r.choices[0].text
    assert elapsed < 300 * per_token, "the next request took {:.1f} s, {:.0f} tokens' time".format(elapsed, elapsed / per_token)


def test_api_key_and_clean_shutdown(tmp_path):
    s = Server(tmp_path / "keyed.log", "--parallel", "1", api_key=KEY)
    try:
        with pytest.raises(openai.AuthenticationError):
            s.client(api_key="wrong").models.list()
        status, body = s.post("/v1/completions", b'{"prompt": "hi"}')
        assert status == 401 and body["error"]["code"] == "invalid_api_key", body
        good = s.client(api_key=KEY)
        model = good.models.list().data[0].id
        assert good.completions.create(model=model, prompt="The capital of France is", temperature=0, max_tokens=2).choices[0].text
    finally:
        rc = s.stop()
    assert rc == 0, s.output()
    assert "shutting down" in s.output()
