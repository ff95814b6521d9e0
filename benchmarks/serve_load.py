"""Load test of ``serve``: N streaming clients for S seconds, then a burst beyond capacity.

Runs each engine in turn (``--engines builtin,transformers``: the older stdlib server on TGI's
API, then transformers serve behind the app's proxy on the OpenAI API). Starts the real server
(``talk-to-transformers serve --engine E --host 127.0.0.1 --port 0``) as a subprocess, with
``--max-waiting`` set so the N clients fit (capacity = 1 + the waiting ones), then, one phase
after another:

1. load: N clients each stream a reply in a loop for S seconds (``/generate_stream``, or
   ``/v1/completions`` with ``stream``) and parse the server-sent events. Prints requests,
   errors (a non-200 answer, an error event or a stream without its final event), tokens/s,
   streamed chunks/s, time to first token p50/p95/max, full reply p50/p95. For an engine
   behind the proxy, the same load straight at the engine's private port as well: the proxy's
   overhead.
2. overload: capacity + E requests at the same moment. Prints how many were refused with 503 +
   ``Retry-After``, the slowest refusal (it must come at once, not after a queue), and whether
   every admitted request completed.
3. stalled clients: one stops reading its stream, one never sends the body it announced; the
   next normal request must still complete.
4. SIGINT (Ctrl-C) to the server; prints its exit status.

Times are measured by the clients, from just before a request is sent. One model generates
one reply at a time, so time to first token grows with the queue: with N clients it is about
N - 1 replies (builtin); continuous batching decodes them together instead.

    .venv/bin/python benchmarks/serve_load.py [--persona starter] [--clients 8] [--seconds 120]
        [--engines builtin,transformers]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

Address = tuple[str, int]
# Per API: the streaming route, and the name of the reply-length parameter.
ROUTES = {"tgi": "/generate_stream", "openai": "/v1/completions"}

QUESTIONS = [
    "What is the capital of France?",
    "Give me three tips for sleeping better.",
    "Why is the sky blue?",
    "How do I make a cup of tea?",
    "What should I pack for a weekend hike?",
    "Explain what a prime number is.",
    "Can you suggest a name for a grey cat?",
    "What is a good way to learn a new language?",
]


@dataclass
class StreamResult:
    """One request's outcome; times are seconds from just before it was sent."""

    inputs: str = ""  # the prompt sent
    status: int | None = None  # HTTP status; None when no answer came at all
    retry_after: str | None = None  # the Retry-After header of a refusal
    body: Any = None  # the JSON body of a non-200 answer
    error: str | None = None  # why the request failed; None when it succeeded
    answered_s: float | None = None  # until the status line arrived
    first_token_s: float | None = None  # until the first streamed piece of text
    total_s: float = 0.0  # until the final event, or the failure
    pieces: int = 0  # streamed text events (a piece is a word or so, not a token)
    text: str = ""  # generated_text of the final event
    complete: bool = False  # the final event arrived

    @property
    def ok(self) -> bool:
        """A 200 answer whose stream ended with its final event."""
        return self.status == 200 and self.complete and self.error is None


def request_bytes(inputs: str, parameters: dict[str, Any] | None = None,
                  api: str = "tgi") -> bytes:
    """The JSON body of a streaming request: TGI ``generate_stream`` or OpenAI completions.

    ``parameters`` are the API's own (``max_new_tokens`` is also taken for the OpenAI API,
    as ``max_tokens``).
    """
    if api == "openai":
        body: dict[str, Any] = {"prompt": inputs, **(parameters or {}), "stream": True}
        if "max_new_tokens" in body:
            body["max_tokens"] = body.pop("max_new_tokens")
        return json.dumps(body).encode()
    return json.dumps({"inputs": inputs, "parameters": parameters or {}}).encode()


def stream_request(address: Address, inputs: str, *, parameters: dict[str, Any] | None = None,
                   timeout: float = 600.0, api: str = "tgi",
                   token: str | None = None) -> StreamResult:
    """POST a streaming request and read the server-sent events to the end.

    Args:
        address: the server's host and port.
        inputs: the prompt text.
        parameters: TGI parameters (``max_new_tokens``...).
        timeout: socket timeout in seconds for each connect and read; a server that hangs
            makes the request fail after this long instead of blocking for ever.
        api: ``tgi`` (``/generate_stream``) or ``openai`` (``/v1/completions``).
        token: sent as ``Authorization: Bearer``.

    """
    result = StreamResult(inputs=inputs)
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    start = time.perf_counter()
    try:
        conn.request("POST", ROUTES[api], request_bytes(inputs, parameters, api), headers)
        response = conn.getresponse()
        result.answered_s = time.perf_counter() - start
        result.status = response.status
        if response.status != 200:
            result.retry_after = response.getheader("Retry-After")
            raw = response.read()
            try:
                result.body = json.loads(raw)
            except ValueError:
                result.body = raw.decode(errors="replace")
            result.error = f"HTTP {response.status}"
            return result
        streamed: list[str] = []
        for event in _events(response):
            if api == "openai":
                event = _as_tgi_event(event, streamed)
            if "error" in event:
                result.error = f"error event: {event['error']}"
                break
            if event.get("generated_text") is not None:
                result.text = event["generated_text"]
                result.complete = True
                break
            if (event.get("token") or {}).get("text"):
                result.pieces += 1
                if result.first_token_s is None:
                    result.first_token_s = time.perf_counter() - start
        if not result.complete and result.error is None:
            result.error = "stream ended without its final event"
    except (OSError, http.client.HTTPException, ValueError) as err:
        result.error = f"{type(err).__name__}: {err}"
    finally:
        result.total_s = time.perf_counter() - start
        conn.close()
    return result


def _events(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """The ``data:`` payloads of a server-sent event stream (OpenAI's ``[DONE]`` as such)."""
    while line := response.readline():
        if line.startswith(b"data:"):
            data = line[5:].strip()
            yield {"done": True} if data == b"[DONE]" else json.loads(data)


def _as_tgi_event(event: dict[str, Any], streamed: list[str]) -> dict[str, Any]:
    """An OpenAI completions chunk in TGI's shape, so one loop reads both.

    The reply ends with a chunk carrying ``finish_reason`` (transformers serve sends no
    ``[DONE]`` after it) or with ``[DONE]``.
    """
    if "error" in event:
        return event
    choices = event.get("choices") or [{}]
    text = choices[0].get("text") or ""
    streamed.append(text)
    if event.get("done") or choices[0].get("finish_reason"):
        return {"token": {"text": text}, "generated_text": "".join(streamed)}
    return {"token": {"text": text}, "generated_text": None}


def run_load(address: Address, prompts: Sequence[str], *, clients: int, seconds: float,
             parameters: dict[str, Any] | None = None, timeout: float = 600.0,
             api: str = "tgi") -> tuple[list[StreamResult], float]:
    """``clients`` threads stream requests back to back until ``seconds`` have passed.

    A request started before the deadline is read to its end. A failed request is followed by
    a pause of ``Retry-After`` (or 1 s), as a polite client does.

    Returns:
        The results and the wall time in seconds until the last client finished.

    """
    deadline = time.monotonic() + seconds
    results: list[StreamResult] = []

    def client(index: int) -> None:
        while time.monotonic() < deadline:
            result = stream_request(address, prompts[index % len(prompts)],
                                    parameters=parameters, timeout=timeout, api=api)
            results.append(result)
            index += clients
            if not result.ok:
                time.sleep(float(result.retry_after or 1))

    threads = [threading.Thread(target=client, args=(i,), name=f"load-client-{i}")
               for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - start


def start_burst(address: Address, inputs: str, count: int, *,
                parameters: dict[str, Any] | None = None, timeout: float = 600.0,
                api: str = "tgi") -> tuple[list[threading.Thread], list[StreamResult]]:
    """Start ``count`` requests released at the same moment; results fill in as they end.

    Join the returned threads to wait for all of them.
    """
    barrier = threading.Barrier(count)
    results: list[StreamResult] = []

    def one() -> None:
        barrier.wait(timeout=60)
        results.append(stream_request(address, inputs, parameters=parameters, timeout=timeout,
                                      api=api))

    threads = [threading.Thread(target=one, name=f"burst-client-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def open_stalled_reader(address: Address, inputs: str,
                        parameters: dict[str, Any] | None = None,
                        api: str = "tgi") -> socket.socket:
    """A client that sends a streaming request, then never reads (small receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(address)
    body = request_bytes(inputs, parameters, api)
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: load\r\n"
                 b"Content-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (ROUTES[api].encode(), len(body), body))
    return sock


def open_stalled_sender(address: Address, api: str = "tgi") -> socket.socket:
    """A client that announces a request body and never sends it."""
    sock = socket.create_connection(address)
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: load\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                 % ROUTES[api].encode())
    return sock


@dataclass
class ServerProcess:
    """A ``serve`` command running as a child process."""

    process: subprocess.Popen
    address: Address
    banner: str  # its "Serving ... on http://..." line
    engine_address: Address | None = None  # the engine behind the proxy, from its "Engine:" line


def cli_command() -> list[str]:
    """The installed ``talk-to-transformers`` beside this Python, else ``python -m engine``."""
    script = Path(sys.executable).parent / "talk-to-transformers"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "engine"]


# A background job (``cmd &``, ``nohup``) starts with SIGINT ignored and its children inherit
# that, so the server would ignore the Ctrl-C that stop_server sends. Restore it, then exec.
_WITH_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                "os.execv(sys.argv[1], sys.argv[1:])")


def start_server(persona: str, *, max_waiting: int, extra: Sequence[str] = (),
                 env: dict[str, str] | None = None, stderr: Any = None,
                 load_timeout: float = 900.0, engine: str = "builtin") -> ServerProcess:
    """Run ``serve`` on 127.0.0.1 with a free port; return once it prints its URL.

    Raises:
        RuntimeError: the server exited (or was killed after ``load_timeout`` seconds)
            before it served.

    """
    command = [sys.executable, "-c", _WITH_SIGINT, *cli_command(), "serve",
               "--persona", persona, "--host", "127.0.0.1", "--port", "0",
               "--max-waiting", str(max_waiting), "--engine", engine, *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=env,
                               text=True)
    watchdog = threading.Timer(load_timeout, process.kill)  # a load that never ends
    watchdog.start()
    try:
        assert process.stdout is not None
        engine_address = None
        for line in process.stdout:
            found = re.search(r"http://([\d.]+):(\d+)", line)
            if line.startswith("Engine:") and found:
                engine_address = (found[1], int(found[2]))
            if line.startswith("Serving") and found:
                return ServerProcess(process, (found[1], int(found[2])), line.strip(),
                                     engine_address)
    finally:
        watchdog.cancel()
    raise RuntimeError(f"serve exited with status {process.wait()} before serving")


def stop_server(server: ServerProcess, timeout: float = 60.0) -> int:
    """SIGINT (as Ctrl-C) and wait; kill it if it does not stop. Returns the exit status."""
    server.process.send_signal(signal.SIGINT)
    try:
        return server.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.process.kill()
        return server.process.wait()
    finally:
        if server.process.stdout is not None:
            server.process.stdout.close()


def get_json(address: Address, path: str, timeout: float = 30.0) -> Any:
    """GET a JSON route (``/info``, ``/health``)."""
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def error_summary(results: Sequence[StreamResult]) -> str:
    counts = Counter(r.error or "incomplete" for r in results if not r.ok)
    return "; ".join(f"{n}x {error[:80]}" for error, n in counts.most_common(5))


def build_prompts(persona_ref: str,
                  max_new_tokens: int | None) -> tuple[list[str], Any, str, int]:
    """Prompts for QUESTIONS in the persona's format, as the remote backend builds them.

    Returns:
        The prompt texts, the tokenizer, the persona's label and the reply length in tokens.

    """
    from engine.chat.prompt import build_prompt
    from engine.chat.types import Turn
    from engine.models.loader import load_tokenizer
    from engine.models.registry import find_persona

    persona = find_persona(persona_ref)
    tokenizer, context = load_tokenizer(persona)
    reply_tokens = max_new_tokens or persona.decoding.max_new_tokens
    prompts = [build_prompt(tokenizer, [Turn("user", q)], prompt_format=persona.prompt_format,
                            context_tokens=context, reply_tokens=reply_tokens,
                            system_prompt=persona.system_prompt).text for q in QUESTIONS]
    return prompts, tokenizer, persona.label, reply_tokens


@dataclass
class LoadFigures:
    """What one load phase measured."""

    done: int
    errors: int
    wall_s: float
    tokens_per_s: float
    chunks_per_s: float  # streamed text events per second, all clients together
    ttft_p50_s: float
    ttft_p95_s: float


def load_phase(title: str, address: Address, prompts: Sequence[str], tokenizer: Any, *,
               args: argparse.Namespace, parameters: dict[str, Any] | None,
               api: str) -> LoadFigures:
    """Phase 1 against one address; prints its figures."""
    results, wall = run_load(address, prompts, clients=args.clients, seconds=args.seconds,
                             parameters=parameters, timeout=args.timeout, api=api)
    done = [r for r in results if r.ok]
    errors = [r for r in results if not r.ok]
    tokens = sum(len(tokenizer.encode(r.text, add_special_tokens=False)) for r in done)
    chunks = sum(r.pieces for r in done)
    ttft = [r.first_token_s for r in done if r.first_token_s is not None]
    total = [r.total_s for r in done]
    print(f"\nload, {title}: {args.clients} streaming clients for {args.seconds:.0f} s "
          f"(wall {wall:.1f} s incl. the replies under way at the deadline)")
    print(f"  requests done        {len(done)}")
    print(f"  errors               {len(errors)}"
          + (f"   ({error_summary(errors)})" if errors else ""))
    print(f"  tokens/s             {tokens / wall:.1f}   "
          f"({tokens} tokens, all clients together)")
    print(f"  chunks/s             {chunks / wall:.1f}   ({chunks} streamed text events)")
    print(f"  time to first token  p50 {percentile(ttft, 50):6.2f} s   "
          f"p95 {percentile(ttft, 95):6.2f} s   max {max(ttft, default=float('nan')):6.2f} s")
    print(f"  full reply           p50 {percentile(total, 50):6.2f} s   "
          f"p95 {percentile(total, 95):6.2f} s")
    return LoadFigures(len(done), len(errors), wall, tokens / wall, chunks / wall,
                       percentile(ttft, 50), percentile(ttft, 95))


def bench_engine(engine: str, args: argparse.Namespace, prompts: Sequence[str], tokenizer: Any,
                 failures: list[str]) -> dict[str, LoadFigures]:
    """All phases against ``serve --engine engine``; the load figures by what was loaded."""
    api = "tgi" if engine == "builtin" else "openai"
    max_waiting = args.clients - 1 if args.max_waiting is None else args.max_waiting
    capacity = 1 + max_waiting
    params = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else None
    if api == "openai":
        # The persona's decoding, as the app's client sends it: the engine alone gets the same
        # request as the proxy passes on (the proxy fills in only what a request leaves out).
        from engine.models.registry import find_persona

        decoding = find_persona(args.persona).decoding
        if args.max_new_tokens:
            decoding = decoding.replace(max_new_tokens=args.max_new_tokens)
        params = decoding.openai_parameters(extras=False)
    print(f"\n===== serve --engine {engine} ({api} API) =====")
    started = time.perf_counter()
    server = start_server(args.persona, max_waiting=max_waiting, engine=engine,
                          extra=["--device", args.device])
    print(f"server up in {time.perf_counter() - started:.1f} s")
    print(server.banner)
    print(f"capacity {capacity} requests in flight")
    figures: dict[str, LoadFigures] = {}
    try:
        # 1. load (and, behind the proxy, the engine alone)
        if server.engine_address is not None:
            # Not counted: the engine's first batches grow its caches, which would favour
            # whichever of the two phases comes second.
            run_load(server.engine_address, prompts, clients=args.clients,
                     seconds=min(args.seconds, 5.0), parameters=params, timeout=args.timeout,
                     api=api)
        figures[engine] = load_phase(f"{engine} serve", server.address, prompts, tokenizer,
                                     args=args, parameters=params, api=api)
        if figures[engine].errors or not figures[engine].done:
            failures.append(f"{engine}: load phase had errors")
        if server.engine_address is not None:
            alone = load_phase(f"{engine} engine alone (no proxy)", server.engine_address,
                               prompts, tokenizer, args=args, parameters=params, api=api)
            figures[f"{engine} alone"] = alone

        # 2. overload burst
        count = capacity + args.extra
        threads, burst = start_burst(server.address, prompts[0], count, parameters=params,
                                     timeout=args.timeout, api=api)
        for thread in threads:
            thread.join()
        refused = [r for r in burst if r.status == 503]
        proper = [r for r in refused if r.retry_after
                  and isinstance(r.body, dict) and r.body.get("error")]
        admitted = [r for r in burst if r.status == 200]
        other = [r for r in burst if r.status not in (200, 503)]
        slowest = max((r.total_s for r in refused), default=float("nan"))
        print(f"\noverload: {count} requests at once (capacity {capacity} + {args.extra})")
        print(f"  refused 503          {len(refused)}   ({len(proper)} with Retry-After and a "
              f"JSON error; slowest refusal {slowest:.3f} s)")
        print(f"  admitted             {len(admitted)}   "
              f"({sum(r.ok for r in admitted)} completed; slowest "
              f"{max((r.total_s for r in admitted), default=float('nan')):.1f} s)")
        print(f"  other                {len(other)}"
              + (f"   ({error_summary(other)})" if other else ""))
        if refused:
            print(f"  refusal body         {json.dumps(refused[0].body)}   "
                  f"Retry-After: {refused[0].retry_after}")
        if other or len(proper) != len(refused) or not all(r.ok for r in admitted):
            failures.append(f"{engine}: overload burst")

        # 3. stalled clients
        reader = open_stalled_reader(server.address, prompts[1], params, api)
        sender = open_stalled_sender(server.address, api)
        time.sleep(0.5)  # both are in the server before the normal request
        after = stream_request(server.address, prompts[2], parameters=params,
                               timeout=args.timeout, api=api)
        reader.close()
        sender.close()
        health = get_status(server.address, "/health")
        print("\nstalled clients: one stopped reading its stream, one never sent its body")
        print(f"  next request         {'complete' if after.ok else after.error} in "
              f"{after.total_s:.1f} s; /health HTTP {health}")
        if not after.ok:
            failures.append(f"{engine}: stalled clients blocked the next request")
    finally:
        stop_started = time.perf_counter()
        status = stop_server(server)
    print(f"\nserver stopped by SIGINT: exit status {status} "
          f"in {time.perf_counter() - stop_started:.1f} s")
    if status != 0:
        failures.append(f"{engine}: server exit status {status}")
    return figures


def get_status(address: Address, path: str, timeout: float = 30.0) -> int:
    """The HTTP status of ``GET path``."""
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def loadavg() -> str:
    """/proc/loadavg: other work on the machine skews every figure."""
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persona", default="starter", help="persona id, name or folder")
    parser.add_argument("--engines", default="builtin,transformers",
                        help="comma-separated serve --engine values, run one after another")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=120.0, help="length of a load phase")
    parser.add_argument("--max-waiting", type=int, default=None,
                        help="the server's waiting slots (default: clients - 1, so all fit)")
    parser.add_argument("--extra", type=int, default=8,
                        help="requests beyond capacity in the overload burst")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="reply length asked for (default: the persona's)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="client socket timeout in seconds (a hang fails, not blocks)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # phases take minutes: show each as it ends

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    print(f"loadavg at start: {loadavg()}  ({os.cpu_count()} CPUs)")
    prompts, tokenizer, label, reply_tokens = build_prompts(args.persona, args.max_new_tokens)
    print(f"persona {label}; replies up to {reply_tokens} new tokens")
    failures: list[str] = []
    figures: dict[str, LoadFigures] = {}
    for engine in args.engines.split(","):
        figures.update(bench_engine(engine.strip(), args, prompts, tokenizer, failures))

    print("\n===== summary =====")
    print(f"{'server':34} {'done':>5} {'errors':>6} {'tokens/s':>9} {'chunks/s':>9} "
          f"{'TTFT p50':>9} {'TTFT p95':>9}")
    for name, f in figures.items():
        print(f"{name:34} {f.done:5d} {f.errors:6d} {f.tokens_per_s:9.1f} {f.chunks_per_s:9.1f} "
              f"{f.ttft_p50_s:8.2f}s {f.ttft_p95_s:8.2f}s")
    if "builtin" in figures:
        for name, f in figures.items():
            if name != "builtin" and figures["builtin"].tokens_per_s:
                print(f"{name}: {f.tokens_per_s / figures['builtin'].tokens_per_s:.2f}x the "
                      "builtin server's tokens/s")
    for name in [n for n in figures if f"{n} alone" in figures]:
        alone, proxied = figures[f"{name} alone"], figures[name]
        if proxied.tokens_per_s:
            print(f"proxy overhead ({name}): engine alone / behind the proxy = "
                  f"{alone.tokens_per_s / proxied.tokens_per_s:.3f}x tokens/s; TTFT p50 "
                  f"{proxied.ttft_p50_s - alone.ttft_p50_s:+.3f} s")
    print(f"loadavg at end: {loadavg()}")
    print(f"verdict: {'OK' if not failures else 'FAILED: ' + ', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
