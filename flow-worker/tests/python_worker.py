"""A worker for flow's remote tasks in Python, standard library only: proof that any
language can serve a queue. It serves queue `work` (task `square`: {"n": N} -> N*N)
until the server has no task for it for `idle` seconds, then prints what it did.

    python3 python_worker.py URL [IDLE_SECONDS]
"""
import json
import sys
import urllib.error
import urllib.request

URL = sys.argv[1].rstrip("/")
IDLE = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0


def post(path, body):
    request = urllib.request.Request(
        URL + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=70) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


done = 0
while True:
    status, answer = post(
        "/v1/queues/work/poll",
        {"worker": "python", "max": 10, "wait_ms": int(IDLE * 1000)},
    )
    if status != 200:
        sys.exit("poll refused: %d %s" % (status, answer))
    tasks = answer["tasks"]
    if not tasks:
        break
    for task in tasks:
        assert task["task"] == "square", task
        status, beat = post("/v1/queues/work/heartbeat", {"token": task["token"]})
        assert status == 200 and beat["cancel_requested"] is False, (status, beat)
        n = task["args"]["n"]
        status, answer = post(
            "/v1/queues/work/complete",
            {"token": task["token"], "output": {"Ok": n * n}},
        )
        if status != 200:
            sys.exit("complete refused: %d %s" % (status, answer))
        done += 1
print("completed", done)
