"""Plays every file in events/ through `sam local invoke`, in the order tests/it/events.rs plays
them, and checks each documented result (events/README.md) as that test does: the status or the
response, and the frames the Management API stand-in received.

Run by scripts/sam-local, which starts DynamoDB Local, moto, the stand-in and Docker first:

    python3 scripts/lib/sam_local_events.py (the .venv's, for boto3) ENV_VARS_JSON INVOKE_IMAGE STAND_IN_LOG

Exits 1 on the first result that differs, naming the event file. Prints one line per event with
its response and how long the invoke took.
"""

import calendar
import json
import os
import subprocess
import sys
import time

ALICE, BOB, DAVE = "Tz1RxcgYvHcCF9A=", "Uq2SydhZwIcCGaB=", "Vr3TzeiAxJdDHbC="
EVENTS = "events"


class Expectation(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise Expectation(message)


class StandIn:
    """The frames `marquee-local management-api` printed: one `<id> <- <frame>` line each."""

    def __init__(self, log):
        self.log = log

    def frames(self):
        frames = []
        with open(self.log, encoding="utf-8") as f:
            for line in f:
                if " <- " not in line:
                    continue
                connection, body = line.rstrip("\n").split(" <- ", 1)
                frames.append((connection, json.loads(body)))
        return frames

    def to(self, connection):
        return [frame for (c, frame) in self.frames() if c == connection]


def event_json(name):
    with open(os.path.join(EVENTS, name), encoding="utf-8") as f:
        return json.load(f)


def main():
    env_vars, image, log = sys.argv[1:4]
    stand_in = StandIn(log)
    with open(env_vars, encoding="utf-8") as f:
        table_env = json.load(f)["Parameters"]
    import boto3  # moto's dependency, in .venv

    table = boto3.client("dynamodb", endpoint_url=table_env["DYNAMODB_ENDPOINT"], region_name="us-east-1",
                         aws_access_key_id="local", aws_secret_access_key="local")

    def connections():
        items = table.scan(TableName=table_env["TABLE_NAME"])["Items"]
        return {i["pk"]["S"] for i in items if i["pk"]["S"].startswith("CONN#")}
    played = []
    timings = []

    def invoke(function, name):
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "scripts/lib/sam_host_network.py", "local", "invoke", function, "-e", os.path.join(EVENTS, name),
             "--env-vars", env_vars, "--invoke-image", image, "--skip-pull-image",
             "--docker-network", "host"],
            capture_output=True, text=True, check=False)
        took = time.monotonic() - started
        lines = [line for line in run.stdout.splitlines() if line.strip()]
        try:
            response = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            sys.stderr.write(run.stderr[-4000:])
            raise Expectation(f"{name}: {function} gave no JSON response (exit {run.returncode})")
        timings.append(took)
        print(f"  {name:28} {function:18} {took:5.1f} s  {json.dumps(response)[:150]}", flush=True)
        played.append(name)
        return response

    def status(function, name, code):
        response = invoke(function, name)
        expect(response.get("statusCode") == code, f"{name}: status {response.get('statusCode')}, not {code}")

    alice_connecting = int(time.time())
    status("ConnectFunction", "connect.json", 200)
    alice_connected = int(time.time())
    for name, code in [("connect-scoped.json", 200),
                       ("connect-no-token.json", 401), ("connect-bad-token.json", 401),
                       ("connect-expired-token.json", 401), ("connect-forbidden.json", 403),
                       ("connect-subscribe.json", 200)]:
        status("ConnectFunction", name, code)
    expect(connections() == {f"CONN#{c}" for c in (ALICE, BOB, DAVE)},
           f"refused connections wrote nothing: {connections()}")

    replies = [
        ("subscribe.json", {"type": "subscribed", "artists": ["Adele", "Taylor Swift"],
                            "seq": {"Adele": 0, "Taylor Swift": 0}}),
        ("subscribe-invalid.json", "invalid_message"),
        ("unsubscribe.json", {"type": "unsubscribed", "artists": ["Taylor Swift"]}),
        ("default.json", "unknown_action"),
        ("ping.json", "pong"),
    ]
    for name, reply in replies:
        before = len(stand_in.to(ALICE))
        status("SubscribeFunction", name, 200)
        frames = stand_in.to(ALICE)
        expect(len(frames) > before, f"{name}: alice got no reply")
        got = frames[before]
        if reply == "pong":
            expect((got["type"], got["connectionId"], got["ref"]) == ("pong", ALICE, "keepalive-1"), f"{name}: {got}")
            ends = calendar.timegm(time.strptime(got["expiresAt"], "%Y-%m-%dT%H:%M:%SZ"))
            expect(alice_connecting + 7200 <= ends <= alice_connected + 7200,
                   f"{name}: 2 hours after alice connected (the token lasts to 2100): {got}")
        elif isinstance(reply, str):
            expect((got["type"], got["code"]) == ("error", reply), f"{name}: {got}")
        else:
            expect(got == reply, f"{name}: {got}, not {reply}")

    notify = event_json("notify.json")
    summary = invoke("NotifyFunction", "notify.json")
    expect((summary.get("delivered"), summary.get("seq")) == (2, 1),
           f"notify.json: alice and dave, Adele's first notification: {summary}")
    for fan in (ALICE, DAVE):
        frame = stand_in.to(fan)[-1]
        expect((frame["type"], frame["artist"], frame["seq"]) == ("notification", "Adele", 1), f"notify.json: {fan}: {frame}")
    expect(stand_in.to(BOB) == [], "notify.json: bob is not Adele's subscriber")

    before = len(stand_in.to(ALICE))
    status("SubscribeFunction", "subscribe-since.json", 200)
    expected = [
        {"type": "subscribed", "artists": ["Adele"], "seq": {"Adele": 1}, "ref": "resume-1"},
        {"type": "welcome", "artist": "Adele", "subscribers": 2},
        {"type": "notification", "id": notify["id"], "seq": 1, "artist": "Adele",
         "detail": notify["detail"], "time": notify["time"]},
    ]
    got = stand_in.to(ALICE)[before:]
    expect(got == expected, f"subscribe-since.json: {got}")

    before = len(stand_in.to(ALICE))
    status("SubscribeFunction", "publish.json", 200)
    reply = stand_in.to(DAVE)[-1]
    expect((reply.get("type"), reply.get("ref")) == ("published", "chat-1"), f"publish.json: dave got {reply}")
    message = stand_in.to(ALICE)[before]
    expect((message["type"], message["id"], message["from"], message["artist"], message["data"])
           == ("message", reply["id"], "dave", "Adele", {"kind": "chat", "text": "Queue opens in 5!"}),
           f"publish.json: alice got {message}")

    summary = invoke("NotifyFunction", "announce.json")
    expect(summary.get("delivered") == 3, f"announce.json: {summary}")
    for fan in (ALICE, BOB, DAVE):
        frame = stand_in.to(fan)[-1]
        expect(frame == {"type": "announcement", "id": "5c2e8f10-4a7b-4d93-b1e6-0f8a3c7d2e91",
                         "message": "The Adele sale is delayed 10 minutes",
                         "time": "2026-11-22T10:02:00Z"}, f"announce.json: {fan}: {frame}")

    before = len(stand_in.frames())
    failure = invoke("NotifyFunction", "notify-invalid.json")
    expect(failure.get("errorType") == "InvalidEvent", f"notify-invalid.json: {failure}")
    expect(len(stand_in.frames()) == before, "notify-invalid.json: nobody is notified")

    for name in ("deliver.json", "deliver-continuation.json"):
        before = len(stand_in.to(ALICE))
        response = invoke("DeliverFunction", name)
        expect(response == {"batchItemFailures": []}, f"{name}: {response}")
        frames = stand_in.to(ALICE)
        expect(len(frames) == before + 1, f"{name}: alice gets one notification, got {frames[before:]}")
        expect((frames[-1]["type"], frames[-1]["id"]) == ("notification", "9a1d7c52-3e4b-4f0a-8c6d-2b5e7f1a0c93"), f"{name}: {frames[-1]}")
        expect(len(stand_in.to(BOB)) == 1, f"{name}: bob has only the announcement")

    invalid = event_json("deliver-invalid.json")
    before = len(stand_in.frames())
    response = invoke("DeliverFunction", "deliver-invalid.json")
    expect(response == {"batchItemFailures": [{"itemIdentifier": invalid["Records"][0]["messageId"]}]},
           f"deliver-invalid.json: {response}")
    expect(len(stand_in.frames()) == before, "deliver-invalid.json: nothing sent")

    summary = invoke("NotifyFunction", "revoke.json")
    expect((summary.get("audience"), summary.get("closed")) == (1, 1), f"revoke.json: {summary}")
    expect(stand_in.to(BOB)[-1] == {"type": "revoked"}, f"revoke.json: bob got {stand_in.to(BOB)[-1]}")
    expect(f"CONN#{BOB}" not in connections(), "revoke.json: bob's items are gone")
    played.remove("connect-scoped.json")
    status("ConnectFunction", "connect-scoped.json", 401)

    status("DisconnectFunction", "disconnect.json", 200)
    expect(f"CONN#{ALICE}" not in connections(), "disconnect.json: alice's items are gone")

    on_disk = sorted(n for n in os.listdir(EVENTS) if n.endswith(".json"))
    expect(sorted(played) == on_disk, f"every file in events/ is played: {sorted(set(on_disk) - set(played))} were not")
    print(f"sam local invoke: all {len(played)} events gave their documented result "
          f"({min(timings):.1f}-{max(timings):.1f} s per invoke, {sum(timings):.0f} s in all)")


if __name__ == "__main__":
    try:
        main()
    except Expectation as failure:
        sys.exit(f"FAIL: {failure}")
