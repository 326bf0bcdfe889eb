#!/usr/bin/env python3
"""Ask zayad a question over protocol v1 (docs/protocol.md) with pyzmq, streaming the answer.

    python3 docs/examples/ask.py "What is 2+2?" [--endpoint ipc:///run/zayad/zayad.sock]
                                 [--max-tokens N] [--solve]

Exit status: 0 on `done`, 1 on an `error` event or when zayad does not answer.
"""
import argparse
import json
import os
import sys
import uuid

import zmq


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question")
    parser.add_argument("--endpoint",
                        default=os.environ.get("ZAYA_ENDPOINT", "ipc:///run/zayad/zayad.sock"))
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--solve", action="store_true", help="use `solve` (Markovian RSA)")
    parser.add_argument("--timeout-ms", type=int, default=60000,
                        help="give up after this long without any event")
    args = parser.parse_args()

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)  # DEALER, not REQ: replies are a stream of events
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(args.endpoint)

    request_id = uuid.uuid4().hex
    request = {"v": 1, "id": request_id,
               "messages": [{"role": "user", "content": args.question}]}
    if args.solve:
        request.update(op="solve", budget=args.max_tokens)
    else:
        request.update(op="generate", max_tokens=args.max_tokens)
    sock.send(json.dumps(request).encode())  # one frame of UTF-8 JSON

    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while True:
        if not poller.poll(args.timeout_ms):
            print(f"no reply from zayad at {args.endpoint}: is it running?", file=sys.stderr)
            return 1
        event = json.loads(sock.recv())
        if event.get("id") != request_id:
            continue
        kind = event["event"]
        if kind == "delta":
            sys.stdout.write(event["text"])
            sys.stdout.flush()
        elif kind == "progress" and not event.get("keepalive"):
            print(f"[progress] {json.dumps(event)}", file=sys.stderr)
        elif kind == "done":
            if "answer" in event:
                sys.stdout.write(f"\nanswer: {event['answer']}")
            sys.stdout.write("\n")
            print(f"[done] usage={json.dumps(event.get('usage'))}", file=sys.stderr)
            return 0
        elif kind == "error":
            print(f"\nzayad error {event['code']}: {event['message']}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
