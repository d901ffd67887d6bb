"""python-socketio's client against namespace `/` (run by tests/socketio.rs).

A second ecosystem: connect with `auth`, get `welcome` and `joined`, say
something through a callback (`call`), see the other user's message,
and a refused connection's `connect_error` data."""
import os
import queue
import sys

import socketio

URL = os.environ["CHAT_URL"]
events = queue.Queue()

sio = socketio.Client(reconnection=False)


@sio.on("*")
def any_event(name, data):
    events.put((name, data))


def next_event(name):
    while True:
        got, data = events.get(timeout=10)
        if got == name:
            return data


sio.connect(URL, auth={"nick": "snake"}, transports=["websocket"], wait_timeout=10)
welcome = next_event("welcome")
assert welcome["nick"] == "snake", welcome
assert next_event("joined")["room"] == "lobby"
ack = sio.call("say", {"room": "lobby", "text": "hello from python"}, timeout=10)
assert ack["type"] == "ack" and ack["message"]["seq"] == 1, ack
print("@@ready", flush=True)
m = next_event("message")
assert (m["from"], m["text"]) == ("web", "hello, python"), m
err = sio.call("say", {"room": "nowhere", "text": "x"}, timeout=10)
assert (err["type"], err["code"]) == ("error", "not_in_room"), err
sio.disconnect()

refused = socketio.Client(reconnection=False)
why = queue.Queue()
refused.on("connect_error", lambda data=None: why.put(data))
try:
    refused.connect(URL, auth={"nick": "web"}, transports=["polling"], wait_timeout=10)
    sys.exit("a taken nick was accepted")
except socketio.exceptions.ConnectionError:
    pass
data = why.get(timeout=10)
assert data["code"] == "nick_taken" and data["message"], data
print("OK")
