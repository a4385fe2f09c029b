"""Transcription through the relay, against bare faster-whisper, and what it does to /healthz.

Usage: ``.venv/bin/python bench/transcription.py [--seconds 180] [--rounds 2] [--model tiny.en]``

Starts ``relay serve`` as a subprocess on SQLite in a temporary directory, pointed at the Discord
emulator (in this process), and prints, all measured in this one run:

- ``/healthz`` latency p50/p99 with the relay idle, and while it transcribes (target: p99 while
  transcribing ≤ 2× idle: the work happens in a worker process, never on the event loop);
- end-to-end time through the relay (POST → ``GET`` says done) against bare faster-whisper on the
  same file, model, device and thread count in this process (target ≤ 1.1×), rounds alternated
  and medians compared, the model already loaded on both sides (a warm-up job runs first);
- the real-time factor (seconds of compute per second of audio) of both.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-producer-key"
HEALTH_GAP_S = 0.02  # between /healthz probes: a steady trickle, not a load test
STATUS_GAP_S = 0.2  # between status polls, in both phases, so "idle" and "busy" differ only by the job


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def probe_health(client: httpx.Client, stop: threading.Event, out: list[float]) -> None:
    """Time ``/healthz`` until ``stop`` is set."""
    while not stop.is_set():
        started = time.perf_counter()
        client.get("/healthz").raise_for_status()
        out.append(time.perf_counter() - started)
        time.sleep(HEALTH_GAP_S)


def start_relay(directory: Path, api_base: str, model: str, device: str) -> tuple[subprocess.Popen[bytes], str]:
    """``relay serve`` on a fresh SQLite file; returns once ``/healthz`` answers."""
    port = free_port()
    env = {**os.environ, "RELAY_DATABASE_URL": f"sqlite:///{directory}/relay.db", "RELAY_API_KEYS": KEY,
           "RELAY_DISCORD_API_BASE": api_base, "RELAY_ADMIN_TOKEN": "bench-admin", "RELAY_LOG_LEVEL": "WARNING",
           "RELAY_WHISPER_MODEL": model, "RELAY_WHISPER_DEVICE": device, "RELAY_POLL_INTERVAL": "0.5"}
    relay_cmd = Path(sys.executable).with_name("relay")
    process = subprocess.Popen([str(relay_cmd), "serve", "--port", str(port), "--no-access-log"], cwd=directory,
                               env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit("relay serve did not start")


def through_relay(client: httpx.Client, audio: Path, webhook_url: str) -> tuple[float, dict]:
    """POST the file, poll until done; (seconds from POST to done, final job)."""
    payload = {"route": [{"type": "webhook", "url": webhook_url}], "workflow_id": "bench"}
    started = time.perf_counter()
    accepted = client.post("/v1/transcriptions", files={"payload_json": (None, json.dumps(payload)),
                                                        "file": (audio.name, audio.read_bytes(), "audio/wav")})
    accepted.raise_for_status()
    tr_id = accepted.json()["id"]
    while True:
        job = client.get(f"/v1/transcriptions/{tr_id}").json()
        if job["status"] in ("done", "failed"):
            elapsed = time.perf_counter() - started
            if job["status"] == "failed":
                raise SystemExit(f"transcription failed: {job['error']}")
            return elapsed, job
        time.sleep(STATUS_GAP_S)


def poll_status(client: httpx.Client, tr_id: str, seconds: float) -> None:
    """The status traffic of ``through_relay``, on a finished job: the idle phase's background."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        client.get(f"/v1/transcriptions/{tr_id}").raise_for_status()
        time.sleep(STATUS_GAP_S)


def bare_model(model: str, device: str) -> tuple[object, int]:
    """faster-whisper loaded in this process, with the thread count one relay worker gets."""
    from faster_whisper import WhisperModel

    from transcription import TranscriptionEngine

    engine = TranscriptionEngine(model, device=device, workers=1)  # resolves exactly as the relay does
    spec, threads = engine.spec, engine.cpu_threads
    return WhisperModel(spec.path, device=spec.device, compute_type=spec.compute_type, cpu_threads=threads,
                        local_files_only=True), threads


def bare(whisper: object, audio: Path) -> float:
    """Seconds for faster-whisper alone to transcribe the file (same options as the relay's defaults)."""
    started = time.perf_counter()
    segments, _ = whisper.transcribe(str(audio), language=None, task="transcribe",  # type: ignore[attr-defined]
                                     vad_filter=False, word_timestamps=False)
    for _ in segments:
        pass
    return time.perf_counter() - started


def main() -> None:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the generated speech")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from bench.transcription_engine import synthesise
    from tests.fakes.discord import DiscordEmulator
    from transcription import probe_audio

    with tempfile.TemporaryDirectory(prefix="relay-bench-tr-") as tmp:
        directory = Path(tmp)
        audio = synthesise(directory, args.seconds)
        warmup = directory / "warmup.wav"
        subprocess.run(["espeak-ng", "-w", str(warmup), "Warming up the model."], check=True)
        duration = probe_audio(audio).duration
        print(f"audio: {duration:.1f} s of espeak-ng speech, model {args.model} on {args.device}, "
              f"{os.cpu_count()} CPUs")

        emulator = DiscordEmulator().start()
        _, _, webhook_url = emulator.add_webhook()
        process, url = start_relay(directory, emulator.api_base, args.model, args.device)
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
        health_client = httpx.Client(base_url=url, timeout=30)
        try:
            warm_s, warm_job = through_relay(client, warmup, webhook_url)
            print(f"warm-up job (spawn worker, load model, transcribe 2 s): {warm_s:.2f} s")

            idle: list[float] = []
            stop = threading.Event()
            prober = threading.Thread(target=probe_health, args=(health_client, stop, idle))
            prober.start()
            poll_status(client, warm_job["id"], 8.0)
            stop.set()
            prober.join()

            # /healthz while transcribing, in a job of its own: the probes cost CPU, so the timed
            # rounds below run without them and the two sides see the same machine.
            busy: list[float] = []
            stop = threading.Event()
            prober = threading.Thread(target=probe_health, args=(health_client, stop, busy))
            prober.start()
            through_relay(client, audio, webhook_url)
            stop.set()
            prober.join()

            whisper, threads = bare_model(args.model, args.device)
            relay_times, bare_times = [], []
            for _ in range(args.rounds):
                elapsed, job = through_relay(client, audio, webhook_url)
                relay_times.append(elapsed)
                bare_times.append(bare(whisper, audio))
        finally:
            client.close()
            health_client.close()
            process.terminate()
            process.wait(timeout=60)
            emulator.stop()

    ms = 1000
    idle_p50, idle_p99 = percentile(idle, 50) * ms, percentile(idle, 99) * ms
    busy_p50, busy_p99 = percentile(busy, 50) * ms, percentile(busy, 99) * ms
    relay_s, bare_s = statistics.median(relay_times), statistics.median(bare_times)
    print(f"/healthz idle:             p50 {idle_p50:6.2f} ms  p99 {idle_p99:6.2f} ms  ({len(idle)} probes)")
    print(f"/healthz transcribing:     p50 {busy_p50:6.2f} ms  p99 {busy_p99:6.2f} ms  ({len(busy)} probes)")
    print(f"  p99 ratio busy/idle:     {busy_p99 / idle_p99:.2f}x  (target <= 2x)")
    print(f"relay end to end:          {', '.join(f'{t:.2f}' for t in relay_times)} s  (median {relay_s:.2f} s)")
    print(f"bare faster-whisper:       {', '.join(f'{t:.2f}' for t in bare_times)} s  (median {bare_s:.2f} s, "
          f"{threads} threads)")
    print(f"  ratio relay/bare:        {relay_s / bare_s:.3f}x  (target <= 1.1x)")
    print(f"real-time factor:          relay {relay_s / duration:.4f}  bare {bare_s / duration:.4f}  "
          f"({duration / relay_s:.1f}x / {duration / bare_s:.1f}x faster than real time)")
    print(f"detected language {job['language']}, {job['duration']:.1f} s, result {job['result_id']}")


if __name__ == "__main__":
    main()
