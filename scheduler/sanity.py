"""A quick throughput sanity check of the pipeline (not a benchmark, not a test).

    python -m scheduler.sanity [--messages 2000] [--latency 0.1] [--concurrency 32]

Starts a fake Twilio API (another process, answering 201 after ``--latency``
seconds), creates due SMS rows in a throw-away SQLite database, then times
dispatch + send jobs through the real ``twilio`` adapter on the embedded queue
(one process). Prints messages per second from due to accepted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _serve(port_queue, latency: float) -> None:
    counter = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go in separate writes

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(latency)
            counter["n"] += 1
            body = json.dumps({"sid": f"SM{counter['n']:032d}", "status": "queued",
                               "num_segments": "1", "error_code": None}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 256
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_queue.put(server.server_address[1])
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    ports: multiprocessing.Queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(ports, args.latency), daemon=True)
    server.start()
    port = ports.get(timeout=10)

    from gateway import create_app
    from gateway.cli import migrate_to_head
    from gateway.extensions import db
    from gateway.models import Message, Organisation
    from gateway.timeutil import utcnow
    from scheduler.dispatch import dispatch_all_due
    from scheduler.queue import run_pending

    folder = tempfile.mkdtemp(prefix="lapin-sanity-")
    app = create_app({
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder}/sanity.sqlite3",
        "REDIS_URL": None,
        "EMBEDDED_WORKER": False,
        "SMS_PROVIDERS": ["twilio"],
        "SMS_CONCURRENCY": args.concurrency,
        "PROVIDER_SETTINGS": {
            "TWILIO_ACCOUNT_SID": "ACsanity", "TWILIO_AUTH_TOKEN": "token",
            "TWILIO_FROM": "+33700000000", "TWILIO_API_BASE_URL": f"http://127.0.0.1:{port}",
        },
    })
    with app.app_context():
        migrate_to_head()
        org = Organisation(name="Sanity", timezone="Europe/Paris", quiet_hours="none")
        db.session.add(org)
        db.session.flush()
        now = utcnow()
        db.session.execute(Message.__table__.insert(), [
            {"organisation_id": org.id, "channel": "sms", "kind": "reminder", "status": "scheduled",
             "send_at": now, "recipient": f"+336{i:08d}", "body": "RDV PMI demain 10h",
             "attempts": 0, "created_at": now, "status_changed_at": now}
            for i in range(args.messages)
        ])
        db.session.commit()
        started = time.monotonic()
        queued = dispatch_all_due()
        run_pending(app)
        elapsed = time.monotonic() - started
        sent = db.session.scalar(
            db.select(db.func.count()).select_from(Message).where(Message.status == "sent"))
    server.terminate()
    print(f"{queued} queued, {sent} sent in {elapsed:.2f} s: {sent / elapsed:.0f} SMS/s "
          f"(one process, concurrency {args.concurrency}, provider latency {args.latency * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
